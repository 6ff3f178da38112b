import { statSync } from 'node:fs'
import { METHODS } from 'node:http'
import { z } from 'zod'
import { DEFAULTS } from './defaults.ts'
import { parseDuration, parseSize } from './duration.ts'
import { storeUrlProblem } from './store-url.ts'
import type { Config, ConfigIssue } from './types.ts'
import { derivedFrontendOrigin, isLoopbackHost, isOriginOfHost, originKeys } from '../http/origin.ts'
import { decodeKey } from '../session/seal.ts'
import { END_SESSION_PLACEHOLDERS } from '../oidc/end-session.ts'
import { TENANT_ID } from '../oidc/issuer.ts'

/**
 * What a string key holds when it is more than text, for the key reference (scripts/generate-docs.ts):
 * set on the string schema that durations and sizes are parsed from.
 */
export const valueKinds = z.registry<{ kind: 'duration' | 'size' }>()

const durationText = () => z.string().register(valueKinds, { kind: 'duration' })

const duration = (fallback: string, range: { allowZero?: boolean; maxMs?: number; max?: string } = {}) =>
  durationText()
    .default(fallback)
    .transform((text, ctx) => {
      const ms = parseDuration(text)
      if (ms === undefined || (ms === 0 && !range.allowZero)) {
        ctx.addIssue({
          code: 'custom',
          message: `must be a duration such as "30s", "10m", "8h" or "7d" (got "${text}")`,
        })
        return z.NEVER
      }
      if (range.maxMs !== undefined && ms > range.maxMs) {
        ctx.addIssue({ code: 'custom', message: `must be at most ${range.max} (got "${text}")` })
        return z.NEVER
      }
      return ms
    })

/** A whole number from `min` to `max`. */
const count = (min: number, max: number) =>
  z
    .number()
    .int(`must be a whole number from ${min} to ${max}`)
    .min(min, `must be a whole number from ${min} to ${max}`)
    .max(max, `must be a whole number from ${min} to ${max}`)

const localPath = z
  .string()
  .regex(/^\/[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$/, 'must be a path starting with "/"')
  .refine(
    (p) => !p.startsWith('//') && !p.split('/').some((s) => s === '.' || s === '..'),
    'must be a plain absolute path',
  )

/**
 * http:// is accepted only for loopback hosts (demo, tests); anything reachable over a network needs
 * https. No user info: these URLs are logged and printed as they are.
 */
const webUrl = (what: string) =>
  z
    .string()
    .refine((text) => {
      if (!URL.canParse(text)) return false
      const url = new URL(text)
      return url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackHost(url.hostname))
    }, `must be an https:// URL (${what}; http:// is accepted only for localhost/127.0.0.1/[::1])`)
    .refine(
      (text) => !URL.canParse(text) || (!new URL(text).username && !new URL(text).password),
      'must not hold a user name or password ("user:password@"): gatehouse logs and prints this URL',
    )

/**
 * An origin browsers use (publicOrigin, frontends[].origin): https (http only for loopback hosts),
 * scheme, host and optional port only, normalised (lower case, no default port). A host ending in "."
 * is refused: browsers treat it as another origin, and gatehouse refuses such a Host (421).
 */
