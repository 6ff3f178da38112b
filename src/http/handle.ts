import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Logger } from 'pino'
import type { Config } from '../config/types.ts'
import { describeError, GatehouseError } from '../errors.ts'
import type { Frontend } from '../frontends/frontends.ts'
import { backchannel } from '../endpoints/backchannel.ts'
import { callback } from '../endpoints/callback.ts'
import { diagnostics } from '../endpoints/diagnostics.ts'
import { healthz, readyz } from '../endpoints/health.ts'
import { login, silentLogin } from '../endpoints/login.ts'
import { silentLoginCallback } from '../endpoints/silent-login-callback.ts'
import { sessionEvents } from '../endpoints/session-events.ts'
import { logout } from '../endpoints/logout.ts'
import { postLogout } from '../endpoints/post-logout.ts'
import { user } from '../endpoints/user.ts'
import { accessLogger } from '../log.ts'
import { forward } from '../proxy/forward.ts'
import type { ApiMatch } from '../proxy/routes.ts'
import { resourceOf } from '../tokens/resource.ts'
import { isAntiForgeryValid } from './antiforgery.ts'
import { applyCors, GET_ROUTE_CORS, READ_ROUTE_CORS, type CorsRule } from './cors.ts'
import { isNavigation } from './navigation.ts'
import { parseCookies } from './cookies.ts'
import { resolveSession, type Handler, type RequestContext, type Services } from './context.ts'
import { BASE_HEADERS, NO_STORE, problemJson, problemPage, type Reply } from './reply.ts'
import { hasUsableHostHeader, isHostValue, requestedHost, requestHost, requestOrigin } from './origin.ts'

/** API routes answer problem+json; page routes (a browser navigates there) answer a small HTML page. */
export interface Route {
  handler: Handler
  kind: 'api' | 'page'
  methods: readonly string[]
  /** A long-lived answer written to the response directly (Server-Sent Events); errors before it starts still get a Reply. */
  stream?: (ctx: RequestContext, res: ServerResponse) => Promise<void>
  /** Set on the endpoints an SPA fetch()es: with `cors.allowedOrigins` they answer those origins (src/http/cors.ts). */
  cors?: CorsRule
}

const READ = ['GET', 'HEAD'] as const
/** Login, callback and logout change state: a HEAD must not redeem a code or end a session. */
const NAVIGATE = ['GET'] as const

export type Next = (err?: unknown) => void

/** Routes outside any frontend. */
function globalRoutes(): Map<string, Route> {
  return new Map<string, Route>([
    ['/healthz', { handler: healthz, kind: 'api', methods: READ }],
    ['/readyz', { handler: readyz, kind: 'api', methods: READ }],
  ])
}

/**
 * A frontend's management endpoints (SPEC §3), under its path: `/bff/user` for the frontend at "/",
 * `/admin/bff/user` and `/admin/signin-oidc` for the one at "/admin".
 */
export function buildRoutes(config: Config, frontend: Frontend): Map<string, Route> {
  const base = `${frontend.prefix}${config.managementBasePath}`
  const routes = new Map<string, Route>([
    [`${base}/login`, { handler: login, kind: 'page', methods: NAVIGATE }],
    [`${base}/user`, { handler: user, kind: 'api', methods: READ, cors: READ_ROUTE_CORS }],
    [`${base}/logout`, { handler: logout, kind: 'page', methods: NAVIGATE }],
    [`${base}/silent-login`, { handler: silentLogin, kind: 'page', methods: NAVIGATE }],
    [`${base}/session-events`, { handler: notAReply, stream: sessionEvents, kind: 'api', methods: ['GET'], cors: GET_ROUTE_CORS }],
    [`${base}/silent-login-callback`, { handler: silentLoginCallback, kind: 'page', methods: READ }],
    [`${frontend.prefix}${config.oidc.redirectPath}`, { handler: callback, kind: 'page', methods: NAVIGATE }],
    [`${frontend.prefix}${config.oidc.postLogoutRedirectPath}`, { handler: postLogout, kind: 'page', methods: NAVIGATE }],
  ])
  // Back-channel logout needs sessions the server can find and end: not in cookie mode.
  if (config.session.mode === 'server') routes.set(`${base}/backchannel`, { handler: backchannel, kind: 'api', methods: ['POST'] })
  if (config.diagnostics) routes.set(`${base}/diagnostics`, { handler: diagnostics, kind: 'api', methods: READ, cors: READ_ROUTE_CORS })
  return routes
}

