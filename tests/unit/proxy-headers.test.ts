import assert from 'node:assert/strict'
import type { IncomingHttpHeaders } from 'node:http'
import { test } from 'node:test'
import { downstreamResponseHeaders, HOP_BY_HOP, upstreamRequestHeaders, type UpstreamHeaderOptions } from '../../src/proxy/headers.ts'

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
  const incoming: IncomingHttpHeaders = { connection: 'X-Secret , x-other,keep-alive', 'x-secret': 's3cret', 'x-other': 'o', 'x-kept': 'k' }
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
  const out = upstreamRequestHeaders({ 'x-requested-by': 'app', 'x-csrf': '1' }, options({ antiForgeryHeader: 'x-requested-by' }))
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
  assert.equal(bound.authorization, 'DPoP the-access-token', 'a DPoP-bound token goes with the DPoP scheme (RFC 9449 §7.1)')
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
  assert.equal(upstreamRequestHeaders({ 'x-forwarded-for': '198.51.100.1' }, options({ clientIp: undefined }))['x-forwarded-for'], undefined)
  assert.equal(upstreamRequestHeaders({ 'x-forwarded-for': '198.51.100.1' }, options({ clientIp: undefined, trustProxy: true }))['x-forwarded-for'], '198.51.100.1')
})

test('WebSocket handshake fields are forwarded only for a WebSocket upgrade', () => {
  const incoming: IncomingHttpHeaders = { 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-version': '13', 'sec-websocket-protocol': 'chat', connection: 'Upgrade', upgrade: 'websocket' }
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
  const incoming: IncomingHttpHeaders = { accept: 'text/html', 'accept-language': 'de', 'user-agent': 'test', 'if-none-match': '"abc"', 'x-custom': 'kept', range: 'bytes=0-9' }
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
  assert.equal(downstreamResponseHeaders({ 'set-cookie': `${COOKIE}=planted; Path=/` }, COOKIE)['set-cookie'], undefined)
  assert.equal(downstreamResponseHeaders({ 'set-cookie': [`${COOKIE}=a`, `${COOKIE}.login.x=b`] }, COOKIE)['set-cookie'], undefined)
})

test('the session cookie name in use is the one protected', () => {
  const out = downstreamResponseHeaders({ 'set-cookie': ['__Host-gatehouse=ok', '__Host-custom=planted', '__Host-custom.login.x=planted'] }, '__Host-custom')
  assert.deepEqual(out['set-cookie'], ['__Host-gatehouse=ok'])
})

test('undefined header values are skipped both ways', () => {
  assert.deepEqual(downstreamResponseHeaders({ 'x-a': undefined, 'x-b': 'b' }, COOKIE), { 'x-b': 'b' })
  const out = upstreamRequestHeaders({ 'x-a': undefined, 'x-b': 'b' }, options())
  assert.equal('x-a' in out, false)
  assert.equal(out['x-b'], 'b')
})

test('client-address headers other than gatehouse\'s X-Forwarded-For are not forwarded', () => {
  const out = upstreamRequestHeaders(
    { 'x-real-ip': '1.2.3.4', 'true-client-ip': '1.2.3.4', 'x-client-ip': '1.2.3.4', 'cf-connecting-ip': '1.2.3.4', 'fastly-client-ip': '1.2.3.4', 'x-cluster-client-ip': '1.2.3.4' },
    { antiForgeryHeader: 'x-csrf', bearer: undefined, clientIp: '10.0.0.9', origin: 'https://app.example', trustProxy: false },
  )
  for (const name of ['x-real-ip', 'true-client-ip', 'x-client-ip', 'cf-connecting-ip', 'fastly-client-ip', 'x-cluster-client-ip']) assert.equal(out[name], undefined, name)
  assert.equal(out['x-forwarded-for'], '10.0.0.9')
})

test('method-override headers never reach the upstream: it acts on the method gatehouse checked (remoteApis[].methods)', () => {
  // node:http hands header names over in lower case, whatever the client sent.
  const out = upstreamRequestHeaders({ 'x-http-method-override': 'DELETE', 'x-http-method': 'PUT', 'x-method-override': 'PATCH', accept: 'application/json' }, options())
  for (const name of ['x-http-method-override', 'x-http-method', 'x-method-override']) assert.equal(out[name], undefined, name)
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
