import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { Logger } from 'pino'
import type { AccessLog } from '../access-log.ts'
import { GatehouseError } from '../errors.ts'
import type { Config } from '../config/types.ts'
import type { Frontend, Frontends } from '../frontends/frontends.ts'
import type { OidcClient } from '../oidc/client.ts'
import type { RemoteApiRoutes } from '../proxy/routes.ts'
import type { Upstreams } from '../proxy/upstreams.ts'
import type { TokenService } from '../tokens/tokens.ts'
import type { DpopKeys } from '../tokens/dpop.ts'
import type { Telemetry } from '../ops/metrics.ts'
import type { KeyRing } from '../session/seal.ts'
import type { Session } from '../session/session.ts'
import type { SessionBackend } from '../session/backend.ts'
import type { SessionEvents } from '../session/session-events.ts'
import { parseCookies } from './cookies.ts'
import type { CorsPolicy } from './cors.ts'
import { hasUsableHostHeader, isHostValue, requestedHost, requestHost, requestOrigin } from './origin.ts'
import type { Reply } from './reply.ts'
import type { Hooks } from '../hooks.ts'

/** Long-lived services shared by every request (built once in gatehouse.ts). */
export interface Services {
  config: Config
  /** Library-mode extension points (all optional). */
  hooks: Hooks
  log: Logger
  /** One line per answered request (batched JSON when gatehouse writes its own log to stdout). */
  access: AccessLog
  /** The default frontend's IdP client (readiness); endpoints use `ctx.frontend.oidc`. */
  oidc: OidcClient
  frontends: Frontends
  /** The sessions and their store: every session read, write and ending goes through them. */
  sessions: SessionBackend
  keyRing: KeyRing
  sessionEvents: SessionEvents
  /** How often an open session-event stream re-reads its session (endings the notices did not carry). */
  sessionCheckMs: number
  tokens: TokenService
  /** Sessions' DPoP keys (oidc.dpop), imported once per process. */
  dpopKeys: DpopKeys
  apis: RemoteApiRoutes
  upstreams: Upstreams
  /** `cors.allowedOrigins`, prepared once; undefined (the default): no CORS, and no CORS work per request. */
  cors: CorsPolicy | undefined
  /** Prometheus metrics: handlers record outcomes here (`telemetry.login('ok')`). */
  telemetry: Telemetry
  now: () => number
}

/** Per request: what earlier steps parsed, so later steps never parse it again. */
export interface RequestContext {
  req: IncomingMessage
  /** Path and query of the request, resolved against the browser-facing origin (parsed when first read). */
  url: URL
  origin: string
  requestId: string
  log: Logger
  cookies: Map<string, string>
  /** The SPA this request belongs to (SPEC §6); `partition` is its name. */
  frontend: Frontend
  partition: string
  /** Set-Cookie lines added by every step (e.g. clearing a dead session cookie). */
  setCookies: string[]
  services: Services
  /** Set when the request itself is unusable (bad Host, bad target); endpoints never run then. */
  invalid: GatehouseError | undefined
  /** The session the route's `session` flag had read before the handler ran (src/http/routes.ts); undefined: none. */
  session: Session | undefined
}

export type Handler = (ctx: RequestContext) => Promise<Reply>

