import type { OidcClient } from '../oidc/client.ts'

/**
 * The client's own access token (token: "client"), cached until `skewMs` before it expires.
 * Concurrent callers share one grant.
 */
export class ClientCredentials {
  readonly #oidc: OidcClient
  readonly #scopes: readonly string[]
  readonly #skewMs: number
  readonly #now: () => number
  #cached: { token: string; expiresAt: number } | undefined
  #pending: Promise<string> | undefined

  constructor(options: { oidc: OidcClient; scopes: readonly string[]; skewMs: number; now: () => number }) {
    this.#oidc = options.oidc
    this.#scopes = options.scopes
    this.#skewMs = options.skewMs
    this.#now = options.now
  }

  token(): Promise<string> {
    if (this.#cached && this.#cached.expiresAt - this.#skewMs > this.#now()) return Promise.resolve(this.#cached.token)
    this.#pending ??= this.#fetch().finally(() => {
      this.#pending = undefined
    })
    return this.#pending
  }

  async #fetch(): Promise<string> {
    const response = await this.#oidc.clientCredentials(this.#scopes)
    const expiresIn = response.expiresIn()
    // Without expires_in, reuse the token for one skew period only.
    this.#cached = { token: response.access_token, expiresAt: this.#now() + (expiresIn === undefined ? this.#skewMs * 2 : expiresIn * 1000) }
    return response.access_token
  }
}
