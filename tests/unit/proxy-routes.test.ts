import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { RemoteApiConfig } from '../../src/config/types.ts'
import { isPlainSubpath, RemoteApiRoutes, type ApiMatch } from '../../src/proxy/routes.ts'

function api(path: string, target: string): RemoteApiConfig {
  return {
    path,
    target,
    token: 'none',
    antiForgery: true,
    timeoutMs: 30_000,
    websockets: false,
    methods: undefined,
    maxBodyBytes: undefined,
    resource: undefined,
    scopes: [],
    connections: 128,
    queue: 256,
  }
}

function routed(routes: RemoteApiRoutes, target: string): ApiMatch {
  const match = routes.match(target)
  assert.ok(match !== undefined && match !== 'escape', `${target} should be routed, got ${String(match)}`)
  return match
}

/** Paths under `/api` that leave the prefix once an upstream decodes or normalises them. */
const ESCAPES = [
  '/api/../bff/user',
  '/api/..',
  '/api/./x',
  '/api/.',
  '/api/x/..',
  '/api/x/../../bff/user',
  '/api/%2e%2e/x',
  '/api/%2E%2E/x',
  '/api/.%2e/x',
  '/api/%2e./x',
  '/api/%2e/x',
  '/api/x/%2e%2e',
  '/api/x%2F..%2Fy',
  '/api/x%2f..%2fy',
  '/api/%2f',
  '/api/%2F%2Fevil.example',
  '/api/%5c..%5cx',
  '/api/%5C',
  '/api/x\\y',
  '/api/..\\bff',
  '/api/%252e%252e/x',
  '/api/%252E%252E/bff/user',
  '/api/%25252e%25252e/x',
  '/api/x%252f..%252fy',
  '/api//x',
  '/api//',
  '/api/x//y',
  '/api/%00',
  '/api/%0a',
  '/api/%0d%0aX-Injected:%201',
  '/api/%09',
  '/api/%7f',
  '/api/%zz',
  '/api/x%2',
  '/api/%e0%80%ae%e0%80%ae/x',
  '/api/..%00/',
  '/api/x/%2e%2e%2f..',
  '/api/x/..%2f',
  '/api/x/.%252e/',
  '/api/x/..;/bff/user',
  '/api/..;jsessionid=1/bff/user',
  '/api/x/.;/y',
  '/api/x/%2e%2e%3b/bff',
  '/api/x y',
]

test('the prefix is stripped and the target base path put in front, query kept', () => {
  const routes = new RemoteApiRoutes([api('/orders', 'http://h/v2')])
  const match = routed(routes, '/orders/7?x=1')
  assert.equal(match.upstreamPath, '/v2/7?x=1')
  assert.equal(match.api.origin, 'http://h')
  assert.equal(match.api.basePath, '/v2')
  assert.equal(routed(routes, '/orders').upstreamPath, '/v2')
  assert.equal(routed(routes, '/orders/').upstreamPath, '/v2/')
  assert.equal(routed(routes, '/orders?x=1').upstreamPath, '/v2?x=1')
})

test('a target without a path maps the prefix onto the upstream root', () => {
  const routes = new RemoteApiRoutes([api('/api', 'http://127.0.0.1:5000')])
  assert.equal(routed(routes, '/api/orders/7?x=1').upstreamPath, '/orders/7?x=1')
  assert.equal(routed(routes, '/api').upstreamPath, '/')
  assert.equal(routed(routes, '/api?x=1').upstreamPath, '/?x=1')
  assert.equal(routed(routes, '/api/').upstreamPath, '/')
})

test('a target base path with a trailing slash does not double the slash', () => {
  const routes = new RemoteApiRoutes([api('/orders', 'http://h/v2/')])
  assert.equal(routed(routes, '/orders/7').upstreamPath, '/v2/7')
  assert.equal(routed(routes, '/orders').upstreamPath, '/v2')
})

test('the longest matching prefix wins, whatever the configuration order', () => {
  for (const order of [
    [api('/api', 'http://short'), api('/api/orders', 'http://long')],
    [api('/api/orders', 'http://long'), api('/api', 'http://short')],
  ]) {
    const routes = new RemoteApiRoutes(order)
    assert.equal(routed(routes, '/api/orders/7').api.origin, 'http://long')
    assert.equal(routed(routes, '/api/orders/7').upstreamPath, '/7')
    assert.equal(routed(routes, '/api/orders').api.origin, 'http://long')
    assert.equal(routed(routes, '/api/ordersX').api.origin, 'http://short')
    assert.equal(routed(routes, '/api/ordersX').upstreamPath, '/ordersX')
    assert.equal(routed(routes, '/api/other').api.origin, 'http://short')
  }
})

