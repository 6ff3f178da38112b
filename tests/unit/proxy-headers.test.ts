import assert from 'node:assert/strict'
import type { IncomingHttpHeaders } from 'node:http'
import { describe, test } from 'node:test'
import {
  CLIENT_IP_HEADERS,
  downstreamResponseHeaders,
  HOP_BY_HOP,
  isGatehouseCookieLine,
  METHOD_OVERRIDES,
  normalHeaderName,
  upstreamRequestHeaders,
  URL_REWRITE_HEADERS,
  type UpstreamHeaderOptions,
} from '../../src/proxy/headers.ts'

const COOKIE = '__Host-gatehouse'

const options = (overrides: Partial<UpstreamHeaderOptions> = {}): UpstreamHeaderOptions => ({
  antiForgeryHeader: 'x-csrf',
  bearer: 'the-access-token',
  clientIp: '203.0.113.7',
  origin: 'https://app.example',
  trustProxy: false,
  ...overrides,
})

test('hop-by-hop request headers are not forwarded to the upstream', () => {
  const incoming: IncomingHttpHeaders = {
    accept: 'application/json',
    connection: 'keep-alive',
    'keep-alive': 'timeout=5',
    'proxy-connection': 'keep-alive',
    'proxy-authorization': 'Basic c2VjcmV0',
    'proxy-authenticate': 'Basic',
    te: 'trailers',
    trailer: 'x-checksum',
    'transfer-encoding': 'chunked',
    upgrade: 'h2c',
    'http2-settings': 'AAMAAABkAAQCAAAAAAIAAAAA',
  }
  const out = upstreamRequestHeaders(incoming, options())
  for (const name of HOP_BY_HOP) assert.equal(out[name], undefined, name)
  assert.equal(out.accept, 'application/json')
})

test('headers the browser lists in Connection are hop-by-hop and not forwarded, whatever their case', () => {
  const incoming: IncomingHttpHeaders = {
    connection: 'X-Secret , x-other,keep-alive',
    'x-secret': 's3cret',
    'x-other': 'o',
    'x-kept': 'k',
  }
  const out = upstreamRequestHeaders(incoming, options())
  assert.equal(out['x-secret'], undefined)
  assert.equal(out['x-other'], undefined)
  assert.equal(out['x-kept'], 'k')
})

test("the browser's Cookie, Authorization, anti-forgery header, Host and Expect never reach the upstream", () => {
  const incoming: IncomingHttpHeaders = {
    host: 'app.example',
    cookie: `${COOKIE}=sealed; theme=dark`,
    authorization: 'Bearer forged-by-the-browser',
    'x-csrf': '1',
    expect: '100-continue',
    'content-type': 'application/json',
    'content-length': '12',
  }
  const out = upstreamRequestHeaders(incoming, options())
  assert.equal(out.host, undefined)
  assert.equal(out.cookie, undefined)
  assert.equal(out['x-csrf'], undefined)
  assert.equal(out.expect, undefined)
  assert.equal(out.authorization, 'Bearer the-access-token')
  assert.equal(out['content-type'], 'application/json')
  assert.equal(out['content-length'], '12')
})

test('a configured anti-forgery header name is the one removed', () => {
  const out = upstreamRequestHeaders(
    { 'x-requested-by': 'app', 'x-csrf': '1' },
    options({ antiForgeryHeader: 'x-requested-by' }),
  )
  assert.equal(out['x-requested-by'], undefined)
  assert.equal(out['x-csrf'], '1')
})

test("without a token the browser's Authorization is dropped and none is added", () => {
  const out = upstreamRequestHeaders({ authorization: 'Basic Zm9vOmJhcg==' }, options({ bearer: undefined }))
  assert.equal(out.authorization, undefined)
})

test("the browser's DPoP header is never forwarded: without a token, with a Bearer token, or with gatehouse's own proof", () => {
  const incoming: IncomingHttpHeaders = { dpop: 'browser-proof', authorization: 'DPoP browser-token' }
  const none = upstreamRequestHeaders(incoming, options({ bearer: undefined }))
  assert.equal(none.dpop, undefined)
  assert.equal(none.authorization, undefined)
  const bearer = upstreamRequestHeaders(incoming, options())
  assert.equal(bearer.dpop, undefined)
  assert.equal(bearer.authorization, 'Bearer the-access-token')
  const bound = upstreamRequestHeaders(incoming, options({ dpopProof: 'gatehouse-proof' }))
  assert.equal(bound.dpop, 'gatehouse-proof')
  assert.equal(
    bound.authorization,
    'DPoP the-access-token',
    'a DPoP-bound token goes with the DPoP scheme (RFC 9449 §7.1)',
  )
})

