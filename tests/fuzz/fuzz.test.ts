import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { test } from 'node:test'
import { CompactEncrypt, exportJWK, generateKeyPair, SignJWT } from 'jose'
import { BACKCHANNEL_EVENT, createLogoutTokenVerifier, LogoutTokenError } from '../../src/oidc/logout-token.ts'
import { CookieSessions } from '../../src/session/cookie-sessions.ts'
import { generateKey, KeyRing } from '../../src/session/seal.ts'
import { fuzzCookieDecoder } from './cookie-decoder.fuzz.ts'
import { fuzzLogoutToken } from './logout-token.fuzz.ts'

// The fuzz targets in `npm test`: a bounded number of iterations with a fixed seed, so a run is
// reproducible and quick. `npm run fuzz` runs them far longer (tests/fuzz/run.ts).
const SEED = 20_260_611

test('fuzz: the logout-token verifier never throws unexpectedly, never accepts a bad signature or bad claims, accepts valid tokens', async () => {
  const stats = await fuzzLogoutToken({ iterations: 1_200, seed: SEED })
  assert.equal(stats.iterations, 1_200)
  assert.ok((stats.outcomes.accepted ?? 0) > 100 && (stats.outcomes.refused ?? 0) > 500, JSON.stringify(stats.outcomes))
})

test('fuzz: the cookie decoder never throws and never returns a session from a changed cookie', async () => {
  const stats = await fuzzCookieDecoder({ iterations: 3_000, seed: SEED })
  assert.equal(stats.iterations, 3_000)
  assert.ok(
    (stats.outcomes.session ?? 0) > 100 && (stats.outcomes['no session'] ?? 0) > 1_000,
    JSON.stringify(stats.outcomes),
  )
})

// What the fuzzers found, pinned as plain regression tests.

test('found by fuzzing: a validly signed logout token whose typ is not a string is refused as a token (400), not a TypeError (502)', async () => {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true })
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' }
  const server = createServer((_req, res) =>
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] })),
  )
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  try {
    const now = 1_800_000_000
    const verify = createLogoutTokenVerifier({
      issuer: 'https://idp.example',
      clientId: 'c',
      jwks: `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`,
      algorithms: ['RS256'],
      now: () => now * 1000,
    })
    for (const typ of [true, 5, null, ['logout+jwt'], { a: 1 }]) {
      const token = await new SignJWT({
        iss: 'https://idp.example',
        aud: 'c',
        iat: now,
        jti: 'j',
        sid: 's',
        events: { [BACKCHANNEL_EVENT]: {} },
      })
        .setProtectedHeader({ alg: 'RS256', kid: 'k1', typ: typ as unknown as string })
        .sign(privateKey)
      await assert.rejects(verify(token), LogoutTokenError, JSON.stringify(typ))
    }
  } finally {
    server.close()
  }
})

test('found by fuzzing: a cookie-mode JWE under the right key whose payload is not an object is no session, not a TypeError', async () => {
  const keyRing = new KeyRing([generateKey()])
  const sessions = new CookieSessions({
    keyRing,
    policy: { lifetimeMs: 3_600_000, sliding: false, absoluteLifetimeMs: 3_600_000 },
    cookie: { name: '__Host-g', sameSite: 'lax', maxAgeSec: 60 },
  })
  const { id, secret } = keyRing.current()
  for (const payload of ['null', '[]', '"x"', '5', 'true']) {
    const jwe = await new CompactEncrypt(new TextEncoder().encode(payload))
      .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', kid: id })
      .encrypt(secret)
    assert.equal(await sessions.read(new Map([['__Host-g', jwe]]), 'default', { slide: false }, []), undefined, payload)
  }
})
