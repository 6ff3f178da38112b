import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import { validateConfig, type GatehouseOptions } from './config/validate.ts'
import type { Config } from './config/types.ts'
import { describeError, GatehouseError } from './errors.ts'
import { isAntiForgeryValid } from './http/antiforgery.ts'
import { applyCors, createCorsPolicy, LOCAL_ROUTE_CORS } from './http/cors.ts'
import { isLoopbackHost } from './http/origin.ts'
import { resolveSession, type Services } from './http/context.ts'
import { abort, contextFor, createHandle, failureReply, runFrontend, writeReply, type Next } from './http/handle.ts'
import { createLogger } from './log.ts'
import { KeyRing } from './session/seal.ts'
import type { Session } from './session/session.ts'
import { notify, sessionInfo, type Hooks, type SessionInfo } from './hooks.ts'
import type { SessionBackend } from './session/backend.ts'
import { CookieSessions } from './session/cookie-sessions.ts'
import { Sessions } from './session/sessions.ts'
import { CachedStore } from './session/stores/cached.ts'
import { MemoryStore } from './session/stores/memory.ts'
import type { SessionStore } from './session/store.ts'
import { openStore } from './session/stores/open-store.ts'
import { Upstreams } from './proxy/forward.ts'
import { RemoteApiRoutes } from './proxy/routes.ts'
import { createUpgrade } from './proxy/websocket.ts'
import { Frontends } from './frontends/frontends.ts'
import { SessionEvents } from './session/session-events.ts'
import { SESSION_CHECK_MS } from './endpoints/session-events.ts'
import { TokenService } from './tokens/tokens.ts'
import { DpopKeys } from './tokens/dpop.ts'
import { DpopUnsupportedError } from './oidc/client.ts'
import { createAdminHandler } from './ops/admin.ts'
import { Telemetry } from './ops/metrics.ts'

export type { SessionInfo }

export type NodeHandler = (req: IncomingMessage, res: ServerResponse) => void
export type Middleware = (req: IncomingMessage, res: ServerResponse, next: Next) => void

export interface Gatehouse {
  readonly config: Config
  /**
   * Serves gatehouse's endpoints. Works as a node:http listener (unknown paths → 404) and as
   * Express/Connect middleware (unknown paths → next()). Mount it at the root path.
   */
  handle(req: IncomingMessage, res: ServerResponse, next?: Next): void
  /**
   * Guards the app's own API routes: anti-forgery header and a live session, else 401 problem+json
   * (never a redirect). Without a handler it is middleware; with one it wraps a node:http handler.
   */
  protect(): Middleware
  protect(handler: NodeHandler): NodeHandler
  /** The session of this request (resolved once per request), or undefined. */
  /**
   * The session of this request (resolved once per request), or undefined. Pass `res` (unless inside
   * `protect()`) so cookie changes — clearing a dead cookie, renewing a cookie-mode session — reach the browser.
   */
  getSession(req: IncomingMessage, res?: ServerResponse): Promise<SessionInfo | undefined>
  /**
   * As middleware gatehouse serves only the SPA's existing files, so that the app's own routes come
   * first. Mount this after them to answer client-side routes with the frontend's index.html — for
   * navigations only (SPEC §6); any other request that reaches it gets next(), else 404 problem+json.
   */
  frontendFallback(req: IncomingMessage, res: ServerResponse, next?: Next): void
  /**
   * An access token for calling APIs from a local route, refreshed when near expiry: the session's
   * (`"user"`, the default; undefined without a session) or the client's own (`"client"`), or
   * `"userOrClient"`. Throws GatehouseError session_ended / idp_unavailable like the proxy would answer.
   * Inside `protect()` the response is known; elsewhere pass `res`, so that in cookie mode a refreshed
   * session reaches the browser.
   */
  getAccessToken(req: IncomingMessage, type?: 'user' | 'client' | 'userOrClient', res?: ServerResponse): Promise<string | undefined>
  /**
   * The admin listener's node:http handler: `GET /metrics` and the session API under `/admin/`
   * (docs/operations.md). `gatehouse serve` listens with it on `admin.listen`; a library user mounts it
   * on a server of their own — never on the public one.
   */
  readonly adminHandler: NodeHandler
  /** Handles `upgrade` events (WebSockets to remote APIs with `websockets: true`): `server.on('upgrade', gatehouse.upgrade)`. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void
  /** Removes expired sessions now (also runs every `session.cleanupInterval`). */
  cleanup(): Promise<number>
  close(): Promise<void>
}

