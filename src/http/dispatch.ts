import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AccessLog } from '../access-log.ts'
import { GatehouseError } from '../errors.ts'
import { forward } from '../proxy/forward.ts'
import type { ApiMatch } from '../proxy/routes.ts'
import { credentialsFor } from '../tokens/credentials.ts'
import { isAntiForgeryValid, isFromOwnPage } from './antiforgery.ts'
import {
  createContext,
  isPlainTarget,
  originOf,
  pathOf,
  resolveSession,
  shareContext,
  type RequestContext,
  type Services,
} from './context.ts'
import { applyCors, matchOrigin } from './cors.ts'
import { isNavigation } from './navigation.ts'
import { requestedHost } from './origin.ts'
import { abort, failureReply, writeReply } from './render.ts'
import { NO_STORE, problemJson, type Reply } from './reply.ts'
import type { ApiRoute, Route, RouteTable } from './routes.ts'

export type Next = (err?: unknown) => void

/**
 * The one request entry, in the order a request meets it: the door (TRACE, a host gatehouse does not
 * serve) → the route (an endpoint, a remote API, the SPA) → the context, built once the route is known
 * → the route's checks (anti-forgery, then the one session read) → the endpoint, or credentials and
 * forward() for an API. The catch site for errors of endpoints and proxied calls (src/http/render.ts).
 */
export function createHandle(
  services: Services,
  routes: RouteTable,
): (req: IncomingMessage, res: ServerResponse, next?: Next) => void {
  const { access } = services
  const refuseMisdirected = createMisdirectedRefusal(services, routes, access)
  return (req, res, next) => {
    // Before routing, every session read or upstream call: TRACE/TRACK, and requests for a host not served here.
    if (isTrace(req.method)) return refuseTrace(req, res, services, routes, access)
    const target = req.url ?? '/'
    const path = pathOf(target)
    const origin = originOf(req, services, path)
    if (typeof origin !== 'string' && origin.code === 'misdirected_request') return refuseMisdirected(req, res, origin)
    const probe = routes.global(path)
    if (probe) {
      services.telemetry.response(res, probe.label)
      return void runEndpoint(probe, createContext(req, services, origin, path), res, access)
    }
    // Endpoints are per frontend: only a path some frontend has an endpoint at needs the frontend first.
    let ctx: RequestContext | undefined
    if (routes.isEndpointPath(path)) {
      ctx = createContext(req, services, origin, path)
      const route = routes.endpoint(ctx.frontend, path)
      if (route) {
        services.telemetry.response(res, route.label)
        return void runEndpoint(route, ctx, res, access)
      }
    }
    const match = services.apis.match(target)
    if (match !== undefined) {
      const route = match === 'escape' ? undefined : routes.api(match.api)
      services.telemetry.response(res, route === undefined ? 'other' : route.label)
      return void callApi(match, route, ctx ?? createContext(req, services, origin, path), res, access)
    }
    ctx ??= createContext(req, services, origin, path)
    if (ctx.frontend.serve && !ctx.invalid && (req.method === 'GET' || req.method === 'HEAD')) {
      services.telemetry.response(res, 'frontend')
      // As middleware (next given), client-side-route fallback would shadow the app's own routes: only files are served.
      return void runFrontend(ctx, res, next, next === undefined)
    }
    if (next) {
      shareContext(ctx)
      return next()
    }
    services.telemetry.response(res, 'other')
    writeReply(res, problemJson(new GatehouseError('not_found'), ctx.requestId), ctx)
  }
}

/** The route's anti-forgery check (pure, before every I/O); the error to answer with, or undefined when it passes. */
function antiForgeryRefusal(route: Route | ApiRoute, ctx: RequestContext): GatehouseError | undefined {
  if (route.antiForgery === 'header')
    return isAntiForgeryValid(ctx.req.headers, ctx.services.config.antiForgery)
      ? undefined
      : new GatehouseError('antiforgery_failed')
  if (route.antiForgery === 'fetchMetadata')
    return isFromOwnPage(ctx.req.headers, ctx.services.cors)
      ? undefined
      : new GatehouseError('forbidden', 'this endpoint is for the application itself')
  return undefined
}

/** Whether the route's session read renews a sliding session. */
function slides(route: Route | ApiRoute, ctx: RequestContext): boolean {
  return route.slide === 'always' || (route.slide === 'query' && ctx.url.searchParams.get('slide') !== 'false')
}

