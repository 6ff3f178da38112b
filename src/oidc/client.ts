import * as oidc from 'openid-client'
import { importJWK } from 'jose'
import { GatehouseError } from '../errors.ts'
import type { OidcConfig } from '../config/types.ts'
import type { DpopKey } from '../tokens/dpop.ts'
import { resourceParameters, type ResourceRequest } from '../tokens/resource.ts'

export type TokenResponse = Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>

const REACHABILITY_TTL_MS = 1_000

export interface AuthorizationChecks {
  state: string
  nonce: string
  codeVerifier: string
}

/** Discovery answered, but the IdP does not offer the DPoP that `oidc.dpop` asks for. */
export class DpopUnsupportedError extends GatehouseError {
  constructor(detail: string) {
    super('idp_unavailable', detail)
  }
}

/**
 * The only module that talks OpenID Connect, through openid-client. Discovery is fetched lazily,
 * cached, and retried after a failure, so gatehouse starts while the IdP is still coming up.
 */
export class OidcClient {
  readonly #options: OidcConfig
  #configuration: Promise<oidc.Configuration> | undefined
  #reachable: { at: number; result: Promise<boolean> } | undefined
  /** openid-client's DPoP handle per key: it remembers the IdP's DPoP-Nonce between grants. */
  readonly #dpopHandles = new WeakMap<DpopKey, oidc.DPoPHandle>()

  constructor(options: OidcConfig) {
    this.#options = options
  }

