import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { pino } from 'pino'
import { MemoryStore } from '../../src/session/stores/memory.ts'
import { HostJar } from '../helpers/host-jar.ts'
import { CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import { logLines } from '../helpers/log-lines.ts'
import { NAVIGATE, OLD_BROWSER_NAVIGATE, SPA_FETCH } from '../helpers/navigation.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

/**
 * Issue "Availability under hostile and heavy load", items 4–6: TRACE/TRACK are never answered, and
 * with publicOrigin (or a frontend's origin) set, a request for any other host is refused (421) before
 * routing — DNS rebinding against token "none"/"client" APIs — except health probes, and browser
 * navigations, which are sent on to publicOrigin (308).
 */

interface RawAnswer {
  status: number
  head: string
  headers: Map<string, string[]>
  body: string
}

/** Raw HTTP over a socket to 127.0.0.1:port: method, Host lines and header casing exactly as written. */
function raw(port: string | number, head: string): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1')
    let data = ''
    socket.setEncoding('latin1')
    socket.on('data', (chunk: string) => (data += chunk))
    socket.on('error', reject)
    socket.on('end', () => {
      const cut = data.indexOf('\r\n\r\n')
      const headText = cut === -1 ? data : data.slice(0, cut)
      const headers = new Map<string, string[]>()
      for (const line of headText.split('\r\n').slice(1)) {
        const colon = line.indexOf(':')
        const name = line.slice(0, colon).trim().toLowerCase()
        headers.set(name, [...(headers.get(name) ?? []), line.slice(colon + 1).trim()])
      }
      resolve({
        status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(headText)?.[1] ?? 0),
        head: headText,
        headers,
        body: cut === -1 ? '' : data.slice(cut + 4),
      })
    })
    socket.write(`${head.replace(/\n/g, '\r\n')}\r\n\r\n`)
  })
}

function problemCode(res: RawAnswer): string {
  assert.match(res.headers.get('content-type')?.[0] ?? '', /^application\/problem\+json/, res.head)
  // A chunked body would not parse; gatehouse's own answers carry Content-Length.
  return (JSON.parse(res.body) as { code: string }).code
}

/** A memory store that counts session reads. */
class CountingStore extends MemoryStore {
  reads = 0
  override async get(idHash: string, now: number) {
    this.reads++
    return super.get(idHash, now)
  }
}