/** "/" then RFC 3986 path, query and fragment characters, not a second "/" (that would name a host). */
const PLAIN_TARGET = /^\/(?!\/)[A-Za-z0-9\-._~!$&'()*+,;=:@%/?#[\]]*$/

/** A path target that needs no parsing to be known well-formed. */
export function isPlainTarget(target: string): boolean {
  return PLAIN_TARGET.test(target)
}

/**
 * Whether a path target does not parse against the origin. A plain path always parses, so its URL
 * is built only when an endpoint first asks (a proxied call never does); anything else ("//host",
 * a backslash, control characters) is parsed now.
 */
export function isMalformedTarget(target: string, origin: string): boolean {
  return !PLAIN_TARGET.test(target) && !URL.canParse(target, origin)
}

/** Probed by load balancers and orchestrators by address: answered whatever host the request names. */
const PROBE_PATHS: ReadonlySet<string> = new Set(['/healthz', '/readyz'])

/**
 * The origin the browser uses for this request, or why the request names none (the dispatcher's
 * host check, before routing). With configured origins (publicOrigin, host-based frontends' origins
 * — `frontends.origins`) it is the one the request's host names, and a host that names none makes the
 * request misdirected (421, except health probes); without them, the origin the Host header (and
 * trusted forwarded headers) gives. A malformed Host or request target is a bad request.
 */
export function originOf(req: IncomingMessage, services: Services, path: string): string | GatehouseError {
  const { config, frontends } = services
  let origin: string | undefined
  if (!hasUsableHostHeader(req)) return new GatehouseError('bad_request', 'the Host header is malformed or repeated')
  if (frontends.origins === undefined) {
    origin = requestOrigin(req, config.publicOrigin, config.trustProxy)
    if (!origin) return new GatehouseError('bad_request', 'the Host header is missing or malformed')
  } else {
    const host = requestedHost(req, config.trustProxy)
    if (host !== undefined && !isHostValue(host))
      return new GatehouseError('bad_request', 'the Host header is malformed')
    origin = frontends.origins.match(host)
    if (origin === undefined && PROBE_PATHS.has(path)) origin = config.publicOrigin ?? frontends.origins.all[0]!
    if (origin === undefined)
      return new GatehouseError('misdirected_request', 'the request names a host this gatehouse does not serve')
  }
  const target = req.url ?? '/'
  if (!target.startsWith('/')) return new GatehouseError('bad_request', 'the request target must be a path')
  if (isMalformedTarget(target, origin)) return new GatehouseError('bad_request', 'the request URL is malformed')
  return origin
}

const INVALID_ORIGIN = 'http://invalid.invalid'

class Context implements RequestContext {
  readonly req: IncomingMessage
  readonly origin: string
  readonly requestId: string
  readonly log: Logger
  readonly cookies: Map<string, string>
  frontend: Frontend
  partition: string
  readonly setCookies: string[]
  readonly services: Services
  readonly invalid: GatehouseError | undefined
  session: Session | undefined
  #url: URL | undefined

  constructor(
    req: IncomingMessage,
    services: Services,
    origin: string,
    invalid: GatehouseError | undefined,
    frontend: Frontend,
  ) {
    this.req = req
    this.origin = origin
    this.requestId = randomUUID()
    this.log = services.log
    this.cookies = parseCookies(req.headers.cookie)
    this.frontend = frontend
    this.partition = frontend.name
    this.setCookies = []
    this.services = services
    this.invalid = invalid
    this.session = undefined
    this.#url = undefined
  }

  get url(): URL {
    // An unusable request's target is never parsed.
    return (this.#url ??= new URL(this.invalid === undefined ? (this.req.url ?? '/') : '/', this.origin))
  }
}

/**
 * A request's context, built by the dispatcher once routing knows the request needs one, from the
 * host check's outcome (originOf). An unusable request gets one too, with the default frontend:
 * its routes answer with `invalid`.
 */
export function createContext(
  req: IncomingMessage,
  services: Services,
  origin: string | GatehouseError,
  path: string,
): RequestContext {
  const { frontends } = services
  if (typeof origin !== 'string') return new Context(req, services, INVALID_ORIGIN, origin, frontends.default)
  // The configured origin the request's host named: host-based frontends with an origin are matched by it.
  const named =
    frontends.origins === undefined
      ? undefined
      : PROBE_PATHS.has(path)
        ? frontends.origins.match(requestedHost(req, services.config.trustProxy))
        : origin
  return new Context(
    req,
    services,
    origin,
    undefined,
    frontends.select(requestHost(req, services.config.trustProxy), path, named),
  )
}

/** Contexts of requests that library calls see: protect(), getSession(), getAccessToken(), frontendFallback(). */
const shared = new WeakMap<IncomingMessage, RequestContext>()

/** The request's context for library calls: built once per request and shared by all of them. */
export function contextFor(req: IncomingMessage, services: Services): RequestContext {
  let ctx = shared.get(req)
  if (!ctx) {
    const path = pathOf(req.url)
    ctx = createContext(req, services, originOf(req, services, path), path)
    shared.set(req, ctx)
  }
  return ctx
}

/** Hands the dispatcher's context to the library calls that follow it (as middleware, after next()). */
export function shareContext(ctx: RequestContext): void {
  shared.set(ctx.req, ctx)
}

/** The path of a request target: without its query. */
export function pathOf(target: string | undefined): string {
  if (!target) return '/'
  const q = target.indexOf('?')
  return q === -1 ? target : target.slice(0, q)
}

const AMBIGUOUS_LOG_INTERVAL_MS = 60_000
/** Per gatehouse (its services): when it last logged cookie_ambiguous. */
const lastAmbiguousLogAt = new WeakMap<Services, number>()

/**
 * The one session read of a request. A cookie naming no live session is cleared on this response;
 * a session cookie sent twice is no session and is kept (SECURITY.md T45), with one warning.
 */
export function resolveSession(ctx: RequestContext, slide: boolean): Promise<Session | undefined> {
  const onAmbiguous = () => {
    // Every client can send such a header: at most one line a minute, so logs cannot be flooded with it.
    const now = ctx.services.now()
    if (now - (lastAmbiguousLogAt.get(ctx.services) ?? -Infinity) < AMBIGUOUS_LOG_INTERVAL_MS) return
    lastAmbiguousLogAt.set(ctx.services, now)
    ctx.log.warn(
      { requestId: ctx.requestId, event: 'cookie_ambiguous', partition: ctx.partition },
      'the request carries the session cookie more than once: read as no session, no cookie cleared (logged at most once a minute)',
    )
  }
  return ctx.services.sessions.read(ctx.cookies, ctx.partition, { slide, onAmbiguous }, ctx.setCookies)
}

/** The session of a route whose `session` flag is "required": the dispatcher has refused the request without one. */
export function requiredSession(ctx: RequestContext): Session {
  if (ctx.session === undefined)
    throw new GatehouseError('internal', 'the route reads no session: set its session flag to "required"')
  return ctx.session
}

/** A query parameter that may appear at most once; a repeated one is ambiguous and refused by callers. */
export function singleParam(url: URL, name: string): { value: string | undefined; repeated: boolean } {
  const all = url.searchParams.getAll(name)
  return { value: all[0], repeated: all.length > 1 }
}