/** One of gatehouse's endpoints: checks → handler → its Reply, written here. */
async function runEndpoint(route: Route, ctx: RequestContext, res: ServerResponse, access: AccessLog): Promise<void> {
  const started = performance.now()
  const { req, services } = ctx
  let reply: Reply
  try {
    if (ctx.invalid) throw ctx.invalid
    // A preflight is answered before the method check: OPTIONS is no method of these routes.
    const preflight =
      route.cors === undefined || services.cors === undefined
        ? undefined
        : applyCors(services.cors, req, res, route.cors, ctx.requestId)
    if (preflight) {
      reply = preflight
    } else {
      if (!route.methods.includes(req.method ?? '')) throw new GatehouseError('method_not_allowed')
      const refused = antiForgeryRefusal(route, ctx)
      if (refused) throw refused
      if (route.session !== 'none') {
        ctx.session = await resolveSession(ctx, slides(route, ctx))
        if (ctx.session === undefined && route.session === 'required') throw new GatehouseError('session_required')
      }
      if (route.stream) {
        await route.stream(ctx, res)
        return
      }
      reply = await route.handler(ctx)
    }
  } catch (err) {
    if (route.failures === 'login') services.telemetry.loginFailed(err, ctx.frontend.name)
    if (route.failures === 'backchannel') services.telemetry.backchannelFailed(err)
    reply = failureReply(err, ctx, route.kind)
    if (reply.status === 405) reply.headers.allow = route.methods.join(', ')
  }
  try {
    writeReply(res, reply, ctx)
  } catch (err) {
    abort(res, ctx, err)
  }
  access.line('request', {
    requestId: ctx.requestId,
    method: req.method,
    path: pathOf(req.url),
    status: reply.status,
    ms: Math.round(performance.now() - started),
  })
}

/** A remote API call: anti-forgery → session → one of the client's places → credentials → forward (one store read). */
async function callApi(
  match: ApiMatch | 'escape',
  route: ApiRoute | undefined,
  ctx: RequestContext,
  res: ServerResponse,
  access: AccessLog,
): Promise<void> {
  const started = performance.now()
  const { req, services } = ctx
  let status: number
  try {
    if (ctx.invalid) throw ctx.invalid
    if (match === 'escape' || route === undefined) throw new GatehouseError('path_escape')
    const { api } = match
    // A preflight from an SPA on another origin is gatehouse's to answer: it never reaches the upstream.
    const preflight =
      services.cors === undefined ? undefined : applyCors(services.cors, req, res, route.cors, ctx.requestId)
    if (preflight) {
      writeReply(res, preflight, ctx)
      status = preflight.status
    } else {
      // The method first (RFC 10017 §6.1.3.6): a refused one costs no session read, no token and no upstream call.
      if (api.allowed && !api.allowed.has(req.method ?? ''))
        throw new GatehouseError('method_not_allowed', `the ${api.path} API accepts ${api.allowHeader}`)
      const refused = antiForgeryRefusal(route, ctx)
      if (refused) throw refused
      if (route.session !== 'none') ctx.session = await resolveSession(ctx, slides(route, ctx))
      // One of the client's places (its session's, else its address's) before every token step: 429 when it holds them all.
      const place = services.upstreams.admit(req, res, api, ctx.session)
      const credentials = await credentialsFor(ctx, route)
      const corsGranted =
        services.cors === undefined ? undefined : matchOrigin(services.cors, req.headers.origin) !== undefined
      await forward(req, res, match, credentials, ctx.origin, corsGranted, services.upstreams, place)
      // 499: the client left before an answer started (as the request counter says).
      status = res.headersSent ? res.statusCode : 499
    }
  } catch (err) {
    status = abort(res, ctx, err, match === 'escape' ? undefined : match.api.allowHeader)
  }
  // The raw path, as received: a refused escape must show up in the log as what it was.
  access.line('proxy', {
    requestId: ctx.requestId,
    method: req.method,
    path: pathOf(req.url),
    api: match === 'escape' ? undefined : match.api.path,
    status,
    ms: Math.round(performance.now() - started),
  })
}

/**
 * The SPA itself (SPEC §6): its files to every GET/HEAD, or — with `fallback` — index.html for
 * client-side routes, to navigations only (src/http/navigation.ts). Every other miss is next() or 404
 * problem+json, so that a fetch() of an unknown API path never gets a page with 200.
 */
