import { compactVerify, createRemoteJWKSet, decodeJwt, errors as joseErrors, type JWTVerifyGetKey } from 'jose'
import * as oauth from 'oauth4webapi'
import * as oidc from 'openid-client'
import type { Logger } from 'pino'
import type { ClientAuthMethod, OidcConfig } from '../config/types.ts'
import { GatehouseError } from '../errors.ts'
import type { DpopKey } from '../tokens/dpop.ts'
import { resourceParameters, type ResourceRequest } from '../tokens/resource.ts'
import { chooseClientAuth, createClientAuth } from './client-auth.ts'
import { fetchDiscovery } from './discovery.ts'
import { endSessionExtras } from './end-session.ts'
import {
  classifyClientTokenFailure,
  classifyIdpFailure,
  classifyRefreshFailure,
  type FailureContext,
  type RefreshFailure,
} from './idp-failure.ts'
import {
  acceptsSeveralIssuers,
  checkPublishedIssuer,
  expectedTokenIssuer,
  isTemplate,
  tenantOf,
  type IssuerSettings,
} from './issuer.ts'

const REACHABILITY_TTL_MS = 1_000
/** Per-issuer configurations kept for refreshes of multi-tenant sessions. */
const ISSUER_CONFIGS_MAX = 256

/**
 * Asymmetric JWS algorithms an id_token may be signed with, whatever discovery lists: some IdPs
 * publish stale lists. The key decides: a token verifies only with a JWKS key of the matching type.
 * Never `none`, never HMAC (a client secret is not the IdP's signature).
 */
export const ID_TOKEN_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'Ed25519',
  'EdDSA',
]

export interface AuthorizationChecks {
  state: string
  nonce: string
  codeVerifier: string
}

/** A completed code exchange: the tokens, the validated id_token claims, and the issuer that signed them. */
export interface LoginTokens {
  accessToken: string
  tokenType: string
  refreshToken: string | undefined
  idToken: string
  scope: string | undefined
  expiresInSec: number | undefined
  claims: oauth.IDToken
  /** The id_token's `iss`: the published one, or a tenant's when the IdP publishes a template. */
  issuer: string
}

/** What a login asks the IdP for; the flow's own parameters (state, nonce, PKCE) are added by `authorizationRequest`. */
export interface AuthorizationRequestInput {
  redirectUri: string
  /** The `scope` parameter, space-separated. */
  scope: string
  /** RFC 8707 resources the grant must cover: appended unless the parameters already name them. */
  resources: readonly string[]
  /** oidc.extraAuthParams and a loginParams hook's, none of the flow's own; those win over these. */
  extraParams: Record<string, string>
  prompt: string | undefined
}

/** A started authorization request: where to send the browser, and what the callback checks the answer with. */
export interface AuthorizationRequest extends AuthorizationChecks {
  url: URL
  /** Every resource the request names (the session records them: later resource tokens need them). */
  resources: string[]
}

/** The tokens of a successful refresh grant. */
export interface RefreshedTokens {
  accessToken: string
  /** A rotated refresh token (the one used is then spent), when the IdP sent one. */
  refreshToken: string | undefined
  idToken: string | undefined
  scope: string | undefined
  /** Seconds the access token has left, as of the answer (undefined: the IdP sent no expires_in). */
  expiresInSec: number | undefined
}

/**
 * A refresh grant's outcome: the tokens, or why there are none (src/oidc/idp-failure.ts): the refresh
 * token refused (invalid_grant), the resource refused, or the IdP unavailable or failing.
 */
export type RefreshOutcome = { kind: 'ok'; tokens: RefreshedTokens } | RefreshFailure

/** The client's own access token from a client-credentials grant. */
export interface ClientGrant {
  accessToken: string
  /** Seconds the token has left, as of the answer (undefined: the IdP sent no expires_in). */
  expiresInSec: number | undefined
}

/** The IdP as the admin console shows it (OidcClient.status). */
/** How long the admin console's JWKS check is reused, and how much of the JWKS it reads. */
const JWKS_STATUS_TTL_MS = 10_000
const JWKS_STATUS_MAX_BYTES = 1024 * 1024

export interface IdpStatus {
  issuer: string | null
  discovery: 'ok' | 'failing'
  jwks: 'ok' | 'failing' | 'unknown'
  /** When the discovery document in use was fetched and accepted. */
  lastRefreshAt: number | null
}

