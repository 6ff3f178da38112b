import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { WebSocket } from 'ws'
import { CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const COOKIE = '__Host-gatehouse'
const PROBLEM_JSON = /^application\/problem\+json/

interface RawResponse {
  status: number
  headers: Map<string, string[]>
  body: string
}

/**
 * Raw HTTP/1.1 over a socket, so the request target reaches gatehouse exactly as written (fetch and
 * URL would resolve dot segments first). The request ends with `Connection: close`; the answer is
 * read to the end and de-chunked.
 */
function rawRequest(origin: string, requestLine: string, headers: string[] = [], body = ''): Promise<RawResponse> {
  const { hostname, port } = new URL(origin)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname)
    const chunks: Buffer[] = []
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('error', reject)
    socket.on('end', () => {
      const data = Buffer.concat(chunks).toString('latin1')
      const split = data.indexOf('\r\n\r\n')
      const [statusLine = '', ...lines] = data.slice(0, split).split('\r\n')
      const map = new Map<string, string[]>()
      for (const line of lines) {
        const colon = line.indexOf(':')
        const name = line.slice(0, colon).trim().toLowerCase()
        map.set(name, [...(map.get(name) ?? []), line.slice(colon + 1).trim()])
      }
      let rest = data.slice(split + 4)
      if (map.get('transfer-encoding')?.[0] === 'chunked') {
        let out = ''
        for (;;) {
          const eol = rest.indexOf('\r\n')
          const size = parseInt(rest.slice(0, eol), 16)
          if (!size) break
          out += rest.slice(eol + 2, eol + 2 + size)
          rest = rest.slice(eol + 2 + size + 2)
        }
        rest = out
      }
      resolve({
        status: Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine)?.[1] ?? 0),
        headers: map,
        body: Buffer.from(rest, 'latin1').toString('utf8'),
      })
    })
    const host = new URL(origin).host
    const all = [
      requestLine,
      `Host: ${host}`,
      ...headers,
      ...(headers.some((h) => /^connection:/i.test(h)) ? [] : ['Connection: close']),
    ]
    if (body) all.push(`Content-Length: ${Buffer.byteLength(body)}`)
    socket.write(`${all.join('\r\n')}\r\n\r\n${body}`, 'latin1')
  })
}

function problemCode(res: RawResponse | { headers: Headers; text: string }): string {
  const type = res.headers instanceof Headers ? res.headers.get('content-type') : res.headers.get('content-type')?.[0]
  assert.match(type ?? '', PROBLEM_JSON, `problem+json expected, got ${type}`)
  return (JSON.parse('text' in res ? res.text : res.body) as { code: string }).code
}

/** Request targets under /api that an upstream would resolve to somewhere else. */
const ESCAPES = [
  '/api/../bff/user',
  '/api/..',
  '/api/./echo',
  '/api/echo/..',
  '/api/echo/../../bff/user',
  '/api/%2e%2e/bff/user',
  '/api/%2E%2E/bff/user',
  '/api/.%2e/bff/user',
  '/api/%2e/echo',
  '/api/echo%2F..%2Fstatus%2F200',
  '/api/%2f',
  '/api/%5c..%5cbff',
  '/api/echo\\..\\bff',
  '/api/%252e%252e/bff/user',
  '/api/%25252e%25252e/bff/user',
  '/api//echo',
  '/api/%00',
  '/api/%0a',
  '/api/%0d%0aX-Injected:%201',
  '/api/%zz',
  '/api/..%00/',
  '/api/echo/%2e%2e%2f..',
  '/api/echo/..;/bff/user',
  '/api/echo?x=1#/../bff',
]