const notAReply: Handler = async () => {
  throw new GatehouseError('internal', 'a streaming route has no reply')
}

/** Per-request context, built once and shared by handle(), protect() and getSession(). */
const contexts = new WeakMap<IncomingMessage, RequestContext>()

/** "/" then RFC 3986 path, query and fragment characters, not a second "/" (that would name a host). */
const PLAIN_TARGET = /^\/(?!\/)[A-Za-z0-9\-._~!$&'()*+,;=:@%/?#[\]]*$/

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
 * The request's context. Its origin is the one the browser uses: with configured origins
 * (publicOrigin, host-based frontends' origins — `frontends.origins`) the one the request's host
 * names, and a host that names none makes the request misdirected (421, except health probes);
 * without any, the origin the Host header (and trusted forwarded headers) gives.
 */
export function contextFor(req: IncomingMessage, services: Services): RequestContext {
  let ctx = contexts.get(req)
  if (ctx) return ctx
  const { config, frontends } = services
  const requestId = randomUUID()
  const target = req.url ?? '/'
  let origin: string | undefined
  // With configured origins: the one the request's host named (host-based frontends are matched by it).
  let named: string | undefined
  let invalid: GatehouseError | undefined
  if (!hasUsableHostHeader(req)) {
    invalid = new GatehouseError('bad_request', 'the Host header is malformed or repeated')
  } else if (frontends.origins === undefined) {
    origin = requestOrigin(req, config.publicOrigin, config.trustProxy)
    if (!origin) invalid = new GatehouseError('bad_request', 'the Host header is missing or malformed')
  } else {
    const host = requestedHost(req, config.trustProxy)
    if (host !== undefined && !isHostValue(host)) invalid = new GatehouseError('bad_request', 'the Host header is malformed')
    else if ((named = frontends.origins.match(host)) !== undefined) origin = named
    else if (PROBE_PATHS.has(pathOf(target))) origin = config.publicOrigin ?? frontends.origins.all[0]!
    else invalid = new GatehouseError('misdirected_request', 'the request names a host this gatehouse does not serve')
  }
  if (invalid === undefined && !target.startsWith('/')) invalid = new GatehouseError('bad_request', 'the request target must be a path')
  else if (invalid === undefined && isMalformedTarget(target, origin!)) invalid = new GatehouseError('bad_request', 'the request URL is malformed')
  if (invalid) {
    ctx = newContext(req, () => new URL('http://invalid.invalid/'), 'http://invalid.invalid', requestId, services)
    ctx.invalid = invalid
    contexts.set(req, ctx)
    return ctx
  }
  ctx = newContext(req, () => new URL(target, origin), origin!, requestId, services)
  ctx.frontend = frontends.select(requestHost(req, config.trustProxy), pathOf(req.url), named)
  ctx.partition = ctx.frontend.name
  contexts.set(req, ctx)
  return ctx
}

function newContext(req: IncomingMessage, parse: () => URL, origin: string, requestId: string, services: Services): RequestContext {
  let url: URL | undefined
  return {
    req,
    get url() {
      return (url ??= parse())
    },
    origin,
    requestId,
    log: services.log,
    cookies: parseCookies(req.headers.cookie),
    frontend: services.frontends.default,
    partition: services.frontends.default.name,
    setCookies: [],
    services,
    invalid: undefined,
  }
}

/** The one request entry: route → endpoint → reply. The one catch site for errors of endpoints. */
export function createHandle(services: Services): (req: IncomingMessage, res: ServerResponse, next?: Next) => void {
  const global = globalRoutes()
  const byFrontend = new Map(services.frontends.all.map((f) => [f.name, buildRoutes(services.config, f)]))
  const labels = routeLabels(services.config, global, services.frontends.all, byFrontend)
  const access = accessLogger(services.log)
  const door = createDoor(services, global, byFrontend, access)
  return (req, res, next) => {
    // Before routing, any session read or upstream call: TRACE/TRACK, and requests for a host not served here.
    if (door(req, res)) return
    const path = pathOf(req.url)
    const fail = (err: unknown) => abort(res, contextFor(req, services), err)
    const route = global.get(path) ?? byFrontend.get(contextFor(req, services).frontend.name)!.get(path)
    if (route) {
      services.telemetry.response(res, labels.get(route) ?? 'other')
      return void run(route, req, res, services, access).catch(fail)
    }
    const api = services.apis.match(req.url ?? '/')
    if (api !== undefined) {
      services.telemetry.response(res, api === 'escape' ? 'other' : `api:${api.api.path}`)
      return void runProxy(api, req, res, services, access).catch(fail)
    }
    const ctx = contextFor(req, services)
    if (ctx.frontend.serve && !ctx.invalid && (req.method === 'GET' || req.method === 'HEAD')) {
      services.telemetry.response(res, 'frontend')
      // As middleware (next given), client-side-route fallback would shadow the app's own routes: only files are served.
      return void runFrontend(ctx, res, next, next === undefined).catch(fail)
    }
    if (next) return next()
    services.telemetry.response(res, 'other')
    writeReply(res, problemJson(new GatehouseError('not_found'), ctx.requestId), ctx)
  }
}

/** What a 405 to TRACE advertises where no route or `methods` list says more (RFC 9110 §10.2.1: methods advertised). */
const USUAL_METHODS = 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS'

/** At most one warning a minute about misdirected requests: a scanner or a rebinding page must not flood the log. */
const MISDIRECTED_WARN_EVERY_MS = 60_000

/**
 * TRACE and TRACK (IIS's TRACE), in any letter case: an echo of the request would hand a script the
 * cookies, or — through a remote API — the access token gatehouse attached (RFC 9110 §9.3.8). Node's
 * HTTP/1 parser lets only "TRACE" through; other servers (HTTP/2) pass any method name.
 */
function isTrace(method: string | undefined): boolean {
  if (method === undefined || method.length !== 5) return false
  const upper = method.toUpperCase()
  return upper === 'TRACE' || upper === 'TRACK'
}

/**
 * The first step of every request, before routing: answers TRACE/TRACK with 405 on every path, and a
 * request whose host names none of gatehouse's origins (DNS rebinding, a scanner, a client that used
 * the address) with 421 — or, for a browser navigation to a management or frontend path, with a 308 to
 * the same path on publicOrigin, where its cookies are. Returns whether it answered.
 */
function createDoor(services: Services, global: Map<string, Route>, byFrontend: Map<string, Map<string, Route>>, access: Logger): (req: IncomingMessage, res: ServerResponse) => boolean {
  const { config } = services
  const routeMethods = new Map<string, string>()
  for (const routes of [global, ...byFrontend.values()]) for (const [path, route] of routes) if (!routeMethods.has(path)) routeMethods.set(path, route.methods.join(', '))
  const allowFor = (req: IncomingMessage): string => {
    const methods = routeMethods.get(pathOf(req.url))
    if (methods !== undefined) return methods
    const api = services.apis.match(req.url ?? '/')
    if (api === undefined) return 'GET, HEAD'
    return api === 'escape' ? USUAL_METHODS : (api.api.allowHeader ?? USUAL_METHODS)
  }
  /** A navigation a 308 to publicOrigin helps: to a management endpoint, or a path a host-less frontend serves. */
  const isRedirectable = (req: IncomingMessage, target: string): boolean => {
    if (config.publicOrigin === undefined || (req.method !== 'GET' && req.method !== 'HEAD') || !PLAIN_TARGET.test(target)) return false
    if (!isNavigation(req.headers, config.antiForgery.header)) return false
    const path = pathOf(target)
    if (routeMethods.has(path)) return true
    return services.apis.match(target) === undefined && services.frontends.select(undefined, path).serve !== undefined
  }
  let warnedAt = -Infinity
  return (req, res) => {
    if (isTrace(req.method)) {
      services.telemetry.response(res, 'other')
      const requestId = randomUUID()
      const reply = problemJson(new GatehouseError('method_not_allowed', `${req.method} is not answered: it would echo the request, credentials included`), requestId)
      reply.headers.allow = allowFor(req)
      writeReply(res, reply, { req, setCookies: [] })
      access.info({ requestId, method: req.method, path: pathOf(req.url), status: reply.status }, 'request')
      return true
    }
    if (services.frontends.origins === undefined) return false
    const ctx = contextFor(req, services)
    if (ctx.invalid?.code !== 'misdirected_request') return false
    services.telemetry.response(res, 'other')
    const target = req.url ?? '/'
    const reply: Reply = isRedirectable(req, target) ? { status: 308, headers: { location: `${config.publicOrigin}${target}`, ...NO_STORE } } : problemJson(ctx.invalid, ctx.requestId)
    writeReply(res, reply, ctx)
    access.info({ requestId: ctx.requestId, method: req.method, path: pathOf(target), status: reply.status }, 'request')
    const now = services.now()
    if (now - warnedAt >= MISDIRECTED_WARN_EVERY_MS) {
      warnedAt = now
      // Request headers are never logged (docs/operations.md): what kind of host came, and in which header.
      const host = requestedHost(req, config.trustProxy)
      const header = host === undefined ? null : config.trustProxy && req.headers['x-forwarded-host'] !== undefined ? 'X-Forwarded-Host' : 'Host'
      const hostKind = host === undefined ? 'absent' : /^\[|^[\d.]+(:\d+)?$/.test(host) ? 'ip_address' : 'name'
      services.log.warn(
        { event: 'misdirected_request', requestId: ctx.requestId, header, hostKind, origins: services.frontends.origins.all },
        "a request named a host gatehouse does not serve: refused with 421 (a browser navigation is sent on to publicOrigin with 308). If your proxy or load balancer sent it, have it pass the browser's Host (or X-Forwarded-Host, with trustProxy). At most one such warning a minute",
      )
    }
    return true
  }
}

/**
 * The `route` label of each route: the endpoint's name, the same whatever paths and frontends are
 * configured ("bff_user", "callback", "healthz"), so dashboards work across deployments and a
 * label value never comes from the request.
 */
function routeLabels(config: Config, global: Map<string, Route>, frontends: readonly Frontend[], byFrontend: Map<string, Map<string, Route>>): Map<Route, string> {
  const labels = new Map<Route, string>()
  for (const [path, route] of global) labels.set(route, path.slice(1))
  for (const frontend of frontends) {
    const base = `${frontend.prefix}${config.managementBasePath}/`
    for (const [path, route] of byFrontend.get(frontend.name) ?? []) {
      if (path === `${frontend.prefix}${config.oidc.redirectPath}`) labels.set(route, 'callback')
      else if (path === `${frontend.prefix}${config.oidc.postLogoutRedirectPath}`) labels.set(route, 'post_logout')
      else if (path.startsWith(base)) labels.set(route, `bff_${path.slice(base.length).replace(/[^A-Za-z0-9]+/g, '_')}`)
    }
  }
  return labels
}

/**
 * The SPA itself (SPEC §6): its files to any GET/HEAD, or — with `fallback` — index.html for client-side
 * routes, to navigations only (src/http/navigation.ts). Any other miss is next() or 404 problem+json,
 * so that a fetch() of an unknown API path never gets a page with 200.
 */
export async function runFrontend(ctx: RequestContext, res: ServerResponse, next: Next | undefined, fallback: boolean): Promise<void> {
  const { frontend } = ctx
  const path = pathOf(ctx.req.url)
  const relative = frontend.prefix === '' ? path : path.slice(frontend.prefix.length) || '/'
  const index = !fallback ? 'never' : isNavigation(ctx.req.headers, ctx.services.config.antiForgery.header) ? 'routes' : 'root'
  const outcome = await frontend.serve!(ctx.req, res, relative, index)
  if (outcome === 'served') return
  if (outcome === 'not_found' && next) return next()
  const error = outcome === 'bad_path' ? new GatehouseError('bad_request', 'the path is not a file of this application') : outcome === 'unavailable' ? new GatehouseError('upstream_unavailable', 'the application page could not be fetched') : new GatehouseError('not_found')
  writeReply(res, problemJson(error, ctx.requestId), ctx)
}

async function run(route: Route, req: IncomingMessage, res: ServerResponse, services: Services, access: Logger): Promise<void> {
  const started = performance.now()
  const ctx = contextFor(req, services)
  let reply: Reply
  try {
    if (ctx.invalid) throw ctx.invalid
    // A preflight is answered before the method check: OPTIONS is no method of these routes.
    const preflight = route.cors === undefined || services.cors === undefined ? undefined : applyCors(services.cors, req, res, route.cors, ctx.requestId)
    if (preflight) {
      reply = preflight
    } else {
      if (!route.methods.includes(req.method ?? '')) throw new GatehouseError('method_not_allowed')
      if (route.stream) {
        await route.stream(ctx, res)
        return
      }
      reply = await route.handler(ctx)
    }
  } catch (err) {
    if (route.handler === callback) services.telemetry.loginFailed(err)
    if (route.handler === backchannel) services.telemetry.backchannelFailed(err)
    reply = failureReply(err, ctx, route.kind)
    if (reply.status === 405) reply.headers.allow = route.methods.join(', ')
  }
  writeReply(res, reply, ctx)
  access.info({ requestId: ctx.requestId, method: req.method, path: pathOf(req.url), status: reply.status, ms: Math.round(performance.now() - started) }, 'request')
}

/** A remote API call: anti-forgery → session → token → forward (DESIGN's four steps, one store read). */
async function runProxy(match: ApiMatch | 'escape', req: IncomingMessage, res: ServerResponse, services: Services, access: Logger): Promise<void> {
  const started = performance.now()
  const ctx = contextFor(req, services)
  let status: number
  try {
    if (ctx.invalid) throw ctx.invalid
    if (match === 'escape') throw new GatehouseError('path_escape')
    const { api } = match
    // A preflight from an SPA on another origin is gatehouse's to answer: it never reaches the upstream.
    const preflight = services.cors === undefined ? undefined : applyCors(services.cors, req, res, api.cors, ctx.requestId)
    if (preflight) {
      writeReply(res, preflight, ctx)
      status = preflight.status
    } else {
      // The method first (RFC 10017 §6.1.3.6): a refused one costs no session read, no token and no upstream call.
      if (api.allowed && !api.allowed.has(req.method ?? '')) throw new GatehouseError('method_not_allowed', `the ${api.path} API accepts ${api.allowHeader}`)
      if (api.antiForgery && !isAntiForgeryValid(req.headers, services.config.antiForgery)) throw new GatehouseError('antiforgery_failed')
      const session = api.token === 'none' ? undefined : await resolveSession(ctx, true)
      // One of the client's places (its session's, else its address's) before any token work: 429 when it holds them all.
      const place = services.upstreams.admit(req, res, api, session)
      const token = await services.tokens.tokenFor(session, api.token, ctx.partition, resourceOf(api))
      if (token.kind === 'token' && token.refreshed) await services.sessions.persist(token.refreshed, ctx.cookies, ctx.setCookies)
      await forward(ctx, res, match, token, services.upstreams, session, place)
      // 499: the client left before an answer started (as the request counter says).
      status = res.headersSent ? res.statusCode : 499
    }
  } catch (err) {
    status = abort(res, ctx, err, match === 'escape' ? undefined : match.api.allowHeader)
  }
  // The raw path, as received: a refused escape must show up in the log as what it was.
  access.info({ requestId: ctx.requestId, method: req.method, path: pathOf(req.url), api: match === 'escape' ? undefined : match.api.path, status, ms: Math.round(performance.now() - started) }, 'proxy')
}

/** Renders an error for the client and logs what the client must not see. */
export function failureReply(err: unknown, ctx: RequestContext, kind: Route['kind']): Reply {
  const status = err instanceof GatehouseError ? err.status : 500
  const report = err instanceof GatehouseError ? err.report : undefined
  // One line per failure: the report explains it to the operator (src/errors.ts FailureReport).
  if (report) ctx.log[status >= 500 ? 'error' : 'warn']({ requestId: ctx.requestId, ...report, status, ...(status >= 500 ? { err: describeError(err) } : {}) }, err instanceof Error ? err.message : 'request failed')
  // A busy API is load, not a fault: one warn line each (an attack would otherwise flood the error level).
  else if (err instanceof GatehouseError && err.code === 'upstream_busy') ctx.log.warn({ requestId: ctx.requestId, event: 'upstream_busy', err: describeError(err) }, 'request refused: the API is busy')
  else if (status >= 500) ctx.log.error({ requestId: ctx.requestId, err: describeError(err) }, 'request failed')
  // Refused parameters are problem+json with `errors` on every route (SPEC §3), page routes included.
  const parameterErrors = err instanceof GatehouseError && err.errors !== undefined
  return kind === 'page' && !parameterErrors ? problemPage(err, ctx.requestId) : problemJson(err, ctx.requestId)
}

export function writeReply(res: ServerResponse, reply: Reply, ctx: Pick<RequestContext, 'req' | 'setCookies'>): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  res.statusCode = reply.status
  for (const [name, value] of Object.entries(BASE_HEADERS)) res.setHeader(name, value)
  for (const [name, value] of Object.entries(reply.headers)) res.setHeader(name, value)
  const cookies = [...ctx.setCookies, ...(reply.cookies ?? [])]
  if (cookies.length) res.setHeader('set-cookie', cookies)
  if (reply.body !== undefined) res.setHeader('content-length', Buffer.byteLength(reply.body))
  res.end(ctx.req.method === 'HEAD' ? undefined : reply.body)
}

/**
 * Last resort for a failure outside an endpoint's reply (writing it, or a protected app handler that
 * threw): a GatehouseError keeps its status (e.g. session_ended from getAccessToken → 401), anything
 * else is a 500 without internals. After the answer started, the connection is all that can be closed.
 */
export function abort(res: ServerResponse, ctx: RequestContext, err: unknown, allow?: string): number {
  if (res.headersSent) {
    ctx.log.error({ requestId: ctx.requestId, err: describeError(err) }, 'response failed after it started')
    res.destroy()
    return res.statusCode
  }
  // The session is gone: so is its cookie.
  if (err instanceof GatehouseError && err.code === 'session_ended') ctx.services.sessions.clearCookies(ctx.cookies, ctx.partition, ctx.setCookies)
  const reply = failureReply(err, ctx, 'api')
  if (reply.status === 405 && allow !== undefined) reply.headers.allow = allow
  try {
    writeReply(res, reply, ctx)
  } catch {
    res.destroy()
  }
  return reply.status
}

function pathOf(target: string | undefined): string {
  if (!target) return '/'
  const q = target.indexOf('?')
  return q === -1 ? target : target.slice(0, q)
}
