import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { toClaimRecords, toClaims } from '../../src/oidc/claims.ts'

test('id_token claims come first in order, protocol claims are dropped, arrays repeat and objects become JSON', () => {
  const claims = toClaims(
    {
      iss: 'https://idp',
      aud: 'c',
      exp: 1,
      iat: 1,
      nonce: 'n',
      at_hash: 'h',
      sub: 'u1',
      sid: 's1',
      amr: ['pwd', 'otp'],
      address: { country: 'NZ' },
    },
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
  const claims = toClaims(
    { sub: 'u1', name: 'From id_token' },
    { sub: 'u1', name: 'From userinfo', email: 'u1@example.test' },
  )
  assert.deepEqual(claims, [
    { type: 'sub', value: 'u1' },
    { type: 'name', value: 'From id_token' },
    { type: 'email', value: 'u1@example.test' },
  ])
})

test("an IdP cannot supply bff: claims (they would steer the SPA's logout navigation)", () => {
  const claims = toClaims(
    { sub: 'u1', 'bff:logout_url': 'https://evil.example/' },
    { 'bff:logout_url': 'javascript:alert(1)//', 'bff:session_expires_in': 99999 },
  )
  assert.deepEqual(claims, [{ type: 'sub', value: 'u1' }])
})

describe("claims in Duende.BFF's /bff/user shape", () => {
  const XSD = 'http://www.w3.org/2001/XMLSchema#'

  test('values become strings with the type ASP.NET would name; strings get valueType null and objects "JSON"', () => {
    const records = toClaimRecords([
      { type: 'name', value: 'Alice' },
      { type: 'email_verified', value: true },
      { type: 'flag', value: false },
      { type: 'age', value: 42 },
      { type: 'big', value: 2 ** 40 },
      { type: 'negative', value: -(2 ** 31) },
      { type: 'ratio', value: 0.5 },
      { type: 'address', value: '{"country":"NZ"}', valueType: 'json' },
      { type: 'empty', value: '' },
    ])
    assert.deepEqual(records, [
      { type: 'name', value: 'Alice', valueType: null },
      { type: 'email_verified', value: 'true', valueType: `${XSD}boolean` },
      { type: 'flag', value: 'false', valueType: `${XSD}boolean` },
      { type: 'age', value: '42', valueType: `${XSD}integer32` },
      { type: 'big', value: '1099511627776', valueType: `${XSD}integer64` },
      { type: 'negative', value: '-2147483648', valueType: `${XSD}integer32` },
      { type: 'ratio', value: '0.5', valueType: `${XSD}double` },
      { type: 'address', value: '{"country":"NZ"}', valueType: 'JSON' },
      { type: 'empty', value: '', valueType: null },
    ])
  })

  test('a string that looks like another type stays a plain string (the IdP sent a string)', () => {
    assert.deepEqual(
      toClaimRecords([
        { type: 'x', value: 'true' },
        { type: 'y', value: '42' },
        { type: 'z', value: '{"a":1}' },
      ]),
      [
        { type: 'x', value: 'true', valueType: null },
        { type: 'y', value: '42', valueType: null },
        { type: 'z', value: '{"a":1}', valueType: null },
      ],
    )
  })
})