describe('TRACE and TRACK are answered 405 on every path, before anything else', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-trace-'))
  const store = new CountingStore()
  let upstream: Upstream
  let flow: Flow
  let port: string
  let cookie: string
  before(async () => {
    writeFileSync(join(dir, 'index.html'), '<!doctype html><p>app</p>')
    upstream = await startUpstream()
    flow = await startFlow({
      runtime: { store },
      gatehouse: {
        frontends: [{ name: 'app', path: '/', static: dir }],
        remoteApis: [
          { path: '/api', target: upstream.url, token: 'user' },
          { path: '/public', target: upstream.url, token: 'none', antiForgery: false },
          { path: '/orders', target: upstream.url, token: 'user', methods: ['GET', 'POST'] },
        ],
      },
      // As an HTTP/2 server (or another parser) would deliver them: any method name reaches the handler.
      listener: (gatehouse) => (req, res) => {
        const method = req.headers['x-test-method']
        if (typeof method === 'string') req.method = method
        gatehouse.handle(req, res)
      },
    })
    port = new URL(flow.origin).port
    const browser = flow.browser()
    await flow.login(browser)
    cookie = browser.cookieHeader()
  })
  after(async () => {
    await flow.close()
    await upstream.close()
    rmSync(dir, { recursive: true, force: true })
  })

  const PATHS: Array<[kind: string, path: string, allow: string]> = [
    ['management', '/bff/user', 'GET, HEAD'],
    ['management (login)', '/bff/login', 'GET'],
    ['callback', '/signin-oidc?code=x&state=y', 'GET'],
    ['remote API, token "user"', '/api/echo', 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS'],
    ['remote API, token "none"', '/public/echo', 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS'],
    ['remote API with methods', '/orders/7', 'GET, POST, HEAD'],
    ['frontend', '/', 'GET, HEAD'],
    ['frontend client-side route', '/orders-page/7', 'GET, HEAD'],
    ['unknown', '/no/such/path', 'GET, HEAD'],
    ['health', '/healthz', 'GET, HEAD'],
  ]

  for (const [kind, path, allow] of PATHS) {
    test(`TRACE ${path} (${kind}) is 405 problem+json with Allow: ${allow}; no session read, no upstream call`, async () => {
      const reads = store.reads
      const calls = upstream.received.length
      const res = await raw(
        port,
        `TRACE ${path} HTTP/1.1\nHost: 127.0.0.1:${port}\nX-CSRF: 1\nCookie: ${cookie}\nAuthorization: Bearer secret-in-request\nConnection: close`,
      )
      assert.equal(res.status, 405)
      assert.equal(problemCode(res), 'method_not_allowed')
      assert.deepEqual(res.headers.get('allow'), [allow])
      assert.doesNotMatch(res.body, /secret-in-request|__Host-gatehouse/, 'nothing of the request is echoed')
      assert.equal(res.headers.get('set-cookie'), undefined)
      assert.equal(store.reads, reads, 'no session read')
      assert.equal(upstream.received.length, calls, 'the upstream never sees it')
    })
  }

  test('Node\'s HTTP/1 parser refuses TRACK, "trace" and "track" itself (400): they never reach gatehouse or the upstream', async () => {
    const calls = upstream.received.length
    for (const method of ['TRACK', 'trace', 'track', 'Trace']) {
      const res = await raw(port, `${method} /public/echo HTTP/1.1\nHost: 127.0.0.1:${port}\nConnection: close`)
      assert.equal(res.status, 400, method)
    }
    assert.equal(upstream.received.length, calls)
  })

  test('TRACK and lower-case trace/track delivered to the handler (as by HTTP/2) are 405 too, on an API and elsewhere', async () => {
    const calls = upstream.received.length
    const reads = store.reads
    for (const method of ['TRACK', 'trace', 'track', 'tRaCk']) {
      for (const path of ['/public/echo', '/api/echo', '/bff/user', '/']) {
        const res = await raw(
          port,
          `GET ${path} HTTP/1.1\nHost: 127.0.0.1:${port}\nX-Test-Method: ${method}\nX-CSRF: 1\nCookie: ${cookie}\nConnection: close`,
        )
        assert.equal(res.status, 405, `${method} ${path}`)
        assert.equal(problemCode(res), 'method_not_allowed')
        assert.ok(res.headers.get('allow')?.[0], 'with Allow')
      }
    }
    assert.equal(upstream.received.length, calls)
    assert.equal(store.reads, reads)
  })

  test('control: the same requests with GET are served (a session read, an upstream call)', async () => {
    const calls = upstream.received.length
    const res = await raw(
      port,
      `GET /api/echo HTTP/1.1\nHost: 127.0.0.1:${port}\nX-CSRF: 1\nCookie: ${cookie}\nConnection: close`,
    )
    assert.equal(res.status, 200)
    assert.equal(upstream.received.length, calls + 1)
  })

  test('startFlow\'s publicOrigin http://127.0.0.1:PORT: look-alikes of its host never reach the token "none" API', async () => {
    const calls = upstream.received.length
    const statusFor = async (host: string) =>
      (await raw(port, `GET /public/echo HTTP/1.1\nHost: ${host}\nConnection: close`)).status
    assert.equal(await statusFor(`127.0.0.1:${port}.evil`), 400, 'not a port: malformed')
    assert.equal(await statusFor(`127.0.0.1:${port}.`), 400)
    for (const host of [
      '127.0.0.1',
      '127.0.0.1:80',
      `localhost:${port}`,
      `LOCALHOST:${port}`,
      `[::1]:${port}`,
      `127.0.0.2:${port}`,
      `evil.example.com:${port}`,
    ]) {
      assert.equal(await statusFor(host), 421, host)
    }
    assert.equal(upstream.received.length, calls)
    assert.equal(await statusFor(`127.0.0.1:${port}`), 200)
    assert.equal(await statusFor(`127.0.0.1:0${port}`), 200, 'the same port, as the URL parser reads it')
  })

  test('check-config refuses TRACE in remoteApis[].methods', async () => {
    const { validateConfig } = await import('../../src/config/validate.ts')
    const result = validateConfig({
      oidc: { authority: 'https://idp.example.com', clientId: 'c', clientSecret: 's' },
      keys: [flow.keys[0]],
      remoteApis: [{ path: '/api', target: 'https://api.example.com', methods: ['GET', 'TRACE'] }],
    })
    assert.deepEqual(
      result.issues.map((i) => i.path),
      ['remoteApis[0].methods[1]'],
    )
    assert.match(result.issues[0]!.message, /never forwarded/)
  })
})

describe("with publicOrigin set, only gatehouse's own hosts are served", () => {
  // publicOrigin as a TLS-terminating proxy would front it; the test talks plain HTTP to the port.
  const PUBLIC = 'https://app.example.com'
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-hosts-'))
  const { sink, entries } = logLines()
  let upstream: Upstream
  let flow: Flow
  let port: string
  before(async () => {
    writeFileSync(join(dir, 'index.html'), '<!doctype html><p>app</p>')
    upstream = await startUpstream()
    flow = await startFlow({
      runtime: { logger: pino({ level: 'debug' }, sink) },
      gatehouse: {
        publicOrigin: PUBLIC,
        frontends: [{ name: 'app', path: '/', static: dir }],
        remoteApis: [
          { path: '/public', target: upstream.url, token: 'none', antiForgery: false, websockets: true },
          { path: '/api', target: upstream.url, token: 'user' },
        ],
      },
    })
    port = new URL(flow.origin).port
  })
  after(async () => {
    await flow.close()
    await upstream.close()
    rmSync(dir, { recursive: true, force: true })
  })

  const get = (path: string, host: string | undefined, headers: string[] = []) =>
    raw(
      port,
      [`GET ${path} HTTP/1.1`, ...(host === undefined ? [] : [`Host: ${host}`]), ...headers, 'Connection: close'].join(
        '\n',
      ),
    )

  test('DNS rebinding: Host evil.example.com to a token "none" API is 421 misdirected_request and never reaches the upstream', async () => {
    const calls = upstream.received.length
    const res = await get('/public/echo', 'evil.example.com')
    assert.equal(res.status, 421)
    assert.equal(problemCode(res), 'misdirected_request')
    assert.equal(res.headers.get('cache-control')?.[0], 'no-store')
    assert.equal(upstream.received.length, calls)
    // Control: publicOrigin's host is served.
    assert.equal((await get('/public/echo', 'app.example.com')).status, 200)
    assert.equal(upstream.received.length, calls + 1)
  })

  for (const [host, why] of [
    ['app.example.com', 'the host itself'],
    ['APP.Example.COM', 'host names are case-insensitive'],
    ['app.example.com:443', 'the default port of https'],
  ] as const) {
    test(`Host ${JSON.stringify(host)} is publicOrigin's host (${why}): served`, async () => {
      const res = await get('/bff/user', host, ['X-CSRF: 1'])
      assert.equal(res.status, 401)
      assert.equal(problemCode(res), 'session_required')
    })
  }

  for (const [host, why] of [
    ['evil.example.com', 'another host'],
    ['app.example.com.', 'a trailing dot: another origin to a browser, with other cookies'],
    ['app.example.com:80', 'another port'],
    ['app.example.com:8443', 'another port'],
    ['app.example.com.evil.example', 'a longer name'],
    ['evil-app.example.com', 'a look-alike'],
    ['127.0.0.1', 'the address'],
    ['[::1]', 'an IPv6 literal'],
    ['[::ffff:127.0.0.1]', 'an IPv4-mapped IPv6 literal'],
    ['gatehouse_app:8080', 'a container name'],
  ] as const) {
    test(`Host ${JSON.stringify(host)} (${why}) is 421 on management, API and frontend paths, and reaches no upstream`, async () => {
      const calls = upstream.received.length
      for (const path of [
        '/bff/user',
        '/public/echo',
        '/api/echo',
        '/',
        '/assets/app.js',
        '/no/such/path',
        '/bff/login',
      ]) {
        const res = await get(path, host, ['X-CSRF: 1'])
        assert.equal(res.status, 421, `${host} ${path}`)
        assert.equal(problemCode(res), 'misdirected_request')
        assert.equal(res.headers.get('location'), undefined)
      }
      assert.equal(upstream.received.length, calls)
    })
  }

  for (const host of [
    'app.example.com:443.evil',
    'app.example.com:99999',
    'app.example.com/x',
    'evil.example.com@app.example.com',
  ]) {
    test(`a malformed Host ${JSON.stringify(host)} is 400 and reaches no upstream`, async () => {
      const calls = upstream.received.length
      assert.equal((await get('/public/echo', host)).status, 400)
      assert.equal(upstream.received.length, calls)
    })
  }

  test("two Host lines (one of them gatehouse's) are 400, in either order", async () => {
    const calls = upstream.received.length
    assert.equal(
      (await raw(port, 'GET /public/echo HTTP/1.1\nHost: app.example.com\nHost: evil.example.com\nConnection: close'))
        .status,
      400,
    )
    assert.equal(
      (await raw(port, 'GET /public/echo HTTP/1.1\nHost: evil.example.com\nHost: app.example.com\nConnection: close'))
        .status,
      400,
    )
    assert.equal(upstream.received.length, calls)
  })

  test("HTTP/1.0 without a Host names no host of gatehouse's: 421 (health probes still answer)", async () => {
    const calls = upstream.received.length
    const api = await raw(port, 'GET /public/echo HTTP/1.0')
    assert.equal(api.status, 421)
    assert.equal(upstream.received.length, calls)
    assert.equal((await raw(port, 'GET /healthz HTTP/1.0')).status, 200)
  })

  test('/healthz and /readyz answer any Host (load balancers probe by address); a malformed one is still 400', async () => {
    for (const host of ['10.0.0.7:8080', 'evil.example.com', '[::1]', 'app.example.com.']) {
      const health = await get('/healthz', host)
      assert.equal(health.status, 200, host)
      const ready = await get('/readyz', host)
      assert.equal(ready.status, 200, `${host}: ${ready.body}`)
    }
    assert.equal((await get('/healthz', 'a b')).status, 400)
  })

  test('a navigation to a management path on a foreign host is sent to publicOrigin with 308, path and query kept', async () => {
    const navigate = Object.entries(NAVIGATE).map(([k, v]) => `${k}: ${v}`)
    const res = await get('/bff/login?returnUrl=%2Forders%3Fx%3D1', '127.0.0.1:8080', navigate)
    assert.equal(res.status, 308)
    assert.deepEqual(res.headers.get('location'), [`${PUBLIC}/bff/login?returnUrl=%2Forders%3Fx%3D1`])
    assert.equal(res.headers.get('cache-control')?.[0], 'no-store')
    assert.equal(res.headers.get('set-cookie'), undefined, 'no login was started on the wrong host')
    // An older browser (no Sec-Fetch-Mode) navigating to a frontend path, and to a client-side route.
    const old = Object.entries(OLD_BROWSER_NAVIGATE).map(([k, v]) => `${k}: ${v}`)
    assert.deepEqual((await get('/', 'evil.example.com', old)).headers.get('location'), [`${PUBLIC}/`])
    assert.deepEqual((await get('/orders/7?tab=2', 'evil.example.com', old)).headers.get('location'), [
      `${PUBLIC}/orders/7?tab=2`,
    ])
    assert.deepEqual((await get('/signin-oidc?code=c&state=s', 'evil.example.com', navigate)).headers.get('location'), [
      `${PUBLIC}/signin-oidc?code=c&state=s`,
    ])
  })

  test('no 308 for anything but a navigation to a management or frontend path: 421', async () => {
    const navigate = Object.entries(NAVIGATE).map(([k, v]) => `${k}: ${v}`)
    const spaFetch = Object.entries(SPA_FETCH).map(([k, v]) => `${k}: ${v}`)
    const calls = upstream.received.length
    // A navigation to a remote API path: the API's answer is no page.
    assert.equal((await get('/public/echo', 'evil.example.com', navigate)).status, 421)
    // fetch(), curl (no Accept), the anti-forgery header.
    assert.equal((await get('/bff/login', 'evil.example.com', spaFetch)).status, 421)
    assert.equal((await get('/bff/login', 'evil.example.com')).status, 421)
    assert.equal((await get('/bff/login', 'evil.example.com', [...navigate, 'X-CSRF: 1'])).status, 421)
    // Another method.
    assert.equal(
      (
        await raw(
          port,
          `POST /bff/backchannel HTTP/1.1\nHost: evil.example.com\nAccept: ${NAVIGATE.accept}\nContent-Length: 0\nConnection: close`,
        )
      ).status,
      421,
    )
    // A target that is not a plain path never becomes a Location (no open redirect through "//host").
    for (const target of ['//evil.example/x', '/\\evil.example', '/a\tb']) {
      const res = await get(target, 'evil.example.com', navigate)
      assert.ok(res.status === 421 || res.status === 400, `${target}: ${res.status}`)
      assert.equal(res.headers.get('location'), undefined, target)
    }
    // Percent-encoded CR LF stays encoded, on publicOrigin.
    const encoded = await get('/%0d%0aSet-Cookie:a=b', 'evil.example.com', navigate)
    assert.deepEqual(encoded.headers.get('location'), [`${PUBLIC}/%0d%0aSet-Cookie:a=b`])
    assert.equal(encoded.headers.get('set-cookie'), undefined)
    assert.equal(upstream.received.length, calls)
  })

  test('a WebSocket handshake naming a foreign host is refused with 421 and never reaches the upstream', async () => {
    const calls = upstream.received.length
    const res = await raw(
      port,
      [
        'GET /public/ws HTTP/1.1',
        'Host: evil.example.com',
        'Origin: http://evil.example.com',
        'Connection: Upgrade',
        'Upgrade: websocket',
        'Sec-WebSocket-Version: 13',
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
      ].join('\n'),
    )
    assert.equal(res.status, 421)
    assert.equal(upstream.received.length, calls)
  })

  test('refusals are logged: an access line each, and at most one misdirected_request warning a minute, saying what kind of host came (never the header itself)', async () => {
    await get('/bff/user', 'rebind.example.net', ['X-CSRF: 1'])
    const warnings = entries().filter((e) => e.event === 'misdirected_request')
    assert.equal(warnings.length, 1, 'one warning for all the refusals above')
    assert.equal(warnings[0]!.level, 40)
    assert.deepEqual(warnings[0]!.origins, [PUBLIC])
    assert.equal(warnings[0]!.header, 'Host')
    assert.equal(warnings[0]!.hostKind, 'name')
    assert.ok(entries().some((e) => e.msg === 'request' && e.status === 421 && e.path === '/bff/user'))
    assert.ok(
      !JSON.stringify(entries()).includes('rebind.example.net') &&
        !JSON.stringify(entries()).includes('evil.example.com'),
      'no Host value in any line',
    )
  })

  describe('behind a trusted proxy (trustProxy: the nearest X-Forwarded-Host names the host)', () => {
    before(() => flow.restart({ trustProxy: true }))
    after(() => flow.restart())

    test("the proxy's X-Forwarded-Host decides, not the Host it connects with", async () => {
      const calls = upstream.received.length
      assert.equal((await get('/public/echo', '10.0.0.7:8080', ['X-Forwarded-Host: app.example.com'])).status, 200)
      assert.equal(
        (await get('/public/echo', '10.0.0.7:8080', ['X-Forwarded-Host: evil.example.com, app.example.com'])).status,
        200,
        'the nearest value counts',
      )
      assert.equal(upstream.received.length, calls + 2)
      assert.equal((await get('/public/echo', 'app.example.com', ['X-Forwarded-Host: evil.example.com'])).status, 421)
      assert.equal(
        (await get('/public/echo', '10.0.0.7:8080', ['X-Forwarded-Host: app.example.com, evil.example.com'])).status,
        421,
        'a value the client prepended does not help',
      )
      assert.equal(
        (await get('/public/echo', '10.0.0.7:8080')).status,
        421,
        'a proxy that passes neither the Host nor X-Forwarded-Host',
      )
      assert.equal((await get('/public/echo', '10.0.0.7:8080', ['X-Forwarded-Host: app.example.com/x'])).status, 400)
      assert.equal(upstream.received.length, calls + 2)
    })
  })
})

describe('without publicOrigin and frontend origins, any well-formed Host is served (as before)', () => {
  let flow: Flow
  before(async () => {
    flow = await startFlow({ gatehouse: { publicOrigin: undefined } })
  })
  after(() => flow.close())

  test('a foreign Host reaches the endpoint; a malformed one is 400', async () => {
    const { port } = new URL(flow.origin)
    const res = await raw(port, 'GET /bff/user HTTP/1.1\nHost: evil.example.com\nX-CSRF: 1\nConnection: close')
    assert.equal(res.status, 401)
    assert.equal((await raw(port, 'GET /bff/user HTTP/1.1\nHost: a b\nConnection: close')).status, 400)
  })
})

test('a login started on another name of the same gatehouse (http://localhost:PORT) is sent to publicOrigin first, and completes there', async () => {
  const flow = await startFlow()
  try {
    const other = flow.origin.replace('127.0.0.1', 'localhost')
    const browser = new HostJar()
    const first = await browser.get(`${other}/bff/login?returnUrl=%2Fhome`, NAVIGATE)
    assert.equal(first.status, 308)
    assert.equal(first.headers.location, `${flow.origin}/bff/login?returnUrl=%2Fhome`)
    assert.equal(browser.cookiesOf(other).size, 0)
    const start = await browser.get(browser.location(first), NAVIGATE)
    assert.equal(start.status, 302)
    assert.equal(new URL(browser.location(start)).searchParams.get('redirect_uri'), `${flow.origin}/signin-oidc`)
    const form = await browser.follow(await browser.get(browser.location(start)))
    const callback = await browser.follow(
      await browser.submitForm(form, { username: 'alice', password: 'alice-demo-password' }),
      (url) => url.startsWith(`${flow.origin}/signin-oidc`),
    )
    const done = await browser.get(browser.location(callback))
    assert.equal(done.status, 302, done.text)
    assert.equal(done.headers.location, '/home')
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200)
  } finally {
    await flow.close()
  }
})
