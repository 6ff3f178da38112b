import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import { validateConfig, type GatehouseOptions } from './config/validate.ts'
import type { Config } from './config/types.ts'
import { configWarnings } from './config/warnings.ts'
import { describeError, GatehouseError } from './errors.ts'
import type { Services } from './http/context.ts'
import { createCorsPolicy } from './http/cors.ts'
import { createHandle, type Next } from './http/dispatch.ts'
import { createLibrary, type Middleware, type NodeHandler } from './http/library.ts'
import { RouteTable } from './http/routes.ts'
import { createUpgrade } from './http/upgrade.ts'
import { loggerAccessLog, type AccessLog } from './access-log.ts'
import { createLogger, stdoutAccessLog } from './log.ts'
import { KeyRing } from './session/seal.ts'
import { notify, type Hooks, type SessionInfo } from './hooks.ts'
import type { SessionBackend } from './session/backend.ts'
import { CookieSessions } from './session/cookie-sessions.ts'
import { Sessions } from './session/sessions.ts'
import { CachedStore } from './session/stores/cached.ts'
import { capabilities, incompleteCapabilities, type SessionStore } from './session/store.ts'
import { openStore } from './session/stores/open-store.ts'
import { RemoteApiRoutes } from './proxy/routes.ts'
import { Upstreams } from './proxy/upstreams.ts'
import { Frontends } from './frontends/frontends.ts'
import { SessionEvents } from './session/session-events.ts'
import { SESSION_CHECK_MS } from './endpoints/session-events.ts'
import { endpointRoutes, probeRoutes } from './endpoints/endpoint-routes.ts'
import { TokenService } from './tokens/tokens.ts'
import { DpopKeys } from './tokens/dpop.ts'
import { DpopUnsupportedError } from './oidc/client.ts'
import { MemoryStore } from './session/stores/memory.ts'
import { SqliteStore } from './session/stores/sqlite.ts'
import { createAdminHandler } from './ops/admin.ts'
import { adminHealth } from './ops/admin-health.ts'
import { packageVersion } from './config/package-version.ts'
import { storeKind } from './config/store-url.ts'
import { Telemetry } from './ops/metrics.ts'

export type { SessionInfo }

export type { Middleware, NodeHandler }

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
  getAccessToken(
    req: IncomingMessage,
    type?: 'user' | 'client' | 'userOrClient',
    res?: ServerResponse,
  ): Promise<string | undefined>
  /**
   * The admin listener's node:http handler: `GET /metrics` and the session API under `/admin/`
   * (docs/operations.md). `gatehouse serve` listens with it on `admin.listen`; a library user mounts it
   * on a server of their own — never on the public one.
   */
  readonly adminHandler: NodeHandler
  /** Settles when the IdP discovery begun at start ends: true if it succeeded, false if it failed (retried at the next login). */
  readonly discovery: Promise<boolean>
  /** Handles `upgrade` events (WebSockets to remote APIs with `websockets: true`): `server.on('upgrade', gatehouse.upgrade)`. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void
  /** Removes expired sessions now (also runs every `session.cleanupInterval`). */
  cleanup(): Promise<number>
  close(): Promise<void>
}

/** What `gatehouse serve` passes beyond the public options. */
export interface ServeRuntimeOptions extends RuntimeOptions {
  /**
   * Where the one line per request goes; the caller flushes and closes it. Default: through `logger`
   * when one is given, else batched JSON to stdout, flushed at close() and before the process exits.
   */
  accessLog?: AccessLog
  /** Which process this is under `serve --workers` ("worker 2"), for the admin console. */
  instance?: string
}