const webOrigin = (what: string) =>
  webUrl(what)
    .refine((text) => {
      if (!URL.canParse(text)) return true
      const url = new URL(text)
      return url.pathname === '/' && !url.search && !url.hash && !/[?#]$/.test(text)
    }, 'must be an origin without path, query or fragment')
    .refine(
      (text) => !URL.canParse(text) || !new URL(text).hostname.endsWith('.'),
      'must not end its host with "." (browsers treat "app.example.com." as another origin)',
    )
    .transform((text) => (URL.canParse(text) ? new URL(text).origin : text))

const listen = (fallback: { host: string; port: number }, described: { host: string; port: string }) =>
  z.strictObject({
    host: z.string().min(1).default(fallback.host).describe(described.host),
    port: z.number().int().min(0).max(65535).default(fallback.port).describe(described.port),
  })

export const DPOP_SIGNING_ALGS = ['ES256', 'ES384', 'ES512'] as const
export const CLIENT_AUTH_METHODS = ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'] as const
export const TOKEN_REQUIREMENTS = ['none', 'user', 'client', 'userOrClient', 'userOrNone'] as const

const scopeToken = z.string().regex(/^[\x21\x23-\x5B\x5D-\x7E]+$/, 'must be a scope token')

/** RFC 8707 §2: an absolute URI without a fragment (any scheme: `https://api.example.com`, `urn:example:api`). */
const resourceIndicator = z
  .string()
  .refine(
    (text) => /^[A-Za-z][A-Za-z0-9+.-]*:[^\s#]+$/.test(text) && URL.canParse(text),
    'must be an absolute URI without a fragment (RFC 8707), e.g. "https://api.example.com"',
  )

/**
 * One exact origin a cross-origin SPA runs on (`cors.allowedOrigins[i]`), normalised as browsers send
 * it in `Origin`: lower-case host (IDN as punycode), no default port. No wildcard, no `null`, no path.
 */
const corsOrigin = z.string().transform((text, ctx) => {
  const fail = (message: string) => {
    ctx.addIssue({ code: 'custom', message })
    return z.NEVER
  }
  if (text.includes('*'))
    return fail('must be one exact origin such as "https://spa.example.com" (no wildcards: list each origin)')
  if (text.trim().toLowerCase() === 'null')
    return fail('must not be "null" (sandboxed frames and file: pages send it, so any site can)')
  if (!URL.canParse(text) || !/^https?:\/\//i.test(text))
    return fail('must be an origin such as "https://spa.example.com"')
  const url = new URL(text)
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname))
    return fail('must be https:// (http:// is accepted only for localhost/127.0.0.1/[::1])')
  if (url.username || url.password || url.pathname !== '/' || url.search || url.hash || /[?#]$/.test(text))
    return fail('must be an origin only: scheme, host and optional port (no path, query, fragment or user info)')
  return url.origin
})

const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/**
 * The request methods Node's HTTP parser lets through to gatehouse (case-sensitive, RFC 9110 §9.1);
 * CONNECT never reaches a request handler, and TRACE is answered 405 by gatehouse itself on every
 * path (src/http/dispatch.ts). Any other name in `remoteApis[].methods` could never match.
 */
const PROXY_METHODS: ReadonlySet<string> = new Set(METHODS.filter((m) => m !== 'CONNECT' && m !== 'TRACE'))

const methodList = z
  .array(
    z.string().refine((m) => PROXY_METHODS.has(m), {
      error: (issue) => {
        const given = String(issue.input)
        const upper = given.toUpperCase()
        if (upper === 'TRACE' || upper === 'TRACK')
          return `${given} is never forwarded: gatehouse answers it 405 itself (the upstream's echo would hold the access token)`
        return PROXY_METHODS.has(upper)
          ? `methods are case-sensitive: write "${upper}", not "${given}"`
          : `must be an HTTP method such as "GET", "POST" or "DELETE" (got "${given}")`
      },
    }),
  )
  .min(1, 'must list at least one method (leave methods out to allow every method)')
  .refine((list) => new Set(list).size === list.length, 'lists a method more than once')

/** The configuration file's shape, every key with its default and description; `schema` below turns it into a Config. */
const fileSchema = z.strictObject({
  // Editors' hint (`"$schema": "./node_modules/gatehouse/gatehouse.schema.json"`); gatehouse ignores it.
  $schema: z
    .string()
    .optional()
    .describe(
      "editors' hint: where gatehouse's JSON Schema is (`gatehouse.schema.json` in the package, e.g. `./node_modules/gatehouse-bff/gatehouse.schema.json`), for completion and checks while editing; gatehouse ignores it",
    ),
  listen: listen(DEFAULTS.listen, { host: 'address to listen on', port: 'port (0 picks a free one)' }).default(
    DEFAULTS.listen,
  ),
  publicOrigin: webOrigin('public origin')
    .optional()
    .describe(
      "the origin browsers use, e.g. `https://app.example.com`; redirect URIs are built from it. It is also the host allowlist: a request for a host that is neither publicOrigin's nor a host-based frontend's origin (case and `:443`/`:80` normalised; a trailing `.` makes another host) gets 421 `misdirected_request` before anything else, except `/healthz` and `/readyz`; a browser navigation to a management or frontend path gets 308 to the same path on publicOrigin — see docs/deployment.md#which-hosts-gatehouse-answers. Without it redirect URIs are built from the `Host` header (and `X-Forwarded-Proto/Host` when `trustProxy`) and every host is answered. Set it in production. `http://` only for loopback hosts; an origin only (no path, query, fragment, user info, trailing `.`)",
    ),
  trustProxy: z
    .boolean()
    .default(DEFAULTS.trustProxy)
    .describe(
      "honour `X-Forwarded-Proto` / `X-Forwarded-Host` from a proxy in front; the last value of each (the one your proxy added) counts. With `publicOrigin`, the last `X-Forwarded-Host` (when present) is the host checked against the allowlist. The last `X-Forwarded-For` value is the client's address for `limits.perClient`",
    ),
  oidc: z.strictObject({
    authority: webUrl('the identity provider issuer').describe(
      "the IdP's issuer URL, with or without a trailing slash (`https://tenant.auth0.com/` and `https://tenant.auth0.com` are the same); discovery at `<authority without trailing slash>/.well-known/openid-configuration`. The issuer discovery publishes must be the authority (either spelling), a `{tenantid}` template that the authority fills in with one path segment (Entra ID `/common/v2.0`, `/organizations/v2.0`), or one of `oidc.allowedIssuers`; else see `oidc.issuer`. Must be `https://` (`http://` only for `localhost`, `127.0.0.1`, `[::1]`). See docs/idp-guides.md#which-issuer-is-accepted",
    ),
    issuer: webUrl('the issuer tokens carry')
      .refine(
        (text) => !text.includes('{'),
        'must be one exact issuer (no {tenantid} template: the template comes from discovery)',
      )
      .optional()
      .describe(
        "the exact issuer tokens must carry, when it is not the authority: discovery's issuer must equal it, or be a `{tenantid}` template that it fills in. For an IdP reached under another URL than it publishes (Keycloak behind an internal host name), or to let one tenant in through Entra ID's `/common` authority. Cannot be combined with `allowedIssuers` or `allowedTenants`",
      ),
    // Compared exactly with tokens' iss, so not only URLs: Google's id_tokens may carry "accounts.google.com".
    allowedIssuers: z
      .array(z.string().regex(/^[\x21-\x7E]{1,2048}$/, 'must be an issuer exactly as tokens carry it (no spaces)'))
      .min(1, 'must list at least one issuer (leave the key out otherwise)')
      .optional()
      .describe(
        "more exact issuers id_tokens (and logout tokens) may carry besides the published one — compared exactly, so not only URLs (Google's `accounts.google.com`); discovery may also publish one of them. With a `{tenantid}` template: the tenants' issuers allowed to log in",
      ),
    allowedTenants: z
      .array(z.string().regex(TENANT_ID, 'must be a tenant id (letters, digits, ".", "_" or "-")'))
      .min(1, 'must list at least one tenant id (leave the key out to allow every tenant)')
      .optional()
      .describe(
        'with a `{tenantid}` template issuer: the tenant ids (`tid`) allowed to log in (others: `login_failed`, `tenant_not_allowed`; sessions of a tenant taken out end at their next refresh). For an IdP without a template it has no effect (`allowed_tenants_unused` is logged). Without it (and without `allowedIssuers`/`issuer`) every tenant can log in, and `tenants_unrestricted` is logged at start',
      ),
    endSessionEndpoint: webUrl('the end-session endpoint')
      .optional()
      .describe(
        "the IdP's end-session URL, for an IdP whose discovery names none (or another one), e.g. `https://TENANT.auth0.com/v2/logout`. With neither, logout is local (302 to the returnUrl) and `end_session_missing` is logged at start",
      ),
    endSessionParams: z
      .record(
        z.string().regex(/^[A-Za-z0-9_.-]+$/, 'must be a query parameter name'),
        z
          .string()
          .refine(
            (v) =>
              [...v.matchAll(/\{([^}]*)\}/g)].every((m) =>
                (END_SESSION_PLACEHOLDERS as readonly string[]).includes(m[1]!),
              ),
            `may use only the placeholders ${END_SESSION_PLACEHOLDERS.map((p) => `{${p}}`).join(', ')}`,
          ),
      )
      .default(DEFAULTS.oidc.endSessionParams)
      .describe(
        'extra end-session query parameters (they replace gatehouse\'s own of the same name); values may contain `{post_logout_redirect_uri}`, `{client_id}` and `{state}`, e.g. `{ "returnTo": "{post_logout_redirect_uri}" }`',
      ),
    clientId: z.string().min(1, 'must not be empty').describe('the client id registered at the IdP'),
    clientSecret: z
      .string()
      .min(1, 'must not be empty')
      .optional()
      .describe(
        'client secret. gatehouse must be a confidential client: give this or `oidc.privateKeyJwk` (or, only if the IdP cannot do better, set `oidc.clientAuth: "none"` — warned at start)',
      ),
    clientAuth: z
      .enum(CLIENT_AUTH_METHODS)
      .optional()
      .describe(
        "`client_secret_basic`, `client_secret_post`, `private_key_jwt`, `none` (a public client + PKCE: against the browser-based-apps BCP, warned at start). Unset with a `clientSecret`: the first of `private_key_jwt` (only when `privateKeyJwk` is also set), `client_secret_basic`, `client_secret_post` that the IdP's `token_endpoint_auth_methods_supported` lists (no list: `client_secret_basic`, or `private_key_jwt` when `privateKeyJwk` is set), logged at start as `client_auth_chosen`. Unset with only `privateKeyJwk`: `private_key_jwt`. Use `client_secret_post` for an IdP that does not decode HTTP Basic credentials (see docs/idp-guides.md#client-authentication)",
      ),
    privateKeyJwk: z
      .record(z.string(), z.unknown())
      .optional()
      .describe('private JWK (with `alg`, `kid`) for `private_key_jwt`'),
    scopes: z
      .array(scopeToken)
      .default(() => [...DEFAULTS.oidc.scopes])
      .describe(
        'must include `openid`; `offline_access` asks for a refresh token (not at Google: see docs/idp-guides.md#google)',
      ),
    redirectPath: localPath
      .default(DEFAULTS.oidc.redirectPath)
      .describe(
        'callback path (register `publicOrigin` + this at the IdP); must not lie under `managementBasePath` nor be `/healthz`/`/readyz`',
      ),
    postLogoutRedirectPath: localPath
      .default(DEFAULTS.oidc.postLogoutRedirectPath)
      .describe('post-logout path (register it at the IdP); must differ from `oidc.redirectPath`'),
    extraAuthParams: z
      .record(z.string(), z.string())
      .default(DEFAULTS.oidc.extraAuthParams)
      .describe(
        'extra authorize parameters, e.g. `{ "audience": "api" }`. Every `remoteApis[].resource` is added as a `resource` parameter, and every `remoteApis[].scopes` to the scope',
      ),
    getClaimsFromUserInfo: z
      .boolean()
      .default(DEFAULTS.oidc.getClaimsFromUserInfo)
      .describe("merge userinfo claims (types the id_token lacks) into the session's claims"),
    timeout: duration(DEFAULTS.oidc.timeout).describe('timeout for calls to the IdP'),
    tokenRefreshSkew: duration(DEFAULTS.oidc.tokenRefreshSkew).describe(
      'user and client access tokens this close to expiry are refreshed before use',
    ),
    pushedAuthorizationRequests: z
      .boolean()
      .default(DEFAULTS.oidc.pushedAuthorizationRequests)
      .describe(
        'send the authorization request by PAR (RFC 9126): the browser carries only a `request_uri`; also used when the IdP says it requires PAR',
      ),
    dpop: z
      .union(
        [
          z.boolean(),
          z.strictObject({
            signingAlg: z
              .enum(DPOP_SIGNING_ALGS)
              .default(DEFAULTS.oidc.dpopSigningAlg)
              .describe("the algorithm of each session's DPoP key"),
          }),
        ],
        {
          error: 'must be true, false or an object such as { "signingAlg": "ES256" }',
        },
      )
      .default(DEFAULTS.oidc.dpop)
      .describe(
        'DPoP (RFC 9449) sender-constrained tokens: `true` (ES256 keys) or `{ "signingAlg": "ES256" | "ES384" | "ES512" }`. Each session gets its own key pair at login, sealed in the session with its tokens; user and client tokens are requested DPoP-bound and every API call carries a proof. The IdP must list the algorithm in `dpop_signing_alg_values_supported`, else logins answer 502 and `/readyz` 503 (and an error is logged at start) — see docs/remote-apis.md#dpop-sender-constrained-tokens',
      ),
    clientCredentialsScopes: z
      .array(scopeToken)
      .default(() => [...DEFAULTS.oidc.clientCredentialsScopes])
      .describe(
        "scopes asked for in the client-credentials grant (token types `client`, `userOrClient`); empty: the IdP's default",
      ),
  }),
  keys: z
    .array(
      z
        .string()
        .refine(
          (k) => decodeKey(k) !== undefined,
          'must be a 32-byte key in base64url (create one with `gatehouse keys generate`)',
        ),
    )
    .min(1, 'at least one key is required (create one with `gatehouse keys generate`)')
    .describe(
      'key ring, at least one 32-byte base64url key (`gatehouse keys generate`). The first key seals; all keys unseal.',
    ),
  session: z
    .strictObject({
      mode: z
        .enum(['server', 'cookie'])
        .default(DEFAULTS.session.mode)
        .describe(
          '`"server"` (a store holds the session) or `"cookie"` (the encrypted session is the cookie; no revocation, no back-channel logout) — see docs/sessions.md',
        ),
      store: z
        .string()
        .default(DEFAULTS.session.store)
        .refine(
          (s) =>
            s === 'memory' ||
            /^sqlite:.+/.test(s) ||
            /^rediss?(-cluster|-sentinel)?:\/\//.test(s) ||
            /^postgres(ql)?:\/\//.test(s),
          'must be "memory", "sqlite:PATH", "redis://…", "redis-cluster://…", "redis-sentinel://…" or "postgres://…"',
        )
        .superRefine((s, ctx) => {
          const problem = storeUrlProblem(s)
          if (problem) ctx.addIssue({ code: 'custom', message: problem })
        })
        .describe(
          '`"memory"`, `"sqlite:PATH"`, `"redis://…"` / `"rediss://…"`, `"redis-cluster://h1:p1,h2:p2"`, `"redis-sentinel://h1:p1,h2:p2/masterName"` (these need `ioredis`), `"postgres://…"` (needs `pg`) — see docs/sessions.md',
        ),
      cookieName: z
        .string()
        .regex(COOKIE_NAME, 'must be a valid cookie name')
        .refine((n) => n.startsWith('__Host-'), 'must start with "__Host-"')
        .default(DEFAULTS.session.cookieName)
        .describe('must start with `__Host-`'),
      // "none" only with cors.allowedOrigins (crossCheck): an SPA on another site.
      sameSite: z
        .enum(['strict', 'lax', 'none'])
        .default(DEFAULTS.session.sameSite)
        .describe(
          '`"lax"`, `"strict"`, or `"none"` — only together with `cors.allowedOrigins`, for a SPA on another *site* (warned at start; a token-carrying remote API must then keep `antiForgery: true`). The cookie stays `__Host-`, `Secure`, `HttpOnly`; the pending-login cookie is always `Lax` — see docs/frontends.md#cross-origin-spas',
        ),
      lifetime: duration(DEFAULTS.session.lifetime).describe(
        'session lifetime; with `sliding` it restarts with activity',
      ),
      sliding: z
        .boolean()
        .default(DEFAULTS.session.sliding)
        .describe('extend the session on use (written at most once per half lifetime)'),
      absoluteLifetime: duration(DEFAULTS.session.absoluteLifetime).describe(
        'hard cap for sliding sessions, counted from login; must not be shorter than `session.lifetime`',
      ),
      cleanupInterval: duration(DEFAULTS.session.cleanupInterval).describe(
        'how often expired sessions are deleted (in batches of 500)',
      ),
      cacheTtl: duration(DEFAULTS.session.cacheTtl, { allowZero: true, maxMs: 60_000, max: '60s' }).describe(
        'Redis and PostgreSQL only: how long a session read from the store may be reused in-process by later requests (at most `"60s"`; `"0s"`: read the store on every request). Ended sessions are dropped at once through the store\'s pub/sub — see docs/sessions.md#the-session-read-cache-redis-postgresql',
      ),
    })
    .prefault({}),
  managementBasePath: localPath
    .refine((p) => p.length > 1 && !p.endsWith('/'), 'must be a path such as "/bff" (no trailing slash)')
    .default(DEFAULTS.managementBasePath)
    .describe('prefix of `/login`, `/user`, `/logout` and the other management endpoints'),
  antiForgery: z
    .strictObject({
      header: z
        .string()
        .regex(COOKIE_NAME, 'must be a valid header name')
        .default(DEFAULTS.antiForgery.header)
        .describe('header that `/bff/user` and protected routes require'),
      value: z.string().min(1).default(DEFAULTS.antiForgery.value).describe('its required value'),
    })
    .default(DEFAULTS.antiForgery),
  cors: z
    .strictObject({
      allowedOrigins: z
        .array(corsOrigin)
        .min(1, 'must list at least one origin (leave cors out for no CORS)')
        .describe(
          'origins of a SPA served elsewhere (`["https://spa.example.com", "http://localhost:5173"]`): exact origins, no path, wildcard or `null`, `https://` except loopback; normalised (lower case, no default port). They get CORS with credentials on `/bff/user`, `/bff/session-events`, `/bff/diagnostics`, `protect()`ed routes and remote APIs, and may be the origin of an absolute `returnUrl`',
        ),
    })
    .optional()
    .describe(
      'CORS for a SPA served on other origins. Unset: no CORS header at all — see docs/frontends.md#cross-origin-spas',
    ),
  anonymousSessionResponse: z
    .union([z.literal(401), z.literal(200)], { error: 'must be 401 or 200' })
    .default(DEFAULTS.anonymousSessionResponse)
    .describe('what `/bff/user` answers without a session: `401`, or `200` with body `null`'),
  revokeRefreshTokenOnLogout: z
    .boolean()
    .default(DEFAULTS.revokeRefreshTokenOnLogout)
    .describe(
      'revoke the refresh token at the IdP on logout (RFC 7009); also on back-channel logout when the token is bound to the IdP session (its granted scope lacks `offline_access`, Back-Channel Logout §2.7)',
    ),
  backchannelLogout: z
    .strictObject({
      allUserSessions: z
        .boolean()
        .default(DEFAULTS.backchannelLogout.allUserSessions)
        .describe(
          "a logout token with a `sid` ends only that IdP session's gatehouse sessions; `true` ends all sessions of its `sub`",
        ),
    })
    .default(DEFAULTS.backchannelLogout),
  remoteApis: z
    .array(
      z.strictObject({
        path: localPath
          .refine((p) => p.length > 1 && !p.endsWith('/'), 'must be a prefix such as "/api" (no trailing slash)')
          .describe(
            "local prefix, e.g. `/api` (no trailing slash). Must not overlap `managementBasePath`, the OIDC callback paths, `/healthz`, `/readyz`, or another API's `path`",
          ),
        target: z
          .string()
          .refine((t) => URL.canParse(t) && /^https?:$/.test(new URL(t).protocol), 'must be an http:// or https:// URL')
          .describe(
            'upstream URL (`http://` or `https://`), may carry a base path: `{ "path": "/orders", "target": "http://h/v2" }` sends `/orders/7?x=1` to `http://h/v2/7?x=1`',
          ),
        token: z
          .enum(TOKEN_REQUIREMENTS)
          .default(DEFAULTS.remoteApi.token)
          .describe(
            "which token to attach: `none`, `user` (without a session: 401 `session_required`, upstream not called), `userOrNone`, `client` (gatehouse's own client-credentials token), `userOrClient` — see docs/remote-apis.md#token-types",
          ),
        antiForgery: z
          .boolean()
          .default(DEFAULTS.remoteApi.antiForgery)
          .describe('require the anti-forgery header (`X-CSRF: 1`): 401 otherwise, before the upstream is called'),
        timeout: duration(DEFAULTS.remoteApi.timeout).describe(
          "how long to wait for one of the API's connections and then for the upstream's response headers: 503 `upstream_busy` when no connection became free in time, 504 when the headers did not come; an open stream (SSE, downloads) is not cut off",
        ),
        websockets: z
          .boolean()
          .default(DEFAULTS.remoteApi.websockets)
          .describe(
            "proxy WebSocket upgrades under this prefix (a `GET` handshake whose `Origin` is the app's own) — see docs/remote-apis.md#websockets",
          ),
        // RFC 10017 §6.1.3.6: the methods this API accepts; unset: every method. HEAD goes with GET.
        methods: methodList
          .optional()
          .describe(
            'the request methods forwarded, e.g. `["GET", "POST"]` (RFC 10017 §6.1.3.6); another method gets 405 with an `Allow` header. `HEAD` goes with `GET`; names are case-sensitive; never `TRACE`, which gatehouse answers 405 on every path; with `websockets` the list must include `GET` — see docs/remote-apis.md#methods',
          ),
        maxBodySize: z
          .string()
          .register(valueKinds, { kind: 'size' })
          .optional()
          .transform((text, ctx) => {
            if (text === undefined) return undefined
            const bytes = parseSize(text)
            if (bytes === undefined) {
              ctx.addIssue({
                code: 'custom',
                message: `must be a size such as "512kb", "10mb" or "1gb" (got "${text}")`,
              })
              return z.NEVER
            }
            return bytes
          })
          .describe(
            'largest request body forwarded (`"512kb"`, `"10mb"`, `"1gb"`): a larger declared body is refused with 413 before the upstream is called; a chunked one is cut off with 413 when it passes the limit. Unset: no limit',
          ),
        resource: resourceIndicator
          .optional()
          .describe(
            'RFC 8707 resource indicator (absolute URI, no fragment): the API gets a token restricted to it, got with the session\'s refresh token and kept in the session, never the general token — see docs/remote-apis.md#audience-restricted-tokens-resource. Not with `token: "none"`.',
          ),
        scopes: z
          .array(scopeToken)
          .default(() => [...DEFAULTS.remoteApi.scopes])
          .describe("scopes asked for in that API's `resource` tokens (and at login); needs `resource`"),
        // This API's own connection pool and wait queue (docs/remote-apis.md#capacity).
        connections: count(1, 10_000)
          .default(DEFAULTS.remoteApi.connections)
          .describe(
            "upstream connections of that API's own pool (whole number, 1–10000): at most this many of its requests are in flight. Each API has its own, also when several share a host — see docs/remote-apis.md#capacity-held-requests-and-slow-clients for sizing",
          ),
        queue: count(0, 100_000)
          .optional()
          .describe(
            'requests that may wait for a free connection (0–100000; `0`: none waits); the wait counts toward `timeout`; a full queue or a wait past `timeout` gets 503 `upstream_busy` with `Retry-After`',
          ),
      }),
    )
    .default(() => [...DEFAULTS.remoteApis])
    .describe('APIs to reverse-proxy with tokens attached, one entry each — see docs/remote-apis.md'),
  frontends: z
    .array(
      z.strictObject({
        name: z
          .string()
          .regex(/^[A-Za-z0-9-]{1,40}$/, 'must be 1–40 letters, digits or "-" (it names the cookie partition)')
          .describe('letters, digits, `-` (1–40); names the session partition and the cookie'),
        path: localPath
          .refine((p) => p === '/' || !p.endsWith('/'), 'must be "/" or a prefix without a trailing slash')
          .default(DEFAULTS.frontend.path)
          .describe('where the SPA lives (`/admin`: no trailing slash)'),
        host: z
          .string()
          .regex(/^[A-Za-z0-9.-]+(:\d{1,5})?$/, 'must be a host name (optionally with :port)')
          .refine(
            (h) => !/\.(:|$)/.test(h) && !h.startsWith('.') && URL.canParse(`http://${h}/`),
            'must be a host name such as "admin.example.com" (optionally with :port; no leading or trailing ".")',
          )
          .optional()
          .describe(
            'serve this frontend only for this host (`admin.example.com`, optionally `:port`; no trailing `.`)',
          ),
        // The origin browsers use for this host-based frontend; default: publicOrigin's scheme (and port) with `host`.
        origin: webOrigin("the frontend's origin")
          .optional()
          .describe(
            "a host-based frontend's origin (needs `host`, must be of that host, validated like `publicOrigin`): its redirect URIs, WebSocket `Origin` check and silent-login target, and one more host gatehouse answers — see docs/frontends.md#host-based-frontends-and-their-origins",
          ),
        static: z
          .string()
          .min(1)
          .optional()
          .describe(
            "a folder with the built SPA (`index.html` at its root); a relative path is relative to the configuration file's folder. Give each frontend exactly one of `static` or `indexHtmlUrl`",
          ),
        indexHtmlUrl: webUrl('index.html location')
          .optional()
          .describe('or: fetch `index.html` from here (a CDN); assets come from the CDN directly'),
        indexHtmlCacheTtl: duration(DEFAULTS.frontend.indexHtmlCacheTtl).describe(
          'how long the fetched `index.html` is reused',
        ),
        // Per-frontend client registration at the IdP (SPEC §6); unset keys come from the top-level oidc block.
        oidc: z
          .strictObject({
            clientId: z.string().min(1, 'must not be empty').optional().describe("this frontend's `oidc.clientId`"),
            clientSecret: z
              .string()
              .min(1, 'must not be empty')
              .optional()
              .describe("this frontend's `oidc.clientSecret`"),
            clientAuth: z.enum(CLIENT_AUTH_METHODS).optional().describe("this frontend's `oidc.clientAuth`"),
            privateKeyJwk: z
              .record(z.string(), z.unknown())
              .optional()
              .describe("this frontend's `oidc.privateKeyJwk`"),
            scopes: z.array(scopeToken).optional().describe("this frontend's `oidc.scopes`"),
            extraAuthParams: z
              .record(z.string(), z.string())
              .optional()
              .describe("this frontend's `oidc.extraAuthParams`"),
          })
          .optional()
          .describe("this frontend's own client at the IdP; unset keys come from the top-level `oidc` block"),
      }),
    )
    .default(() => [...DEFAULTS.frontends])
    .describe('SPAs to serve, one entry each — see docs/frontends.md'),
  diagnostics: z
    .boolean()
    .default(DEFAULTS.diagnostics)
    .describe('enable `GET /bff/diagnostics` (shows access tokens; development only)'),
  // What one client may hold of the proxy, and how long a stalled body may hold it (docs/remote-apis.md#capacity).
  limits: z
    .strictObject({
      perClient: count(1, 1_000_000)
        .default(DEFAULTS.limits.perClient)
        .describe(
          'proxied requests one client may have in flight (whole number ≥ 1); more get 429 `too_many_requests` with `Retry-After`. The client is its session, else its address (with `trustProxy`, the last `X-Forwarded-For` value; IPv6 by /64): behind a proxy, set `trustProxy` or every anonymous client counts as the proxy',
        ),
      perClientStreams: count(1, 1_000_000)
        .default(DEFAULTS.limits.perClientStreams)
        .describe(
          'long-lived streams one client may have open besides (WebSockets, event streams: `Accept: text/event-stream` or an answer of that type); more get 429',
        ),
      bodyIdleTimeout: duration(DEFAULTS.limits.bodyIdleTimeout, { allowZero: true }).describe(
        'a proxied request body that sends nothing for this long ends that request: 408 `body_idle`, or a closed connection once the answer has started; its upstream connection is freed. `"0s"`: never',
      ),
      writeIdleTimeout: duration(DEFAULTS.limits.writeIdleTimeout, { allowZero: true }).describe(
        'a client that accepts nothing of a proxied answer for this long loses the connection, and the upstream connection is freed. `"0s"`: never',
      ),
    })
    .prefault({}),
  admin: z
    .strictObject({
      listen: listen(DEFAULTS.admin.listen, {
        host: 'address of the admin listener; keep it off the public network',
        port: 'its port (0 picks a free one)',
      }).default(DEFAULTS.admin.listen),
      token: z
        .string()
        .min(16, 'must be at least 16 characters')
        .optional()
        .describe(
          'bearer token (at least 16 characters; pass it as `${GATEHOUSE_ADMIN_TOKEN}`) required on every admin request, `/metrics` included. Unset: `/metrics` is open, the session API answers 403, and a warning is logged at start.',
        ),
    })
    .optional()
    .describe(
      'turns on the admin listener of `gatehouse serve`: `GET /metrics` and the session API — see docs/operations.md. Without it nothing extra listens.',
    ),
  log: z
    .strictObject({
      level: z
        .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
        .default(DEFAULTS.log.level)
        .describe('`fatal`, `error`, `warn`, `info`, `debug`, `trace`, `silent`'),
      format: z
        .enum(['json', 'pretty', 'auto'])
        .default(DEFAULTS.log.format)
        .describe(
          '`"json"`: one JSON object per line (pino), for log collectors; `"pretty"`: one readable line per event, `HH:MM:SS.mmm LEVEL message key=value …` (local time, nested values as compact JSON, the same redaction), coloured only on a terminal and unless `NO_COLOR` is set; `"auto"`: pretty when stdout is a terminal, JSON otherwise — so piped, redirected to a file, under systemd, in Docker without `-t` or in Kubernetes it is JSON. Set `"json"` (or `GATEHOUSE_LOG__FORMAT=json`) where a collector reads the output of a terminal (`docker run -t`). See docs/operations.md#logs',
        ),
    })
    .default(DEFAULTS.log),
  user: z
    .strictObject({
      claimValues: z
        .enum(['string', 'json'])
        .default(DEFAULTS.user.claimValues)
        .describe(
          'how `/bff/user` writes IdP claim values. `"string"`: Duende.BFF\'s shape — every value a string (`true` → `"true"`, `42` → `"42"`) with `valueType` `null` for strings, the XML-schema URI for booleans and numbers (`http://www.w3.org/2001/XMLSchema#boolean`, `…#integer32`, `…#integer64`, `…#double`), `"JSON"` for objects (their JSON text); only `bff:session_expires_in` is a number. `"json"`: values as the IdP sent them (booleans and numbers native, objects as JSON text with `valueType: "json"`). `claimValue()` from `gatehouse-bff/client` works with both',
        ),
    })
    .default(DEFAULTS.user),
})

/**
 * Validation and normalisation in one: the file's shape in, the Config out (durations in ms, one
 * DPoP form, frontends' origins). The Config type is this schema's output (types.ts).
 */
const schema = fileSchema.transform(toConfig)

/** The configuration schema itself, for `gatehouse schema` (src/config/json-schema.ts). */
export const configSchema = schema

/** What users write: the config file's shape, every key but oidc.authority, oidc.clientId and keys optional. */
export type GatehouseOptions = z.input<typeof schema>

/** `["remoteApis", 0, "target"]` → `remoteApis[0].target` (SPEC §10). */
export function formatKeyPath(path: ReadonlyArray<PropertyKey>): string {
  let out = ''
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`
    else out += out ? `.${String(part)}` : String(part)
  }
  return out || '(root)'
}

/** Validates raw config; returns every problem at once, one per key path. */
export function validateConfig(
  raw: unknown,
): { config: Config; issues: [] } | { config: undefined; issues: ConfigIssue[] } {
  const parsed = schema.safeParse(raw ?? {}, { reportInput: true })
  const issues: ConfigIssue[] = parsed.success ? [] : parsed.error.issues.flatMap(toConfigIssues)
  for (const issue of crossCheck(raw)) if (!issues.some((i) => i.path === issue.path)) issues.push(issue)
  if (!parsed.success || issues.length) return { config: undefined, issues }
  return { config: deepFreeze(parsed.data), issues: [] }
}

/** The validated file as a Config; its return type is the Config type. */
function toConfig(value: z.output<typeof fileSchema>) {
  const { timeout, tokenRefreshSkew, dpop, ...oidc } = value.oidc
  const { lifetime, absoluteLifetime, cleanupInterval, cacheTtl, ...session } = value.session
  return {
    listen: value.listen,
    publicOrigin: value.publicOrigin,
    trustProxy: value.trustProxy,
    oidc: {
      ...oidc,
      clientSecret: oidc.clientSecret,
      privateKeyJwk: oidc.privateKeyJwk,
      // With a secret and no choice made, discovery tells which method the IdP accepts.
      clientAuth:
        oidc.clientAuth ??
        (oidc.clientSecret ? undefined : oidc.privateKeyJwk ? ('private_key_jwt' as const) : ('none' as const)),
      issuer: oidc.issuer,
      allowedIssuers: oidc.allowedIssuers,
      allowedTenants: oidc.allowedTenants,
      endSessionEndpoint: oidc.endSessionEndpoint,
      timeoutMs: timeout,
      tokenRefreshSkewMs: tokenRefreshSkew,
      dpop: dpop === true ? { signingAlg: DEFAULTS.oidc.dpopSigningAlg } : dpop === false ? undefined : dpop,
    },
    keys: value.keys,
    session: {
      ...session,
      lifetimeMs: lifetime,
      absoluteLifetimeMs: absoluteLifetime,
      cleanupIntervalMs: cleanupInterval,
      cacheTtlMs: cacheTtl,
    },
    managementBasePath: value.managementBasePath,
    antiForgery: value.antiForgery,
    cors: value.cors ? { allowedOrigins: [...new Set(value.cors.allowedOrigins)] } : undefined,
    anonymousSessionResponse: value.anonymousSessionResponse,
    revokeRefreshTokenOnLogout: value.revokeRefreshTokenOnLogout,
    backchannelLogout: value.backchannelLogout,
    remoteApis: value.remoteApis.map(({ timeout: t, maxBodySize, methods, queue, ...api }) => ({
      ...api,
      methods,
      timeoutMs: t,
      maxBodyBytes: maxBodySize,
      resource: api.resource,
      queue: queue ?? DEFAULTS.remoteApi.queuePerConnection * api.connections,
    })),
    frontends: value.frontends.map(({ indexHtmlCacheTtl, oidc: frontendOidc, ...f }) => ({
      ...f,
      host: f.host?.toLowerCase(),
      origin:
        f.host === undefined
          ? undefined
          : (f.origin ??
            (value.publicOrigin === undefined
              ? undefined
              : derivedFrontendOrigin(value.publicOrigin, f.host.toLowerCase()))),
      static: f.static,
      indexHtmlUrl: f.indexHtmlUrl,
      indexHtmlCacheTtlMs: indexHtmlCacheTtl,
      oidc: frontendOidc ? { ...frontendOidc } : undefined,
    })),
    diagnostics: value.diagnostics,
    limits: {
      perClient: value.limits.perClient,
      perClientStreams: value.limits.perClientStreams,
      bodyIdleTimeoutMs: value.limits.bodyIdleTimeout,
      writeIdleTimeoutMs: value.limits.writeIdleTimeout,
    },
    admin: value.admin ? { listen: value.admin.listen, token: value.admin.token } : undefined,
    log: value.log,
    user: value.user,
  }
}

function toConfigIssues(issue: z.core.$ZodIssue): ConfigIssue[] {
  const path = formatKeyPath(issue.path)
  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map((key) => ({ path: formatKeyPath([...issue.path, key]), message: 'unknown key' }))
    case 'invalid_type':
      return [
        {
          path,
          message:
            issue.input === undefined
              ? 'is required'
              : `must be ${article(issue.expected)} (got ${describeType(issue.input)})`,
        },
      ]
    case 'invalid_value':
      return [{ path, message: `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}` }]
    case 'invalid_union': {
      // The value has the shape of one alternative (an object where true/false/object is allowed):
      // that alternative's own problems say more than "none of them".
      const shaped = issue.errors.find((errors) => errors.length > 0 && errors.every((e) => e.path.length > 0))
      if (shaped)
        return shaped.flatMap((e) => toConfigIssues({ ...e, path: [...issue.path, ...e.path] } as z.core.$ZodIssue))
      return [{ path, message: issue.message }]
    }
    default:
      return [{ path, message: issue.message }]
  }
}

function article(expected: string): string {
  return /^[aeiou]/.test(expected) ? `an ${expected}` : `a ${expected}`
}

/** The type of a bad value, never the value itself: it may be a secret. */
function describeType(value: unknown): string {
  return Array.isArray(value) ? 'an array' : value === null ? 'null' : `a ${typeof value}`
}

/**
 * Rules that span several keys. They read the raw input leniently (a value of the wrong type counts
 * as absent), so they run even when the schema found problems: every problem is reported at once.
 */
function crossCheck(raw: unknown): ConfigIssue[] {
  const issues: ConfigIssue[] = []
  const root = record(raw)
  const oidc = record(root.oidc)
  const session = record(root.session)
  const secret = text(oidc.clientSecret)
  const auth =
    text(oidc.clientAuth) ?? (oidc.privateKeyJwk ? 'private_key_jwt' : secret ? 'client_secret_basic' : 'none')
  if ((auth === 'client_secret_basic' || auth === 'client_secret_post') && !secret) {
    issues.push({ path: 'oidc.clientSecret', message: `is required when oidc.clientAuth is "${auth}"` })
  }
  if (auth === 'private_key_jwt' && !oidc.privateKeyJwk) {
    issues.push({ path: 'oidc.privateKeyJwk', message: 'is required when oidc.clientAuth is "private_key_jwt"' })
  }
  // RFC 10017 §6.1.3.1: the BFF MUST be a confidential client. A public one only by explicit choice.
  if (root.oidc !== undefined && text(oidc.clientAuth) === undefined && !secret && !oidc.privateKeyJwk) {
    issues.push({
      path: 'oidc.clientSecret',
      message:
        'is required: gatehouse must be a confidential client (or set oidc.privateKeyJwk; oidc.clientAuth "none" only if your IdP cannot do better)',
    })
  }
  // oidc.issuer names the one issuer tokens carry: lists of other issuers or tenants would never apply.
  if (text(oidc.issuer) !== undefined) {
    for (const key of ['allowedIssuers', 'allowedTenants'] as const)
      if (oidc[key] !== undefined)
        issues.push({
          path: `oidc.${key}`,
          message: 'has no effect with oidc.issuer (which names the one issuer tokens must carry); remove one of them',
        })
  }
  if (Array.isArray(oidc.scopes) && !oidc.scopes.includes('openid'))
    issues.push({ path: 'oidc.scopes', message: 'must include "openid"' })
  const redirectPath = text(oidc.redirectPath) ?? DEFAULTS.oidc.redirectPath
  const postLogoutPath = text(oidc.postLogoutRedirectPath) ?? DEFAULTS.oidc.postLogoutRedirectPath
  if (redirectPath === postLogoutPath)
    issues.push({ path: 'oidc.postLogoutRedirectPath', message: 'must differ from oidc.redirectPath' })
  // A callback path must not shadow a management or health endpoint.
  const base = text(root.managementBasePath) ?? DEFAULTS.managementBasePath
  for (const [key, path] of [
    ['oidc.redirectPath', redirectPath],
    ['oidc.postLogoutRedirectPath', postLogoutPath],
  ] as const) {
    if (path.startsWith(`${base}/`) || path === '/healthz' || path === '/readyz')
      issues.push({ path: key, message: `must not be under managementBasePath or be /healthz or /readyz` })
  }
  const lifetime = parseDuration(text(session.lifetime) ?? DEFAULTS.session.lifetime)
  const absolute = parseDuration(text(session.absoluteLifetime) ?? DEFAULTS.session.absoluteLifetime)
  const sliding = typeof session.sliding === 'boolean' ? session.sliding : DEFAULTS.session.sliding
  if (sliding && lifetime !== undefined && absolute !== undefined && absolute < lifetime) {
    issues.push({ path: 'session.absoluteLifetime', message: 'must not be shorter than session.lifetime' })
  }
  const apis = Array.isArray(root.remoteApis) ? root.remoteApis : []
  const seen = new Map<string, number>()
  apis.forEach((api, i) => {
    const path = text(record(api).path)
    if (path === undefined) return
    const before = seen.get(path)
    if (before !== undefined)
      issues.push({ path: `remoteApis[${i}].path`, message: `duplicates remoteApis[${before}].path` })
    seen.set(path, i)
  })
  // A WebSocket handshake is a GET: an API that refuses GET can never upgrade.
  apis.forEach((api, i) => {
    const { methods, websockets } = record(api)
    if (websockets === true && Array.isArray(methods) && !methods.includes('GET')) {
      issues.push({
        path: `remoteApis[${i}].methods`,
        message: 'must include "GET" when websockets is true (the WebSocket handshake is a GET)',
      })
    }
  })
  // A remote API must not swallow gatehouse's own endpoints.
  const ownPaths = [base, redirectPath, postLogoutPath, '/healthz', '/readyz']
  apis.forEach((api, i) => {
    const path = text(record(api).path)
    if (path && ownPaths.some((own) => own === path || own.startsWith(`${path}/`) || path.startsWith(`${own}/`))) {
      issues.push({
        path: `remoteApis[${i}].path`,
        message: 'must not overlap managementBasePath, the OIDC callback paths, /healthz or /readyz',
      })
    }
  })
  apis.forEach((api, i) => {
    const { resource, scopes, token } = record(api)
    if (resource !== undefined && token === 'none')
      issues.push({
        path: `remoteApis[${i}].resource`,
        message: 'is not used with token "none": the API gets no token',
      })
    if (resource === undefined && Array.isArray(scopes) && scopes.length > 0) {
      issues.push({
        path: `remoteApis[${i}].scopes`,
        message: `needs remoteApis[${i}].resource: the scopes are asked for in that resource's tokens`,
      })
    }
  })
  // SameSite=None sends the session cookie with cross-site requests: only for an SPA on another site,
  // and then nothing but the anti-forgery header (and the preflight it forces) stops a forged call.
  if (session.sameSite === 'none') {
    const cors = record(root.cors)
    if (!Array.isArray(cors.allowedOrigins) || cors.allowedOrigins.length === 0) {
      issues.push({
        path: 'session.sameSite',
        message:
          '"none" needs cors.allowedOrigins (it is only for an SPA on another site); use "lax" or "strict" otherwise',
      })
    }
    apis.forEach((api, i) => {
      const { antiForgery, token } = record(api)
      if (antiForgery === false && token !== 'none')
        issues.push({
          path: `remoteApis[${i}].antiForgery`,
          message:
            'must be true with session.sameSite "none": the session cookie then goes with cross-site requests, and only the anti-forgery header stops forged ones',
        })
    })
  }
  const frontends = Array.isArray(root.frontends) ? root.frontends : []
  const names = new Map<string, number>()
  const places = new Map<string, number>()
  frontends.forEach((f, i) => {
    const name = text(record(f).name)?.toLowerCase()
    const place = `${text(record(f).host)?.toLowerCase() ?? '*'}${text(record(f).path) ?? DEFAULTS.frontend.path}`
    if (name !== undefined && names.has(name))
      issues.push({ path: `frontends[${i}].name`, message: `duplicates frontends[${names.get(name)}].name` })
    if (places.has(place))
      issues.push({
        path: `frontends[${i}].path`,
        message: `frontends[${places.get(place)}] already serves this host and path`,
      })
    if (name !== undefined) names.set(name, i)
    places.set(place, i)
  })
  frontends.forEach((f, i) => {
    if (!record(f).static === !record(f).indexHtmlUrl)
      issues.push({ path: `frontends[${i}]`, message: 'needs exactly one of "static" or "indexHtmlUrl"' })
    const folder = text(record(f).static)
    if (folder !== undefined && !isFolder(folder))
      issues.push({ path: `frontends[${i}].static`, message: `folder "${folder}" does not exist` })
  })
  issues.push(...checkOrigins(root, frontends, issues))
  return issues
}

