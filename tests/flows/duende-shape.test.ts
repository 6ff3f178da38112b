import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { logoutSidOf } from '../../src/endpoints/user.ts'
import type { Session } from '../../src/session/session.ts'
import { CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import type { BrowserJar } from '../helpers/browser-jar.ts'

/**
 * What a front-end written for Duende.BFF relies on: /bff/user's claim shape (values as strings with
 * their valueType) and /bff/logout?sid=<the sid claim>, exactly as Duende's documentation tells it.
 */

type ClaimRecord = { type: string; value: unknown; valueType?: unknown }
const XSD_BOOLEAN = 'http://www.w3.org/2001/XMLSchema#boolean'

async function claimsOf(flow: Flow, browser: BrowserJar): Promise<ClaimRecord[]> {
  const res = await browser.get(`${flow.origin}/bff/user`, CSRF)
  assert.equal(res.status, 200, res.text)
  return JSON.parse(res.text) as ClaimRecord[]
}
const find = (claims: ClaimRecord[], type: string) => claims.find((c) => c.type === type)

describe("/bff/user in Duende.BFF's shape (the default)", () => {
  let flow: Flow
  before(async () => {
    flow = await startFlow()
  })
  after(() => flow.close())

  test('every IdP claim value is a string; strings carry valueType null, booleans the XML-schema boolean type', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const claims = await claimsOf(flow, browser)
    assert.deepEqual(find(claims, 'email_verified'), { type: 'email_verified', value: 'true', valueType: XSD_BOOLEAN })
    assert.deepEqual(find(claims, 'name'), { type: 'name', value: 'Alice Example', valueType: null })
    assert.deepEqual(find(claims, 'sub'), { type: 'sub', value: 'alice-0001', valueType: null })
    for (const claim of claims) {
      assert.ok('valueType' in claim, `${claim.type} has a valueType member`)
      if (claim.type !== 'bff:session_expires_in')
        assert.equal(typeof claim.value, 'string', `${claim.type} is a string`)
    }
  })

  test('only bff:session_expires_in is a number; bff:logout_url carries the sid claim', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const claims = await claimsOf(flow, browser)
    const expires = find(claims, 'bff:session_expires_in')!
    assert.equal(typeof expires.value, 'number')
    assert.equal(expires.valueType, null)
    const sid = find(claims, 'sid')!.value as string
    assert.deepEqual(find(claims, 'bff:logout_url'), {
      type: 'bff:logout_url',
      value: `/bff/logout?sid=${encodeURIComponent(sid)}`,
      valueType: null,
    })
  })
})

describe('/bff/user with user.claimValues "json"', () => {
  let flow: Flow
  before(async () => {
    flow = await startFlow({ gatehouse: { user: { claimValues: 'json' } } })
  })
  after(() => flow.close())

  test('claim values are as the IdP sent them (a boolean stays a boolean) and carry no valueType', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const claims = await claimsOf(flow, browser)
    assert.deepEqual(find(claims, 'email_verified'), { type: 'email_verified', value: true })
    assert.deepEqual(find(claims, 'name'), { type: 'name', value: 'Alice Example' })
    assert.equal(typeof find(claims, 'bff:session_expires_in')!.value, 'number')
  })
})

