import { createHash, randomUUID } from 'node:crypto'
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT, type CryptoKey, type JWK } from 'jose'
import type { DpopSigningAlg } from '../config/types.ts'

/**
 * A DPoP key (RFC 9449) ready to sign proofs: imported once, then reused. The proofs for the IdP
 * (token endpoint, userinfo, with the IdP's DPoP-Nonce) are src/oidc/client.ts's; the proofs for
 * API requests are `dpopProof` below.
 */
export interface DpopKey {
  alg: DpopSigningAlg
  /** For the IdP client's DPoP handle (token endpoint, userinfo). */
  keyPair: { privateKey: CryptoKey; publicKey: CryptoKey }
  /** The proof header's `jwk`. */
  publicJwk: JWK
  /** RFC 7638 SHA-256 thumbprint: the `cnf.jkt` of tokens bound to this key. */
  thumbprint: string
}

/** Imported keys kept; a session's key is imported once per process, not per request. */
const CACHE_SIZE = 10_000

/** A fresh key pair as a private JWK (with `alg`), the form sealed into a session. */
export async function generateDpopJwk(alg: DpopSigningAlg): Promise<JWK> {
  const { privateKey } = await generateKeyPair(alg, { extractable: true })
  return { ...(await exportJWK(privateKey)), alg }
}

/** A fresh key kept in memory only (the client's own tokens, which are per process anyway). */
export async function createDpopKey(alg: DpopSigningAlg): Promise<DpopKey> {
  return importDpopKey(await generateDpopJwk(alg))
}

/**
 * Imports private JWKs into signing keys, cached by the key's private part: sessions are re-read
 * from the store (or the cookie) on every request, and their JWK with them.
 */
export class DpopKeys {
  readonly #imported = new Map<string, Promise<DpopKey>>()

  get(jwk: JWK): Promise<DpopKey> {
    const id = `${jwk.x}.${jwk.y}.${jwk.d}`
    let key = this.#imported.get(id)
    if (!key) {
      key = importDpopKey(jwk)
      key.catch(() => this.#imported.delete(id))
      this.#imported.set(id, key)
      if (this.#imported.size > CACHE_SIZE) this.#imported.delete(this.#imported.keys().next().value!)
    }
    return key
  }
}

async function importDpopKey(jwk: JWK): Promise<DpopKey> {
  const alg = jwk.alg as DpopSigningAlg
  const publicJwk: JWK = { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }
  const [privateKey, publicKey, thumbprint] = await Promise.all([
    importJWK(jwk, alg) as Promise<CryptoKey>,
    // openid-client reads the public key to put it in its proofs: it must be extractable.
    importJWK(publicJwk, alg, { extractable: true }) as Promise<CryptoKey>,
    calculateJwkThumbprint(publicJwk),
  ])
  return { alg, keyPair: { privateKey, publicKey }, publicJwk, thumbprint }
}

/**
 * A DPoP proof for one resource request (RFC 9449 §4.2, §7.1): `htu` is the URL actually requested,
 * without query and fragment; `ath` binds the proof to the access token it comes with.
 */
export function dpopProof(key: DpopKey, method: string, url: URL | string, accessToken: string): Promise<string> {
  return new SignJWT({
    jti: randomUUID(),
    htm: method,
    // A string is the htu as it stands (the caller's origin and the path exactly as sent).
    htu: typeof url === 'string' ? url : `${url.origin}${url.pathname}`,
    ath: createHash('sha256').update(accessToken).digest('base64url'),
  })
    .setProtectedHeader({ typ: 'dpop+jwt', alg: key.alg, jwk: key.publicJwk })
    .setIssuedAt()
    .sign(key.keyPair.privateKey)
}