/**
 * publicOrigin and the host-based frontends' origins together are the hosts gatehouse answers for
 * (src/http/origin.ts OwnOrigins): each frontend's origin must be of its host, and no two origins may
 * be told apart only by scheme (a Host header carries none).
 */
function checkOrigins(root: Record<string, unknown>, frontends: unknown[], earlier: ConfigIssue[]): ConfigIssue[] {
  const issues: ConfigIssue[] = []
  const publicText = originText(root.publicOrigin)
  // An http:// publicOrigin off loopback is the schema's to report; derived origins would only repeat it.
  const publicOrigin =
    publicText !== undefined && (publicText.startsWith('https:') || isLoopbackHost(new URL(publicText).hostname))
      ? publicText
      : undefined
  const anyOrigin = frontends.some((f) => record(f).origin !== undefined)
  // Every origin in use, with the key that configures it, for the clash checks below.
  const used: Array<{ origin: string; key: string; path: string | undefined; index: number }> = []
  if (publicOrigin !== undefined) used.push({ origin: publicOrigin, key: 'publicOrigin', path: undefined, index: -1 })
  frontends.forEach((f, i) => {
    const entry = record(f)
    const host = text(entry.host)?.toLowerCase()
    const given = entry.origin === undefined ? undefined : originText(entry.origin)
    if (entry.origin !== undefined && host === undefined) {
      issues.push({
        path: `frontends[${i}].origin`,
        message: `needs frontends[${i}].host: an origin belongs to a host-based frontend (path-based ones use publicOrigin)`,
      })
      return
    }
    if (host === undefined || !/^[a-z0-9.-]+(:\d{1,5})?$/.test(host) || !URL.canParse(`http://${host}/`)) return
    if (given !== undefined) {
      if (!isOriginOfHost(given, host))
        issues.push({
          path: `frontends[${i}].origin`,
          message: `must be an origin of frontends[${i}].host "${host}" (got ${given})`,
        })
      else
        used.push({
          origin: given,
          key: `frontends[${i}].origin`,
          path: text(entry.path) ?? DEFAULTS.frontend.path,
          index: i,
        })
    } else if (publicOrigin !== undefined) {
      const derived = derivedFrontendOrigin(publicOrigin, host)
      if (derived.startsWith('http:') && !isLoopbackHost(new URL(derived).hostname)) {
        issues.push({
          path: `frontends[${i}].host`,
          message: `would be served at ${derived} (publicOrigin's scheme with this host), which is http:// on a host that is not loopback: set frontends[${i}].origin to its https:// origin`,
        })
      } else
        used.push({
          origin: derived,
          key: `frontends[${i}].host`,
          path: text(entry.path) ?? DEFAULTS.frontend.path,
          index: i,
        })
    } else if (anyOrigin && entry.origin === undefined) {
      issues.push({
        path: `frontends[${i}].origin`,
        message:
          'is required when another frontend sets origin and publicOrigin is not set: gatehouse then answers only the configured origins and would refuse this host (set it, or set publicOrigin)',
      })
    }
  })
  for (let a = 0; a < used.length; a++) {
    for (let b = 0; b < a; b++) {
      const later = used[a]!
      const earlierOne = used[b]!
      if (later.origin !== earlierOne.origin) {
        // Same host, other scheme: the Host header cannot say which one a request is for.
        const shared = originKeys(later.origin).some((k) => originKeys(earlierOne.origin).includes(k))
        if (shared)
          issues.push({
            path: later.key,
            message: `is ${later.origin}, and ${earlierOne.key} is ${earlierOne.origin}: the same host under another scheme (a request's Host cannot tell them apart)`,
          })
      } else if (
        later.path !== undefined &&
        later.path === earlierOne.path &&
        !earlier.some((i) => i.path === `frontends[${later.index}].path`)
      ) {
        issues.push({
          path: later.key,
          message: `gives origin ${later.origin} at path "${later.path}", which frontends[${earlierOne.index}] already serves`,
        })
      }
    }
  }
  return issues
}

/** A configured origin as the schema normalises it; undefined when it is not one (the schema reports that). */
function originText(value: unknown): string | undefined {
  const raw = text(value)
  if (raw === undefined || !URL.canParse(raw)) return undefined
  const url = new URL(raw)
  return /^https?:$/.test(url.protocol) && url.pathname === '/' && url.hostname !== '' ? url.origin : undefined
}

function isFolder(path: string): boolean {
  try {
    return statSync(path).isDirectory()
  } catch {
    return false
  }
}

function record(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : {}
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const item of Object.values(value)) deepFreeze(item)
    Object.freeze(value)
  }
  return value
}
