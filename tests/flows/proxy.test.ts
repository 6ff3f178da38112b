import assert from 'node:assert/strict'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
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

  const bearerOf = (text: string) =>
    ((JSON.parse(text) as { headers: Record<string, string> }).headers.authorization ?? '').replace(/^Bearer /, '')

  test('token "user" with a session sends the session access token, which the IdP accepts', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const res = await browser.get(`${flow.origin}/api/user/echo/7?x=1&y=%20`, {
      ...CSRF,
      authorization: 'Bearer from-the-browser',
      'x-custom': 'kept',
    })
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
    const res = await flow
      .browser()
      .get(`${flow.origin}/api/none/echo`, { ...CSRF, authorization: 'Basic Zm9vOmJhcg==' })
    assert.equal(res.status, 200)
    assert.equal((JSON.parse(res.text) as { headers: Record<string, string> }).headers.authorization, undefined)
  })

  test('userOrClient and userOrNone pick the user token with a session and fall back without', async () => {
    const anonymous = flow.browser()
    assert.equal(bearerOf((await anonymous.get(`${flow.origin}/api/user-or-none/echo`, CSRF)).text), '')
    const clientInfo = await introspect(
      flow.idp.issuer,
      bearerOf((await anonymous.get(`${flow.origin}/api/user-or-client/echo`, CSRF)).text),
      CLIENT_ID,
      CLIENT_SECRET,
    )
    assert.equal(clientInfo.sub, undefined)
    const browser = flow.browser()
    await flow.login(browser)
    for (const path of ['/api/user-or-none/echo', '/api/user-or-client/echo']) {
      const info = await introspect(
        flow.idp.issuer,
        bearerOf((await browser.get(`${flow.origin}${path}`, CSRF)).text),
        CLIENT_ID,
        CLIENT_SECRET,
      )
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

/** Raw HTTP/1.1 over a socket: header names exactly as written (underscores and all). */
function rawRequest(origin: string, head: string): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(origin)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname)
    let data = ''
    socket.setEncoding('latin1')
    socket.on('data', (chunk: string) => (data += chunk))
    socket.on('error', reject)
    socket.on('end', () => {
      const [headers = '', body = ''] = data.split('\r\n\r\n', 2)
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(headers)?.[1] ?? 0), body })
    })
    socket.write(`${head.replace(/\n/g, '\r\n')}\r\n\r\n`)
  })
}