test('Forwarded and X-Forwarded-* from the browser are replaced by values from the origin and the socket', () => {
  const incoming: IncomingHttpHeaders = {
    forwarded: 'for=10.0.0.1;host=evil.example;proto=http',
    'x-forwarded-for': '10.0.0.1',
    'x-forwarded-host': 'evil.example',
    'x-forwarded-proto': 'http',
    'x-forwarded-port': '1234',
    'x-forwarded-prefix': '/admin',
  }
  const out = upstreamRequestHeaders(incoming, options())
  assert.equal(out.forwarded, undefined)
  assert.equal(out['x-forwarded-port'], undefined)
  assert.equal(out['x-forwarded-prefix'], undefined)
  assert.equal(out['x-forwarded-for'], '203.0.113.7')
  assert.equal(out['x-forwarded-proto'], 'https')
  assert.equal(out['x-forwarded-host'], 'app.example')
})

test('X-Forwarded-Host keeps a non-default port of the origin, X-Forwarded-Proto follows its scheme', () => {
  const out = upstreamRequestHeaders({}, options({ origin: 'http://127.0.0.1:8080' }))
  assert.equal(out['x-forwarded-proto'], 'http')
  assert.equal(out['x-forwarded-host'], '127.0.0.1:8080')
})

test('with trustProxy the client address is appended to the incoming X-Forwarded-For chain', () => {
  const out = upstreamRequestHeaders({ 'x-forwarded-for': '198.51.100.1, 10.0.0.2' }, options({ trustProxy: true }))
  assert.equal(out['x-forwarded-for'], '198.51.100.1, 10.0.0.2, 203.0.113.7')
})

test('without trustProxy an incoming X-Forwarded-For chain is discarded', () => {
  const out = upstreamRequestHeaders({ 'x-forwarded-for': '198.51.100.1' }, options({ trustProxy: false }))
  assert.equal(out['x-forwarded-for'], '203.0.113.7')
})

test('without a known client address X-Forwarded-For is absent unless a trusted chain exists', () => {
  assert.equal(
    upstreamRequestHeaders({ 'x-forwarded-for': '198.51.100.1' }, options({ clientIp: undefined }))['x-forwarded-for'],
    undefined,
  )
  assert.equal(
    upstreamRequestHeaders({ 'x-forwarded-for': '198.51.100.1' }, options({ clientIp: undefined, trustProxy: true }))[
      'x-forwarded-for'
    ],
    '198.51.100.1',
  )
})

test('WebSocket handshake fields are forwarded only for a WebSocket upgrade', () => {
  const incoming: IncomingHttpHeaders = {
    'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
    'sec-websocket-version': '13',
    'sec-websocket-protocol': 'chat',
    connection: 'Upgrade',
    upgrade: 'websocket',
  }
  const plain = upstreamRequestHeaders(incoming, options())
  assert.equal(plain['sec-websocket-key'], undefined)
  assert.equal(plain['sec-websocket-protocol'], undefined)
  const ws = upstreamRequestHeaders(incoming, options({ websocket: true }))
  assert.equal(ws['sec-websocket-key'], 'dGhlIHNhbXBsZSBub25jZQ==')
  assert.equal(ws['sec-websocket-version'], '13')
  assert.equal(ws['sec-websocket-protocol'], 'chat')
  // The upgrade itself is the HTTP client's business, not a copied header.
  assert.equal(ws.connection, undefined)
  assert.equal(ws.upgrade, undefined)
  assert.equal(ws.authorization, 'Bearer the-access-token')
})

test('ordinary request headers pass through unchanged', () => {
  const incoming: IncomingHttpHeaders = {
    accept: 'text/html',
    'accept-language': 'de',
    'user-agent': 'test',
    'if-none-match': '"abc"',
    'x-custom': 'kept',
    range: 'bytes=0-9',
  }
  const out = upstreamRequestHeaders(incoming, options())
  for (const [name, value] of Object.entries(incoming)) assert.equal(out[name], value, name)
})

