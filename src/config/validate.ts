import { statSync } from 'node:fs'
import { METHODS } from 'node:http'
import { z } from 'zod'
import { parseDuration, parseSize } from './duration.ts'
import { storeUrlProblem } from './store-url.ts'
import type { Config, ConfigIssue, DpopSigningAlg } from './types.ts'
import { derivedFrontendOrigin, isLoopbackHost, isOriginOfHost, originKeys } from '../http/origin.ts'
import { decodeKey } from '../session/seal.ts'
import { END_SESSION_PLACEHOLDERS } from '../oidc/end-session.ts'
import { TENANT_ID } from '../oidc/issuer.ts'

const duration = (fallback: string, range: { allowZero?: boolean; maxMs?: number; max?: string } = {}) =>
  z
    .string()
    .default(fallback)
    .transform((text, ctx) => {
      const ms = parseDuration(text)
      if (ms === undefined || (ms === 0 && !range.allowZero)) {
        ctx.addIssue({ code: 'custom', message: `must be a duration such as "30s", "10m", "8h" or "7d" (got "${text}")` })
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
  .refine((p) => !p.startsWith('//') && !p.split('/').some((s) => s === '.' || s === '..'), 'must be a plain absolute path')

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
    .refine((text) => !URL.canParse(text) || (!new URL(text).username && !new URL(text).password), 'must not hold a user name or password ("user:password@"): gatehouse logs and prints this URL')

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
    .refine((text) => !URL.canParse(text) || !new URL(text).hostname.endsWith('.'), 'must not end its host with "." (browsers treat "app.example.com." as another origin)')
    .transform((text) => (URL.canParse(text) ? new URL(text).origin : text))

const listen = (port: number) =>
  z.strictObject({
    host: z.string().min(1).default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(port),
  })

const DPOP_SIGNING_ALGS = ['ES256', 'ES384', 'ES512'] as const satisfies readonly DpopSigningAlg[]

const scopeToken = z.string().regex(/^[\x21\x23-\x5B\x5D-\x7E]+$/, 'must be a scope token')

/** RFC 8707 §2: an absolute URI without a fragment (any scheme: `https://api.example.com`, `urn:example:api`). */
const resourceIndicator = z
  .string()
  .refine((text) => /^[A-Za-z][A-Za-z0-9+.-]*:[^\s#]+$/.test(text) && URL.canParse(text), 'must be an absolute URI without a fragment (RFC 8707), e.g. "https://api.example.com"')


/**
 * One exact origin a cross-origin SPA runs on (`cors.allowedOrigins[i]`), normalised as browsers send
 * it in `Origin`: lower-case host (IDN as punycode), no default port. No wildcard, no `null`, no path.
 */
const corsOrigin = z.string().transform((text, ctx) => {
  const fail = (message: string) => {
    ctx.addIssue({ code: 'custom', message })
    return z.NEVER
  }
  if (text.includes('*')) return fail('must be one exact origin such as "https://spa.example.com" (no wildcards: list each origin)')
  if (text.trim().toLowerCase() === 'null') return fail('must not be "null" (sandboxed frames and file: pages send it, so any site can)')
  if (!URL.canParse(text) || !/^https?:\/\//i.test(text)) return fail('must be an origin such as "https://spa.example.com"')
  const url = new URL(text)
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) return fail('must be https:// (http:// is accepted only for localhost/127.0.0.1/[::1])')
  if (url.username || url.password || url.pathname !== '/' || url.search || url.hash || /[?#]$/.test(text)) return fail('must be an origin only: scheme, host and optional port (no path, query, fragment or user info)')
  return url.origin
})

const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/**
 * The request methods Node's HTTP parser lets through to gatehouse (case-sensitive, RFC 9110 §9.1);
 * CONNECT never reaches a request handler, and TRACE is answered 405 by gatehouse itself on every
 * path (src/http/handle.ts). Any other name in `remoteApis[].methods` could never match.
 */
const PROXY_METHODS: ReadonlySet<string> = new Set(METHODS.filter((m) => m !== 'CONNECT' && m !== 'TRACE'))

const methodList = z
  .array(
    z.string().refine((m) => PROXY_METHODS.has(m), {
      error: (issue) => {
        const given = String(issue.input)
        const upper = given.toUpperCase()
        if (upper === 'TRACE' || upper === 'TRACK') return `${given} is never forwarded: gatehouse answers it 405 itself (the upstream's echo would hold the access token)`
        return PROXY_METHODS.has(upper) ? `methods are case-sensitive: write "${upper}", not "${given}"` : `must be an HTTP method such as "GET", "POST" or "DELETE" (got "${given}")`
      },
    }),
  )
  .min(1, 'must list at least one method (leave methods out to allow every method)')
  .refine((list) => new Set(list).size === list.length, 'lists a method more than once')

const schema = z.strictObject({
  // Editors' hint (`"$schema": "./node_modules/gatehouse/gatehouse.schema.json"`); gatehouse ignores it.
  $schema: z.string().optional(),
  listen: listen(8080).default({ host: '127.0.0.1', port: 8080 }),
  publicOrigin: webOrigin('public origin').optional(),
  trustProxy: z.boolean().default(false),
  oidc: z.strictObject({
    authority: webUrl('the identity provider issuer'),
    issuer: webUrl('the issuer tokens carry').refine((text) => !text.includes('{'), 'must be one exact issuer (no {tenantid} template: the template comes from discovery)').optional(),
    // Compared exactly with tokens' iss, so not only URLs: Google's id_tokens may carry "accounts.google.com".
    allowedIssuers: z.array(z.string().regex(/^[\x21-\x7E]{1,2048}$/, 'must be an issuer exactly as tokens carry it (no spaces)')).min(1, 'must list at least one issuer (leave the key out otherwise)').optional(),
    allowedTenants: z.array(z.string().regex(TENANT_ID, 'must be a tenant id (letters, digits, ".", "_" or "-")')).min(1, 'must list at least one tenant id (leave the key out to allow every tenant)').optional(),
    endSessionEndpoint: webUrl('the end-session endpoint').optional(),
    endSessionParams: z
      .record(
        z.string().regex(/^[A-Za-z0-9_.-]+$/, 'must be a query parameter name'),
        z.string().refine((v) => [...v.matchAll(/\{([^}]*)\}/g)].every((m) => (END_SESSION_PLACEHOLDERS as readonly string[]).includes(m[1]!)), `may use only the placeholders ${END_SESSION_PLACEHOLDERS.map((p) => `{${p}}`).join(', ')}`),
      )
      .default({}),
    clientId: z.string().min(1, 'must not be empty'),
    clientSecret: z.string().min(1, 'must not be empty').optional(),
    clientAuth: z.enum(['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none']).optional(),
    privateKeyJwk: z.record(z.string(), z.unknown()).optional(),
    scopes: z.array(scopeToken).default(['openid', 'profile', 'offline_access']),
    redirectPath: localPath.default('/signin-oidc'),
    postLogoutRedirectPath: localPath.default('/signout-callback-oidc'),
    extraAuthParams: z.record(z.string(), z.string()).default({}),
    getClaimsFromUserInfo: z.boolean().default(true),
    timeout: duration('10s'),
    tokenRefreshSkew: duration('60s'),
    pushedAuthorizationRequests: z.boolean().default(false),
    dpop: z
      .union([z.boolean(), z.strictObject({ signingAlg: z.enum(DPOP_SIGNING_ALGS).default('ES256') })], { error: 'must be true, false or an object such as { "signingAlg": "ES256" }' })
      .default(false),
    clientCredentialsScopes: z.array(scopeToken).default([]),
  }),
  keys: z
    .array(z.string().refine((k) => decodeKey(k) !== undefined, 'must be a 32-byte key in base64url (create one with `gatehouse keys generate`)'))
    .min(1, 'at least one key is required (create one with `gatehouse keys generate`)'),
  session: z
    .strictObject({
      mode: z.enum(['server', 'cookie']).default('server'),
      store: z
        .string()
        .default('sqlite:./gatehouse-sessions.db')
        .refine((s) => s === 'memory' || /^sqlite:.+/.test(s) || /^rediss?:\/\//.test(s) || /^postgres(ql)?:\/\//.test(s), 'must be "memory", "sqlite:PATH", "redis://…" or "postgres://…"')
        .superRefine((s, ctx) => {
          const problem = storeUrlProblem(s)
          if (problem) ctx.addIssue({ code: 'custom', message: problem })
        }),
      cookieName: z.string().regex(COOKIE_NAME, 'must be a valid cookie name').refine((n) => n.startsWith('__Host-'), 'must start with "__Host-"').default('__Host-gatehouse'),
      // "none" only with cors.allowedOrigins (crossCheck): an SPA on another site.
      sameSite: z.enum(['strict', 'lax', 'none']).default('lax'),
      lifetime: duration('8h'),
      sliding: z.boolean().default(true),
      absoluteLifetime: duration('24h'),
      cleanupInterval: duration('10m'),
      cacheTtl: duration('1s', { allowZero: true, maxMs: 60_000, max: '60s' }),
    })
    .prefault({}),
  managementBasePath: localPath.refine((p) => p.length > 1 && !p.endsWith('/'), 'must be a path such as "/bff" (no trailing slash)').default('/bff'),
  antiForgery: z
    .strictObject({
      header: z.string().regex(COOKIE_NAME, 'must be a valid header name').default('X-CSRF'),
      value: z.string().min(1).default('1'),
    })
    .default({ header: 'X-CSRF', value: '1' }),
  cors: z
    .strictObject({
      allowedOrigins: z.array(corsOrigin).min(1, 'must list at least one origin (leave cors out for no CORS)'),
    })
    .optional(),
  anonymousSessionResponse: z.union([z.literal(401), z.literal(200)], { error: 'must be 401 or 200' }).default(401),
  revokeRefreshTokenOnLogout: z.boolean().default(true),
  backchannelLogout: z.strictObject({ allUserSessions: z.boolean().default(false) }).default({ allUserSessions: false }),
  remoteApis: z
    .array(
      z.strictObject({
        path: localPath.refine((p) => p.length > 1 && !p.endsWith('/'), 'must be a prefix such as "/api" (no trailing slash)'),
        target: z.string().refine((t) => URL.canParse(t) && /^https?:$/.test(new URL(t).protocol), 'must be an http:// or https:// URL'),
        token: z.enum(['none', 'user', 'client', 'userOrClient', 'userOrNone']).default('user'),
        antiForgery: z.boolean().default(true),
        timeout: duration('30s'),
        websockets: z.boolean().default(false),
        // RFC 10017 §6.1.3.6: the methods this API accepts; unset: every method. HEAD goes with GET.
        methods: methodList.optional(),
        maxBodySize: z
          .string()
          .optional()
          .transform((text, ctx) => {
            if (text === undefined) return undefined
            const bytes = parseSize(text)
            if (bytes === undefined) {
              ctx.addIssue({ code: 'custom', message: `must be a size such as "512kb", "10mb" or "1gb" (got "${text}")` })
              return z.NEVER
            }
            return bytes
          }),
        resource: resourceIndicator.optional(),
        scopes: z.array(scopeToken).default([]),
        // This API's own connection pool and wait queue (docs/remote-apis.md#capacity).
        connections: count(1, 10_000).default(128),
        queue: count(0, 100_000).optional(),
      }),
    )
    .default([]),
  frontends: z
    .array(
      z.strictObject({
        name: z.string().regex(/^[A-Za-z0-9-]{1,40}$/, 'must be 1–40 letters, digits or "-" (it names the cookie partition)'),
        path: localPath.refine((p) => p === '/' || !p.endsWith('/'), 'must be "/" or a prefix without a trailing slash').default('/'),
        host: z
          .string()
          .regex(/^[A-Za-z0-9.-]+(:\d{1,5})?$/, 'must be a host name (optionally with :port)')
          .refine((h) => !/\.(:|$)/.test(h) && !h.startsWith('.') && URL.canParse(`http://${h}/`), 'must be a host name such as "admin.example.com" (optionally with :port; no leading or trailing ".")')
          .optional(),
        // The origin browsers use for this host-based frontend; default: publicOrigin's scheme (and port) with `host`.
        origin: webOrigin('the frontend\'s origin').optional(),
        static: z.string().min(1).optional(),
        indexHtmlUrl: webUrl('index.html location').optional(),
        indexHtmlCacheTtl: duration('5m'),
        // Per-frontend client registration at the IdP (SPEC §6); unset keys come from the top-level oidc block.
        oidc: z
          .strictObject({
            clientId: z.string().min(1, 'must not be empty').optional(),
            clientSecret: z.string().min(1, 'must not be empty').optional(),
            clientAuth: z.enum(['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none']).optional(),
            privateKeyJwk: z.record(z.string(), z.unknown()).optional(),
            scopes: z.array(scopeToken).optional(),
            extraAuthParams: z.record(z.string(), z.string()).optional(),
          })
          .optional(),
      }),
    )
    .default([]),
  diagnostics: z.boolean().default(false),
  // What one client may hold of the proxy, and how long a stalled body may hold it (docs/remote-apis.md#capacity).
  limits: z
    .strictObject({
      perClient: count(1, 1_000_000).default(32),
      perClientStreams: count(1, 1_000_000).default(8),
      bodyIdleTimeout: duration('10s', { allowZero: true }),
      writeIdleTimeout: duration('30s', { allowZero: true }),
    })
    .prefault({}),
  admin: z
    .strictObject({
      listen: listen(9464).default({ host: '127.0.0.1', port: 9464 }),
      token: z.string().min(16, 'must be at least 16 characters').optional(),
    })
    .optional(),
  log: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      format: z.enum(['json', 'pretty', 'auto']).default('auto'),
    })
    .default({ level: 'info', format: 'auto' }),
  user: z.strictObject({ claimValues: z.enum(['string', 'json']).default('string') }).default({ claimValues: 'string' }),
})

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
export function validateConfig(raw: unknown): { config: Config; issues: [] } | { config: undefined; issues: ConfigIssue[] } {
  const parsed = schema.safeParse(raw ?? {}, { reportInput: true })
  const issues: ConfigIssue[] = parsed.success ? [] : parsed.error.issues.flatMap(toConfigIssues)
  for (const issue of crossCheck(raw)) if (!issues.some((i) => i.path === issue.path)) issues.push(issue)
  if (!parsed.success || issues.length) return { config: undefined, issues }
  const value = parsed.data
  const { timeout, tokenRefreshSkew, dpop, ...oidc } = value.oidc
  const { lifetime, absoluteLifetime, cleanupInterval, cacheTtl, ...session } = value.session
  const config: Config = {
    listen: value.listen,
    publicOrigin: value.publicOrigin,
    trustProxy: value.trustProxy,
    oidc: {
      ...oidc,
      clientSecret: oidc.clientSecret,
      privateKeyJwk: oidc.privateKeyJwk,
      // With a secret and no choice made, discovery tells which method the IdP accepts.
      clientAuth: oidc.clientAuth ?? (oidc.clientSecret ? undefined : oidc.privateKeyJwk ? 'private_key_jwt' : 'none'),
      issuer: oidc.issuer,
      allowedIssuers: oidc.allowedIssuers,
      allowedTenants: oidc.allowedTenants,
      endSessionEndpoint: oidc.endSessionEndpoint,
      timeoutMs: timeout,
      tokenRefreshSkewMs: tokenRefreshSkew,
      dpop: dpop === true ? { signingAlg: 'ES256' } : dpop === false ? undefined : dpop,
    },
    keys: value.keys,
    session: { ...session, lifetimeMs: lifetime, absoluteLifetimeMs: absoluteLifetime, cleanupIntervalMs: cleanupInterval, cacheTtlMs: cacheTtl },
    managementBasePath: value.managementBasePath,
    antiForgery: value.antiForgery,
    cors: value.cors ? { allowedOrigins: [...new Set(value.cors.allowedOrigins)] } : undefined,
    anonymousSessionResponse: value.anonymousSessionResponse,
    revokeRefreshTokenOnLogout: value.revokeRefreshTokenOnLogout,
    backchannelLogout: value.backchannelLogout,
    remoteApis: value.remoteApis.map(({ timeout: t, maxBodySize, methods, queue, ...api }) => ({ ...api, methods, timeoutMs: t, maxBodyBytes: maxBodySize, resource: api.resource, queue: queue ?? 2 * api.connections })),
    frontends: value.frontends.map(({ indexHtmlCacheTtl, oidc: frontendOidc, ...f }) => ({
      ...f,
      host: f.host?.toLowerCase(),
      origin: f.host === undefined ? undefined : (f.origin ?? (value.publicOrigin === undefined ? undefined : derivedFrontendOrigin(value.publicOrigin, f.host.toLowerCase()))),
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
  return { config: deepFreeze(config), issues: [] }
}

function toConfigIssues(issue: z.core.$ZodIssue): ConfigIssue[] {
  const path = formatKeyPath(issue.path)
  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map((key) => ({ path: formatKeyPath([...issue.path, key]), message: 'unknown key' }))
    case 'invalid_type':
      return [{ path, message: issue.input === undefined ? 'is required' : `must be ${article(issue.expected)} (got ${describeType(issue.input)})` }]
    case 'invalid_value':
      return [{ path, message: `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}` }]
    case 'invalid_union': {
      // The value has the shape of one alternative (an object where true/false/object is allowed):
      // that alternative's own problems say more than "none of them".
      const shaped = issue.errors.find((errors) => errors.length > 0 && errors.every((e) => e.path.length > 0))
      if (shaped) return shaped.flatMap((e) => toConfigIssues({ ...e, path: [...issue.path, ...e.path] } as z.core.$ZodIssue))
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
  const auth = text(oidc.clientAuth) ?? (oidc.privateKeyJwk ? 'private_key_jwt' : secret ? 'client_secret_basic' : 'none')
  if ((auth === 'client_secret_basic' || auth === 'client_secret_post') && !secret) {
    issues.push({ path: 'oidc.clientSecret', message: `is required when oidc.clientAuth is "${auth}"` })
  }
  if (auth === 'private_key_jwt' && !oidc.privateKeyJwk) {
    issues.push({ path: 'oidc.privateKeyJwk', message: 'is required when oidc.clientAuth is "private_key_jwt"' })
  }
  // RFC 10017 §6.1.3.1: the BFF MUST be a confidential client. A public one only by explicit choice.
  if (root.oidc !== undefined && text(oidc.clientAuth) === undefined && !secret && !oidc.privateKeyJwk) {
    issues.push({ path: 'oidc.clientSecret', message: 'is required: gatehouse must be a confidential client (or set oidc.privateKeyJwk; oidc.clientAuth "none" only if your IdP cannot do better)' })
  }
  // oidc.issuer names the one issuer tokens carry: lists of other issuers or tenants would never apply.
  if (text(oidc.issuer) !== undefined) {
    for (const key of ['allowedIssuers', 'allowedTenants'] as const) if (oidc[key] !== undefined) issues.push({ path: `oidc.${key}`, message: 'has no effect with oidc.issuer (which names the one issuer tokens must carry); remove one of them' })
  }
  if (Array.isArray(oidc.scopes) && !oidc.scopes.includes('openid')) issues.push({ path: 'oidc.scopes', message: 'must include "openid"' })
  const redirectPath = text(oidc.redirectPath) ?? '/signin-oidc'
  const postLogoutPath = text(oidc.postLogoutRedirectPath) ?? '/signout-callback-oidc'
  if (redirectPath === postLogoutPath) issues.push({ path: 'oidc.postLogoutRedirectPath', message: 'must differ from oidc.redirectPath' })
  // A callback path must not shadow a management or health endpoint.
  const base = text(root.managementBasePath) ?? '/bff'
  for (const [key, path] of [['oidc.redirectPath', redirectPath], ['oidc.postLogoutRedirectPath', postLogoutPath]] as const) {
    if (path.startsWith(`${base}/`) || path === '/healthz' || path === '/readyz') issues.push({ path: key, message: `must not be under managementBasePath or be /healthz or /readyz` })
  }
  const lifetime = parseDuration(text(session.lifetime) ?? '8h')
  const absolute = parseDuration(text(session.absoluteLifetime) ?? '24h')
  if (session.sliding !== false && lifetime !== undefined && absolute !== undefined && absolute < lifetime) {
    issues.push({ path: 'session.absoluteLifetime', message: 'must not be shorter than session.lifetime' })
  }
  const apis = Array.isArray(root.remoteApis) ? root.remoteApis : []
  const seen = new Map<string, number>()
  apis.forEach((api, i) => {
    const path = text(record(api).path)
    if (path === undefined) return
    const before = seen.get(path)
    if (before !== undefined) issues.push({ path: `remoteApis[${i}].path`, message: `duplicates remoteApis[${before}].path` })
    seen.set(path, i)
  })
  // A WebSocket handshake is a GET: an API that refuses GET can never upgrade.
  apis.forEach((api, i) => {
    const { methods, websockets } = record(api)
    if (websockets === true && Array.isArray(methods) && !methods.includes('GET')) {
      issues.push({ path: `remoteApis[${i}].methods`, message: 'must include "GET" when websockets is true (the WebSocket handshake is a GET)' })
    }
  })
  // A remote API must not swallow gatehouse's own endpoints.
  const ownPaths = [base, text(oidc.redirectPath) ?? '/signin-oidc', text(oidc.postLogoutRedirectPath) ?? '/signout-callback-oidc', '/healthz', '/readyz']
  apis.forEach((api, i) => {
    const path = text(record(api).path)
    if (path && ownPaths.some((own) => own === path || own.startsWith(`${path}/`) || path.startsWith(`${own}/`))) {
      issues.push({ path: `remoteApis[${i}].path`, message: 'must not overlap managementBasePath, the OIDC callback paths, /healthz or /readyz' })
    }
  })
  apis.forEach((api, i) => {
    const { resource, scopes, token } = record(api)
    if (resource !== undefined && token === 'none') issues.push({ path: `remoteApis[${i}].resource`, message: 'is not used with token "none": the API gets no token' })
    if (resource === undefined && Array.isArray(scopes) && scopes.length > 0) {
      issues.push({ path: `remoteApis[${i}].scopes`, message: `needs remoteApis[${i}].resource: the scopes are asked for in that resource's tokens` })
    }
  })
  // SameSite=None sends the session cookie with cross-site requests: only for an SPA on another site,
  // and then nothing but the anti-forgery header (and the preflight it forces) stops a forged call.
  if (session.sameSite === 'none') {
    const cors = record(root.cors)
    if (!Array.isArray(cors.allowedOrigins) || cors.allowedOrigins.length === 0) {
      issues.push({ path: 'session.sameSite', message: '"none" needs cors.allowedOrigins (it is only for an SPA on another site); use "lax" or "strict" otherwise' })
    }
    apis.forEach((api, i) => {
      const { antiForgery, token } = record(api)
      if (antiForgery === false && token !== 'none') issues.push({ path: `remoteApis[${i}].antiForgery`, message: 'must be true with session.sameSite "none": the session cookie then goes with cross-site requests, and only the anti-forgery header stops forged ones' })
    })
  }
  const frontends = Array.isArray(root.frontends) ? root.frontends : []
  const names = new Map<string, number>()
  const places = new Map<string, number>()
  frontends.forEach((f, i) => {
    const name = text(record(f).name)?.toLowerCase()
    const place = `${text(record(f).host)?.toLowerCase() ?? '*'}${text(record(f).path) ?? '/'}`
    if (name !== undefined && names.has(name)) issues.push({ path: `frontends[${i}].name`, message: `duplicates frontends[${names.get(name)}].name` })
    if (places.has(place)) issues.push({ path: `frontends[${i}].path`, message: `frontends[${places.get(place)}] already serves this host and path` })
    if (name !== undefined) names.set(name, i)
    places.set(place, i)
  })
  frontends.forEach((f, i) => {
    if (!record(f).static === !record(f).indexHtmlUrl) issues.push({ path: `frontends[${i}]`, message: 'needs exactly one of "static" or "indexHtmlUrl"' })
    const folder = text(record(f).static)
    if (folder !== undefined && !isFolder(folder)) issues.push({ path: `frontends[${i}].static`, message: `folder "${folder}" does not exist` })
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
  const publicOrigin = publicText !== undefined && (publicText.startsWith('https:') || isLoopbackHost(new URL(publicText).hostname)) ? publicText : undefined
  const anyOrigin = frontends.some((f) => record(f).origin !== undefined)
  // Every origin in use, with the key that configures it, for the clash checks below.
  const used: Array<{ origin: string; key: string; path: string | undefined; index: number }> = []
  if (publicOrigin !== undefined) used.push({ origin: publicOrigin, key: 'publicOrigin', path: undefined, index: -1 })
  frontends.forEach((f, i) => {
    const entry = record(f)
    const host = text(entry.host)?.toLowerCase()
    const given = entry.origin === undefined ? undefined : originText(entry.origin)
    if (entry.origin !== undefined && host === undefined) {
      issues.push({ path: `frontends[${i}].origin`, message: `needs frontends[${i}].host: an origin belongs to a host-based frontend (path-based ones use publicOrigin)` })
      return
    }
    if (host === undefined || !/^[a-z0-9.-]+(:\d{1,5})?$/.test(host) || !URL.canParse(`http://${host}/`)) return
    if (given !== undefined) {
      if (!isOriginOfHost(given, host)) issues.push({ path: `frontends[${i}].origin`, message: `must be an origin of frontends[${i}].host "${host}" (got ${given})` })
      else used.push({ origin: given, key: `frontends[${i}].origin`, path: text(entry.path) ?? '/', index: i })
    } else if (publicOrigin !== undefined) {
      const derived = derivedFrontendOrigin(publicOrigin, host)
      if (derived.startsWith('http:') && !isLoopbackHost(new URL(derived).hostname)) {
        issues.push({ path: `frontends[${i}].host`, message: `would be served at ${derived} (publicOrigin's scheme with this host), which is http:// on a host that is not loopback: set frontends[${i}].origin to its https:// origin` })
      } else used.push({ origin: derived, key: `frontends[${i}].host`, path: text(entry.path) ?? '/', index: i })
    } else if (anyOrigin && entry.origin === undefined) {
      issues.push({ path: `frontends[${i}].origin`, message: 'is required when another frontend sets origin and publicOrigin is not set: gatehouse then answers only the configured origins and would refuse this host (set it, or set publicOrigin)' })
    }
  })
  for (let a = 0; a < used.length; a++) {
    for (let b = 0; b < a; b++) {
      const later = used[a]!
      const earlierOne = used[b]!
      if (later.origin !== earlierOne.origin) {
        // Same host, other scheme: the Host header cannot say which one a request is for.
        const shared = originKeys(later.origin).some((k) => originKeys(earlierOne.origin).includes(k))
        if (shared) issues.push({ path: later.key, message: `is ${later.origin}, and ${earlierOne.key} is ${earlierOne.origin}: the same host under another scheme (a request's Host cannot tell them apart)` })
      } else if (later.path !== undefined && later.path === earlierOne.path && !earlier.some((i) => i.path === `frontends[${later.index}].path`)) {
        issues.push({ path: later.key, message: `gives origin ${later.origin} at path "${later.path}", which frontends[${earlierOne.index}] already serves` })
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