/** Discovery answered, but the IdP does not offer the DPoP that `oidc.dpop` asks for. */
export class DpopUnsupportedError extends GatehouseError {
  constructor(detail: string) {
    super('idp_unavailable', detail, { report: { event: 'discovery_failed', cause: 'dpop_unsupported' } })
  }
}

export interface OidcClientOptions {
  log?: Logger
  /** The key that sets this client's authentication (`oidc.clientAuth`, `frontends[1].oidc.clientAuth`): log lines name it. */
  clientAuthKey?: string
}

/** What one successful discovery gives: openid-client's configuration and what gatehouse checks tokens with. */
interface Discovered {
  config: oidc.Configuration
  /** The metadata the configuration was built from (widened algorithm list, end-session override). */
  metadata: oauth.AuthorizationServer
  /** The issuer discovery published (possibly a `{tenantid}` template). */
  issuer: string
  /** discovery's id_token_signing_alg_values_supported as published (undefined: not listed). */
  publishedAlgs: string[] | undefined
  clientAuth: oidc.ClientAuth
  /** The IdP's keys, shared by id_token and logout-token checks; refetched for an unknown `kid`. */
  jwks: JWTVerifyGetKey
  insecure: boolean
  /** Configurations whose issuer is a tenant's (template IdPs): refreshes validate id_tokens against it. */
  byIssuer: Map<string, oidc.Configuration>
}

/**
 * The one door to the IdP: the only module that talks OpenID Connect, through openid-client (and for
 * the code exchange its oauth4webapi, whose per-call issuer lets multi-tenant IdPs in). Its methods
 * throw GatehouseErrors whose report explains the failure (src/oidc/idp-failure.ts), or return an
 * outcome (`refresh`); only `revoke`, which callers treat as best effort, passes the IdP's failure on
 * as it came (`explain` turns it into a report). Discovery is fetched lazily, cached, and retried
 * after a failure, so gatehouse starts while the IdP is still coming up.
 */
export class OidcClient {
  readonly #options: OidcConfig
  readonly #log: Logger | undefined
  readonly #clientAuthKey: string
  #method: ClientAuthMethod | undefined
  readonly #settings: IssuerSettings
  #discovered: Promise<Discovered> | undefined
  #reachable: { at: number; result: Promise<boolean> } | undefined
  /** openid-client's DPoP handle per key: it remembers the IdP's DPoP-Nonce between grants. */
  readonly #dpopHandles = new WeakMap<DpopKey, oidc.DPoPHandle>()
  readonly #stop = new AbortController()
  #unlistedAlgLogged = false
  /** When the discovery document in use was fetched (set once it was accepted). */
  #fetchedAt: number | undefined
  /** The issuer of the discovery document in use. */
  #acceptedIssuer: string | undefined
  #jwksChecked: { at: number; result: Promise<{ issuer: string | null; jwks: IdpStatus['jwks'] }> } | undefined

