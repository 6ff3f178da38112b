/**
 * Every default of the configuration, once. The validation schema (validate.ts) fills them in, the
 * cross-checks read them for keys left out, and `check-config --explain`, the JSON Schema and the key
 * reference in docs/configuration.md show them through the schema. Durations and sizes as users
 * write them ("10s"). Frozen: the schema hands out copies.
 */
export const DEFAULTS = deepFreeze({
  listen: { host: '127.0.0.1', port: 8080 },
  trustProxy: false,
  oidc: {
    endSessionParams: {},
    scopes: ['openid', 'profile', 'offline_access'],
    redirectPath: '/signin-oidc',
    postLogoutRedirectPath: '/signout-callback-oidc',
    extraAuthParams: {},
    getClaimsFromUserInfo: true,
    timeout: '10s',
    tokenRefreshSkew: '60s',
    pushedAuthorizationRequests: false,
    dpop: false,
    /** The algorithm of `"dpop": true`, and of a dpop object without signingAlg. */
    dpopSigningAlg: 'ES256',
    clientCredentialsScopes: [],
  },
  session: {
    mode: 'server',
    store: 'sqlite:./gatehouse-sessions.db',
    cookieName: '__Host-gatehouse',
    sameSite: 'lax',
    lifetime: '8h',
    sliding: true,
    absoluteLifetime: '24h',
    cleanupInterval: '10m',
    cacheTtl: '1s',
  },
  /** The query parameters of a `session.store` URL (docs/sessions.md#connection-strings-and-deployment-notes). */
  storeUrl: { redisPrefix: 'gatehouse:', postgresSchema: 'public' },
  managementBasePath: '/bff',
  antiForgery: { header: 'X-CSRF', value: '1' },
  anonymousSessionResponse: 401,
  revokeRefreshTokenOnLogout: true,
  backchannelLogout: { allUserSessions: false },
  remoteApis: [],
  /** Each entry of `remoteApis`. */
  remoteApi: {
    token: 'user',
    antiForgery: true,
    timeout: '30s',
    websockets: false,
    scopes: [],
    connections: 128,
    /** `queue` unset: this many waiting requests per connection. */
    queuePerConnection: 2,
  },
  frontends: [],
  /** Each entry of `frontends`. */
  frontend: { path: '/', indexHtmlCacheTtl: '5m' },
  diagnostics: false,
  limits: { perClient: 32, perClientStreams: 8, bodyIdleTimeout: '10s', writeIdleTimeout: '30s' },
  admin: { listen: { host: '127.0.0.1', port: 9464 } },
  log: { level: 'info', format: 'auto' },
  user: { claimValues: 'string' },
} as const)

/**
 * Defaults that are no constant, as the key reference in docs/configuration.md words them, by key path
 * (`[]`: each entry of a list).
 */
export const COMPUTED_DEFAULTS: Readonly<Record<string, string>> = Object.freeze({
  'oidc.clientAuth': 'chosen from discovery',
  'oidc.endSessionEndpoint': "discovery's",
  'remoteApis[].methods': 'every method',
  'remoteApis[].queue': `${DEFAULTS.remoteApi.queuePerConnection} × \`connections\``,
  'frontends[].origin': "publicOrigin's scheme with `host` (and publicOrigin's port when `host` has none)",
})

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const item of Object.values(value)) deepFreeze(item)
    Object.freeze(value)
  }
  return value
}