/** What `gatehouse serve` uses beyond the public interface. */
export interface ServedGatehouse extends Gatehouse {
  /** This process's metrics: with `serve --workers`, the admin listener reports every worker's (src/cli/workers.ts). */
  readonly telemetry: Telemetry
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
export async function buildGatehouse(config: Config, runtime: ServeRuntimeOptions = {}): Promise<ServedGatehouse> {
  const log = runtime.logger ?? createLogger(config.log.level, undefined, config.log.format)
  const now = runtime.now ?? Date.now
  const cookieMode = config.session.mode === 'cookie'
  // Cookie mode keeps no sessions on the server: no store is opened.
  const opened: SessionStore | undefined = cookieMode
    ? undefined
    : (runtime.store ?? (await openStore(config.session.store)))
  // A networked store that can tell instances about ended sessions gets the in-process read cache.
  const cache =
    opened && capabilities(opened).notices && config.session.cacheTtlMs > 0
      ? new CachedStore(opened, { ttlMs: config.session.cacheTtlMs })
      : undefined
  await cache
    ?.start()
    .catch(() =>
      log.warn(
        { event: 'session_cache_off' },
        'not listening to session endings: every request reads the session store',
      ),
    )
  const store: SessionStore | undefined = cache ?? opened
  // What the store can do beyond the required methods, detected once: call sites get typed handles.
  const can = store && capabilities(store)
  for (const { capability, has, missing } of opened ? incompleteCapabilities(opened) : []) {
    log.warn(
      { event: 'session_store_incomplete_capability', capability, has, missing },
      `the session store defines ${has.join(', ')} but not ${missing.join(', ')}: a capability is used only with all its methods, so the store's ${capability} are not used (docs/extending.md)`,
    )
  }
  if (store && !can?.leases)
    log.warn(
      { event: 'session_store_no_leases' },
      'the session store has no leases: token refreshes and logout-token replay checks are coordinated within this process only',
    )
  const keyRing = new KeyRing(config.keys)
  const frontends = new Frontends(config, now, log)
  const cookie = {
    name: config.session.cookieName,
    nameFor: (partition: string) => frontends.byName(partition)?.cookieName ?? config.session.cookieName,
    sameSite: config.session.sameSite,
    maxAgeSec: (config.session.sliding ? config.session.absoluteLifetimeMs : config.session.lifetimeMs) / 1000,
  }
  const hooks = runtime.hooks ?? {}
  let noticeLinkLosses = 0
  const sessionEvents = new SessionEvents({
    notices: can?.notices,
    onEnded: hooks.onSessionEnded && ((event) => notify(hooks.onSessionEnded, event, log, 'onSessionEnded')),
    onError: () =>
      log.warn({ event: 'session_end_publish_failed' }, 'could not tell other instances that a session ended'),
    onLink: (listening) => {
      if (listening) {
        log.info({ event: 'session_notice_link_restored' }, "listening to other instances' session endings again")
        return
      }
      noticeLinkLosses++
      log.warn(
        { event: 'session_notice_link_lost' },
        "lost the session store's link that carries other instances' session endings: until it is back, open tabs learn of them by the periodic check and every request reads the store",
      )
    },
  })
  await sessionEvents
    .start()
    .catch(() =>
      log.warn(
        { event: 'session_end_subscribe_failed' },
        "not listening to other instances' session endings; open tabs learn of them by the periodic check",
      ),
    )
  // The session layer owns the store from here on: every ending goes through it and is told to the others.
  const serverSessions =
    store && new Sessions({ store, keyRing, now, policy: config.session, cookie, events: sessionEvents })
  const sessions: SessionBackend =
    serverSessions ?? new CookieSessions({ keyRing, now, policy: config.session, cookie, events: sessionEvents })
  const clients = (partition: string) => frontends.byName(partition) ?? frontends.default
  const count = can?.count
  // Made once the awaits that can fail are over: an open batched access log is flushed at process exit until closed.
  const ownAccess = runtime.accessLog || runtime.logger ? undefined : stdoutAccessLog(log, config.log.format)
  const access = runtime.accessLog ?? ownAccess ?? loggerAccessLog(log)
  const telemetry = new Telemetry({
    activeSessions: count && (() => count.count(now())),
    droppedLogLines: () => access.dropped,
    noticeLinkLosses: can?.notices && (() => noticeLinkLosses),
  })
  const dpopKeys = new DpopKeys()
  const tokens = new TokenService({
    sessions,
    clients,
    dpopKeys,
    telemetry,
    skewMs: config.oidc.tokenRefreshSkewMs,
    idpTimeoutMs: config.oidc.timeoutMs,
    now,
    log,
  })
  const upstreams = new Upstreams(config, telemetry)
  const apis = new RemoteApiRoutes(config.remoteApis)
  const services: Services = {
    sessionCheckMs: runtime.sessionCheckMs ?? SESSION_CHECK_MS,
    hooks,
    config,
    log,
    access,
    oidc: frontends.default.oidc,
    frontends,
    sessions,
    sessionEvents,
    keyRing,
    tokens,
    dpopKeys,
    apis,
    upstreams,
    cors: createCorsPolicy(config.cors?.allowedOrigins, config.antiForgery.header),
    telemetry,
    now,
  }
  warnAboutInsecureSettings(config, log)
  const discovery = discoverAtStart(frontends, log)

  const routes = new RouteTable(
    probeRoutes(),
    new Map(frontends.all.map((f) => [f.name, endpointRoutes(config, f)])),
    apis,
  )
  const handle = createHandle(services, routes)
  const upgrade = createUpgrade(services, routes)
  const library = createLibrary(services)
  const startedAt = Date.now()
  const version = packageVersion()
  const adminHandler = createAdminHandler({
    telemetry,
    sessions: serverSessions,
    token: config.admin?.token,
    log,
    health: () =>
      adminHealth({
        version,
        startedAt,
        instance: runtime.instance ?? null,
        idp: (timeoutMs) => frontends.default.oidc.status(timeoutMs),
        store: {
          kind: runtime.store ? passedStoreKind(runtime.store) : storeKind(config.session),
          ...(serverSessions ? { ping: () => serverSessions.ping() } : {}),
          ...(count ? { count: async () => (await telemetry.activeSessions()) ?? Number.NaN } : {}),
        },
        telemetry,
        apis: config.remoteApis.map((api) => api.path),
      }),
  })
  const cleanupTimer = setInterval(() => {
    sessions.removeExpired().then(
      (count) => count && log.info({ event: 'cleanup', removed: count }, 'expired sessions removed'),
      () => log.warn({ event: 'cleanup_failed' }, 'session cleanup failed; will retry'),
    )
  }, config.session.cleanupIntervalMs)
  cleanupTimer.unref()

  let closed = false
  return {
    config,
    telemetry,
    handle,
    ...library,
    upgrade,
    discovery,
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
      if (!runtime.store) await opened?.close()
      await ownAccess?.close()
    },
  }
}