test('hop-by-hop response headers and those listed in the upstream Connection header are not passed to the browser', () => {
  const upstream = {
    'content-type': 'application/json',
    'content-length': '2',
    connection: 'keep-alive, X-Internal',
    'keep-alive': 'timeout=5',
    'transfer-encoding': 'chunked',
    'proxy-authenticate': 'Basic',
    trailer: 'x-checksum',
    upgrade: 'h2c',
    'x-internal': 'secret',
    etag: '"v1"',
  }
  const out = downstreamResponseHeaders(upstream, COOKIE)
  for (const name of HOP_BY_HOP) assert.equal(out[name], undefined, name)
  assert.equal(out['x-internal'], undefined)
  assert.equal(out['content-type'], 'application/json')
  assert.equal(out['content-length'], '2')
  assert.equal(out.etag, '"v1"')
})

test("an upstream Set-Cookie for gatehouse's session or login cookies is dropped while other cookies pass", () => {
  const lines = [
    'upstream=1; Path=/',
    `${COOKIE}=planted; Path=/; Secure; HttpOnly`,
    ` ${COOKIE}=planted-with-space; Path=/; Secure`,
    `${COOKIE}.login.abcdef0123456789=planted; Path=/; Secure`,
    '__Host-other=1; Path=/; Secure',
    'gatehouse=1; Path=/',
  ]
  const out = downstreamResponseHeaders({ 'set-cookie': lines }, COOKIE)
  assert.deepEqual(out['set-cookie'], ['upstream=1; Path=/', '__Host-other=1; Path=/; Secure', 'gatehouse=1; Path=/'])
})

test("a lone Set-Cookie for gatehouse's cookie leaves no Set-Cookie header at all", () => {
  assert.equal(
    downstreamResponseHeaders({ 'set-cookie': `${COOKIE}=planted; Path=/` }, COOKIE)['set-cookie'],
    undefined,
  )
  assert.equal(
    downstreamResponseHeaders({ 'set-cookie': [`${COOKIE}=a`, `${COOKIE}.login.x=b`] }, COOKIE)['set-cookie'],
    undefined,
  )
})

test('the session cookie name in use is the one protected', () => {
  const out = downstreamResponseHeaders(
    { 'set-cookie': ['__Host-gatehouse=ok', '__Host-custom=planted', '__Host-custom.login.x=planted'] },
    '__Host-custom',
  )
  assert.deepEqual(out['set-cookie'], ['__Host-gatehouse=ok'])
})

test('undefined header values are skipped both ways', () => {
  assert.deepEqual(downstreamResponseHeaders({ 'x-a': undefined, 'x-b': 'b' }, COOKIE), { 'x-b': 'b' })
  const out = upstreamRequestHeaders({ 'x-a': undefined, 'x-b': 'b' }, options())
  assert.equal('x-a' in out, false)
  assert.equal(out['x-b'], 'b')
})

test("client-address headers other than gatehouse's X-Forwarded-For are not forwarded", () => {
  const out = upstreamRequestHeaders(
    {
      'x-real-ip': '1.2.3.4',
      'true-client-ip': '1.2.3.4',
      'x-client-ip': '1.2.3.4',
      'cf-connecting-ip': '1.2.3.4',
      'fastly-client-ip': '1.2.3.4',
      'x-cluster-client-ip': '1.2.3.4',
    },
    {
      antiForgeryHeader: 'x-csrf',
      bearer: undefined,
      clientIp: '10.0.0.9',
      origin: 'https://app.example',
      trustProxy: false,
    },
  )
  for (const name of [
    'x-real-ip',
    'true-client-ip',
    'x-client-ip',
    'cf-connecting-ip',
    'fastly-client-ip',
    'x-cluster-client-ip',
  ])
    assert.equal(out[name], undefined, name)
  assert.equal(out['x-forwarded-for'], '10.0.0.9')
})

test('method-override headers never reach the upstream: it acts on the method gatehouse checked (remoteApis[].methods)', () => {
  // node:http hands header names over in lower case, whatever the client sent.
  const out = upstreamRequestHeaders(
    {
      'x-http-method-override': 'DELETE',
      'x-http-method': 'PUT',
      'x-method-override': 'PATCH',
      accept: 'application/json',
    },
    options(),
  )
  for (const name of ['x-http-method-override', 'x-http-method', 'x-method-override'])
    assert.equal(out[name], undefined, name)
  assert.equal(out.accept, 'application/json')
})

