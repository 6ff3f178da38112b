import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import { test } from 'node:test'
import {
  derivedFrontendOrigin,
  hasUsableHostHeader,
  isOriginOfHost,
  OwnOrigins,
  requestedHost,
  requestOrigin,
} from '../../src/http/origin.ts'

/** As node:http builds it: `headers` keeps the first of repeated Host lines, `rawHeaders` has them all. */
function request(headers: Record<string, string | string[]>): IncomingMessage {
  const rawHeaders = Object.entries(headers).flatMap(([name, value]) =>
    (Array.isArray(value) ? value : [value]).flatMap((v) => [name === 'host' ? 'Host' : name, v]),
  )
  const host = headers.host
  const first = Array.isArray(host) ? { ...headers, host: host[0] } : headers
  return { headers: first, rawHeaders, socket: {} } as unknown as IncomingMessage
}

test('publicOrigin wins over Host and forwarded headers', () => {
  assert.equal(
    requestOrigin(request({ host: 'evil.example', 'x-forwarded-host': 'evil2.example' }), 'https://app.example', true),
    'https://app.example',
  )
})

test('without trustProxy, X-Forwarded-* are ignored', () => {
  assert.equal(
    requestOrigin(
      request({ host: 'app.example:8080', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https' }),
      undefined,
      false,
    ),
    'http://app.example:8080',
  )
})

test('with trustProxy, the value nearest to gatehouse (the last) is used, not one the client prepended', () => {
  const req = request({
    host: 'internal:8080',
    'x-forwarded-host': 'evil.example, app.example',
    'x-forwarded-proto': 'http, https',
  })
  assert.equal(requestOrigin(req, undefined, true), 'https://app.example')
})

test('malformed Host values give no origin', () => {
  for (const host of ['evil/x', 'a b', '[::1', 'user@host', 'host?x', '']) {
    assert.equal(requestOrigin(request({ host }), undefined, false), undefined, host)
  }
})

test('two Host lines or a malformed Host are not usable; an absent one is left to publicOrigin', () => {
  assert.equal(hasUsableHostHeader(request({ host: ['a.example', 'b.example'] })), false)
  assert.equal(hasUsableHostHeader(request({ host: 'a b' })), false)
  assert.equal(hasUsableHostHeader(request({ host: 'gatehouse_app:8080' })), true)
  assert.equal(hasUsableHostHeader(request({})), true)
})

test('OwnOrigins: a host matches an origin case-insensitively, with the default port normalised; a trailing dot, another port or name does not', () => {
  const own = new OwnOrigins(['https://app.example.com'])
  for (const host of ['app.example.com', 'APP.EXAMPLE.COM', 'App.Example.Com:443', 'app.example.com:0443'])
    assert.equal(own.match(host), 'https://app.example.com', host)
  for (const host of [
    'app.example.com.',
    'app.example.com.:443',
    'app.example.com:80',
    'app.example.com:8443',
    'evil.example.com',
    'app.example.com.evil',
    'xapp.example.com',
    'example.com',
    '[::1]',
    '127.0.0.1',
    'app.example.com:443.evil',
    'app.example.com/x',
    'a b',
    '',
  ]) {
    assert.equal(own.match(host), undefined, host)
  }
  assert.equal(own.match(undefined), undefined)
})

test('OwnOrigins: an origin with a port needs that port; IP literals compare in canonical form', () => {
  const own = new OwnOrigins(['http://127.0.0.1:8080', 'http://[::1]:8080'])
  assert.equal(own.match('127.0.0.1:8080'), 'http://127.0.0.1:8080')
  assert.equal(own.match('127.0.0.1'), undefined, 'no port is port 80 here')
  assert.equal(own.match('127.0.0.1:8081'), undefined)
  assert.equal(own.match('127.0.0.1:8080.evil'), undefined)
  assert.equal(own.match('localhost:8080'), undefined, 'another name of the same address is another origin')
  assert.equal(own.match('[::1]:8080'), 'http://[::1]:8080')
  assert.equal(own.match('[0:0:0:0:0:0:0:1]:8080'), 'http://[::1]:8080')
  assert.equal(own.match('[::1]'), undefined)
  assert.equal(own.match('[::ffff:127.0.0.1]:8080'), undefined)
})

test('OwnOrigins: several origins, each found by its own host', () => {
  const own = new OwnOrigins(['https://app.example.com', 'https://admin.example.com', 'https://app.example.com:8443'])
  assert.equal(own.match('admin.example.com'), 'https://admin.example.com')
  assert.equal(own.match('app.example.com:8443'), 'https://app.example.com:8443')
  assert.equal(own.match('app.example.com'), 'https://app.example.com')
  assert.deepEqual(own.all, ['https://app.example.com', 'https://admin.example.com', 'https://app.example.com:8443'])
})

test('requestedHost: the Host header, or with trustProxy the nearest X-Forwarded-Host', () => {
  const req = request({ host: '10.0.0.7:8080', 'x-forwarded-host': 'evil.example, app.example.com' })
  assert.equal(requestedHost(req, false), '10.0.0.7:8080')
  assert.equal(requestedHost(req, true), 'app.example.com')
  assert.equal(requestedHost(request({ host: '10.0.0.7:8080' }), true), '10.0.0.7:8080')
  assert.equal(requestedHost(request({}), true), undefined)
  assert.equal(
    requestedHost(request({ ':authority': 'app.example.com' }), false),
    'app.example.com',
    'HTTP/2 sends :authority instead of Host',
  )
})

test("a host-based frontend's default origin: publicOrigin's scheme, and its port when the host names none", () => {
  assert.equal(derivedFrontendOrigin('https://app.example.com', 'admin.example.com'), 'https://admin.example.com')
  assert.equal(
    derivedFrontendOrigin('https://app.example.com', 'admin.example.com:8443'),
    'https://admin.example.com:8443',
  )
  assert.equal(derivedFrontendOrigin('https://app.example.com', 'admin.example.com:443'), 'https://admin.example.com')
  assert.equal(
    derivedFrontendOrigin('https://app.example.com:8443', 'admin.example.com'),
    'https://admin.example.com:8443',
  )
  assert.equal(derivedFrontendOrigin('http://127.0.0.1:8080', 'localhost'), 'http://localhost:8080')
  assert.equal(derivedFrontendOrigin('http://127.0.0.1:8080', 'localhost:9000'), 'http://localhost:9000')
})

test('isOriginOfHost: the same name, and the same port when the host gives one', () => {
  assert.equal(isOriginOfHost('https://admin.example.com', 'admin.example.com'), true)
  assert.equal(isOriginOfHost('https://admin.example.com:8443', 'admin.example.com'), true)
  assert.equal(isOriginOfHost('https://admin.example.com', 'ADMIN.example.com:443'), true)
  assert.equal(isOriginOfHost('https://admin.example.com', 'admin.example.com:8443'), false)
  assert.equal(isOriginOfHost('https://app.example.com', 'admin.example.com'), false)
})