  configuration(): Promise<oidc.Configuration> {
    this.#configuration ??= this.#discover().catch((err: unknown) => {
      this.#configuration = undefined
      throw err instanceof GatehouseError ? err : new GatehouseError('idp_unavailable', 'identity provider discovery failed', { cause: err })
    })
    return this.#configuration
  }

  /**
   * Live check for /readyz: the discovery document answers now (not only at start), as a JSON object
   * naming the issuer discovery accepted. Concurrent and
   * back-to-back probes within a second share one fetch, so /readyz cannot be used to flood the IdP.
   */
  isReachable(timeoutMs: number): Promise<boolean> {
    const now = Date.now()
    if (!this.#reachable || now - this.#reachable.at > REACHABILITY_TTL_MS) this.#reachable = { at: now, result: this.#probe(timeoutMs) }
    return this.#reachable.result
  }

  async #probe(timeoutMs: number): Promise<boolean> {
    const url = new URL(this.#options.authority)
    url.pathname = `${url.pathname.replace(/\/$/, '')}/.well-known/openid-configuration`
    const signal = AbortSignal.timeout(timeoutMs)
    try {
      const res = await fetch(url, { signal, redirect: 'error' })
      if (!res.ok) {
        await res.body?.cancel()
        return false
      }
      // Answering is not enough: a document discovery refuses (not JSON, another issuer) means no login works.
      const document: unknown = await res.json()
      const issuer = document !== null && typeof document === 'object' ? (document as { issuer?: unknown }).issuer : undefined
      if (typeof issuer !== 'string' || signal.aborted) return false
      const timedOut = new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true }))
      return issuer === (await Promise.race([this.configuration(), timedOut])).serverMetadata().issuer
    } catch {
      return false
    }
  }

  /** The IdP's discovery metadata (issuer, jwks_uri, algorithms…). */
  async metadata(): Promise<ReturnType<oidc.Configuration['serverMetadata']>> {
    return (await this.configuration()).serverMetadata()
  }

  async promptValuesSupported(): Promise<string[]> {
    const meta = (await this.configuration()).serverMetadata()
    const values = meta.prompt_values_supported
    return Array.isArray(values) ? values.filter((v): v is string => typeof v === 'string') : ['none', 'login', 'consent', 'select_account']
  }

  /**
   * The authorize URL. With pushed authorization requests (RFC 9126) — asked for by
   * `oidc.pushedAuthorizationRequests`, or required by the IdP — the parameters go to the IdP
   * directly, authenticated as the client, and the browser carries only a `request_uri`.
   */
  async authorizationUrl(params: URLSearchParams): Promise<URL> {
    const config = await this.configuration()
    const meta = config.serverMetadata()
    const par = this.#options.pushedAuthorizationRequests || meta.require_pushed_authorization_requests === true
    if (!par) return oidc.buildAuthorizationUrl(config, params)
    if (!meta.pushed_authorization_request_endpoint) throw new GatehouseError('idp_unavailable', 'oidc.pushedAuthorizationRequests is on, but the identity provider has no pushed_authorization_request_endpoint')
    return oidc.buildAuthorizationUrlWithPAR(config, params)
  }

  /**
   * Validates the authorization response (state, iss per RFC 9207) and the id_token (nonce, signature,
   * aud). The redirect_uri sent to the token endpoint is `callbackUrl` without its query.
   * With `dpop`, the token request carries a DPoP proof of that key (openid-client retries once
   * with the IdP's DPoP-Nonce when asked to) and the answer must be a DPoP-bound token; the same
   * holds for refresh and client-credentials grants.
   */
  async exchangeCode(callbackUrl: URL, checks: AuthorizationChecks, dpop?: DpopKey): Promise<TokenResponse> {
    const config = await this.configuration()
    const checksFor = { expectedState: checks.state, expectedNonce: checks.nonce, pkceCodeVerifier: checks.codeVerifier, idTokenExpected: true }
    return requireDpopBound(await oidc.authorizationCodeGrant(config, callbackUrl, checksFor, undefined, this.#dpopOptions(config, dpop)), dpop)
  }

  /** `resource`: a token restricted to that resource (RFC 8707 §2.2) instead of the session's general one. */
  async refresh(refreshToken: string, dpop?: DpopKey, resource?: ResourceRequest): Promise<Awaited<ReturnType<typeof oidc.refreshTokenGrant>>> {
    const config = await this.configuration()
    const parameters = resource && resourceParameters(resource)
    return requireDpopBound(await oidc.refreshTokenGrant(config, refreshToken, parameters, this.#dpopOptions(config, dpop)), dpop)
  }

  async clientCredentials(scopes: readonly string[], dpop?: DpopKey, resource?: string): Promise<Awaited<ReturnType<typeof oidc.clientCredentialsGrant>>> {
    const config = await this.configuration()
    const parameters: Record<string, string> = {}
    if (scopes.length) parameters.scope = scopes.join(' ')
    if (resource !== undefined) parameters.resource = resource
    return requireDpopBound(await oidc.clientCredentialsGrant(config, parameters, this.#dpopOptions(config, dpop)), dpop)
  }

  #dpopOptions(config: oidc.Configuration, key: DpopKey | undefined): oidc.DPoPOptions | undefined {
    if (!key) return undefined
    let handle = this.#dpopHandles.get(key)
    if (!handle) {
      handle = oidc.getDPoPHandle(config, key.keyPair)
      this.#dpopHandles.set(key, handle)
    }
    return { DPoP: handle }
  }

  async hasUserInfo(): Promise<boolean> {
    return Boolean((await this.configuration()).serverMetadata().userinfo_endpoint)
  }

  /** `dpop`: the key a DPoP-bound access token is bound to (the userinfo request then needs a proof too). */
  async userInfo(accessToken: string, expectedSubject: string, dpop?: DpopKey): Promise<Record<string, unknown>> {
    const config = await this.configuration()
    return oidc.fetchUserInfo(config, accessToken, expectedSubject, this.#dpopOptions(config, dpop))
  }

  /** RFC 7009. Returns false when the IdP has no revocation endpoint. */
  async revoke(token: string, hint: 'refresh_token' | 'access_token'): Promise<boolean> {
    const config = await this.configuration()
    if (!config.serverMetadata().revocation_endpoint) return false
    await oidc.tokenRevocation(config, token, { token_type_hint: hint })
    return true
  }

  /** RP-Initiated Logout 1.0; undefined when the IdP has no end_session_endpoint. */
  async endSessionUrl(params: Record<string, string>): Promise<URL | undefined> {
    const config = await this.configuration()
    if (!config.serverMetadata().end_session_endpoint) return undefined
    return oidc.buildEndSessionUrl(config, params)
  }

  async #discover(): Promise<oidc.Configuration> {
    const o = this.#options
    const authority = new URL(o.authority)
    const insecure = authority.protocol === 'http:'
    const config = await oidc.discovery(authority, o.clientId, o.clientSecret, await this.#clientAuth(), {
      timeout: Math.ceil(o.timeoutMs / 1000),
      // Validation allows http:// only for loopback authorities (demo and tests).
      ...(insecure ? { execute: [oidc.allowInsecureRequests] } : {}),
    })
    config.timeout = Math.ceil(o.timeoutMs / 1000)
    if (o.dpop) {
      // Refused rather than silently falling back to Bearer tokens: the operator asked for sender-constrained ones.
      const algs = config.serverMetadata().dpop_signing_alg_values_supported
      if (!Array.isArray(algs) || !algs.includes(o.dpop.signingAlg)) {
        const offered = Array.isArray(algs) ? `only ${algs.join(', ')}` : 'no dpop_signing_alg_values_supported'
        throw new DpopUnsupportedError(`oidc.dpop is on, but the identity provider does not accept DPoP proofs signed with ${o.dpop.signingAlg} (its discovery document lists ${offered})`)
      }
    }
    return config
  }

  async #clientAuth(): Promise<oidc.ClientAuth> {
    const o = this.#options
    switch (o.clientAuth) {
      case 'client_secret_basic':
        return oidc.ClientSecretBasic(o.clientSecret)
      case 'client_secret_post':
        return oidc.ClientSecretPost(o.clientSecret)
      case 'private_key_jwt': {
        const jwk = o.privateKeyJwk!
        const alg = typeof jwk.alg === 'string' ? jwk.alg : 'RS256'
        const key = await importJWK(jwk, alg)
        if (key instanceof Uint8Array) throw new GatehouseError('config_invalid', 'oidc.privateKeyJwk must be an asymmetric private key')
        return oidc.PrivateKeyJwt({ key, kid: typeof jwk.kid === 'string' ? jwk.kid : undefined } as oidc.PrivateKey)
      }
      case 'none':
        return oidc.None()
    }
  }
}

/**
 * A token requested with a DPoP proof must come back bound to it (`token_type` DPoP, RFC 9449 §5):
 * a Bearer answer means the IdP ignored the proof, and gatehouse would send the token unbound.
 */
function requireDpopBound<T extends { token_type: string }>(response: T, dpop: DpopKey | undefined): T {
  if (dpop && response.token_type.toLowerCase() !== 'dpop') {
    throw new GatehouseError('idp_error', 'the identity provider issued a token that is not DPoP-bound (token_type is not DPoP) although oidc.dpop is on')
  }
  return response
}