export interface RuntimeOptions {
  logger?: Logger
  /** A store instance instead of `session.store` (a custom SessionStore, or one shared in tests). */
  store?: SessionStore
  now?: () => number
  /** How often an open /bff/session-events stream re-reads its session in the store (default 5 s). */
  sessionCheckMs?: number
  /** Extension points: claims enrichment, login/logout parameters, returnUrl validation, audit of sessions (docs/extending.md). */
  hooks?: Hooks
}

/** Validates `options` (the config file's shape) and builds gatehouse. Throws GatehouseError('config_invalid') listing every problem. */
export async function createGatehouse(options: GatehouseOptions, runtime: RuntimeOptions = {}): Promise<Gatehouse> {
  const { config, issues } = validateConfig(options)
  if (!config) {
    const errors: Record<string, string[]> = {}
    for (const issue of issues) (errors[issue.path] ??= []).push(issue.message)
    throw new GatehouseError('config_invalid', issues.map((i) => `${i.path}: ${i.message}`).join('\n'), { errors })
  }
  return buildGatehouse(config, runtime)
}

/** Builds gatehouse from an already validated config (the CLI validates first to print its issues). */
export async function buildGatehouse(config: Config, runtime: RuntimeOptions = {}): Promise<Gatehouse> {
  const log = runtime.logger ?? createLogger(config.log.level)
  const now = runtime.now ?? Date.now
  const cookieMode = config.session.mode === 'cookie'
  // Cookie mode keeps no sessions on the server; the in-memory store only backs /readyz's check.
  const opened: SessionStore = runtime.store ?? (cookieMode ? new MemoryStore() : await openStore(config.session.store))
  // A networked store that can tell instances about ended sessions gets the in-process read cache.
  const cache = !cookieMode && opened.subscribeEnded && config.session.cacheTtlMs > 0 ? new CachedStore(opened, { ttlMs: config.session.cacheTtlMs }) : undefined
  await cache?.start().catch(() => log.warn({ event: 'session_cache_off' }, 'not listening to session endings: every request reads the session store'))
  const store: SessionStore = cache ?? opened
  const keyRing = new KeyRing(config.keys)
  const frontends = new Frontends(config, now, log)
  const cookie = {
    name: config.session.cookieName,
    nameFor: (partition: string) => frontends.byName(partition)?.cookieName ?? config.session.cookieName,
    sameSite: config.session.sameSite,
    maxAgeSec: (config.session.sliding ? config.session.absoluteLifetimeMs : config.session.lifetimeMs) / 1000,
  }
  const sessions: SessionBackend = cookieMode
    ? new CookieSessions({ keyRing, now, policy: config.session, cookie })
    : new Sessions({ store, keyRing, now, policy: config.session, cookie })
  const clients = (partition: string) => frontends.byName(partition) ?? frontends.default
  const hooks = runtime.hooks ?? {}
  const sessionEvents = new SessionEvents({
    store: sessions.shared ? store : undefined,
    onEnded: hooks.onSessionEnded && ((event) => notify(hooks.onSessionEnded, event, log, 'onSessionEnded')),
    onError: () => log.warn({ event: 'session_end_publish_failed' }, 'could not tell other instances that a session ended'),
  })
  await sessionEvents.start().catch(() => log.warn({ event: 'session_end_subscribe_failed' }, 'not listening to other instances\' session endings; open tabs learn of them by the periodic check'))
  // Cookie mode's store is a stand-in: it holds no sessions to count.
  const telemetry = new Telemetry({ activeSessions: cookieMode || !store.count ? undefined : () => store.count!(now()) })
  const dpopKeys = new DpopKeys()
  const tokens = new TokenService({ sessions, store, clients, dpopKeys, events: sessionEvents, telemetry, skewMs: config.oidc.tokenRefreshSkewMs, idpTimeoutMs: config.oidc.timeoutMs, now, log })
  const upstreams = new Upstreams(config, telemetry)
  const apis = new RemoteApiRoutes(config.remoteApis)
  const services: Services = { sessionCheckMs: runtime.sessionCheckMs ?? SESSION_CHECK_MS, hooks, config, log, oidc: frontends.default.oidc, frontends, sessions, sessionEvents, store, keyRing, tokens, dpopKeys, apis, upstreams, cors: createCorsPolicy(config.cors?.allowedOrigins, config.antiForgery.header), telemetry, now }
  warnAboutInsecureSettings(config, frontends, log)
  discoverAtStart(frontends, log)

  const handle = createHandle(services)
  const upgrade = createUpgrade(services)
  const adminHandler = createAdminHandler({ telemetry, store, token: config.admin?.token, hasServerSessions: !cookieMode, now, log, onRevoked: (filter) => sessionEvents.endedWhere(filter, 'revoked') })
  const cleanupTimer = setInterval(() => {
    sessions.removeExpired().then(
      (count) => count && log.info({ event: 'cleanup', removed: count }, 'expired sessions removed'),
      () => log.warn({ event: 'cleanup_failed' }, 'session cleanup failed; will retry'),
    )
  }, config.session.cleanupIntervalMs)
  cleanupTimer.unref()

  const sessionOf = new WeakMap<IncomingMessage, Promise<Session | undefined>>()
  const lookup = (req: IncomingMessage): Promise<Session | undefined> => {
    let found = sessionOf.get(req)
    if (!found) sessionOf.set(req, (found = resolveSession(contextFor(req, services), true)))
    return found
  }

  /** The app's response for a request, so cookie changes made in library calls reach the browser. */
  const responses = new WeakMap<IncomingMessage, ServerResponse>()
  const flushCookies = (req: IncomingMessage): void => {
    const ctx = contextFor(req, services)
    const res = responses.get(req)
    if (!res || res.headersSent || ctx.setCookies.length === 0) return
    for (const line of ctx.setCookies.splice(0)) res.appendHeader('set-cookie', line)
  }

  const guard = async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    const ctx = contextFor(req, services)
    responses.set(req, res)
    try {
      if (ctx.invalid) throw ctx.invalid
      // A preflight from the SPA's other origin is answered here, before the anti-forgery header it asks about.
      const preflight = services.cors === undefined ? undefined : applyCors(services.cors, req, res, LOCAL_ROUTE_CORS, ctx.requestId)
      if (preflight) {
        writeReply(res, preflight, ctx)
        return false
      }
      if (!isAntiForgeryValid(req.headers, config.antiForgery)) throw new GatehouseError('antiforgery_failed')
      if (!(await lookup(req))) throw new GatehouseError('session_required')
      flushCookies(req)
      return true
    } catch (err) {
      writeReply(res, failureReply(err, ctx, 'api'), ctx)
      return false
    }
  }

  function protect(): Middleware
  function protect(handler: NodeHandler): NodeHandler
  function protect(handler?: NodeHandler): Middleware | NodeHandler {
    // A handler that throws or rejects gets a 500 problem instead of an unhandled rejection.
    const fail = (req: IncomingMessage, res: ServerResponse) => (err: unknown) => abort(res, contextFor(req, services), err)
    if (handler) return (req: IncomingMessage, res: ServerResponse) => void guard(req, res).then((ok) => ok && handler(req, res)).catch(fail(req, res))
    return (req: IncomingMessage, res: ServerResponse, next: Next) => void guard(req, res).then((ok) => ok && next()).catch(fail(req, res))
  }

  let closed = false
  return {
    config,
    handle,
    protect,
    async getSession(req, res) {
      if (res) responses.set(req, res)
      const session = await lookup(req)
      flushCookies(req)
      return session && sessionInfo(session)
    },
    async getAccessToken(req, type = 'user', res) {
      if (res) responses.set(req, res)
      const outcome = await tokens.tokenFor(await lookup(req), type === 'user' ? 'userOrNone' : type, contextFor(req, services).partition)
      if (outcome.kind === 'none') return undefined
      if (outcome.refreshed) {
        const ctx = contextFor(req, services)
        await sessions.persist(outcome.refreshed, ctx.cookies, ctx.setCookies)
        if (!sessions.shared && !responses.has(req)) {
          log.warn({ event: 'cookie_not_written' }, 'getAccessToken refreshed a cookie-mode session without a response to write it to; pass res')
        }
        flushCookies(req)
      }
      return outcome.value
    },
    upgrade,
    frontendFallback(req, res, next) {
      const ctx = contextFor(req, services)
      if (!ctx.frontend.serve || ctx.invalid || (req.method !== 'GET' && req.method !== 'HEAD')) {
        return next ? next() : void writeReply(res, failureReply(new GatehouseError('not_found'), ctx, 'api'), ctx)
      }
      runFrontend(ctx, res, next, true).catch((err: unknown) => abort(res, ctx, err))
    },
    adminHandler,
    cleanup: () => sessions.removeExpired(),
    async close() {
      if (closed) return
      closed = true
      clearInterval(cleanupTimer)
      for (const frontend of frontends.all) frontend.oidc.close()
      await sessionEvents.close()
      await upstreams.close()
      await cache?.stop()
      if (!runtime.store) await opened.close()
    },
  }
}

