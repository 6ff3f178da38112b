import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { CLIENT_ID, CLIENT_SECRET, CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import { introspect, startUpstream, type Upstream } from '../helpers/upstream.ts'

describe('remote API proxy: token types', () => {
  let upstream: Upstream
  let flow: Flow
  before(async () => {
    upstream = await startUpstream()
    flow = await startFlow({
      gatehouse: {
        remoteApis: [
          { path: '/api/user', target: `${upstream.url}/v2`, token: 'user' },
          { path: '/api/client', target: upstream.url, token: 'client' },
          { path: '/api/none', target: upstream.url, token: 'none' },
          { path: '/api/user-or-client', target: upstream.url, token: 'userOrClient' },
          { path: '/api/user-or-none', target: upstream.url, token: 'userOrNone' },
        ],
      },
    })
  })
  after(async () => {
    await flow.close()
    await upstream.close()
  })

  const bearerOf = (text: string) => ((JSON.parse(text) as { headers: Record<string, string> }).headers.authorization ?? '').replace(/^Bearer /, '')

  test('token "user" with a session sends the session access token, which the IdP accepts', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const res = await browser.get(`${flow.origin}/api/user/echo/7?x=1&y=%20`, { ...CSRF, authorization: 'Bearer from-the-browser', 'x-custom': 'kept' })
    assert.equal(res.status, 200, res.text)
    const seen = JSON.parse(res.text) as { url: string; headers: Record<string, string> }
    assert.equal(seen.url, '/v2/echo/7?x=1&y=%20')
    assert.equal(seen.headers.cookie, undefined)
    assert.equal(seen.headers['x-csrf'], undefined)
    assert.equal(seen.headers['x-custom'], 'kept')
    const token = bearerOf(res.text)
    assert.notEqual(token, 'from-the-browser')
    const info = await introspect(flow.idp.issuer, token, CLIENT_ID, CLIENT_SECRET)
    assert.equal(info.active, true)
    assert.equal(info.sub, 'alice-0001')
  })

  test('token "user" without a session is 401 and the upstream is not called', async () => {
    const before = upstream.received.length
    const res = await flow.browser().get(`${flow.origin}/api/user/echo`, CSRF)
    assert.equal(res.status, 401)
    assert.equal(upstream.received.length, before)
  })

  test('token "client" sends a client-credentials token, with or without a session', async () => {
    const res = await flow.browser().get(`${flow.origin}/api/client/echo`, CSRF)
    assert.equal(res.status, 200)
    const info = await introspect(flow.idp.issuer, bearerOf(res.text), CLIENT_ID, CLIENT_SECRET)
    assert.equal(info.active, true)
    assert.equal(info.client_id, CLIENT_ID)
    assert.equal(info.sub, undefined)
  })

  test('token "none" sends no Authorization header', async () => {
    const res = await flow.browser().get(`${flow.origin}/api/none/echo`, { ...CSRF, authorization: 'Basic Zm9vOmJhcg==' })
    assert.equal(res.status, 200)
    assert.equal((JSON.parse(res.text) as { headers: Record<string, string> }).headers.authorization, undefined)
  })

  test('userOrClient and userOrNone pick the user token with a session and fall back without', async () => {
    const anonymous = flow.browser()
    assert.equal(bearerOf((await anonymous.get(`${flow.origin}/api/user-or-none/echo`, CSRF)).text), '')
    const clientInfo = await introspect(flow.idp.issuer, bearerOf((await anonymous.get(`${flow.origin}/api/user-or-client/echo`, CSRF)).text), CLIENT_ID, CLIENT_SECRET)
    assert.equal(clientInfo.sub, undefined)
    const browser = flow.browser()
    await flow.login(browser)
    for (const path of ['/api/user-or-none/echo', '/api/user-or-client/echo']) {
      const info = await introspect(flow.idp.issuer, bearerOf((await browser.get(`${flow.origin}${path}`, CSRF)).text), CLIENT_ID, CLIENT_SECRET)
      assert.equal(info.sub, 'alice-0001', path)
    }
  })

  test('the anti-forgery header is required before any upstream call', async () => {
    const before = upstream.received.length
    const res = await flow.browser().get(`${flow.origin}/api/none/echo`)
    assert.equal(res.status, 401)
    assert.equal(JSON.parse(res.text).code, 'antiforgery_failed')
    assert.equal(upstream.received.length, before)
  })
})
