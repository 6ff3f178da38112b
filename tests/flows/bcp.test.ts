import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

// Checks the browser-based-apps BCP asks of a BFF that other files only imply (docs/conformance.md).
describe('BFF practices', () => {
  let upstream: Upstream
  let flow: Flow
  let offsetMs = 0
  before(async () => {
    upstream = await startUpstream()
    flow = await startFlow({
      gatehouse: { remoteApis: [{ path: '/api', target: upstream.url, token: 'none' }] },
      runtime: { now: () => Date.now() + offsetMs },
    })
  })
  after(async () => {
    await flow.close()
    await upstream.close()
  })

  test('the authorize request is the code flow with PKCE S256, state and nonce, and no tokens in the front channel', async () => {
    const res = await flow.browser().get(`${flow.origin}/bff/login`)
    const authorize = new URL(res.headers.get('location')!)
    assert.equal(authorize.searchParams.get('response_type'), 'code')
    assert.equal(authorize.searchParams.get('code_challenge_method'), 'S256')
    assert.match(authorize.searchParams.get('code_challenge')!, /^[A-Za-z0-9_-]{43}$/)
    assert.ok(authorize.searchParams.get('state')!.length >= 32)
    assert.ok(authorize.searchParams.get('nonce')!.length >= 32)
    assert.equal(authorize.searchParams.get('response_mode'), null)
  })

  test("gatehouse's own responses carry nosniff, no-referrer, DENY framing and no-store", async () => {
    for (const path of ['/bff/user', '/bff/login', '/healthz']) {
      const res = await fetch(`${flow.origin}${path}`, { redirect: 'manual', headers: CSRF })
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff', path)
      assert.equal(res.headers.get('referrer-policy'), 'no-referrer', path)
      assert.equal(res.headers.get('x-frame-options'), 'DENY', path)
      assert.equal(res.headers.get('cache-control'), 'no-store', path)
    }
  })

  test('a CORS preflight (OPTIONS without the anti-forgery header) is refused and never reaches the API', async () => {
    const before = upstream.received.length
    const res = await fetch(`${flow.origin}/api/echo`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://evil.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'x-csrf',
      },
    })
    assert.equal(res.status, 401)
    assert.equal(res.headers.get('access-control-allow-origin'), null)
    assert.equal(upstream.received.length, before)
  })

  test('an upstream redirect is handed to the browser, not followed by gatehouse', async () => {
    const before = upstream.received.length
    const res = await fetch(`${flow.origin}/api/status/302`, { headers: CSRF, redirect: 'manual' })
    assert.equal(res.status, 302)
    assert.equal(upstream.received.length, before + 1, 'one upstream request only')
  })

  test('a pending login older than 10 minutes is refused at the callback', async () => {
    offsetMs = 0
    const browser = flow.browser()
    const form = await browser.follow(await browser.get(`${flow.origin}/bff/login`))
    let res = await browser.submitForm(form, { username: 'alice', password: 'alice-demo-password' })
    let callback: URL | undefined
    while (!callback) {
      const next = new URL(res.headers.get('location')!, res.url)
      if (next.pathname === '/signin-oidc') callback = next
      else res = await browser.get(next.href)
    }
    offsetMs = 11 * 60_000
    const late = await browser.get(callback.href)
    assert.equal(late.status, 400)
    assert.equal(browser.cookies.has('__Host-gatehouse'), false)
    offsetMs = 0
  })
})
