import type { IncomingMessage } from 'node:http'
import type { Logger } from 'pino'
import type { GatehouseError } from '../errors.ts'
import type { Config } from '../config/types.ts'
import type { Frontend, Frontends } from '../frontends/frontends.ts'
import type { OidcClient } from '../oidc/client.ts'
import type { Upstreams } from '../proxy/forward.ts'
import type { RemoteApiRoutes } from '../proxy/routes.ts'
import type { TokenService } from '../tokens/tokens.ts'
import type { DpopKeys } from '../tokens/dpop.ts'
import type { Telemetry } from '../ops/metrics.ts'
import type { KeyRing } from '../session/seal.ts'
import type { Session } from '../session/session.ts'
import type { SessionBackend } from '../session/backend.ts'
import type { SessionEvents } from '../session/session-events.ts'
import type { SessionStore } from '../session/store.ts'
import type { CorsPolicy } from './cors.ts'
import type { Reply } from './reply.ts'
import type { Hooks } from '../hooks.ts'

/** Long-lived services shared by every request (built once in gatehouse.ts). */
export interface Services {
  config: Config
  /** Library-mode extension points (all optional). */
  hooks: Hooks
  log: Logger
  /** The default frontend's IdP client (readiness); endpoints use `ctx.frontend.oidc`. */
  oidc: OidcClient
  frontends: Frontends
  sessions: SessionBackend
  store: SessionStore
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
  /** Path and query of the request, resolved against the browser-facing origin. */
  url: URL
  origin: string
  requestId: string
  log: Logger
  cookies: Map<string, string>
  /** The SPA this request belongs to (SPEC §6); `partition` is its name. */
  frontend: Frontend
  partition: string
  /** Set-Cookie lines added by any step (e.g. clearing a dead session cookie). */
  setCookies: string[]
  services: Services
  /** Set when the request itself is unusable (bad Host, bad target); endpoints never run then. */
  invalid: GatehouseError | undefined
}

export type Handler = (ctx: RequestContext) => Promise<Reply>

const AMBIGUOUS_LOG_INTERVAL_MS = 60_000
/** Per gatehouse (its services): when it last logged cookie_ambiguous. */
const lastAmbiguousLogAt = new WeakMap<Services, number>()

/**
 * The one session read of a request. A cookie naming no live session is cleared on this response;
 * a session cookie sent twice is no session and is kept (SECURITY.md T45), with one warning.
 */
export function resolveSession(ctx: RequestContext, slide: boolean): Promise<Session | undefined> {
  const onAmbiguous = () => {
    // Any client can send such a header: at most one line a minute, so logs cannot be flooded with it.
    const now = ctx.services.now()
    if (now - (lastAmbiguousLogAt.get(ctx.services) ?? -Infinity) < AMBIGUOUS_LOG_INTERVAL_MS) return
    lastAmbiguousLogAt.set(ctx.services, now)
    ctx.log.warn({ requestId: ctx.requestId, event: 'cookie_ambiguous', partition: ctx.partition }, 'the request carries the session cookie more than once: read as no session, no cookie cleared (logged at most once a minute)')
  }
  return ctx.services.sessions.read(ctx.cookies, ctx.partition, { slide, onAmbiguous }, ctx.setCookies)
}

/** A query parameter that may appear at most once; a repeated one is ambiguous and refused by callers. */
export function singleParam(url: URL, name: string): { value: string | undefined; repeated: boolean } {
  const all = url.searchParams.getAll(name)
  return { value: all[0], repeated: all.length > 1 }
}