describe('remote API proxy: hostile input and failing upstreams', () => {
  let upstream: Upstream
  let flow: Flow
  let closedPort: number

  before(async () => {
    upstream = await startUpstream()
    // A privileged port nothing here listens on: a freed ephemeral port could be taken by another
    // process on a busy machine before the test uses it.
    closedPort = 9
    flow = await startFlow({
      gatehouse: {
        remoteApis: [
          { path: '/api', target: upstream.url, token: 'userOrNone' },
          { path: '/down', target: `http://127.0.0.1:${closedPort}`, token: 'none' },
          { path: '/timed', target: upstream.url, token: 'none', timeout: '300ms' },
        ],
      },
    })
  })
  after(async () => {
    await flow.close()
    await upstream.close()
  })

  test(`path-escape request targets (${ESCAPES.length}) sent verbatim get 400 path_escape and never reach the upstream`, async () => {
    assert.ok(ESCAPES.length >= 15)
    const before = upstream.received.length
    for (const target of ESCAPES) {
      const res = await rawRequest(flow.origin, `GET ${target} HTTP/1.1`, ['X-CSRF: 1'])
      assert.equal(res.status, 400, `${target}: ${res.status} ${res.body}`)
      assert.equal(problemCode(res), 'path_escape', target)
      assert.equal(res.headers.get('x-injected'), undefined, target)
    }
    // Also without the anti-forgery header, with a body, and with other methods: still refused first.
    for (const method of ['POST', 'PUT', 'DELETE', 'HEAD']) {
      const res = await rawRequest(
        flow.origin,
        `${method} /api/%2e%2e/bff/user HTTP/1.1`,
        [],
        method === 'HEAD' ? '' : '{"a":1}',
      )
      assert.equal(res.status, 400, method)
    }
    assert.equal(upstream.received.length, before, JSON.stringify(upstream.received.slice(before).map((r) => r.url)))
  })

  test('the upstream host never comes from the request: absolute-form targets and foreign Host headers reach no other host', async () => {
    const before = upstream.received.length
    const upstreamHost = new URL(upstream.url).host
    for (const target of [
      `http://${upstreamHost}/api/echo`,
      `http://${upstreamHost}/echo`,
      'http://evil.example/api/echo',
    ]) {
      const res = await rawRequest(flow.origin, `GET ${target} HTTP/1.1`, ['X-CSRF: 1'])
      assert.ok(res.status === 400 || res.status === 404, `${target}: ${res.status}`)
    }
    assert.equal(upstream.received.length, before)
    // A Host header naming another host changes nothing about where the call goes.
    const res = await rawRequest(flow.origin, 'GET /api/echo/host HTTP/1.1', [
      'X-CSRF: 1',
      'X-Forwarded-Host: evil.example',
    ])
    assert.equal(res.status, 200)
    assert.equal(upstream.received.at(-1)?.headers.host, upstreamHost)
    assert.equal(upstream.received.at(-1)?.headers['x-forwarded-host'], new URL(flow.origin).host)
  })

  test('an upstream that refuses connections gives 502 problem+json', async () => {
    const res = await flow.browser().get(`${flow.origin}/down/echo`, CSRF)
    assert.equal(res.status, 502)
    assert.equal(problemCode(res), 'upstream_unavailable')
  })

  test('an upstream that answers later than the API timeout gives 504 problem+json', async () => {
    const res = await flow.browser().get(`${flow.origin}/timed/slow?ms=3000`, CSRF)
    assert.equal(res.status, 504)
    assert.equal(problemCode(res), 'upstream_timeout')
    assert.equal(upstream.received.at(-1)?.url, '/slow?ms=3000')
  })

  test('an upstream answer within the API timeout is passed on', async () => {
    const res = await flow.browser().get(`${flow.origin}/timed/slow?ms=10`, CSRF)
    assert.equal(res.status, 200)
    assert.equal(res.text, 'slow')
  })

  test('an upstream that drops the connection without answering gives 502 problem+json', async () => {
    const before = upstream.received.length
    const res = await flow.browser().get(`${flow.origin}/api/reset`, CSRF)
    assert.equal(res.status, 502)
    assert.equal(problemCode(res), 'upstream_unavailable')
    assert.ok(upstream.received.length > before)
  })

  test('after refused, timed-out and reset upstream calls gatehouse still serves its own endpoints and proxies', async () => {
    for (let i = 0; i < 3; i++) {
      assert.equal((await flow.browser().get(`${flow.origin}/down/echo`, CSRF)).status, 502)
      assert.equal((await flow.browser().get(`${flow.origin}/api/reset`, CSRF)).status, 502)
    }
    assert.equal((await flow.browser().get(`${flow.origin}/healthz`)).status, 200)
    const res = await flow.browser().get(`${flow.origin}/api/echo/after`, CSRF)
    assert.equal(res.status, 200)
    assert.equal((JSON.parse(res.text) as { url: string }).url, '/echo/after')
    const browser = flow.browser()
    await flow.login(browser)
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200)
  })

  test("the browser's cookies, Authorization and anti-forgery header never reach the upstream; X-Forwarded-* are gatehouse's", async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const session = browser.cookies.get(COOKIE)
    assert.ok(session)
    browser.cookies.set('theme', 'dark')
    browser.cookies.set(`${COOKIE}.login.0123456789abcdef`, 'pending')
    const res = await browser.get(`${flow.origin}/api/echo/cookies`, {
      ...CSRF,
      authorization: 'Bearer forged-by-the-browser',
      'x-forwarded-host': 'evil.example',
      'x-forwarded-for': '10.9.8.7',
      forwarded: 'for=10.9.8.7',
    })
    assert.equal(res.status, 200, res.text)
    const seen = upstream.received.at(-1)!
    assert.equal(seen.url, '/echo/cookies')
    assert.equal(seen.headers.cookie, undefined)
    assert.equal(seen.headers['x-csrf'], undefined)
    assert.equal(seen.headers.forwarded, undefined)
    assert.match(seen.headers.authorization ?? '', /^Bearer /)
    assert.notEqual(seen.headers.authorization, 'Bearer forged-by-the-browser')
    assert.equal(seen.headers['x-forwarded-host'], new URL(flow.origin).host)
    assert.equal(seen.headers['x-forwarded-proto'], 'http')
    assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1')
    assert.equal(seen.headers.host, new URL(upstream.url).host)
    const everything = JSON.stringify(seen.headers)
    for (const secret of [session, 'theme=dark', 'pending', 'forged-by-the-browser', 'evil.example', '10.9.8.7'])
      assert.ok(!everything.includes(secret), secret)
  })

  test("an upstream Set-Cookie for gatehouse's session cookie is not passed to the browser, other cookies are", async () => {
    const anonymous = await flow.browser().get(`${flow.origin}/api/echo`, CSRF)
    assert.equal(anonymous.status, 200)
    const lines = anonymous.headers.getSetCookie()
    assert.ok(lines.includes('upstream=1; Path=/'), JSON.stringify(lines))
    assert.ok(!lines.some((line) => line.startsWith(COOKIE)), JSON.stringify(lines))

    const browser = flow.browser()
    await flow.login(browser)
    const session = browser.cookies.get(COOKIE)
    const res = await browser.get(`${flow.origin}/api/echo`, CSRF)
    assert.equal(res.status, 200)
    assert.ok(
      !res.headers.getSetCookie().some((line) => line.includes('planted')),
      JSON.stringify(res.headers.getSetCookie()),
    )
    assert.equal(browser.cookies.get(COOKIE), session)
    assert.equal(browser.cookies.get('upstream'), '1')
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200)
  })

  test('hop-by-hop headers and headers named in Connection are not forwarded', async () => {
    const res = await rawRequest(flow.origin, 'GET /api/echo/hop HTTP/1.1', [
      'X-CSRF: 1',
      'Connection: close, X-Secret',
      'X-Secret: s3cret',
      'Keep-Alive: timeout=99',
      'TE: trailers',
      'Upgrade: websocket',
      'Proxy-Authorization: Basic c2VjcmV0',
      'Proxy-Connection: keep-alive',
      'X-Kept: yes',
    ])
    assert.equal(res.status, 200, res.body)
    const seen = upstream.received.at(-1)!
    assert.equal(seen.url, '/echo/hop')
    for (const name of ['x-secret', 'keep-alive', 'te', 'upgrade', 'proxy-authorization', 'proxy-connection'])
      assert.equal(seen.headers[name], undefined, name)
    assert.ok(!JSON.stringify(seen.headers).includes('s3cret'))
    assert.notEqual(seen.headers.connection?.toLowerCase().includes('x-secret'), true)
    assert.equal(seen.headers['x-kept'], 'yes')
  })

  test('a POST with a JSON body arrives at the upstream intact', async () => {
    const payload = { order: 7, items: ['ä', '€', '😀'], note: 'x'.repeat(10_000) }
    const body = JSON.stringify(payload)
    const res = await fetch(`${flow.origin}/api/body?x=1`, {
      method: 'POST',
      headers: { ...CSRF, 'content-type': 'application/json' },
      body,
    })
    assert.equal(res.status, 200)
    const seen = (await res.json()) as { method: string; url: string; headers: Record<string, string>; body: string }
    assert.equal(seen.method, 'POST')
    assert.equal(seen.url, '/body?x=1')
    assert.equal(seen.headers['content-type'], 'application/json')
    assert.equal(seen.headers['content-length'], String(Buffer.byteLength(body)))
    assert.equal(seen.body, body)
    assert.deepEqual(JSON.parse(seen.body), payload)
  })

  test('PUT, PATCH and DELETE bodies arrive too, and a bodyless DELETE stays bodyless', async () => {
    for (const method of ['PUT', 'PATCH', 'DELETE']) {
      const res = await fetch(`${flow.origin}/api/body`, {
        method,
        headers: { ...CSRF, 'content-type': 'application/json' },
        body: `{"m":"${method}"}`,
      })
      const seen = (await res.json()) as { method: string; body: string }
      assert.equal(seen.method, method)
      assert.equal(seen.body, `{"m":"${method}"}`)
    }
    const res = await fetch(`${flow.origin}/api/body`, { method: 'DELETE', headers: CSRF })
    const seen = (await res.json()) as { body: string; headers: Record<string, string> }
    assert.equal(seen.body, '')
  })

  test('HEAD is forwarded as HEAD and answered without a body', async () => {
    const res = await fetch(`${flow.origin}/api/echo/head`, { method: 'HEAD', headers: CSRF })
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('content-type'), 'application/json')
    assert.equal(await res.text(), '')
    assert.equal(upstream.received.at(-1)?.method, 'HEAD')
    assert.equal(upstream.received.at(-1)?.url, '/echo/head')
  })

  test('upstream error statuses pass through unchanged, not rewritten as problems', async () => {
    for (const status of [400, 401, 403, 404, 409, 418, 500, 502, 503, 504]) {
      const res = await flow.browser().get(`${flow.origin}/api/status/${status}`, CSRF)
      assert.equal(res.status, status)
      assert.equal(res.headers.get('content-type'), 'text/plain', String(status))
      assert.equal(res.text, 'status', String(status))
    }
    const empty = await fetch(`${flow.origin}/api/status/204`, { headers: CSRF })
    assert.equal(empty.status, 204)
    assert.equal(await empty.text(), '')
  })

  test('an upstream 401 does not end the gatehouse session', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    assert.equal((await browser.get(`${flow.origin}/api/status/401`, CSRF)).status, 401)
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200)
  })
})