export async function runFrontend(
  ctx: RequestContext,
  res: ServerResponse,
  next: Next | undefined,
  fallback: boolean,
): Promise<void> {
  try {
    const { frontend } = ctx
    const path = pathOf(ctx.req.url)
    const relative = frontend.prefix === '' ? path : path.slice(frontend.prefix.length) || '/'
    const index = !fallback
      ? 'never'
      : isNavigation(ctx.req.headers, ctx.services.config.antiForgery.header)
        ? 'routes'
        : 'root'
    const outcome = await frontend.serve!(ctx.req, res, relative, index)
    if (outcome === 'served') return
    if (outcome === 'not_found' && next) {
      shareContext(ctx)
      return next()
    }
    const error =
      outcome === 'bad_path'
        ? new GatehouseError('bad_request', 'the path is not a file of this application')
        : outcome === 'unavailable'
          ? new GatehouseError('upstream_unavailable', 'the application page could not be fetched')
          : new GatehouseError('not_found')
    writeReply(res, problemJson(error, ctx.requestId), ctx)
  } catch (err) {
    abort(res, ctx, err)
  }
}

/**
 * TRACE and TRACK (IIS's TRACE), in every letter case: an echo of the request would hand a script the
 * cookies, or — through a remote API — the access token gatehouse attached (RFC 9110 §9.3.8). Node's
 * HTTP/1 parser lets only "TRACE" through; other servers (HTTP/2) pass every method name.
 */
function isTrace(method: string | undefined): boolean {
  if (method === undefined || method.length !== 5) return false
  const upper = method.toUpperCase()
  return upper === 'TRACE' || upper === 'TRACK'
}

const NO_COOKIES: readonly string[] = []

/** TRACE/TRACK get 405 on every path, before routing. */
function refuseTrace(
  req: IncomingMessage,
  res: ServerResponse,
  services: Services,
  routes: RouteTable,
  access: AccessLog,
): void {
  services.telemetry.response(res, 'other')
  const requestId = randomUUID()
  const reply = problemJson(
    new GatehouseError(
      'method_not_allowed',
      `${req.method} is not answered: it would echo the request, credentials included`,
    ),
    requestId,
  )
  const path = pathOf(req.url)
  reply.headers.allow = routes.allowFor(req.url ?? '/', path)
  writeReply(res, reply, { req, setCookies: NO_COOKIES })
  access.line('request', { requestId, method: req.method, path, status: reply.status })
}

/** At most one warning a minute about misdirected requests: a scanner or a rebinding page must not flood the log. */
const MISDIRECTED_WARN_EVERY_MS = 60_000

/**
 * A request whose host names none of gatehouse's origins (DNS rebinding, a scanner, a client that
 * used the address) gets 421 — or, for a browser navigation to a management or frontend path, a 308 to
 * the same path on publicOrigin, where its cookies are.
 */
function createMisdirectedRefusal(
  services: Services,
  routes: RouteTable,
  access: AccessLog,
): (req: IncomingMessage, res: ServerResponse, refusal: GatehouseError) => void {
  const { config } = services
  /** A navigation a 308 to publicOrigin helps: to a management endpoint, or a path a host-less frontend serves. */
  const isRedirectable = (req: IncomingMessage, target: string, path: string): boolean => {
    if (config.publicOrigin === undefined || (req.method !== 'GET' && req.method !== 'HEAD') || !isPlainTarget(target))
      return false
    if (!isNavigation(req.headers, config.antiForgery.header)) return false
    if (routes.isEndpointPath(path)) return true
    return services.apis.match(target) === undefined && services.frontends.select(undefined, path).serve !== undefined
  }
  let warnedAt = -Infinity
  return (req, res, refusal) => {
    services.telemetry.response(res, 'other')
    const requestId = randomUUID()
    const target = req.url ?? '/'
    const path = pathOf(target)
    const reply: Reply = isRedirectable(req, target, path)
      ? { status: 308, headers: { location: `${config.publicOrigin}${target}`, ...NO_STORE } }
      : problemJson(refusal, requestId)
    writeReply(res, reply, { req, setCookies: NO_COOKIES })
    access.line('request', { requestId, method: req.method, path, status: reply.status })
    const now = services.now()
    if (now - warnedAt >= MISDIRECTED_WARN_EVERY_MS) {
      warnedAt = now
      // Request headers are never logged (docs/operations.md): what kind of host came, and in which header.
      const host = requestedHost(req, config.trustProxy)
      const header =
        host === undefined
          ? null
          : config.trustProxy && req.headers['x-forwarded-host'] !== undefined
            ? 'X-Forwarded-Host'
            : 'Host'
      const hostKind = host === undefined ? 'absent' : /^\[|^[\d.]+(:\d+)?$/.test(host) ? 'ip_address' : 'name'
      services.log.warn(
        { event: 'misdirected_request', requestId, header, hostKind, origins: services.frontends.origins?.all },
        "a request named a host gatehouse does not serve: refused with 421 (a browser navigation is sent on to publicOrigin with 308). If your proxy or load balancer sent it, have it pass the browser's Host (or X-Forwarded-Host, with trustProxy). At most one such warning a minute",
      )
    }
  }
}