test('an upstream CORS grant (Access-Control-*) never reaches the browser: gatehouse grants no other origin', () => {
  const out = downstreamResponseHeaders(
    {
      'access-control-allow-origin': 'https://evil.example',
      'access-control-allow-credentials': 'true',
      'access-control-allow-methods': 'GET, POST',
      'access-control-allow-headers': 'x-csrf',
      'access-control-expose-headers': 'x-secret',
      'access-control-max-age': '86400',
      'access-control-allow-private-network': 'true',
      vary: 'Origin',
      'content-type': 'application/json',
    },
    COOKIE,
  )
  assert.deepEqual(out, { vary: 'Origin', 'content-type': 'application/json' })
})

/** Every spelling of a dashed name with each dash kept or made an underscore: `a-b-c`, `a_b-c`, `a-b_c`, `a_b_c`. */
function underscoreSpellings(name: string): string[] {
  const parts = name.split('-')
  const spellings: string[] = []
  for (let mask = 0; mask < 2 ** (parts.length - 1); mask++) {
    spellings.push(
      parts.reduce((out, part, i) => (i === 0 ? part : `${out}${mask & (1 << (i - 1)) ? '_' : '-'}${part}`), ''),
    )
  }
  return spellings
}

/** Every name gatehouse strips from a request, or sets itself, that has a dash to misspell. */
const STRIPPED_OR_SET = [
  ...[...HOP_BY_HOP].filter((name) => name.includes('-')),
  ...METHOD_OVERRIDES,
  ...CLIENT_IP_HEADERS,
  ...URL_REWRITE_HEADERS,
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-forwarded-prefix',
  'sec-websocket-key',
  'x-csrf',
]

test('a header name is compared lower-cased with "_" read as "-"', () => {
  assert.equal(normalHeaderName('X_Forwarded_For'), 'x-forwarded-for')
  assert.equal(normalHeaderName('X-Forwarded_Host'), 'x-forwarded-host')
  assert.equal(normalHeaderName('x-http_method'), 'x-http-method')
  assert.equal(normalHeaderName('Accept'), 'accept')
})

test('every underscore/dash spelling of a header gatehouse strips or sets never reaches the upstream (X_Forwarded_For, X-HTTP_Method, Client_IP…)', () => {
  const incoming: IncomingHttpHeaders = { accept: 'application/json' }
  let count = 0
  for (const name of STRIPPED_OR_SET) {
    for (const spelling of underscoreSpellings(name)) {
      if (spelling === name) continue
      incoming[spelling] = 'hostile'
      incoming[spelling.toUpperCase()] = 'hostile'
      count += 2
    }
  }
  assert.ok(count > 100, `${count} spellings`)
  const out = upstreamRequestHeaders(incoming, options({ websocket: true }))
  const leaked = Object.keys(out).filter((name) => name.includes('_') || Object.values(out).flat().includes('hostile'))
  assert.deepEqual(leaked, [])
  assert.equal(out['x-forwarded-for'], '203.0.113.7')
  assert.equal(out['x-forwarded-host'], 'app.example')
  assert.equal(out['x-forwarded-proto'], 'https')
  assert.equal(out.accept, 'application/json')
})

test('the spellings the issue names are all stripped, also without a WebSocket upgrade', () => {
  const names = [
    'X_Forwarded_For',
    'X-Forwarded_Host',
    'X_Forwarded_Proto',
    'X_Real_IP',
    'Client_IP',
    'Client-IP',
    'X_HTTP_Method_Override',
    'X-HTTP_Method',
    'X_Method_Override',
    'X_Original_URL',
    'X_Rewrite_URL',
    'X_Envoy_Original_Path',
    'Proxy_Authorization',
    'Transfer_Encoding',
    'X_CSRF',
  ]
  const out = upstreamRequestHeaders(
    Object.fromEntries(names.map((name) => [name.toLowerCase(), 'hostile'])),
    options(),
  )
  for (const name of names) assert.equal(out[name.toLowerCase()], undefined, name)
})

test('an underscore X-Forwarded-For is never taken for the trusted chain, even with trustProxy', () => {
  const out = upstreamRequestHeaders(
    { x_forwarded_for: '198.51.100.66', 'x-forwarded_for': '198.51.100.67' },
    options({ trustProxy: true }),
  )
  assert.equal(out['x-forwarded-for'], '203.0.113.7')
})

