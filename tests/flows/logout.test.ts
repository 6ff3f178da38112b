import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { loginCookieName } from '../../src/oidc/login-state.ts'
import { sealLogoutState } from '../../src/oidc/logout-state.ts'
import { generateKey, KeyRing } from '../../src/session/seal.ts'
import type { SessionData } from '../../src/session/session.ts'
import { hashSessionId, sessionSealPurpose } from '../../src/session/sessions.ts'
import { MemoryStore } from '../../src/session/stores/memory.ts'
import type { BrowserJar, JarResponse } from '../helpers/browser-jar.ts'
import { CLIENT_ID, CLIENT_SECRET, CSRF, startFlow, type Flow } from '../helpers/flow.ts'

const COOKIE = '__Host-gatehouse'

function clears(res: JarResponse, name: string): boolean {
  return res.headers
    .getSetCookie()
    .some((line) => line.startsWith(`${name}=;`) && /; Path=\//.test(line) && /; Max-Age=0\b/.test(line))
}

describe('logout', () => {
  let flow: Flow
  const store = new MemoryStore()
  let discovery: { introspection_endpoint: string; end_session_endpoint: string }

  before(async () => {
    flow = await startFlow({ runtime: { store } })
    discovery = (await (await fetch(`${flow.idp.issuer}/.well-known/openid-configuration`)).json()) as typeof discovery
    assert.ok(discovery.introspection_endpoint && discovery.end_session_endpoint)
  })
  after(() => flow.close())

  async function loggedIn(username = 'alice'): Promise<{ browser: BrowserJar; logoutUrl: string; cookie: string }> {
    const browser = flow.browser()
    await flow.login(browser, { username })
    const res = await browser.get(`${flow.origin}/bff/user`, CSRF)
    assert.equal(res.status, 200)
    const claims = JSON.parse(res.text) as Array<{ type: string; value: unknown }>
    const logoutUrl = claims.find((c) => c.type === 'bff:logout_url')!.value as string
    assert.match(logoutUrl, /^\/bff\/logout\?sid=/)
    return { browser, logoutUrl, cookie: browser.cookies.get(COOKIE)! }
  }

  /** The session's tokens as gatehouse keeps them, read straight from the store. */
  async function storedTokens(cookie: string): Promise<SessionData['tokens'] | undefined> {
    const record = await store.get(hashSessionId(cookie), Date.now())
    if (!record) return undefined
    const plain = new KeyRing(flow.keys).unseal(record.sealed, sessionSealPurpose(record))
    assert.ok(plain, 'the stored record unseals with the flow keys')
    return (JSON.parse(plain) as SessionData).tokens
  }

  /** RFC 7662 introspection at the IdP, authenticated as the gatehouse client. */
  async function introspect(token: string): Promise<{ active: boolean; token_type?: string }> {
    const res = await fetch(discovery.introspection_endpoint, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${encodeURIComponent(CLIENT_ID)}:${encodeURIComponent(CLIENT_SECRET)}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ token }).toString(),
    })
    assert.equal(res.status, 200)
    return (await res.json()) as { active: boolean }
  }

  const userStatus = async (browser: BrowserJar) => (await browser.get(`${flow.origin}/bff/user`, CSRF)).status

  test('logout without sid while logged in is 400 and the session keeps working', async () => {
    const { browser } = await loggedIn()
    const res = await browser.get(`${flow.origin}/bff/logout`)
    assert.equal(res.status, 400)
    assert.equal(res.headers.get('location'), null)
    assert.equal(clears(res, COOKIE), false)
    assert.equal(await userStatus(browser), 200)
  })

  test('logout with a wrong, empty or repeated sid while logged in is 400 and the session keeps working', async () => {
    const { browser, logoutUrl } = await loggedIn()
    const sid = new URL(logoutUrl, flow.origin).searchParams.get('sid')!
    for (const query of [
      'sid=wrong',
      'sid=',
      `sid=${encodeURIComponent(sid)}x`,
      `sid=${encodeURIComponent(sid.slice(0, -1))}`,
      `sid=${encodeURIComponent(sid)}&sid=wrong`,
    ]) {
      const res = await browser.get(`${flow.origin}/bff/logout?${query}`)
      assert.equal(res.status, 400, query)
      assert.equal(res.headers.get('location'), null, query)
      assert.equal(clears(res, COOKIE), false, query)
    }
    assert.equal(await userStatus(browser), 200)
  })

  test('logout with the right sid ends the session, revokes the refresh token and redirects to end-session with id_token_hint, post_logout_redirect_uri and state', async () => {
    const { browser, logoutUrl, cookie } = await loggedIn()
    const tokens = await storedTokens(cookie)
    assert.ok(tokens?.refreshToken, 'the session holds a refresh token (offline_access)')
    assert.ok(tokens.idToken)
    assert.equal((await introspect(tokens.refreshToken)).active, true, 'the refresh token is active before logout')

    const res = await browser.get(`${flow.origin}${logoutUrl}&returnUrl=${encodeURIComponent('/goodbye?x=1')}`)
    assert.equal(res.status, 302)
    const location = new URL(res.headers.get('location')!)
    assert.equal(`${location.origin}${location.pathname}`, discovery.end_session_endpoint)
    assert.equal(location.searchParams.get('id_token_hint'), tokens.idToken)
    assert.equal(location.searchParams.get('post_logout_redirect_uri'), `${flow.origin}/signout-callback-oidc`)
    assert.ok(location.searchParams.get('state'), 'a state travels to the IdP')
    assert.doesNotMatch(location.searchParams.get('state')!, /goodbye/, 'the returnUrl is sealed, not sent in clear')
    assert.ok(clears(res, COOKIE), 'the session cookie is cleared')

    assert.equal(await storedTokens(cookie), undefined, 'the session record is gone from the store')
    assert.equal((await introspect(tokens.refreshToken)).active, false, 'the refresh token was revoked at the IdP')
    assert.equal(await userStatus(browser), 401)
    // Also when the old cookie is replayed by hand.
    const replay = await flow.browser().get(`${flow.origin}/bff/user`, { ...CSRF, cookie: `${COOKIE}=${cookie}` })
    assert.equal(replay.status, 401)
    assert.ok(clears(replay, COOKIE))
  })

  test('after the IdP confirms the sign-out, /signout-callback-oidc redirects to the returnUrl given to /bff/logout', async () => {
    const { browser, logoutUrl } = await loggedIn()
    const returnUrl = '/signed-out?reason=user#top'
    const start = await browser.get(`${flow.origin}${logoutUrl}&returnUrl=${encodeURIComponent(returnUrl)}`)
    assert.equal(start.status, 302)
    const confirmPage = await browser.follow(start)
    assert.equal(confirmPage.status, 200)
    assert.match(confirmPage.text, /id="op\.logoutForm"/)

    let res = await browser.submitForm(confirmPage, { logout: 'yes' }, 'op.logoutForm')
    for (
      let i = 0;
      i < 10 && res.status >= 300 && res.status < 400 && !res.url.startsWith(`${flow.origin}/signout-callback-oidc`);
      i++
    ) {
      res = await browser.get(new URL(res.headers.get('location')!, res.url).href)
    }
    assert.ok(
      res.url.startsWith(`${flow.origin}/signout-callback-oidc?`),
      `came back to the post-logout callback, ended at ${res.url}`,
    )
    assert.equal(res.status, 302)
    assert.equal(res.headers.get('location'), returnUrl)
    assert.equal(await userStatus(browser), 401)

    // The IdP session ended too: a new login asks for the password again.
    const login = await browser.follow(await browser.get(`${flow.origin}/bff/login`))
    assert.match(login.text, /name="password"/)
  })

  test('a missing, forged, foreign-key or hostile post-logout state sends the browser to "/"', async () => {
    const keyRing = new KeyRing(flow.keys)
    const states = [
      undefined,
      '',
      'garbage',
      'a.b.c.d',
      sealLogoutState(new KeyRing([generateKey()]), { returnUrl: '/elsewhere', createdAt: Date.now() }),
      sealLogoutState(keyRing, { returnUrl: '//evil.example', createdAt: Date.now() }),
      sealLogoutState(keyRing, { returnUrl: 'https://evil.example/', createdAt: Date.now() }),
      sealLogoutState(keyRing, { returnUrl: '/too-old', createdAt: Date.now() - 2 * 3600_000 }),
      keyRing.seal(JSON.stringify({ returnUrl: '/wrong-purpose', createdAt: Date.now() }), 'login-state'),
    ]
    for (const state of states) {
      const url = `${flow.origin}/signout-callback-oidc${state === undefined ? '' : `?state=${encodeURIComponent(state)}`}`
      const res = await flow.browser().get(url)
      assert.equal(res.status, 302, String(state))
      assert.equal(res.headers.get('location'), '/', String(state))
    }
    // Control: a state gatehouse sealed itself is honoured.
    const good = sealLogoutState(keyRing, { returnUrl: '/fine', createdAt: Date.now() })
    const res = await flow.browser().get(`${flow.origin}/signout-callback-oidc?state=${encodeURIComponent(good)}`)
    assert.equal(res.headers.get('location'), '/fine')
  })

  test('logout without a session clears gatehouse cookies and redirects to end-session with client_id and no id_token_hint', async () => {
    const browser = flow.browser()
    // A pending login cookie and a dead session cookie in the jar.
    const start = await browser.get(`${flow.origin}/bff/login`)
    const state = new URL(start.headers.get('location')!).searchParams.get('state')!
    const pending = loginCookieName(COOKIE, state)
    assert.ok(browser.cookies.has(pending))
    browser.cookies.set(COOKIE, 'A'.repeat(43))

    const res = await browser.get(`${flow.origin}/bff/logout?returnUrl=/bye`)
    assert.equal(res.status, 302)
    const location = new URL(res.headers.get('location')!)
    assert.equal(`${location.origin}${location.pathname}`, discovery.end_session_endpoint)
    assert.equal(location.searchParams.get('client_id'), CLIENT_ID)
    assert.equal(location.searchParams.get('id_token_hint'), null)
    assert.equal(location.searchParams.get('post_logout_redirect_uri'), `${flow.origin}/signout-callback-oidc`)
    assert.ok(location.searchParams.get('state'))
    assert.ok(clears(res, COOKIE), 'the session cookie is cleared')
    assert.ok(clears(res, pending), 'the pending-login cookie is cleared')
    assert.equal(browser.cookies.size, 0)
  })

  test('logout with a hostile returnUrl is 400, with or without a session, and the session survives', async () => {
    const { browser, logoutUrl } = await loggedIn()
    for (const bad of [
      '//evil.example',
      'https://evil.example/',
      '/\\evil.example',
      '/%2F%2Fevil.example',
      'javascript:alert(1)',
      '/x\r\nSet-Cookie: a=b',
      '',
    ]) {
      const withSession = await browser.get(`${flow.origin}${logoutUrl}&returnUrl=${encodeURIComponent(bad)}`)
      assert.equal(withSession.status, 400, JSON.stringify(bad))
      assert.equal(withSession.headers.get('location'), null)
      assert.match(withSession.headers.get('content-type')!, /^application\/problem\+json/)
      assert.ok(JSON.parse(withSession.text).errors?.returnUrl)
      const anonymous = await flow.browser().get(`${flow.origin}/bff/logout?returnUrl=${encodeURIComponent(bad)}`)
      assert.equal(anonymous.status, 400, JSON.stringify(bad))
      assert.equal(anonymous.headers.get('location'), null)
    }
    assert.equal(await userStatus(browser), 200)
  })

  test('a re-login in the same browser replaces the older session: the old cookie no longer works', async () => {
    const { browser, cookie: oldCookie } = await loggedIn()
    const sub = (await store.get(hashSessionId(oldCookie), Date.now()))!.sub
    const before = (await store.list({ sub, limit: 1000 }, Date.now())).length

    // The IdP session is still alive, so the IdP sends the browser straight back to the callback.
    const res = await browser.follow(await browser.get(`${flow.origin}/bff/login?returnUrl=/again`))
    assert.ok(
      browser.visited.some((u) => u.startsWith(`${flow.origin}/signin-oidc?`)),
      'went through the callback',
    )
    assert.equal(res.url, `${flow.origin}/again`)
    const newCookie = browser.cookies.get(COOKIE)!
    assert.ok(newCookie && newCookie !== oldCookie, 'a fresh session id is issued')

    assert.equal(await userStatus(browser), 200)
    const old = await flow.browser().get(`${flow.origin}/bff/user`, { ...CSRF, cookie: `${COOKIE}=${oldCookie}` })
    assert.equal(old.status, 401)
    assert.equal(await store.get(hashSessionId(oldCookie), Date.now()), undefined)
    assert.equal((await store.list({ sub, limit: 1000 }, Date.now())).length, before, 'one session replaced another')
  })

  test('a session ended by logout stays ended for a second browser tab logging out again', async () => {
    const { browser, logoutUrl, cookie } = await loggedIn()
    const first = await browser.get(`${flow.origin}${logoutUrl}`)
    assert.equal(first.status, 302)
    // The other tab still sends the old cookie and the old logout URL.
    const second = await flow.browser().get(`${flow.origin}${logoutUrl}`, { cookie: `${COOKIE}=${cookie}` })
    assert.equal(second.status, 302)
    const location = new URL(second.headers.get('location')!)
    assert.equal(location.searchParams.get('id_token_hint'), null)
    assert.ok(clears(second, COOKIE))
  })
})