  constructor(options: OidcConfig, runtime: OidcClientOptions = {}) {
    this.#options = options
    this.#log = runtime.log
    this.#clientAuthKey = runtime.clientAuthKey ?? 'oidc.clientAuth'
    this.#settings = {
      authority: options.authority,
      issuer: options.issuer,
      allowedIssuers: options.allowedIssuers,
      allowedTenants: options.allowedTenants,
    }
  }

  #discover(): Promise<Discovered> {
    this.#discovered ??= this.#runDiscovery().catch((err: unknown) => {
      this.#discovered = undefined
      throw err instanceof GatehouseError
        ? err
        : new GatehouseError('idp_unavailable', 'identity provider discovery failed', {
            cause: err,
            report: { event: 'discovery_failed', cause: 'unexpected' },
          })
    })
    return this.#discovered
  }

  /** Discovery now; resolves once it succeeded (rejects with its failure, which is retried at the next use). */
  async ready(): Promise<void> {
    try {
      await this.#discover()
    } catch (err) {
      if (!this.#stop.signal.aborted) throw err
    }
  }

  /** Stops a discovery in flight (shutdown). */
  close(): void {
    this.#stop.abort()
  }

  /**
   * Live check for /readyz: the discovery document answers now (not only at start) with the issuer
   * discovery accepted. Concurrent and back-to-back probes within a second share one fetch, so
   * /readyz cannot be used to flood the IdP.
   */
  isReachable(timeoutMs: number): Promise<boolean> {
    const now = Date.now()
    if (!this.#reachable || now - this.#reachable.at > REACHABILITY_TTL_MS)
      this.#reachable = { at: now, result: this.#probe(timeoutMs) }
    return this.#reachable.result
  }

  /** Discovery, or a rejection once `signal` aborts: a check never waits past its own bound. */
  #discoverUntil(signal: AbortSignal): Promise<Discovered> {
    const aborted = new Promise<never>((_, reject) => {
      if (signal.aborted) reject(signal.reason as Error)
      signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true })
    })
    return Promise.race([this.#discover(), aborted])
  }

  async #probe(timeoutMs: number): Promise<boolean> {
    try {
      const signal = AbortSignal.timeout(timeoutMs)
      const document = await fetchDiscovery(this.#options.authority, timeoutMs, signal)
      return document.issuer === (await this.#discoverUntil(signal)).issuer
    } catch {
      return false
    }
  }

  /**
   * For the admin console: the issuer discovery accepted (null before it did), whether the discovery
   * document answers now (as /readyz checks it) and the JWKS (ok when jwks_uri answers with keys),
   * and when the document in use was fetched. Both checks run side by side within `timeoutMs`; the
   * JWKS answer is reused for 10 s, so a console polling every instance cannot load the IdP's keys
   * endpoint.
   */
  async status(timeoutMs: number): Promise<IdpStatus> {
    const [reachable, keys] = await Promise.all([this.isReachable(timeoutMs), this.#jwksStatus(timeoutMs)])
    return {
      issuer: this.#acceptedIssuer ?? keys.issuer,
      discovery: reachable ? 'ok' : 'failing',
      jwks: keys.jwks,
      lastRefreshAt: this.#fetchedAt ?? null,
    }
  }

  #jwksStatus(timeoutMs: number): Promise<{ issuer: string | null; jwks: IdpStatus['jwks'] }> {
    const now = Date.now()
    if (!this.#jwksChecked || now - this.#jwksChecked.at > JWKS_STATUS_TTL_MS)
      this.#jwksChecked = { at: now, result: this.#checkJwks(timeoutMs) }
    return this.#jwksChecked.result
  }

  async #checkJwks(timeoutMs: number): Promise<{ issuer: string | null; jwks: IdpStatus['jwks'] }> {
    const signal = AbortSignal.timeout(timeoutMs)
    let issuer: string | null = null
    try {
      const discovered = await this.#discoverUntil(signal)
      issuer = discovered.issuer
      const res = await fetch(String(discovered.metadata.jwks_uri), {
        headers: { accept: 'application/json, application/jwk-set+json' },
        redirect: 'manual',
        signal,
      })
      if (res.status !== 200) await res.body?.cancel()
      const text = res.status === 200 ? await boundedText(res, JWKS_STATUS_MAX_BYTES) : undefined
      const keys = text === undefined ? undefined : (JSON.parse(text) as { keys?: unknown }).keys
      return { issuer, jwks: Array.isArray(keys) && keys.length > 0 ? 'ok' : 'failing' }
    } catch {
      return { issuer, jwks: issuer === null ? 'unknown' : 'failing' }
    }
  }

  /** The IdP's discovery metadata (issuer, jwks_uri, algorithms…), as gatehouse uses it. */
  async metadata(): Promise<ReturnType<oidc.Configuration['serverMetadata']>> {
    return (await this.#discover()).config.serverMetadata()
  }

  /** The IdP's signing keys (one cache for id_tokens and logout tokens). */
  async jwks(): Promise<JWTVerifyGetKey> {
    return (await this.#discover()).jwks
  }

  /**
   * The issuer a token (id_token or logout token) must carry, from its own unverified claims: the
   * published one, or with a `{tenantid}` template the token's tenant's — if that tenant is allowed.
   * Throws idp_error whose report names the refusal (tenant_not_allowed, issuer_not_allowed, tenant_missing).
   */
  async expectedIssuer(claims: { iss?: unknown; tid?: unknown }): Promise<string> {
    const outcome = expectedTokenIssuer(this.#settings, (await this.#discover()).issuer, claims)
    if (outcome.ok) return outcome.issuer
    const { cause, expected, received } = outcome.refusal
    throw new GatehouseError('idp_error', `the token's issuer is not accepted (${cause})`, {
      report: { event: 'login_failed', cause, expected, received },
    })
  }

  /**
   * The IdP's own signing algorithms for logout tokens (Back-Channel Logout §2.6: only those):
   * discovery's list without none and HMAC; RS256 when it lists none.
   */
  async signingAlgorithms(): Promise<string[]> {
    const listed = (await this.#discover()).publishedAlgs?.filter((alg) => ID_TOKEN_ALGORITHMS.includes(alg))
    return listed?.length ? listed : ['RS256']
  }

  /**
   * Whether a session's recorded issuer is still one the configuration accepts (a tenant taken out
   * of oidc.allowedTenants ends its sessions at their next refresh). Sessions without one: yes.
   */
  async acceptsSessionIssuer(issuer: string | undefined): Promise<boolean> {
    if (issuer === undefined) return true
    const published = (await this.#discover()).issuer
    if (issuer === published) return true
    const outcome = expectedTokenIssuer(this.#settings, published, { iss: issuer })
    return outcome.ok && outcome.issuer === issuer
  }

  /** Several issuers can sign in (a template, or allowedIssuers): sessions differ by their recorded issuer. */
  async acceptsSeveralIssuers(): Promise<boolean> {
    return acceptsSeveralIssuers(this.#settings, (await this.#discover()).issuer)
  }

  async promptValuesSupported(): Promise<string[]> {
    const values = (await this.metadata()).prompt_values_supported
    return Array.isArray(values)
      ? values.filter((v): v is string => typeof v === 'string')
      : ['none', 'login', 'consent', 'select_account']
  }

  /**
   * A new authorization code request (PKCE S256, with a fresh state and nonce) and its authorize URL.
   * With pushed authorization requests (RFC 9126) — asked for by `oidc.pushedAuthorizationRequests`,
   * or required by the IdP — the parameters go to the IdP directly, authenticated as the client, and
   * the browser carries only a `request_uri`. Failures are GatehouseErrors with a `login_failed` report.
   */
  async authorizationRequest(input: AuthorizationRequestInput): Promise<AuthorizationRequest> {
    const state = oidc.randomState()
    const nonce = oidc.randomNonce()
    const codeVerifier = oidc.randomPKCECodeVerifier()
    const params = new URLSearchParams({
      ...input.extraParams,
      redirect_uri: input.redirectUri,
      response_type: 'code',
      scope: input.scope,
      state,
      nonce,
      code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
    })
    for (const resource of input.resources)
      if (!params.getAll('resource').includes(resource)) params.append('resource', resource)
    if (input.prompt !== undefined) params.set('prompt', input.prompt)
    try {
      return {
        url: await this.#authorizationUrl(params),
        state,
        nonce,
        codeVerifier,
        resources: params.getAll('resource'),
      }
    } catch (err) {
      throw this.explain(err, 'login_failed')
    }
  }

  async #authorizationUrl(params: URLSearchParams): Promise<URL> {
    const { config } = await this.#discover()
    const meta = config.serverMetadata()
    const par = this.#options.pushedAuthorizationRequests || meta.require_pushed_authorization_requests === true
    if (!par) return oidc.buildAuthorizationUrl(config, params)
    if (!meta.pushed_authorization_request_endpoint)
      throw new GatehouseError(
        'idp_unavailable',
        'oidc.pushedAuthorizationRequests is on, but the identity provider has no pushed_authorization_request_endpoint',
      )
    return oidc.buildAuthorizationUrlWithPAR(config, params)
  }

  /**
   * The code exchange (PKCE), with every check of the authorization response (state, RFC 9207 `iss`)
   * and of the id_token: `iss` (the published issuer, or the tenant's for a template), `aud`,
   * `nonce`, `exp`/`iat`, and — always — its signature against the IdP's JWKS. With `dpop`, the token
   * request carries a DPoP proof of that key (retried once with the IdP's DPoP-Nonce) and the answer
   * must be a DPoP-bound token. Failures are classified GatehouseErrors with a `login_failed` report.
   */
  async exchangeCode(callbackUrl: URL, checks: AuthorizationChecks, dpop?: DpopKey): Promise<LoginTokens> {
    const discovered = await this.#discover()
    try {
      return await this.#exchange(discovered, callbackUrl, checks, dpop)
    } catch (err) {
      throw this.explain(err, 'login_failed')
    }
  }

  async #exchange(
    d: Discovered,
    callbackUrl: URL,
    checks: AuthorizationChecks,
    dpop: DpopKey | undefined,
  ): Promise<LoginTokens> {
    const as = d.metadata
    const client = d.config.clientMetadata() as oauth.Client
    // RFC 9207: a template IdP names the tenant's issuer in `iss`; it must be one we would accept.
    const issParam = callbackUrl.searchParams.get('iss')
    const responseIssuer =
      issParam !== null && (isTemplate(d.issuer) || this.#options.allowedIssuers?.includes(issParam))
        ? await this.expectedIssuer({ iss: issParam, tid: tenantOf(d.issuer, issParam) })
        : as.issuer
    const params = oauth.validateAuthResponse(
      { ...as, issuer: responseIssuer },
      client,
      callbackUrl.searchParams,
      checks.state,
    )
    const redirectUri = new URL(callbackUrl)
    redirectUri.search = ''
    redirectUri.hash = ''
    const handle = dpop && this.#dpopHandle(d.config, dpop)
    const request = () =>
      oauth.authorizationCodeGrantRequest(as, client, d.clientAuth, params, redirectUri.href, checks.codeVerifier, {
        ...(handle ? { DPoP: handle } : {}),
        [oauth.allowInsecureRequests]: d.insecure,
        signal: AbortSignal.timeout(this.#options.timeoutMs),
      })
    let response = await request()
    let processed: { result: oauth.TokenEndpointResponse; issuer: string }
    try {
      processed = await this.#processCodeResponse(d, as, client, response, checks.nonce)
    } catch (err) {
      if (!handle || !oauth.isDPoPNonceError(err)) throw err
      response = await request()
      processed = await this.#processCodeResponse(d, as, client, response, checks.nonce)
    }
    const { result, issuer } = processed
    // The response's iss (RFC 9207) and the id_token's must name the same tenant.
    if (issParam !== null && issParam !== issuer) {
      throw new GatehouseError('idp_error', 'the authorization response and the id_token name different issuers', {
        report: {
          event: 'login_failed',
          cause: 'id_token_invalid',
          check: 'iss',
          expected: issParam,
          received: issuer,
        },
      })
    }
    requireDpopBound(result, dpop)
    const claims = oauth.getValidatedIdTokenClaims(result)!
    return {
      accessToken: result.access_token,
      tokenType: result.token_type,
      refreshToken: result.refresh_token,
      idToken: result.id_token!,
      scope: result.scope,
      expiresInSec: result.expires_in,
      claims,
      issuer,
    }
  }

  async #processCodeResponse(
    d: Discovered,
    as: oauth.AuthorizationServer,
    client: oauth.Client,
    response: Response,
    nonce: string,
  ): Promise<{ result: oauth.TokenEndpointResponse; issuer: string }> {
    // The issuer to hold the id_token to comes from its own iss/tid (a template IdP's tenant); every
    // claim, then the signature, is checked against it, so the token cannot pick what it is held to.
    const claims = response.ok ? await peekIdToken(response) : undefined
    const issuer = claims ? await this.expectedIssuer(claims) : as.issuer
    const result = await oauth.processAuthorizationCodeResponse(
      issuer === as.issuer ? as : { ...as, issuer },
      client,
      response,
      { expectedNonce: nonce, requireIdToken: true },
    )
    await this.#verifySignature(d, result.id_token!)
    return { result, issuer }
  }

  /**
   * The id_token's signature against the IdP's JWKS (openid-client leaves it out for token-endpoint
   * answers, trusting TLS; ASP.NET's handler and mod_auth_openidc check it, and so do we).
   */
  async #verifySignature(d: Discovered, idToken: string): Promise<void> {
    let alg: string
    try {
      alg = (await compactVerify(idToken, d.jwks, { algorithms: ID_TOKEN_ALGORITHMS })).protectedHeader.alg
    } catch (err) {
      if (
        err instanceof joseErrors.JWKSTimeout ||
        err instanceof joseErrors.JWKSInvalid ||
        !(err instanceof joseErrors.JOSEError) ||
        err.code === 'ERR_JOSE_GENERIC'
      ) {
        throw new GatehouseError('idp_unavailable', "the identity provider's keys could not be fetched", {
          cause: err,
          report: { event: 'login_failed', cause: 'jwks_unavailable' },
        })
      }
      const check =
        err instanceof joseErrors.JOSEAlgNotAllowed
          ? 'alg'
          : err instanceof joseErrors.JWKSNoMatchingKey
            ? 'key'
            : 'signature'
      const detail =
        check === 'alg'
          ? 'is not signed with an asymmetric algorithm (none and HMAC are refused)'
          : check === 'key'
            ? "is signed by a key that is not in the identity provider's JWKS"
            : 'has a signature that does not verify'
      throw new GatehouseError('idp_error', `the id_token ${detail}`, {
        cause: err,
        report: { event: 'login_failed', cause: 'id_token_invalid', check },
      })
    }
    if (d.publishedAlgs && !d.publishedAlgs.includes(alg) && !this.#unlistedAlgLogged) {
      this.#unlistedAlgLogged = true
      this.#log?.warn(
        { event: 'id_token_alg_unlisted', alg, published: d.publishedAlgs },
        `the identity provider signs id_tokens with ${alg}, which its discovery document does not list in id_token_signing_alg_values_supported; accepted because its JWKS holds a matching key`,
      )
    }
  }

  /**
   * The refresh grant; never throws: a failure is an outcome. `resource`: a token restricted to that
   * resource (RFC 8707 §2.2) instead of the session's general one. `issuer`: the one the session's
   * login recorded; a refreshed id_token must come from it. `proofKey`: the session's DPoP key as it
   * is being imported; an import that fails is a failed refresh too (never a thrown error).
   */
  async refresh(
    refreshToken: string,
    proofKey?: Promise<DpopKey>,
    resource?: ResourceRequest,
    issuer?: string,
  ): Promise<RefreshOutcome> {
    try {
      const dpop = await proofKey
      const d = await this.#discover()
      const config = this.#configFor(d, issuer)
      const parameters = resource && resourceParameters(resource)
      const response = requireDpopBound(
        await oidc.refreshTokenGrant(config, refreshToken, parameters, this.#dpopOptions(config, dpop)),
        dpop,
      )
      return {
        kind: 'ok',
        tokens: {
          accessToken: response.access_token,
          refreshToken: response.refresh_token,
          idToken: response.id_token,
          scope: response.scope,
          expiresInSec: response.expiresIn(),
        },
      }
    } catch (err) {
      return classifyRefreshFailure(err, resource !== undefined, this.#failureContext('refresh_failed'))
    }
  }

  /**
   * The client's own token. Throws resource_refused (the IdP grants none for `resource`) or
   * idp_unavailable — also when `proofKey`, the DPoP key being made for it, could not be made.
   */
  async clientCredentials(
    scopes: readonly string[],
    proofKey?: Promise<DpopKey>,
    resource?: string,
  ): Promise<ClientGrant> {
    try {
      const dpop = await proofKey
      const { config } = await this.#discover()
      const parameters: Record<string, string> = {}
      if (scopes.length) parameters.scope = scopes.join(' ')
      if (resource !== undefined) parameters.resource = resource
      const response = requireDpopBound(
        await oidc.clientCredentialsGrant(config, parameters, this.#dpopOptions(config, dpop)),
        dpop,
      )
      return { accessToken: response.access_token, expiresInSec: response.expiresIn() }
    } catch (err) {
      throw classifyClientTokenFailure(err)
    }
  }

  /** An IdP failure as the answer and its log line, naming this client's authentication method and key. */
  explain(err: unknown, event: FailureContext['event']): GatehouseError {
    return classifyIdpFailure(err, this.#failureContext(event))
  }

  #failureContext(event: FailureContext['event']): FailureContext {
    const method = this.#method
    return { event, ...(method ? { clientAuth: { method, configKey: this.#clientAuthKey } } : {}) }
  }

  #configFor(d: Discovered, issuer: string | undefined): oidc.Configuration {
    if (issuer === undefined || issuer === d.issuer) return d.config
    let config = d.byIssuer.get(issuer)
    if (!config) {
      config = this.#configuration({ ...d.metadata, issuer }, d.clientAuth, d.insecure)
      if (d.byIssuer.size >= ISSUER_CONFIGS_MAX) d.byIssuer.delete(d.byIssuer.keys().next().value!)
      d.byIssuer.set(issuer, config)
    }
    return config
  }

  #dpopHandle(config: oidc.Configuration, key: DpopKey): oidc.DPoPHandle {
    let handle = this.#dpopHandles.get(key)
    if (!handle) {
      handle = oidc.getDPoPHandle(config, key.keyPair)
      this.#dpopHandles.set(key, handle)
    }
    return handle
  }

  #dpopOptions(config: oidc.Configuration, key: DpopKey | undefined): oidc.DPoPOptions | undefined {
    return key ? { DPoP: this.#dpopHandle(config, key) } : undefined
  }

  async hasUserInfo(): Promise<boolean> {
    return Boolean((await this.metadata()).userinfo_endpoint)
  }

  /** `dpop`: the key a DPoP-bound access token is bound to (the userinfo request then needs a proof too). */
  async userInfo(accessToken: string, expectedSubject: string, dpop?: DpopKey): Promise<Record<string, unknown>> {
    const { config } = await this.#discover()
    try {
      return await oidc.fetchUserInfo(config, accessToken, expectedSubject, this.#dpopOptions(config, dpop))
    } catch (err) {
      throw this.explain(err, 'login_failed')
    }
  }

  /** RFC 7009. Returns false when the IdP has no revocation endpoint; a failure is thrown as it came (see `explain`). */
  async revoke(token: string, hint: 'refresh_token' | 'access_token'): Promise<boolean> {
    const { config } = await this.#discover()
    if (!config.serverMetadata().revocation_endpoint) return false
    await oidc.tokenRevocation(config, token, { token_type_hint: hint })
    return true
  }

  /**
   * RP-Initiated Logout 1.0 at discovery's end_session_endpoint, or `oidc.endSessionEndpoint` with
   * `oidc.endSessionParams` (IdPs such as Auth0 classic name the parameters differently); undefined
   * when there is neither: the logout is then local only.
   */
  async endSessionUrl(params: Record<string, string>): Promise<URL | undefined> {
    const { config } = await this.#discover()
    if (!config.serverMetadata().end_session_endpoint) return undefined
    const extras = endSessionExtras(this.#options.endSessionParams, {
      post_logout_redirect_uri: params.post_logout_redirect_uri ?? '',
      client_id: this.#options.clientId,
      state: params.state ?? '',
    })
    return oidc.buildEndSessionUrl(config, { ...params, ...extras })
  }

  async #runDiscovery(): Promise<Discovered> {
    const o = this.#options
    const document = await fetchDiscovery(o.authority, o.timeoutMs, this.#stop.signal)
    const fetchedAt = Date.now()
    const issuer = document.issuer as string
    const accepted = checkPublishedIssuer(this.#settings, issuer)
    if (!accepted.ok) {
      const { expected, received } = accepted.refusal
      const key = o.issuer === undefined ? 'oidc.authority' : 'oidc.issuer'
      throw new GatehouseError(
        'idp_unavailable',
        `the discovery document names issuer "${received}", which is not ${key} "${expected}"`,
        {
          report: {
            event: 'discovery_failed',
            cause: 'issuer_mismatch',
            expected,
            published: received,
            hint:
              `set ${key} to the issuer the identity provider publishes` +
              (o.issuer === undefined ? ' (or oidc.issuer when discovery is reached under another URL)' : ''),
          },
        },
      )
    }
    const choice = chooseClientAuth(o, document.token_endpoint_auth_methods_supported)
    const clientAuth = await createClientAuth(choice.method, o)
    this.#method = choice.method
    const publishedAlgs = Array.isArray(document.id_token_signing_alg_values_supported)
      ? document.id_token_signing_alg_values_supported.filter((a): a is string => typeof a === 'string')
      : undefined
    const metadata: oauth.AuthorizationServer = {
      ...(document as unknown as oauth.AuthorizationServer),
      id_token_signing_alg_values_supported: ID_TOKEN_ALGORITHMS,
      ...(o.endSessionEndpoint ? { end_session_endpoint: o.endSessionEndpoint } : {}),
    }
    const insecure = new URL(o.authority).protocol === 'http:'
    if (!insecure && new URL(document.jwks_uri as string).protocol !== 'https:') {
      throw new GatehouseError('idp_unavailable', 'identity provider discovery failed: jwks_uri is not https://', {
        report: {
          event: 'discovery_failed',
          cause: 'invalid_document',
          problem: 'jwks_uri must be https:// (the signing keys decide every token check)',
        },
      })
    }
    const config = this.#configuration(metadata, clientAuth, insecure)
    if (o.dpop) {
      // Refused rather than silently falling back to Bearer tokens: the operator asked for sender-constrained ones.
      const algs = document.dpop_signing_alg_values_supported
      if (!Array.isArray(algs) || !algs.includes(o.dpop.signingAlg)) {
        const offered = Array.isArray(algs) ? `only ${algs.join(', ')}` : 'no dpop_signing_alg_values_supported'
        throw new DpopUnsupportedError(
          `oidc.dpop is on, but the identity provider does not accept DPoP proofs signed with ${o.dpop.signingAlg} (its discovery document lists ${offered})`,
        )
      }
    }
    this.#reportDiscovery(issuer, metadata, choice, document.token_endpoint_auth_methods_supported)
    const jwks = createRemoteJWKSet(new URL(document.jwks_uri as string), {
      cooldownDuration: 30_000,
      cacheMaxAge: 10 * 60_000,
      timeoutDuration: o.timeoutMs,
    })
    this.#fetchedAt = fetchedAt
    this.#acceptedIssuer = issuer
    return { config, metadata, issuer, publishedAlgs, clientAuth, jwks, insecure, byIssuer: new Map() }
  }

  #configuration(
    metadata: oauth.AuthorizationServer,
    clientAuth: oidc.ClientAuth,
    insecure: boolean,
  ): oidc.Configuration {
    const o = this.#options
    const config = new oidc.Configuration(
      metadata,
      o.clientId,
      o.clientSecret === undefined ? {} : { client_secret: o.clientSecret },
      clientAuth,
    )
    // Validation allows http:// only for loopback authorities (demo and tests).
    if (insecure) oidc.allowInsecureRequests(config)
    config.timeout = Math.ceil(o.timeoutMs / 1000)
    // id_tokens in refresh answers get their signature checked too.
    oidc.enableNonRepudiationChecks(config)
    return config
  }

  /** What discovery decided, said once per successful discovery. */
  #reportDiscovery(
    issuer: string,
    metadata: oauth.AuthorizationServer,
    choice: ReturnType<typeof chooseClientAuth>,
    listed: unknown,
  ): void {
    const log = this.#log
    if (!log) return
    const key = this.#clientAuthKey
    if (choice.fromDiscovery) {
      const methods = Array.isArray(listed) ? listed : undefined
      if (choice.unlisted)
        log.warn(
          { event: 'client_auth_chosen', method: choice.method, listed: methods },
          `client authentication: ${choice.method}, although the identity provider lists none of the methods the configured credentials allow; set ${key}`,
        )
      else
        log.info(
          { event: 'client_auth_chosen', method: choice.method, listed: methods ?? null },
          `client authentication: ${choice.method} (from the identity provider's ${methods ? 'token_endpoint_auth_methods_supported' : 'default, as it lists no methods'}; set ${key} to choose another)`,
        )
    }
    if (!metadata.end_session_endpoint) {
      log.warn(
        { event: 'end_session_missing', issuer },
        `the identity provider has no end_session_endpoint: logout will not end the IdP session (set oidc.endSessionEndpoint if it has one under another name)`,
      )
    }
    if (!isTemplate(issuer) && this.#options.allowedTenants) {
      log.warn(
        { event: 'allowed_tenants_unused', issuer },
        'oidc.allowedTenants has no effect: the identity provider publishes one issuer, not a {tenantid} template',
      )
    }
    if (isTemplate(issuer) && !this.#options.issuer && !this.#options.allowedTenants && !this.#options.allowedIssuers) {
      log.warn(
        { event: 'tenants_unrestricted', issuer },
        `the identity provider is multi-tenant (${issuer}): users of every tenant can log in; set oidc.allowedTenants to restrict them`,
      )
    }
  }
}

/** The id_token's claims as sent, unverified: only to pick the issuer the checks then hold it to. */
async function peekIdToken(response: Response): Promise<{ iss?: unknown; tid?: unknown } | undefined> {
  try {
    const body = (await response.clone().json()) as { id_token?: unknown }
    return typeof body?.id_token === 'string' ? decodeJwt(body.id_token) : undefined
  } catch {
    // Not JSON or not a JWT: oauth4webapi's checks say so next.
    return undefined
  }
}

/**
 * A token requested with a DPoP proof must come back bound to it (`token_type` DPoP, RFC 9449 §5):
 * a Bearer answer means the IdP ignored the proof, and gatehouse would send the token unbound.
 */
function requireDpopBound<T extends { token_type: string }>(response: T, dpop: DpopKey | undefined): T {
  if (dpop && response.token_type.toLowerCase() !== 'dpop') {
    throw new GatehouseError(
      'idp_error',
      'the identity provider issued a token that is not DPoP-bound (token_type is not DPoP) although oidc.dpop is on',
      { report: { event: 'login_failed', cause: 'dpop_not_bound' } },
    )
  }
  return response
}

/** A body as text, or undefined when it is larger than `maxBytes` (the rest is not read). */
async function boundedText(res: Response, maxBytes: number): Promise<string | undefined> {
  const reader = res.body?.getReader()
  if (!reader) return ''
  const chunks: Uint8Array[] = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > maxBytes) {
      await reader.cancel()
      return undefined
    }
    chunks.push(value)
  }
  return Buffer.concat(chunks).toString('utf8')
}
