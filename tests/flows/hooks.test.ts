import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import { after, before, describe, test } from 'node:test'
import type { Hooks, SessionEndEvent, SessionInfo } from '../../src/index.ts'
import { CSRF, startFlow, type Flow } from '../helpers/flow.ts'

/** Library-mode extension points (docs/extending.md), each through a real login at a real IdP. */

type ClaimRecord = { type: string; value: unknown; valueType?: unknown }

describe('hooks', () => {
  let flow: Flow
  const created: SessionInfo[] = []
  const ended: SessionEndEvent[] = []
  const seenByEnricher: SessionInfo[] = []
  let throwOnCreate = false
  const hooks: Hooks = {
    enrichUser: async (session, claims) => {
      seenByEnricher.push(session)
      // A careless hook that edits what it is given, in place.
      for (const claim of [...claims, ...session.claims])
        if (claim.type === 'name') claim.value = `${String(claim.value)}!`
      return [
        ...claims,
        { type: 'role', value: session.sub === 'alice-0001' ? 'admin' : 'user' },
        { type: 'bff:logout_url', value: 'https://evil.example.com/' },
      ]
    },
    loginParams: (req: IncomingMessage) => ({
      ui_locales: 'de',
      acr_values: new URL(req.url!, 'http://x').searchParams.get('acr') ?? 'basic',
      state: 'attacker-chosen',
      Redirect_Uri: 'https://evil.example.com/cb',
      ' code_challenge ': 'x',
    }),
    logoutParams: (_req, session) => ({
      ui_locales: 'fr',
      id_token_hint: 'forged',
      logout_hint: session?.sub ?? 'none',
    }),
    validateReturnUrl: (url) => !url.startsWith('/forbidden') && !url.includes('evil'),
    onSessionCreated: (session) => {
      created.push(session)
      if (throwOnCreate) throw new Error('audit sink down')
    },
    onSessionEnded: async (event) => {
      ended.push(event)
    },
  }
  before(async () => {
    flow = await startFlow({ runtime: { hooks } })
  })
  after(() => flow.close())

  test("enrichUser adds the app's claims to /bff/user (in Duende's string shape); a bff: claim it returns is dropped", async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const claims = JSON.parse((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) as ClaimRecord[]
    assert.deepEqual(
      claims.find((c) => c.type === 'role'),
      { type: 'role', value: 'admin', valueType: null },
    )
    const logoutUrls = claims.filter((c) => c.type === 'bff:logout_url')
    assert.equal(logoutUrls.length, 1, "only gatehouse's own bff:logout_url")
    assert.match(String(logoutUrls[0]!.value), /^\/bff\/logout\?sid=/)
    assert.equal(seenByEnricher.at(-1)!.sub, 'alice-0001')
    assert.equal(seenByEnricher.at(-1)!.frontend, 'default')
    assert.ok(!('tokens' in seenByEnricher.at(-1)!), 'hooks never see tokens')
  })

  test('a hook that edits the claims it is given in place changes only its own answer: nothing accumulates across requests', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const names: unknown[] = []
    for (let i = 0; i < 3; i++) {
      const claims = JSON.parse((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) as ClaimRecord[]
      names.push(claims.find((c) => c.type === 'name')!.value)
    }
    // The hook appends "!" to what it gets: the session's own claims stay as the IdP sent them.
    assert.deepEqual(names, ['Alice Example!', 'Alice Example!', 'Alice Example!'])
  })

  test('loginParams adds authorize parameters, but cannot replace state or redirect_uri', async () => {
    const res = await flow.browser().get(`${flow.origin}/bff/login?acr=mfa`)
    assert.equal(res.status, 302)
    const authorize = new URL(res.headers.get('location')!)
    assert.equal(authorize.searchParams.get('ui_locales'), 'de')
    assert.equal(authorize.searchParams.get('acr_values'), 'mfa')
    assert.notEqual(authorize.searchParams.get('state'), 'attacker-chosen')
    assert.equal(authorize.searchParams.getAll('state').length, 1)
    assert.equal(authorize.searchParams.get('redirect_uri'), `${flow.origin}/signin-oidc`)
    for (const name of authorize.searchParams.keys())
      assert.ok(!['Redirect_Uri', ' code_challenge '].includes(name), `${name} in any spelling is gatehouse's`)
  })

  test('validateReturnUrl narrows the returnUrl at login and logout (400), and cannot widen the built-in rule', async () => {
    for (const endpoint of ['login', 'logout']) {
      assert.equal(
        (await flow.browser().get(`${flow.origin}/bff/${endpoint}?returnUrl=/forbidden/x`)).status,
        400,
        `${endpoint} /forbidden`,
      )
      assert.equal(
        (
          await flow
            .browser()
            .get(`${flow.origin}/bff/${endpoint}?returnUrl=${encodeURIComponent('https://elsewhere.example.com/')}`)
        ).status,
        400,
        `${endpoint}: the hook accepts it, the built-in rule does not`,
      )
    }
    assert.equal((await flow.browser().get(`${flow.origin}/bff/login?returnUrl=/orders`)).status, 302)
  })

  test('logoutParams adds end-session parameters but cannot replace id_token_hint; onSessionEnded hears the logout', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const claims = JSON.parse((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) as ClaimRecord[]
    const res = await browser.get(`${flow.origin}${String(claims.find((c) => c.type === 'bff:logout_url')!.value)}`)
    assert.equal(res.status, 302)
    const endSession = new URL(res.headers.get('location')!)
    assert.equal(endSession.searchParams.get('ui_locales'), 'fr')
    assert.equal(endSession.searchParams.get('logout_hint'), 'alice-0001')
    assert.notEqual(endSession.searchParams.get('id_token_hint'), 'forged')
    assert.equal(endSession.searchParams.getAll('id_token_hint').length, 1)
    const event = ended.find((e) => e.reason === 'logout')
    assert.deepEqual(event?.session, {
      sub: 'alice-0001',
      sid: claims.find((c) => c.type === 'sid')!.value,
      frontend: 'default',
    })
  })

  test("onSessionCreated hears every login with the session's sub, frontend and issuer; a hook that throws does not fail the login", async () => {
    const before = created.length
    throwOnCreate = true
    try {
      const browser = flow.browser()
      const callback = await flow.login(browser, { username: 'bob' })
      assert.equal(callback.status, 302, 'the login completes')
      assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200)
    } finally {
      throwOnCreate = false
    }
    const session = created.at(-1)!
    assert.equal(created.length, before + 1)
    assert.equal(session.sub, 'bob-0002')
    assert.equal(session.frontend, 'default')
    assert.equal(session.issuer, flow.idp.issuer)
  })
})