test('a configured anti-forgery header is stripped in its underscore spelling too', () => {
  const out = upstreamRequestHeaders(
    { x_requested_by: 'app', 'x-requested_by': 'app', 'x-requested-by': 'app' },
    options({ antiForgeryHeader: 'x-requested-by' }),
  )
  assert.deepEqual(
    Object.keys(out).filter((name) => name.startsWith('x-requested') || name.startsWith('x_requested')),
    [],
  )
})

test('a name listed in Connection is dropped in every spelling, whichever spelling Connection used', () => {
  const out = upstreamRequestHeaders(
    { connection: 'X_Secret', 'x-secret': 's', x_secret: 's', 'x-kept': 'k' },
    options(),
  )
  assert.equal(out['x-secret'], undefined)
  assert.equal(out.x_secret, undefined)
  assert.equal(out['x-kept'], 'k')
})

test('URL-rewrite headers (X-Original-URL, X-Rewrite-URL, X-Original-URI, X-Envoy-Original-Path) never reach the upstream', () => {
  const out = upstreamRequestHeaders(
    {
      'x-original-url': '/admin',
      'x-rewrite-url': '/admin',
      'x-original-uri': '/admin',
      'x-envoy-original-path': '/admin',
      accept: '*/*',
    },
    options(),
  )
  assert.deepEqual(out.accept, '*/*')
  for (const name of URL_REWRITE_HEADERS) assert.equal(out[name], undefined, name)
})

test('Proxy (httpoxy: HTTP_PROXY in CGI-style upstreams) and host-override headers never reach the upstream, in any spelling', () => {
  const out = upstreamRequestHeaders(
    {
      proxy: 'http://evil:3128',
      PROXY: 'http://evil:3128',
      'x-host': 'evil',
      x_original_host: 'evil',
      'x-http-host-override': 'evil',
      'x-forwarded-server': 'evil',
      accept: '*/*',
    },
    options(),
  )
  assert.deepEqual(
    Object.keys(out)
      .filter((name) => !name.startsWith('x-forwarded-') && name !== 'authorization')
      .sort(),
    ['accept'],
  )
})

test('a WebSocket upgrade forwards Sec-WebSocket-* only as spelt with dashes, never Sec_WebSocket_*', () => {
  const out = upstreamRequestHeaders(
    { 'sec-websocket-protocol': 'chat', sec_websocket_protocol: 'evil', 'sec-websocket_key': 'evil' },
    options({ websocket: true }),
  )
  assert.equal(out['sec-websocket-protocol'], 'chat')
  assert.equal(out.sec_websocket_protocol, undefined)
  assert.equal(out['sec-websocket_key'], undefined)
})

test('an ordinary header with underscores in its name still reaches the upstream', () => {
  const out = upstreamRequestHeaders({ x_tenant_id: 't1', 'x-request_id': 'r1' }, options())
  assert.equal(out.x_tenant_id, 't1')
  assert.equal(out['x-request_id'], 'r1')
})