test('a path that only shares the prefix as a string is not under it', () => {
  const routes = new RemoteApiRoutes([api('/api', 'http://h')])
  for (const path of [
    '/apiX',
    '/apix/1',
    '/api-v2/orders',
    '/api.json',
    '/ap',
    '/',
    '/bff/user',
    '/API/orders',
    '/x/api/orders',
  ]) {
    assert.equal(routes.match(path), undefined, path)
  }
})

test('no configured API matches nothing', () => {
  const routes = new RemoteApiRoutes([])
  assert.equal(routes.size, 0)
  assert.equal(routes.match('/api/x'), undefined)
})

test('a path that becomes an API path only after normalisation is not routed', () => {
  const routes = new RemoteApiRoutes([api('/api', 'http://h')])
  for (const path of ['/x/../api/orders', '/./api/orders', '/%61pi/orders', '//api/orders']) {
    assert.equal(routes.match(path), undefined, path)
  }
})

test('the query string is passed on verbatim, encodings and odd characters included', () => {
  const routes = new RemoteApiRoutes([api('/api', 'http://h/base')])
  for (const query of [
    '?x=1&y=%20',
    '?a=%2e%2e%2f..&b=../..',
    '?q=a+b&q=%2B',
    '?redirect=https%3A%2F%2Fevil.example',
    '?',
    '?x=1?y=2',
    '?%zz=1',
    '?k=%E2%82%AC',
  ]) {
    assert.equal(routed(routes, `/api/orders${query}`).upstreamPath, `/base/orders${query}`, query)
  }
})

test('a query with control characters, a backslash or a fragment marker is refused', () => {
  const routes = new RemoteApiRoutes([api('/api', 'http://h')])
  for (const target of ['/api/x?a=\r\nX-Injected: 1', '/api/x?a=\u0000', '/api/x?a=\\b', '/api/x?a=1#frag']) {
    assert.equal(routes.match(target), 'escape', JSON.stringify(target))
  }
})

test(`every path-escape payload under the prefix (${ESCAPES.length}) is refused as an escape`, () => {
  assert.ok(ESCAPES.length >= 25)
  const routes = new RemoteApiRoutes([api('/api', 'http://h/v2')])
  for (const path of ESCAPES) {
    assert.equal(routes.match(path), 'escape', path)
    assert.equal(routes.match(`${path}?x=1`), 'escape', `${path}?x=1`)
    assert.equal(isPlainSubpath(path.slice('/api'.length)), false, path)
  }
})

test('escape payloads are refused also under a nested prefix and a target base path', () => {
  const routes = new RemoteApiRoutes([api('/api', 'http://short'), api('/api/orders', 'http://long/v2')])
  for (const path of ESCAPES) {
    const nested = path.replace(/^\/api/, '/api/orders')
    assert.equal(routes.match(nested), 'escape', nested)
  }
})

test('legitimate paths with encodings, spaces encoded and trailing slashes are routed unchanged', () => {
  const routes = new RemoteApiRoutes([api('/api', 'http://h/v2')])
  for (const rest of [
    '/file%2Ejson',
    '/100%25',
    '/a%20b',
    '/x/',
    '/x',
    '/orders/7',
    '/...',
    '/..foo',
    '/foo..',
    '/.well-known/x',
    '/a.b.c',
    '/%E2%82%AC',
    '/a;b=1',
    "/it's~fine!$&'()*+,=:@",
    '/%41',
    '/x%2520y',
  ]) {
    const match = routed(routes, `/api${rest}`)
    assert.equal(match.upstreamPath, `/v2${rest}`, rest)
    assert.equal(isPlainSubpath(rest), true, rest)
  }
})

test('isPlainSubpath accepts the empty rest and refuses a rest that does not start with a slash', () => {
  assert.equal(isPlainSubpath(''), true)
  assert.equal(isPlainSubpath('/'), true)
  assert.equal(isPlainSubpath('x'), false)
  assert.equal(isPlainSubpath('..'), false)
})

test('a raw "#" or a double-encoded separator next to invalid UTF-8 escapes cannot slip through', () => {
  const routes = new RemoteApiRoutes([
    {
      path: '/api',
      target: 'http://127.0.0.1:5000/tenant/42/v2',
      token: 'user',
      antiForgery: true,
      timeoutMs: 1000,
      websockets: false,
      methods: undefined,
      maxBodyBytes: undefined,
      resource: undefined,
      scopes: [],
      connections: 128,
      queue: 256,
    },
  ])
  for (const target of [
    '/api/..#',
    '/api/x#y',
    '/api/%252e%252e%252f%25ff/admin',
    '/api/%2523x',
    '/api/%253fx',
    '/api/%e0%80%ae%e0%80%ae/x',
  ]) {
    assert.equal(routes.match(target), 'escape', target)
  }
  assert.notEqual(routes.match('/api/%25ff'), 'escape', 'a literal percent sign before "ff" is still a plain path')
})
