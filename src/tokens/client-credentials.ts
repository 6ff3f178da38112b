import type { DpopConfig } from '../config/types.ts'
import type { OidcClient } from '../oidc/client.ts'
import { createDpopKey, type DpopKey } from './dpop.ts'
import { resourceKey, type ResourceRequest } from './resource.ts'

/** The client's access token, and with oidc.dpop the key it is bound to. */
export interface ClientToken {
  value: string
  proofKey: DpopKey | undefined
}

/**
 * The client's own access tokens (token: "client"), cached until `skewMs` before they expire: the
 * general one, and one per resource (RFC 8707) for APIs that name one. Concurrent callers share one
 * grant. With `dpop` the tokens are bound to a key of this process.
 */
export class ClientCredentials {
  readonly #oidc: OidcClient
  readonly #scopes: readonly string[]
  readonly #skewMs: number
  readonly #now: () => number
  readonly #dpop: DpopConfig | undefined
  #dpopKey: Promise<DpopKey> | undefined
  /** By resource key; '' for the general token. */
  readonly #cached = new Map<string, { token: ClientToken; expiresAt: number }>()
  readonly #pending = new Map<string, Promise<ClientToken>>()

  constructor(options: {
    oidc: OidcClient
    scopes: readonly string[]
    skewMs: number
    now: () => number
    dpop?: DpopConfig | undefined
  }) {
    this.#oidc = options.oidc
    this.#scopes = options.scopes
    this.#skewMs = options.skewMs
    this.#now = options.now
    this.#dpop = options.dpop
  }

  token(resource?: ResourceRequest): Promise<ClientToken> {
    const key = resource ? resourceKey(resource) : ''
    const cached = this.#cached.get(key)
    if (cached && cached.expiresAt - this.#skewMs > this.#now()) return Promise.resolve(cached.token)
    let pending = this.#pending.get(key)
    if (!pending) {
      pending = this.#fetch(key, resource).finally(() => this.#pending.delete(key))
      this.#pending.set(key, pending)
    }
    return pending
  }

  async #fetch(key: string, resource: ResourceRequest | undefined): Promise<ClientToken> {
    const making = this.#dpop ? (this.#dpopKey ??= this.#newDpopKey(this.#dpop)) : undefined
    // An API's own scopes, else oidc.clientCredentialsScopes (the IdP narrows them to the resource's).
    const scopes = resource?.scopes.length ? resource.scopes : this.#scopes
    // The key is awaited inside the grant: a key that cannot be made fails the grant (idp_unavailable).
    const { accessToken, expiresInSec } = await this.#oidc.clientCredentials(scopes, making, resource?.resource)
    const token = { value: accessToken, proofKey: await making }
    // Without expires_in, reuse the token for one skew period only.
    this.#cached.set(key, {
      token,
      expiresAt: this.#now() + (expiresInSec === undefined ? this.#skewMs * 2 : expiresInSec * 1000),
    })
    return token
  }

  /** A key for this process's tokens; one that could not be made is tried again at the next grant. */
  #newDpopKey(dpop: DpopConfig): Promise<DpopKey> {
    const key = createDpopKey(dpop.signingAlg)
    key.catch(() => {
      if (this.#dpopKey === key) this.#dpopKey = undefined
    })
    return key
  }
}
