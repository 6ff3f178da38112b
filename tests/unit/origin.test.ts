import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import { test } from 'node:test'
import { hasUsableHostHeader, requestOrigin } from '../../src/http/origin.ts'

/** As node:http builds it: `headers` keeps the first of repeated Host lines, `rawHeaders` has them all. */
function request(headers: Record<string, string | string[]>): IncomingMessage {
  const rawHeaders = Object.entries(headers).flatMap(([name, value]) => (Array.isArray(value) ? value : [value]).flatMap((v) => [name === 'host' ? 'Host' : name, v]))
  const host = headers.host
  const first = Array.isArray(host) ? { ...headers, host: host[0] } : headers
  return { headers: first, rawHeaders, socket: {} } as unknown as IncomingMessage
}

test('publicOrigin wins over Host and forwarded headers', () => {
  assert.equal(requestOrigin(request({ host: 'evil.example', 'x-forwarded-host': 'evil2.example' }), 'https://app.example', true), 'https://app.example')
})

test('without trustProxy, X-Forwarded-* are ignored', () => {
  assert.equal(requestOrigin(request({ host: 'app.example:8080', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https' }), undefined, false), 'http://app.example:8080')
})

test('with trustProxy, the value nearest to gatehouse (the last) is used, not one the client prepended', () => {
  const req = request({ host: 'internal:8080', 'x-forwarded-host': 'evil.example, app.example', 'x-forwarded-proto': 'http, https' })
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