/**
 * Discovery stays lazy (gatehouse starts while the IdP is still coming up) but begins now, so that
 * what it decides — the client authentication chosen, an IdP without end-session or without the
 * DPoP that oidc.dpop asks for, an issuer that does not match — is reported at start, not at the
 * first login. A failed discovery is retried at the next use.
 */
function discoverAtStart(frontends: Frontends, log: Logger): Promise<boolean> {
  const clients = [...new Set(frontends.all.map((f) => f.oidc))]
  const outcomes = clients.map((client) =>
    client.ready().then(
      () => true,
      (err: unknown) => {
        if (err instanceof DpopUnsupportedError) log.error({ event: 'dpop_unsupported' }, err.message)
        else if (err instanceof GatehouseError && err.report)
          log.warn({ ...err.report }, `${err.message}; retried at the next login`)
        else
          log.warn(
            { event: 'discovery_failed', cause: 'unexpected', ...describeError(err) },
            'identity provider discovery failed; retried at the next login',
          )
        return false
      },
    ),
  )
  return Promise.all(outcomes).then((ok) => ok.every(Boolean))
}

/** What the configuration gets wrong for production (src/config/warnings.ts; check-config prints the same). */
function warnAboutInsecureSettings(config: Config, log: Logger): void {
  for (const { level, event, message, fields } of configWarnings(config)) log[level]({ event, ...fields }, message)
}

/** The kind of a store the caller passed in (`runtime.store`): the built-in ones by name, any other "custom". */
function passedStoreKind(store: SessionStore): string {
  if (store instanceof MemoryStore) return 'memory'
  if (store instanceof SqliteStore) return 'sqlite'
  return 'custom'
}