/**
 * Discovery stays lazy (gatehouse starts while the IdP is still coming up) but begins now, so that
 * what it decides — the client authentication chosen, an IdP without end-session or without the
 * DPoP that oidc.dpop asks for, an issuer that does not match — is reported at start, not at the
 * first login. A failed discovery is retried at the next use.
 */
function discoverAtStart(frontends: Frontends, log: Logger): void {
  for (const client of new Set(frontends.all.map((f) => f.oidc))) {
    client.ready().catch((err: unknown) => {
      if (err instanceof DpopUnsupportedError) log.error({ event: 'dpop_unsupported' }, err.message)
      else if (err instanceof GatehouseError && err.report) log.warn({ ...err.report }, `${err.message}; retried at the next login`)
      else log.warn({ event: 'discovery_failed', cause: 'unexpected', ...describeError(err) }, 'identity provider discovery failed; retried at the next login')
    })
  }
}

function warnAboutInsecureSettings(config: Config, frontends: Frontends, log: Logger): void {
  if (!config.publicOrigin) {
    log.warn(
      config.frontends.some((f) => f.origin !== undefined)
        ? 'publicOrigin is not set: only the frontends\' origins are served, and path-based frontends build redirect URIs from the Host header; set it in production'
        : 'publicOrigin is not set: redirect URIs are built from the Host header and requests for any host are answered (DNS rebinding); set it in production',
    )
  }
  if (frontends.origins) log.info({ event: 'host_allowlist', origins: frontends.origins.all }, 'requests are answered only for these origins\' hosts (421 otherwise; /healthz and /readyz for any host)')
  if (config.cors) log.info({ event: 'cors_on', origins: config.cors.allowedOrigins }, 'CORS is on for cors.allowedOrigins: /bff/user, /bff/session-events, protected local routes and remote APIs answer them')
  // A development origin (http://localhost:5173) left in a production config lets any page served there act as the user.
  const loopbackOrigins = config.cors?.allowedOrigins.filter((origin) => new URL(origin).protocol === 'http:') ?? []
  if (loopbackOrigins.length && config.publicOrigin && !isLoopbackHost(new URL(config.publicOrigin).hostname)) {
    log.warn({ event: 'cors_loopback_origin', origins: loopbackOrigins }, 'cors.allowedOrigins lists http:// loopback origins while publicOrigin is a public host: any page served on the user\'s machine at those origins can call the APIs as the user; remove them outside development')
  }
  if (config.session.sameSite === 'none') {
    log.warn({ event: 'samesite_none' }, 'session.sameSite is "none": the session cookie goes with cross-site requests; CSRF protection rests on the anti-forgery header alone (it forces a CORS preflight, which only cors.allowedOrigins pass) — local routes must use protect(), not getSession() alone')
  }
  if (config.diagnostics) log.warn('diagnostics is on: /bff/diagnostics shows access tokens to the logged-in browser; never enable it in production')
  if (config.session.mode === 'cookie') {
    log.warn('session.mode is "cookie": sessions cannot be revoked on the server and back-channel logout is off; see docs/sessions.md')
  } else if (config.session.store === 'memory') log.warn('session.store is "memory": sessions are lost on restart and not shared between instances')
  if (config.admin && !config.admin.token) log.warn('admin.token is not set: /metrics on the admin listener is open to whoever can reach it, and the admin session API is off (403)')
  if (config.oidc.authority.startsWith('http:')) log.info('oidc.authority uses http:// (allowed for loopback only)')
  if (config.oidc.clientAuth === 'none') log.warn('oidc.clientAuth is "none": gatehouse is a public client; the browser-based-apps BCP requires a confidential BFF')
  config.remoteApis.forEach((api, i) => {
    const target = new URL(api.target)
    if (target.protocol === 'http:' && !isLoopbackHost(target.hostname) && api.token !== 'none') {
      log.warn({ api: api.path }, `remoteApis[${i}].target is http:// to ${target.hostname}: access tokens travel unencrypted; use https:// unless the network path is otherwise protected`)
    }
  })
}
