import type { SameSite } from '../http/cookies.ts'

export interface ConfigIssue {
  /** Dotted key path with array indexes, e.g. `remoteApis[0].target`. */
  path: string
  message: string
}

export type TokenRequirement = 'none' | 'user' | 'client' | 'userOrClient' | 'userOrNone'
export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt' | 'none'
export type DpopSigningAlg = 'ES256' | 'ES384' | 'ES512'

/** DPoP (RFC 9449) sender-constrained tokens: proofs signed with a key of this algorithm. */
export interface DpopConfig {
  signingAlg: DpopSigningAlg
}

export interface OidcConfig {
  authority: string
  /** The exact issuer tokens must carry, when it is not the authority (or fills in a `{tenantid}` template). */
  issuer: string | undefined
  /** More issuers id_tokens may carry (exact strings); with a `{tenantid}` template, the tenants' issuers allowed. */
  allowedIssuers: string[] | undefined
  /** With a `{tenantid}` template issuer: the `tid` values allowed to log in; undefined: every tenant. */
  allowedTenants: string[] | undefined
  /** The IdP's end-session endpoint when discovery names none (or another one); undefined: discovery's. */
  endSessionEndpoint: string | undefined
  /** Extra end-session query parameters; `{post_logout_redirect_uri}`, `{client_id}` and `{state}` are filled in. */
  endSessionParams: Record<string, string>
  clientId: string
  clientSecret: string | undefined
  /** undefined: chosen at discovery from the IdP's token_endpoint_auth_methods_supported. */
  clientAuth: ClientAuthMethod | undefined
  privateKeyJwk: Record<string, unknown> | undefined
  scopes: string[]
  redirectPath: string
  postLogoutRedirectPath: string
  extraAuthParams: Record<string, string>
  getClaimsFromUserInfo: boolean
  timeoutMs: number
  /** Send authorization requests by PAR (RFC 9126); on by itself when the IdP requires it. */
  pushedAuthorizationRequests: boolean
  /** DPoP-bound tokens (RFC 9449); undefined: Bearer tokens. */
  dpop: DpopConfig | undefined
  /** Access tokens this close to expiry are refreshed before use. */
  tokenRefreshSkewMs: number
  /** Scopes asked for in client-credentials grants (token: "client"); empty: the IdP's default. */
  clientCredentialsScopes: string[]
}

export interface SessionConfig {
  mode: 'server' | 'cookie'
  store: string
  cookieName: string
  sameSite: SameSite
  lifetimeMs: number
  sliding: boolean
  absoluteLifetimeMs: number
  cleanupIntervalMs: number
  /** How long a networked store's session record may be reused in-process (pub/sub drops ended ones at once); 0: never. */
  cacheTtlMs: number
}

export interface RemoteApiConfig {
  path: string
  target: string
  token: TokenRequirement
  antiForgery: boolean
  timeoutMs: number
  websockets: boolean
  /** The request methods forwarded (RFC 10017 §6.1.3.6); undefined: every method. HEAD goes with GET. */
  methods: string[] | undefined
  /** Largest request body forwarded (bytes); undefined: no limit. */
  maxBodyBytes: number | undefined
  /** RFC 8707 resource indicator: this API gets tokens restricted to it, never the session's general token. */
  resource: string | undefined
  /** Scopes asked for in this API's resource tokens; empty: whatever the IdP grants for the resource. */
  scopes: string[]
  /** Upstream connections of this API's own pool: at most this many of its requests are in flight. */
  connections: number
  /** Requests that may wait for one of those connections (default 2 × connections); more get 503 upstream_busy. */
  queue: number
}

/** What one client may hold of the proxy, and how long a stalled body may hold a connection. */
export interface LimitsConfig {
  /** Proxied requests in flight per client (its session, else its address). */
  perClient: number
  /** Long-lived streams per client (WebSockets, Server-Sent Events), counted apart from perClient. */
  perClientStreams: number
  /** A request body that sends nothing for this long ends its request (408); 0: never. */
  bodyIdleTimeoutMs: number
  /** A client that accepts nothing of a response for this long loses it; 0: never. */
  writeIdleTimeoutMs: number
}

export interface FrontendConfig {
  /** Also the session partition: a session of one frontend is not a session of another. */
  name: string
  path: string
  host: string | undefined
  /**
   * The origin browsers use for a host-based frontend: `frontends[].origin`, else publicOrigin's scheme
   * (and port, when the host has none) with `host`; undefined without a host, or without either.
   * Redirect URIs, the WebSocket Origin check and the silent-login target of this frontend use it.
   */
  origin: string | undefined
  static: string | undefined
  indexHtmlUrl: string | undefined
  indexHtmlCacheTtlMs: number
  /** This frontend's own client at the IdP; unset keys come from the top-level oidc block. */
  oidc: Partial<Pick<OidcConfig, 'clientId' | 'clientSecret' | 'clientAuth' | 'privateKeyJwk' | 'scopes' | 'extraAuthParams'>> | undefined
}

/** Validated, frozen configuration: durations in ms, defaults filled in. */
export interface Config {
  listen: { host: string; port: number }
  publicOrigin: string | undefined
  trustProxy: boolean
  oidc: OidcConfig
  keys: string[]
  session: SessionConfig
  managementBasePath: string
  antiForgery: { header: string; value: string }
  /** CORS for an SPA on other origins (normalised: `https://spa.example.com`); undefined: no CORS at all. */
  cors: { allowedOrigins: string[] } | undefined
  anonymousSessionResponse: 200 | 401
  revokeRefreshTokenOnLogout: boolean
  backchannelLogout: { allUserSessions: boolean }
  remoteApis: RemoteApiConfig[]
  frontends: FrontendConfig[]
  diagnostics: boolean
  limits: LimitsConfig
  admin: { listen: { host: string; port: number }; token: string | undefined } | undefined
  /** format: "json" (one JSON object a line), "pretty" (one readable line an event), "auto" (pretty when stdout is a terminal, else JSON). */
  log: { level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'; format: 'json' | 'pretty' | 'auto' }
  /** /bff/user: "string" — Duende.BFF's shape (every IdP claim value a string); "json" — values as the IdP sent them. */
  user: { claimValues: 'string' | 'json' }
}