describe("/bff/logout?sid= with the session's sid claim (Duende's documented contract)", () => {
  let flow: Flow
  before(async () => {
    flow = await startFlow()
  })
  after(() => flow.close())

  test('GET /bff/logout?sid=<the sid claim from /bff/user> ends the session and redirects to the IdP', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const sid = find(await claimsOf(flow, browser), 'sid')!.value as string
    const res = await browser.get(`${flow.origin}/bff/logout?sid=${encodeURIComponent(sid)}`)
    assert.equal(res.status, 302, res.text)
    assert.ok(res.headers.get('location')!.startsWith(flow.idp.issuer), 'to the IdP end-session endpoint')
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 401)
  })

  test("a foreign sid (another user's session), a guessed one, one differing in case or padding is refused with 400 and nothing ends", async () => {
    const alice = flow.browser()
    await flow.login(alice)
    const bob = flow.browser()
    await flow.login(bob, { username: 'bob' })
    const aliceSid = find(await claimsOf(flow, alice), 'sid')!.value as string
    const bobSid = find(await claimsOf(flow, bob), 'sid')!.value as string
    for (const sid of [
      bobSid,
      'guessed',
      aliceSid.toUpperCase() === aliceSid ? aliceSid.toLowerCase() : aliceSid.toUpperCase(),
      ` ${aliceSid}`,
      `${aliceSid}=`,
      '',
    ]) {
      const res = await alice.get(`${flow.origin}/bff/logout?sid=${encodeURIComponent(sid)}`)
      assert.equal(res.status, 400, `sid ${JSON.stringify(sid)}`)
      assert.match(res.headers.get('content-type')!, /^application\/problem\+json/)
    }
    assert.equal((await alice.get(`${flow.origin}/bff/user`, CSRF)).status, 200, 'alice is still logged in')
    assert.equal((await bob.get(`${flow.origin}/bff/user`, CSRF)).status, 200, 'bob is still logged in')
  })

  test("the session's sid given twice is refused with 400 (ambiguous)", async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const sid = encodeURIComponent(find(await claimsOf(flow, browser), 'sid')!.value as string)
    assert.equal((await browser.get(`${flow.origin}/bff/logout?sid=${sid}&sid=${sid}`)).status, 400)
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200)
  })
})

describe("a logout by the IdP's sid must come from the application", () => {
  let flow: Flow
  const SPA = 'http://localhost:5173'
  before(async () => {
    flow = await startFlow({ gatehouse: { cors: { allowedOrigins: [SPA] } } })
  })
  after(() => flow.close())

  async function sidOf(browser: BrowserJar): Promise<string> {
    return find(await claimsOf(flow, browser), 'sid')!.value as string
  }

  test('a cross-site navigation carrying the right sid (another relying party knows it) is refused with 403 and the session survives', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const sid = encodeURIComponent(await sidOf(browser))
    for (const referer of [undefined, 'https://rp.example.com/page', 'http://localhost:5174/']) {
      const res = await browser.get(`${flow.origin}/bff/logout?sid=${sid}`, {
        'sec-fetch-site': 'cross-site',
        'sec-fetch-mode': 'navigate',
        ...(referer ? { referer } : {}),
      })
      assert.equal(res.status, 403, `referer ${String(referer)}`)
      assert.match(res.text, /from the application/, 'the page says why')
    }
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200, 'still logged in')
  })

  test("the app's own navigation (same-origin, same-site, typed) and a cross-site one from an allowed CORS origin end the session", async () => {
    const cases: Array<Record<string, string>> = [
      { 'sec-fetch-site': 'same-origin' },
      { 'sec-fetch-site': 'same-site' },
      { 'sec-fetch-site': 'none' },
      { 'sec-fetch-site': 'cross-site', referer: `${SPA}/orders` },
    ]
    for (const headers of cases) {
      const browser = flow.browser()
      await flow.login(browser)
      const res = await browser.get(
        `${flow.origin}/bff/logout?sid=${encodeURIComponent(await sidOf(browser))}`,
        headers,
      )
      assert.equal(res.status, 302, JSON.stringify(headers))
      assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 401, JSON.stringify(headers))
    }
  })
})

test("a session whose IdP sent an empty sid is logged out with gatehouse's own value, never with an empty one", () => {
  const session = { sid: '', data: { logoutSid: 'random-value-0123456789' } } as unknown as Session
  assert.equal(logoutSidOf(session), 'random-value-0123456789')
  assert.equal(logoutSidOf({ ...session, sid: 'idp-sid' } as Session), 'idp-sid')
})
