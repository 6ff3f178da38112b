import type { DpopConfig } from '../config/types.ts'
import type { OidcClient } from '../oidc/client.ts'
import { createDpopKey, type DpopKey } from './dpop.ts'

/** The client's access token, and with oidc.dpop the key it is bound to. */
export interface ClientToken {
  value: string
  proofKey: DpopKey | undefined
}

/**
 * The client's own access token (token: "client"), cached until `skewMs` before it expires.
 * Concurrent callers share one grant. With `dpop` the token is bound to a key of this process.
 */
export class ClientCredentials {
  readonly #oidc: OidcClient
  readonly #scopes: readonly string[]
  readonly #skewMs: number
  readonly #now: () => number
  readonly #dpop: DpopConfig | undefined
  #dpopKey: Promise<DpopKey> | undefined
  #cached: { token: ClientToken; expiresAt: number } | undefined
  #pending: Promise<ClientToken> | undefined

  constructor(options: { oidc: OidcClient; scopes: readonly string[]; skewMs: number; now: () => number; dpop?: DpopConfig | undefined }) {
    this.#oidc = options.oidc
    this.#scopes = options.scopes
    this.#skewMs = options.skewMs
    this.#now = options.now
    this.#dpop = options.dpop
  }

  token(): Promise<ClientToken> {
    if (this.#cached && this.#cached.expiresAt - this.#skewMs > this.#now()) return Promise.resolve(this.#cached.token)
    this.#pending ??= this.#fetch().finally(() => {
      this.#pending = undefined
    })
    return this.#pending
  }

  async #fetch(): Promise<ClientToken> {
    const proofKey = this.#dpop ? await (this.#dpopKey ??= createDpopKey(this.#dpop.signingAlg)) : undefined
    const response = await this.#oidc.clientCredentials(this.#scopes, proofKey)
    const expiresIn = response.expiresIn()
    const token = { value: response.access_token, proofKey }
    // Without expires_in, reuse the token for one skew period only.
    this.#cached = { token, expiresAt: this.#now() + (expiresIn === undefined ? this.#skewMs * 2 : expiresIn * 1000) }
    return token
  }
}
