import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { test } from 'node:test'
import { calculateJwkThumbprint, decodeProtectedHeader, EmbeddedJWK, jwtVerify } from 'jose'
import { proofFor } from '../../src/proxy/forward.ts'
import type { ApiMatch } from '../../src/proxy/routes.ts'
import { createDpopKey, dpopProof, DpopKeys, generateDpopJwk } from '../../src/tokens/dpop.ts'

for (const alg of ['ES256', 'ES384', 'ES512'] as const) {
  test(`an ${alg} proof verifies with its embedded public key and says which request it is for (RFC 9449 §4.2)`, async () => {
    const key = await createDpopKey(alg)
    const signedFrom = Math.floor(Date.now() / 1000)
    const proof = await dpopProof(
      key,
      'PATCH',
      new URL('https://api.example:8443/v2/orders/7?x=1#top'),
      'the-access-token',
    )
    const signedBy = Math.ceil(Date.now() / 1000)
    const { payload, protectedHeader } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: [alg] })
    assert.equal(protectedHeader.alg, alg)
    assert.deepEqual(Object.keys(protectedHeader.jwk!).sort(), ['crv', 'kty', 'x', 'y'], 'the public key only')
    assert.equal(await calculateJwkThumbprint(protectedHeader.jwk!), key.thumbprint)
    assert.equal(payload.htm, 'PATCH')
    assert.equal(payload.htu, 'https://api.example:8443/v2/orders/7', 'no query, no fragment')
    assert.equal(payload.ath, createHash('sha256').update('the-access-token').digest('base64url'))
    assert.ok(payload.iat! >= signedFrom && payload.iat! <= signedBy, 'iat is the signing time')
    assert.match(String(payload.jti), /^[0-9a-f-]{36}$/)
  })
}

test('every proof has its own jti, also for the same request', async () => {
  const key = await createDpopKey('ES256')
  const url = new URL('http://127.0.0.1:5000/x')
  const jtis = await Promise.all(
    Array.from(
      { length: 20 },
      async () => (await jwtVerify(await dpopProof(key, 'GET', url, 't'), EmbeddedJWK)).payload.jti,
    ),
  )
  assert.equal(new Set(jtis).size, 20)
})

test('a default port is left out of htu, as the URL standard writes it', async () => {
  const key = await createDpopKey('ES256')
  const { payload } = await jwtVerify(
    await dpopProof(key, 'GET', new URL('https://api.example:443/a'), 't'),
    EmbeddedJWK,
  )
  assert.equal(payload.htu, 'https://api.example/a')
})

test("an upstream call's htu is the path exactly as sent upstream, without query or fragment (not re-encoded by the URL parser)", async () => {
  const key = await createDpopKey('ES256')
  for (const [upstreamPath, htu] of [
    ['/v2/x{y}^z?q=1', 'http://127.0.0.1:5000/v2/x{y}^z'],
    ['/v2/%7Bencoded%7D#frag', 'http://127.0.0.1:5000/v2/%7Bencoded%7D'],
    ['/v2/plain', 'http://127.0.0.1:5000/v2/plain'],
  ] as const) {
    const match = { api: { origin: 'http://127.0.0.1:5000' }, upstreamPath } as unknown as ApiMatch
    const { payload } = await jwtVerify(await proofFor(key, 'GET', match, 't'), EmbeddedJWK)
    assert.equal(payload.htu, htu, upstreamPath)
  }
})

test('a generated JWK is a private key with its alg; DpopKeys imports it once, also when it is parsed again', async () => {
  const jwk = await generateDpopJwk('ES384')
  assert.equal(jwk.alg, 'ES384')
  assert.equal(jwk.crv, 'P-384')
  assert.equal(typeof jwk.d, 'string')
  const keys = new DpopKeys()
  const first = await keys.get(jwk)
  assert.equal(
    await keys.get(JSON.parse(JSON.stringify(jwk))),
    first,
    'the same imported key for the same JWK read anew (a session re-read from the store or cookie)',
  )
  assert.notEqual(await keys.get(await generateDpopJwk('ES384')), first)
  assert.equal(first.keyPair.privateKey.extractable, false, 'the imported private key cannot be exported again')
  assert.equal(first.keyPair.publicKey.extractable, true)
  assert.equal(decodeProtectedHeader(await dpopProof(first, 'GET', new URL('http://h/'), 't')).jwk?.x, jwk.x)
})