describe('remote API proxy: upstream cookies and caching, client header spellings', () => {
  let flow: Flow
  let api: Server
  /** The headers of every request the API received, in order. */
  const seen: IncomingHttpHeaders[] = []

  before(async () => {
    // `?cookie=…` (repeatable) answers with those Set-Cookie lines, `?cc=…` with that Cache-Control; every answer echoes the request headers.
    api = createServer((req, res) => {
      seen.push(req.headers)
      const query = new URL(req.url ?? '/', 'http://api.invalid').searchParams
      const headers: Record<string, string | string[]> = { 'content-type': 'application/json' }
      if (query.has('cookie')) headers['set-cookie'] = query.getAll('cookie')
      if (query.has('cc')) headers['cache-control'] = query.get('cc')!
      res.writeHead(200, headers).end(JSON.stringify({ method: req.method, headers: req.headers }))
    })
    await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve))
    const target = `http://127.0.0.1:${(api.address() as AddressInfo).port}`
    flow = await startFlow({
      gatehouse: {
        remoteApis: [
          { path: '/api/user', target, token: 'user' },
          { path: '/api/none', target, token: 'none' },
          { path: '/api/client', target, token: 'client' },
          { path: '/api/user-or-none', target, token: 'userOrNone' },
          { path: '/api/user-or-client', target, token: 'userOrClient' },
        ],
      },
    })
  })
  after(async () => {
    await flow.close()
    api.closeAllConnections()
    await new Promise<void>((resolve) => api.close(() => resolve()))
  })

  test("an upstream's nameless, look-alike and differently-cased Set-Cookie lines never reach the browser, its other cookies do, and the session survives", async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const session = browser.cookies.get('__Host-gatehouse')!
    const hostile = [
      '=__Host-gatehouse=planted; Path=/; Secure',
      ' =__Host-gatehouse=planted',
      '__Host-gatehouse',
      '__Host-gatehouse2=planted; Path=/',
      '__Host-gatehouse-admin=planted',
      '__Host-gatehouseC1=planted',
      '__Host-gatehouse.login.0123456789abcdef=planted',
      '__Host-gatehouse = planted',
      '__HOST-GATEHOUSE=planted',
      '__host-gatehouse=planted',
      'x=__Host-gatehouse=planted',
      'x = __Host-gatehouse=planted',
      'x="__Host-gatehouse=planted"',
      '=planted',
    ]
    const kept = ['upstream=1; Path=/', '__Host-other=1; Path=/; Secure', 'x=a__Host-gatehouse']
    const query = [...hostile, ...kept].map((line) => `cookie=${encodeURIComponent(line)}`).join('&')
    const res = await browser.get(`${flow.origin}/api/user/echo?${query}`, CSRF)
    assert.equal(res.status, 200)
    assert.deepEqual(res.headers.getSetCookie(), kept)
    assert.equal(browser.cookies.get('__Host-gatehouse'), session)
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200)
  })

  test('an answer to a user-token call without Cache-Control is marked private; an upstream Cache-Control is passed on unchanged', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    for (const path of ['/api/user', '/api/user-or-none', '/api/user-or-client']) {
      const res = await browser.get(`${flow.origin}${path}/data`, CSRF)
      assert.equal(res.status, 200, path)
      assert.ok(
        (JSON.parse(res.text) as { headers: Record<string, string> }).headers.authorization?.startsWith('Bearer '),
        path,
      )
      assert.equal(res.headers.get('cache-control'), 'private', path)
    }
    for (const cc of ['public, max-age=60', 'no-store', 'max-age=0, must-revalidate']) {
      const res = await browser.get(`${flow.origin}/api/user/data?cc=${encodeURIComponent(cc)}`, CSRF)
      assert.equal(res.headers.get('cache-control'), cc)
    }
  })

  test('answers to calls without a user token get no Cache-Control added: token none, a client token, userOrNone and userOrClient without a session', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const anonymous = flow.browser()
    const answers = [
      ['none, logged in', await browser.get(`${flow.origin}/api/none/data`, CSRF)],
      ['client, logged in', await browser.get(`${flow.origin}/api/client/data`, CSRF)],
      ['client, anonymous', await anonymous.get(`${flow.origin}/api/client/data`, CSRF)],
      ['userOrNone, anonymous', await anonymous.get(`${flow.origin}/api/user-or-none/data`, CSRF)],
      ['userOrClient, anonymous', await anonymous.get(`${flow.origin}/api/user-or-client/data`, CSRF)],
    ] as const
    for (const [name, res] of answers) {
      assert.equal(res.status, 200, name)
      assert.equal(res.headers.get('cache-control'), null, name)
    }
  })

  test("a client's underscore spellings of stripped headers pass Node's HTTP parser but never reach the upstream; other underscore headers do", async () => {
    const hostile = [
      'X_Forwarded_For: 198.51.100.66',
      'X-Forwarded_For: 198.51.100.67',
      'X-Forwarded_Host: evil.example',
      'X_Forwarded_Proto: http',
      'X_Real_IP: 198.51.100.68',
      'Client_IP: 198.51.100.69',
      'Client-IP: 198.51.100.70',
      'X_HTTP_Method_Override: DELETE',
      'X-HTTP_Method: DELETE',
      'X_Method_Override: DELETE',
      'X-Original-URL: /admin',
      'X_Original_URL: /admin',
      'X-Rewrite_URL: /admin',
      'X-Envoy-Original-Path: /admin',
      'X_Envoy_Original_Path: /admin',
      'X_CSRF: 1',
      'Proxy_Authorization: Basic c2VjcmV0',
    ]
    const before = seen.length
    const res = await rawRequest(
      flow.origin,
      [
        `GET /api/none/echo HTTP/1.1`,
        `Host: ${new URL(flow.origin).host}`,
        'X-CSRF: 1',
        'X_Custom_Kept: yes',
        ...hostile,
        'Connection: close',
      ].join('\n'),
    )
    assert.equal(res.status, 200, 'Node accepted every name, and the request was forwarded')
    assert.equal(seen.length, before + 1)
    const received = seen.at(-1)!
    assert.equal(received.x_custom_kept, 'yes', 'an underscore header does pass the parser and reach the upstream')
    const leaked = Object.keys(received).filter(
      (name) => name !== 'x_custom_kept' && (name.includes('_') || /ip$|url$|path$|override$|method$/.test(name)),
    )
    assert.deepEqual(leaked, [])
    assert.equal(received['x-forwarded-for'], '127.0.0.1')
    assert.equal(received['x-forwarded-host'], new URL(flow.origin).host)
    assert.equal(received['x-forwarded-proto'], 'http')
    assert.equal(received['x-csrf'], undefined)
  })
})
