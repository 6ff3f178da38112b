import assert from 'node:assert/strict'
import { test } from 'node:test'
import { toClaims } from '../../src/oidc/claims.ts'

test('id_token claims come first in order, protocol claims are dropped, arrays repeat and objects become JSON', () => {
  const claims = toClaims(
    { iss: 'https://idp', aud: 'c', exp: 1, iat: 1, nonce: 'n', at_hash: 'h', sub: 'u1', sid: 's1', amr: ['pwd', 'otp'], address: { country: 'NZ' } },
    undefined,
  )
  assert.deepEqual(claims, [
    { type: 'sub', value: 'u1' },
    { type: 'sid', value: 's1' },
    { type: 'amr', value: 'pwd' },
    { type: 'amr', value: 'otp' },
    { type: 'address', value: '{"country":"NZ"}', valueType: 'json' },
  ])
})

test('userinfo adds only claim types the id_token did not carry', () => {
  const claims = toClaims({ sub: 'u1', name: 'From id_token' }, { sub: 'u1', name: 'From userinfo', email: 'u1@example.test' })
  assert.deepEqual(claims, [
    { type: 'sub', value: 'u1' },
    { type: 'name', value: 'From id_token' },
    { type: 'email', value: 'u1@example.test' },
  ])
})

test('an IdP cannot supply bff: claims (they would steer the SPA\'s logout navigation)', () => {
  const claims = toClaims({ sub: 'u1', 'bff:logout_url': 'https://evil.example/' }, { 'bff:logout_url': 'javascript:alert(1)//', 'bff:session_expires_in': 99999 })
  assert.deepEqual(claims, [{ type: 'sub', value: 'u1' }])
})