describe('remote API proxy: CORS preflights and upstream redirects', () => {
  let upstream: Upstream
  let flow: Flow
  before(async () => {
    upstream = await startUpstream()
    flow = await startFlow({
      gatehouse: {
        remoteApis: [
          { path: '/api', target: upstream.url, token: 'user' },
          { path: '/open', target: upstream.url, token: 'none', antiForgery: false },
        ],
      },
    })
  })
  after(async () => {
    await flow.close()
    await upstream.close()
  })

  const PREFLIGHT = {
    origin: 'https://evil.example',
    'access-control-request-method': 'POST',
    'access-control-request-headers': 'x-csrf, content-type',
  }
  const grantsCors = (headers: Headers) => {
    const names: string[] = []
    headers.forEach((_value, name) => void (name.startsWith('access-control-') && names.push(name)))
    return names
  }

  test('a CORS preflight (OPTIONS without X-CSRF) to an anti-forgery API gets 401, grants nothing and never reaches the upstream', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const before = upstream.received.length
    for (const path of ['/api/cors', '/api/echo', '/api']) {
      const res = await browser.request('OPTIONS', `${flow.origin}${path}`, undefined, PREFLIGHT)
      assert.equal(res.status, 401, path)
      assert.equal(problemCode(res), 'antiforgery_failed')
      assert.deepEqual(grantsCors(res.headers), [], path)
    }
    assert.equal(upstream.received.length, before, 'no preflight reached the upstream')
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200, 'the session is untouched')
  })

  test("no gatehouse answer carries Access-Control-Allow-*, even to a request with an Origin, nor relays an upstream's grant", async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const origin = { origin: 'https://evil.example' }
    const answers = [
      await browser.get(`${flow.origin}/bff/user`, { ...CSRF, ...origin }),
      await browser.request('OPTIONS', `${flow.origin}/bff/user`, undefined, PREFLIGHT),
      await browser.get(`${flow.origin}/api/cors`, { ...CSRF, ...origin }),
      await browser.get(`${flow.origin}/api/echo`, origin),
      // An API without the anti-forgery check forwards the preflight; the upstream grants it, gatehouse does not pass that on.
      await browser.request('OPTIONS', `${flow.origin}/open/cors`, undefined, PREFLIGHT),
      await browser.get(`${flow.origin}/open/cors`, origin),
    ]
    assert.equal(
      upstream.received.filter((r) => r.url === '/cors').length >= 3,
      true,
      'the upstream did answer with its grants',
    )
    for (const res of answers) assert.deepEqual(grantsCors(res.headers), [], `${res.status} ${res.url}`)
  })

  for (const status of [301, 302, 303, 307, 308]) {
    test(`an upstream ${status} is passed to the browser unchanged and not followed by gatehouse`, async () => {
      const browser = flow.browser()
      await flow.login(browser)
      for (const to of ['/echo/after-redirect', `${upstream.url}/echo/absolute`, 'https://evil.example/steal?x=1']) {
        const before = upstream.received.length
        const res = await browser.get(`${flow.origin}/api/redirect?status=${status}&to=${encodeURIComponent(to)}`, CSRF)
        assert.equal(res.status, status)
        assert.equal(res.headers.get('location'), to, 'Location is not rewritten')
        assert.equal(res.text, 'redirect')
        assert.deepEqual(
          upstream.received.slice(before).map((r) => r.url),
          [`/redirect?status=${status}&to=${encodeURIComponent(to)}`],
          'only the one request: nothing followed',
        )
      }
    })
  }
})