describe("the upstream Set-Cookie filter (gatehouse's cookies, nameless cookies, look-alike values)", () => {
  const dropped: Array<[string, string]> = [
    [`=${COOKIE}=x; Path=/; Secure`, 'a nameless cookie, which a browser sends back as "__Host-gatehouse=x"'],
    [` =${COOKIE}=x`, 'a name of spaces only is no name'],
    [`\t=${COOKIE}=x`, 'a name of a tab only is no name'],
    [`${COOKIE}`, 'no "=": the whole pair is the value of a nameless cookie'],
    [`${COOKIE}; Path=/`, 'no "=" before the first ";"'],
    ['=x', 'any nameless cookie, whatever its value'],
    ['=', 'an empty pair'],
    [`${COOKIE}2=x`, "a longer name that starts with gatehouse's"],
    [`${COOKIE}-admin=x`, "another partition's session cookie"],
    [`${COOKIE}C1=x`, 'a cookie-mode chunk'],
    [`${COOKIE}.login.0123456789abcdef=x`, 'a pending-login cookie'],
    [`${COOKIE} = x`, 'spaces around "="'],
    [`  ${COOKIE}=x`, 'leading spaces'],
    ['__HOST-GATEHOUSE=x', 'another case (case-insensitive)'],
    ['__host-gatehouse=x', 'lower case'],
    [`x=${COOKIE}=y`, "a value that starts with gatehouse's cookie name"],
    [`x = ${COOKIE}=y`, 'the same with spaces around "="'],
    [`x="${COOKIE}=y"`, 'the same, double-quoted'],
    [`x=${COOKIE}`, 'a value that is the name alone'],
    ['x=__HOST-gatehouse=y', 'a look-alike value in another case'],
    [`x=${COOKIE}.login.a=b; Path=/`, 'a value that looks like a pending-login cookie'],
  ]
  const kept = [
    'upstream=1; Path=/',
    'gatehouse=1',
    '__Host-gatehous=1',
    '__Host-other=1; Path=/; Secure',
    '__Secure-gatehouse=1',
    `x=a${COOKIE}`,
    `x=a; ${COOKIE}=planted-in-an-attribute`,
    `theme=dark; Path=/${COOKIE}`,
    'x="quoted"',
  ]

  for (const [line, why] of dropped) {
    test(`${JSON.stringify(line)} is dropped: ${why}`, () => {
      assert.equal(isGatehouseCookieLine(line, COOKIE), true)
      assert.equal(
        downstreamResponseHeaders({ 'set-cookie': ['upstream=1', line] }, COOKIE)['set-cookie']?.toString(),
        'upstream=1',
      )
    })
  }

  test("cookies that only resemble gatehouse's elsewhere (in an attribute, inside the value, a shorter or other name) pass", () => {
    for (const line of kept) assert.equal(isGatehouseCookieLine(line, COOKIE), false, line)
    assert.deepEqual(downstreamResponseHeaders({ 'set-cookie': kept }, COOKIE)['set-cookie'], kept)
  })
})

describe('Cache-Control on answers to calls that carried a user token', () => {
  test('without an upstream Cache-Control the answer becomes private', () => {
    assert.equal(
      downstreamResponseHeaders({ 'content-type': 'application/json' }, COOKIE, { userToken: true })['cache-control'],
      'private',
    )
  })

  test('a blank upstream Cache-Control says nothing and is made private too', () => {
    assert.equal(
      downstreamResponseHeaders({ 'cache-control': ' ' }, COOKIE, { userToken: true })['cache-control'],
      'private',
    )
  })

  test("an upstream's own Cache-Control is never changed, even public or a list of lines", () => {
    for (const value of [
      'public, max-age=60',
      'no-store',
      'max-age=0',
      's-maxage=600',
      'no-cache',
      'private, max-age=5',
    ]) {
      assert.equal(
        downstreamResponseHeaders({ 'cache-control': value }, COOKIE, { userToken: true })['cache-control'],
        value,
      )
    }
    assert.deepEqual(
      downstreamResponseHeaders({ 'cache-control': ['public', 'max-age=60'] }, COOKIE, { userToken: true })[
        'cache-control'
      ],
      ['public', 'max-age=60'],
    )
  })

  test('without a user token (no token, a client token) nothing is added', () => {
    assert.equal(downstreamResponseHeaders({ 'content-type': 'text/plain' }, COOKIE)['cache-control'], undefined)
    assert.equal(
      downstreamResponseHeaders({ 'content-type': 'text/plain' }, COOKIE, { userToken: false })['cache-control'],
      undefined,
    )
  })
})

test('an upstream header spelled keep_alive is dropped under Connection: keep-alive, like every name it lists', () => {
  const out = downstreamResponseHeaders(
    { connection: 'keep-alive', keep_alive: 'timeout=5', close: 'x', 'content-type': 'text/plain' },
    '__Host-gatehouse',
  )
  assert.deepEqual(Object.keys(out), ['close', 'content-type'], 'close is no hop-by-hop name unless listed')
  const closing = downstreamResponseHeaders({ connection: 'close', close: 'x', 'content-type': 'text/plain' }, 'g')
  assert.deepEqual(Object.keys(closing), ['content-type'])
})

test('long header names (not remembered between requests) are judged the same every time', () => {
  const forwarded = `x-forwarded-${'a'.repeat(100)}`
  const custom = `x-app-${'b'.repeat(100)}`
  for (let round = 0; round < 3; round++) {
    const out = upstreamRequestHeaders({ [forwarded]: '1', [custom]: '2', accept: '*/*' }, options())
    assert.equal(out[forwarded], undefined, `round ${round}: a client-sent X-Forwarded-* never passes`)
    assert.equal(out[custom], '2', `round ${round}`)
  }
})
