import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { isMalformedTarget } from '../../../src/http/context.ts'
import { anyString, hostileString, SEED, structuralString } from './arbitraries.ts'

// gatehouse builds a request's URL only when an endpoint asks for it (a proxied call never does), and
// decides up front, with a cheap check, whether the target would fail to parse. The shortcut must
// agree with the URL parser on every path target: a refused target is one the parser refuses, and an
// accepted one always parses (endpoints reading ctx.url can never throw).

const ORIGINS = ['http://app.example', 'https://app.example:8443', 'http://127.0.0.1:8080']

test('isMalformedTarget agrees with the WHATWG URL parser on every "/…" target', () => {
  const target = fc.oneof(anyString(30), hostileString(), structuralString()).map((rest) => `/${rest}`)
  fc.assert(
    fc.property(target, fc.constantFrom(...ORIGINS), (path, origin) => {
      assert.equal(isMalformedTarget(path, origin), !URL.canParse(path, origin), JSON.stringify(path))
    }),
    { seed: SEED, numRuns: 20_000 },
  )
})

test('the targets that name a host or carry a backslash are the ones checked by the parser', () => {
  for (const path of ['//[', '/\\[', '//a b', '/\\\\x y'])
    assert.equal(isMalformedTarget(path, 'http://app.example'), true, path)
  for (const path of ['/api/orders?x=1', '/%2e%2e/', '/a:b@c', '/[::1]', '//evil.example/x'])
    assert.equal(isMalformedTarget(path, 'http://app.example'), false, path)
})
