import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { MemoryStore } from '../../src/session/stores/memory.ts'
import { CLIENT_ID, CLIENT_SECRET, CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import { introspect, startUpstream, type Upstream } from '../helpers/upstream.ts'

type Claims = Array<{ type: string; value: unknown }>

describe('cookie-mode sessions end to end', () => {
  let flow: Flow
  let upstream: Upstream
  let offsetMs = 0
  const store = new MemoryStore()
  before(async () => {
    upstream = await startUpstream()
    flow = await startFlow({
      gatehouse: { session: { mode: 'cookie' }, remoteApis: [{ path: '/api', target: upstream.url, token: 'user' }] },
      runtime: { now: () => Date.now() + offsetMs, store },
    })
  })
  after(async () => {
    await flow.close()
    await upstream.close()
  })

  test('a login puts the whole session in an encrypted cookie and nothing in any store', async () => {
    offsetMs = 0
    const browser = flow.browser()
    await flow.login(browser)
    const value = browser.cookies.get('__Host-gatehouse')!
    assert.ok(value.split('.').length === 5 || /^chunks-\d+$/.test(value), 'a JWE or its chunk header')
    assert.deepEqual(await store.list({ limit: 10 }, Date.now()), [])
    const claims = JSON.parse((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) as Claims
    assert.equal(claims.find((c) => c.type === 'sub')?.value, 'alice-0001')
  })

  test('a refresh through the proxy rewrites the cookie; a request still carrying the old cookie does not refresh again', async () => {
    offsetMs = 0
    const browser = flow.browser()
    await flow.login(browser)
    const oldCookie = browser.cookieHeader()
    offsetMs = 2 * 3_600_000 // past the access token's expiry
    const grantsBefore = flow.idp.grants.filter((g) => g === 'refresh_token').length
    const res = await browser.get(`${flow.origin}/api/echo`, CSRF)
    assert.equal(res.status, 200)
    assert.ok(
      res.headers.getSetCookie().some((c) => c.startsWith('__Host-gatehouse=')),
      'the refreshed session is written back to the cookie',
    )
    assert.equal(
      res.headers.get('cache-control'),
      'no-store',
      'a response carrying the session cookie is never cacheable',
    )
    const token = (JSON.parse(res.text) as { headers: Record<string, string> }).headers.authorization!.slice(7)
    assert.equal((await introspect(flow.idp.issuer, token, CLIENT_ID, CLIENT_SECRET)).active, true)
    assert.equal(flow.idp.grants.filter((g) => g === 'refresh_token').length, grantsBefore + 1)

    // The browser's own next call uses the new cookie; a call already in flight with the old one too.
    assert.equal((await browser.get(`${flow.origin}/api/echo`, CSRF)).status, 200)
    const stale = await fetch(`${flow.origin}/api/echo`, { headers: { ...CSRF, cookie: oldCookie } })
    assert.equal(stale.status, 200)
    assert.equal(flow.idp.grants.filter((g) => g === 'refresh_token').length, grantsBefore + 1, 'one refresh only')
  })

  test('a logout while a proxied call is in flight wins: the late response does not put the session back', async () => {
    offsetMs = 0
    const browser = flow.browser()
    await flow.login(browser)
    offsetMs = 5 * 3_600_000 // past half the lifetime: this call renews the session (a cookie rewrite)
    const slow = browser.get(`${flow.origin}/api/slow?ms=600`, CSRF)
    await new Promise((resolve) => setTimeout(resolve, 150))
    const claims = JSON.parse((await browser.get(`${flow.origin}/bff/user?slide=false`, CSRF)).text) as Claims
    const logout = await browser.get(
      `${flow.origin}${claims.find((c) => c.type === 'bff:logout_url')!.value as string}`,
    )
    assert.equal(logout.status, 302)
    const late = await slow
    assert.equal(late.status, 200)
    assert.ok(
      !late.headers.getSetCookie().some((c) => c.startsWith('__Host-gatehouse=') && !/Max-Age=0/.test(c)),
      'no late session cookie',
    )
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 401)
  })

  test('a tampered cookie is anonymous (401) and cleared, never a 500', async () => {
    offsetMs = 0
    const browser = flow.browser()
    await flow.login(browser)
    const value = browser.cookies.get('__Host-gatehouse')!
    browser.cookies.set('__Host-gatehouse', `${value.slice(0, -6)}AAAAAA`)
    const res = await browser.get(`${flow.origin}/bff/user`, CSRF)
    assert.equal(res.status, 401)
    assert.ok(res.headers.getSetCookie().some((c) => c.startsWith('__Host-gatehouse=;') && /Max-Age=0/.test(c)))
  })

  test("the session cookie sent twice (another user's first or last) is 401 on /bff/user and the API, deletes no cookie, and the one cookie works again after", async () => {
    offsetMs = 0
    const browser = flow.browser()
    await flow.login(browser)
    const real = browser.cookies.get('__Host-gatehouse')!
    const attacker = flow.browser()
    await flow.login(attacker, { username: 'bob' })
    const tossed = attacker.cookies.get('__Host-gatehouse')!
    const before = upstream.received.length
    for (const cookie of [
      `__Host-gatehouse=${tossed}; __Host-gatehouse=${real}`,
      `__Host-gatehouse=${real}; __Host-gatehouse=${tossed}`,
    ]) {
      for (const path of ['/bff/user', '/api/echo']) {
        const res = await fetch(`${flow.origin}${path}`, { headers: { ...CSRF, cookie } })
        assert.equal(res.status, 401, path)
        assert.deepEqual(res.headers.getSetCookie(), [], `${path}: no cookie deleted`)
      }
    }
    assert.equal(upstream.received.length, before, 'the API was never called')
    const claims = JSON.parse((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) as Claims
    assert.equal(claims.find((c) => c.type === 'sub')?.value, 'alice-0001')
    assert.equal((await browser.get(`${flow.origin}/api/echo`, CSRF)).status, 200)
  })

  test('logout clears the cookie and goes to the IdP; back-channel logout does not exist in cookie mode', async () => {
    offsetMs = 0
    const browser = flow.browser()
    await flow.login(browser)
    const claims = JSON.parse((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) as Claims
    const res = await browser.get(`${flow.origin}${claims.find((c) => c.type === 'bff:logout_url')!.value as string}`)
    assert.equal(res.status, 302)
    assert.ok(res.headers.get('location')!.startsWith(flow.idp.issuer))
    assert.equal(browser.cookies.get('__Host-gatehouse'), undefined)
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 401)
    const backchannel = await fetch(`${flow.origin}/bff/backchannel`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'logout_token=x',
    })
    assert.equal(backchannel.status, 404)
  })
})
