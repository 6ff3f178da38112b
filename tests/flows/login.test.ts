import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { CSRF, startFlow, type Flow } from '../helpers/flow.ts'

describe('login', () => {
  let flow: Flow
  before(async () => {
    flow = await startFlow()
  })
  after(() => flow.close())

  test('a full login through the IdP form ends on the returnUrl with a __Host- session cookie', async () => {
    const browser = flow.browser()
    const res = await flow.login(browser, { returnUrl: '/after/login?x=1' })
    assert.equal(res.status, 302)
    assert.equal(res.headers.get('location'), '/after/login?x=1')
    const setCookie = res.headers.getSetCookie().find((c) => c.startsWith('__Host-gatehouse='))
    assert.ok(setCookie, 'session cookie set')
    assert.match(setCookie, /; Path=\//)
    assert.match(setCookie, /; Secure/)
    assert.match(setCookie, /; HttpOnly/)
    assert.match(setCookie, /; SameSite=Lax/)
    assert.doesNotMatch(setCookie, /Domain=/i)
    assert.match(browser.cookies.get('__Host-gatehouse')!, /^[A-Za-z0-9_-]{43}$/)
  })

  test('/bff/user returns the claims and the bff: management claims after login', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const res = await browser.get(`${flow.origin}/bff/user`, CSRF)
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('cache-control'), 'no-store')
    const claims = JSON.parse(res.text) as Array<{ type: string; value: unknown }>
    const get = (type: string) => claims.find((c) => c.type === type)?.value
    assert.equal(get('sub'), 'alice-0001')
    assert.equal(get('name'), 'Alice Example')
    assert.equal(get('email'), 'alice@example.test')
    const sid = get('sid')
    assert.equal(typeof sid, 'string')
    // Duende.BFF's shape: the logout URL carries the session's sid claim.
    assert.equal(get('bff:logout_url'), `/bff/logout?sid=${encodeURIComponent(sid as string)}`)
    const expiresIn = get('bff:session_expires_in')
    assert.equal(typeof expiresIn, 'number')
    assert.ok((expiresIn as number) > 8 * 3600 - 60 && (expiresIn as number) <= 8 * 3600)
    for (const protocol of ['nonce', 'at_hash', 'aud', 'iss', 'exp', 'iat'])
      assert.equal(get(protocol), undefined, `${protocol} is not a user claim`)
  })

  test('/bff/user without a session is 401 problem+json, never a redirect', async () => {
    const res = await flow.browser().get(`${flow.origin}/bff/user`, CSRF)
    assert.equal(res.status, 401)
    assert.match(res.headers.get('content-type')!, /^application\/problem\+json/)
    assert.equal(JSON.parse(res.text).code, 'session_required')
  })
})

describe('pending logins', () => {
  let flow: Flow
  before(async () => {
    flow = await startFlow()
  })
  after(() => flow.close())

  test('repeated /bff/login keeps at most 3 pending-login cookies, and the newest still completes', async () => {
    const browser = flow.browser()
    for (let i = 0; i < 12; i++) {
      const res = await browser.get(`${flow.origin}/bff/login?returnUrl=/n${i}`)
      assert.equal(res.status, 302)
      const pending = [...browser.cookies.keys()].filter((name) => name.startsWith('__Host-gatehouse.login.'))
      assert.ok(pending.length <= 3, `${pending.length} pending-login cookies after ${i + 1} logins`)
    }
    const res = await flow.login(browser, { returnUrl: '/final' })
    assert.equal(res.headers.get('location'), '/final')
  })

  test('two logins started in parallel tabs both complete', async () => {
    const browser = flow.browser()
    const first = await browser.get(`${flow.origin}/bff/login?returnUrl=/tab1`)
    const second = await browser.get(`${flow.origin}/bff/login?returnUrl=/tab2`)
    for (const [start, expected] of [
      [first, '/tab1'],
      [second, '/tab2'],
    ] as const) {
      // Walk the IdP's redirects; sign in when it shows its form (only the first time: then the IdP session exists).
      let res = await browser.get(start.headers.get('location')!)
      for (let hop = 0; hop < 15 && !res.url.startsWith(`${flow.origin}/signin-oidc`); hop++) {
        res = res.text.includes('name="password"')
          ? await browser.submitForm(res, { username: 'alice', password: 'alice-demo-password' })
          : await browser.get(new URL(res.headers.get('location')!, res.url).href)
      }
      assert.equal(res.status, 302, res.text)
      assert.equal(res.headers.get('location'), expected)
    }
  })
})

describe('login with session.cookieName "__Host-Http-gatehouse" (RFC 10017 §6.1.3.2, July 2026 text)', () => {
  const NAME = '__Host-Http-gatehouse'
  let flow: Flow
  before(async () => {
    flow = await startFlow({ gatehouse: { session: { store: 'memory', cookieName: NAME } } })
  })
  after(() => flow.close())

  test('the session and pending-login cookies carry that name with the __Host- attributes, and the session works and ends by it', async () => {
    const browser = flow.browser()
    const start = await browser.get(`${flow.origin}/bff/login`)
    const loginCookie = start.headers.getSetCookie().find((line) => line.startsWith(`${NAME}.login.`))
    assert.ok(loginCookie, 'the pending-login cookie is named after the session cookie')
    assert.match(loginCookie, /; Path=\//)
    assert.match(loginCookie, /; Secure/)
    assert.doesNotMatch(loginCookie, /Domain=/i)

    const res = await flow.login(browser)
    assert.equal(res.status, 302)
    const setCookie = res.headers.getSetCookie().find((line) => line.startsWith(`${NAME}=`))
    assert.ok(setCookie, `${NAME} is set`)
    assert.match(setCookie, /; Path=\//)
    assert.match(setCookie, /; Secure/)
    assert.match(setCookie, /; HttpOnly/)
    assert.doesNotMatch(setCookie, /Domain=/i)
    assert.equal(browser.cookies.has('__Host-gatehouse'), false, 'the default name is not used')

    const user = await browser.get(`${flow.origin}/bff/user`, CSRF)
    assert.equal(user.status, 200)
    // The session is found by that name only.
    const renamed = flow.browser()
    renamed.cookies.set('__Host-gatehouse', browser.cookies.get(NAME)!)
    assert.equal((await renamed.get(`${flow.origin}/bff/user`, CSRF)).status, 401)

    const logoutUrl = (JSON.parse(user.text) as Array<{ type: string; value: string }>).find(
      (c) => c.type === 'bff:logout_url',
    )!.value
    const out = await browser.get(`${flow.origin}${logoutUrl}`)
    assert.equal(out.status, 302)
    assert.ok(
      out.headers.getSetCookie().some((line) => line.startsWith(`${NAME}=;`) && /Max-Age=0\b/.test(line)),
      'logout deletes it by name',
    )
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 401)
  })
})