describe('remote API proxy: per-API method allowlist (remoteApis[].methods, RFC 10017 §6.1.3.6)', () => {
  let upstream: Upstream
  let flow: Flow
  before(async () => {
    upstream = await startUpstream()
    flow = await startFlow({
      gatehouse: {
        remoteApis: [
          { path: '/ro', target: upstream.url, token: 'user', methods: ['GET'] },
          { path: '/rw', target: upstream.url, token: 'none', methods: ['GET', 'POST', 'DELETE'] },
          { path: '/preflight', target: upstream.url, token: 'none', antiForgery: false, methods: ['POST', 'OPTIONS'] },
          { path: '/all', target: upstream.url, token: 'none' },
          { path: '/live', target: upstream.url, token: 'none', websockets: true, methods: ['GET'] },
          { path: '/guarded', target: upstream.url, token: 'none', methods: ['GET', 'OPTIONS'] },
        ],
      },
    })
  })
  after(async () => {
    await flow.close()
    await upstream.close()
  })

  for (const method of ['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'PROPFIND', 'MKCOL']) {
    test(`${method} to a GET-only API is 405 problem+json with Allow: GET, HEAD, before the session, anti-forgery or upstream`, async () => {
      const browser = flow.browser()
      await flow.login(browser)
      const before = upstream.received.length
      for (const headers of [CSRF, {}]) {
        for (const jar of [browser, flow.browser()]) {
          const res = await jar.request(
            method,
            `${flow.origin}/ro/echo`,
            ['POST', 'PUT', 'PATCH'].includes(method) ? '{}' : undefined,
            { ...headers, 'content-type': 'application/json' },
          )
          assert.equal(res.status, 405)
          assert.equal(res.headers.get('allow'), 'GET, HEAD')
          assert.equal(problemCode(res), 'method_not_allowed')
          assert.equal(res.headers.get('cache-control'), 'no-store')
        }
      }
      assert.equal(upstream.received.length, before, 'nothing reached the upstream')
      assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200, 'the session is untouched')
    })
  }

  test('GET and HEAD (which goes with GET) are forwarded by a GET-only API', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    assert.equal((await browser.get(`${flow.origin}/ro/echo`, CSRF)).status, 200)
    assert.equal(upstream.received.at(-1)?.method, 'GET')
    const head = await fetch(`${flow.origin}/ro/echo`, {
      method: 'HEAD',
      headers: { ...CSRF, cookie: browser.cookieHeader() },
    })
    assert.equal(head.status, 200)
    assert.equal(upstream.received.at(-1)?.method, 'HEAD')
  })

  test('the listed methods pass and others get an Allow header naming exactly the configured ones (HEAD added with GET)', async () => {
    for (const method of ['GET', 'POST', 'DELETE']) {
      const res = await flow
        .browser()
        .request(method, `${flow.origin}/rw/echo`, method === 'POST' ? '{}' : undefined, CSRF)
      assert.equal(res.status, 200, method)
      assert.equal(upstream.received.at(-1)?.method, method)
    }
    const put = await flow.browser().request('PUT', `${flow.origin}/rw/echo`, '{}', CSRF)
    assert.equal(put.status, 405)
    assert.equal(put.headers.get('allow'), 'GET, POST, DELETE, HEAD')
    // No GET listed: no HEAD either.
    const before = upstream.received.length
    const head = await fetch(`${flow.origin}/preflight/echo`, { method: 'HEAD' })
    assert.equal(head.status, 405)
    assert.equal(head.headers.get('allow'), 'POST, OPTIONS')
    assert.equal(upstream.received.length, before)
  })

  test("OPTIONS is a method like any other: forwarded only where listed, and then the upstream's CORS grant is still not passed on", async () => {
    const res = await flow.browser().request('OPTIONS', `${flow.origin}/preflight/cors`, undefined, {
      origin: 'https://evil.example',
      'access-control-request-method': 'POST',
    })
    assert.equal(res.status, 204)
    assert.equal(upstream.received.at(-1)?.method, 'OPTIONS')
    assert.equal(res.headers.get('access-control-allow-origin'), null)
  })

  test('OPTIONS listed on an anti-forgery API: a preflight (no X-CSRF) still gets 401 and never reaches the upstream', async () => {
    const before = upstream.received.length
    const res = await flow.browser().request('OPTIONS', `${flow.origin}/guarded/cors`, undefined, {
      origin: 'https://evil.example',
      'access-control-request-method': 'GET',
      'access-control-request-headers': 'x-csrf',
    })
    assert.equal(res.status, 401)
    assert.equal(problemCode(res), 'antiforgery_failed')
    assert.equal(upstream.received.length, before)
  })

  test('without methods every method is forwarded (the default), also a WebDAV one', async () => {
    for (const method of ['PUT', 'PATCH', 'OPTIONS', 'PROPFIND']) {
      const res = await flow
        .browser()
        .request(method, `${flow.origin}/all/echo`, method === 'PUT' || method === 'PATCH' ? '{}' : undefined, CSRF)
      assert.equal(res.status, 200, method)
      assert.equal(upstream.received.at(-1)?.method, method)
    }
  })

  test('hostile method tokens (lower case, unknown, over-long, with spaces) are refused with 400 by the HTTP parser and never reach the upstream', async () => {
    const before = upstream.received.length
    for (const line of [
      'get /ro/echo HTTP/1.1',
      'Get /rw/echo HTTP/1.1',
      'post /rw/echo HTTP/1.1',
      'FETCH /all/echo HTTP/1.1',
      'GETT /ro/echo HTTP/1.1',
      `${'G'.repeat(300)} /all/echo HTTP/1.1`,
      'G ET /ro/echo HTTP/1.1',
      'GET\t/ro/echo HTTP/1.1',
    ]) {
      const res = await rawRequest(flow.origin, line, ['X-CSRF: 1'])
      assert.equal(res.status, 400, line)
    }
    assert.equal(upstream.received.length, before)
  })

  test('a WebSocket handshake with a method other than GET is refused with 405 (RFC 6455 §4.1), never upgraded upstream; a GET one upgrades', async () => {
    const handshake = [
      'Upgrade: websocket',
      'Connection: Upgrade',
      'Sec-WebSocket-Version: 13',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
      `Origin: ${flow.origin}`,
    ]
    const before = upstream.received.length
    for (const method of ['POST', 'PUT', 'OPTIONS']) {
      const res = await rawRequest(flow.origin, `${method} /live/ws HTTP/1.1`, handshake)
      assert.equal(res.status, 405, method)
    }
    assert.equal(upstream.received.length, before)
    const ws = new WebSocket(`${flow.origin.replace('http:', 'ws:')}/live/ws`, { headers: { origin: flow.origin } })
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve())
      ws.once('error', reject)
    })
    ws.close()
  })
})
