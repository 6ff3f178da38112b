import type { ServerResponse } from 'node:http'
import type { Frontend } from '../frontends/frontends.ts'
import type { RemoteApi, RemoteApiRoutes } from '../proxy/routes.ts'
import type { TokenNeed } from '../tokens/credentials.ts'
import { resourceOf } from '../tokens/resource.ts'
import type { Handler, RequestContext } from './context.ts'
import type { CorsRule } from './cors.ts'
import type { ReplyKind } from './render.ts'

/**
 * How a route tells the application's own requests from a cross-site page's (CSRF), checked before
 * every I/O: the anti-forgery header (SPEC §4); or, where the browser cannot send a header
 * (EventSource), Fetch Metadata — `Sec-Fetch-Site` same-origin or none, else an Origin of
 * cors.allowedOrigins; or nothing (navigations, the IdP's own calls, probes).
 */
export type AntiForgery = 'header' | 'fetchMetadata' | 'none'

/**
 * What the dispatcher reads of the session before the route runs — the one store read: nothing (the
 * route reads it itself where its own order needs it, or never), the session if there is one, or a
 * session (401 session_required without one).
 */
export type SessionNeed = 'none' | 'optional' | 'required'

/** Whether that read renews a sliding session: always (API calls), never, or unless the query says `slide=false` (/bff/user, for polling). */
export type Slide = 'always' | 'never' | 'query'

/** What the dispatcher checks and reads for a route before it runs, and how the route is counted. */
export interface RouteFlags {
  antiForgery: AntiForgery
  session: SessionNeed
  slide: Slide
  /** The `route` label of gatehouse_requests_total: the same whatever paths are configured, never from the request. */
  label: string
}

/** One of gatehouse's own endpoints. */
export interface Route extends RouteFlags {
  handler: Handler
  kind: ReplyKind
  methods: readonly string[]
  /** A long-lived answer written to the response directly (Server-Sent Events); errors before it starts still get a Reply. */
  stream?: (ctx: RequestContext, res: ServerResponse) => Promise<void>
  /** Set on the endpoints an SPA fetch()es: with `cors.allowedOrigins` they answer those origins (src/http/cors.ts). */
  cors?: CorsRule
  /** The failure counter the route's errors go to (gatehouse_logins_total, gatehouse_backchannel_logouts_total). */
  failures?: 'login' | 'backchannel'
}

/** A remote API as a route: its flags, its token need, and what a CORS preflight may ask of it. */
export interface ApiRoute extends RouteFlags, TokenNeed {
  api: RemoteApi
  /** What a CORS preflight may ask for (with `cors.allowedOrigins`): the API's methods, every header but the denied ones. */
  cors: CorsRule
}

/** What a 405 to TRACE advertises where no route or `methods` list says more (RFC 9110 §10.2.1: methods advertised). */
const USUAL_METHODS = 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS'

/**
 * The route table, built once at start: gatehouse's endpoints — outside every frontend (the probes),
 * and each frontend's under its path (SPEC §3; listed in src/endpoints/endpoint-routes.ts) — and the
 * remote APIs (SPEC §5), each route with the checks the dispatcher makes before it runs
 * (`antiForgery`, `session`) and its metric label.
 */
export class RouteTable {
  readonly #global: Map<string, Route>
  readonly #byFrontend: Map<string, Map<string, Route>>
  /** Every endpoint path, of every frontend, with its methods (the first route's, as an Allow value). */
  readonly #endpointMethods = new Map<string, string>()
  readonly #apis: RemoteApiRoutes
  readonly #apiRoutes = new Map<RemoteApi, ApiRoute>()

  /** `byFrontend`: each frontend's endpoints by its name. */
  constructor(global: Map<string, Route>, byFrontend: Map<string, Map<string, Route>>, apis: RemoteApiRoutes) {
    this.#global = global
    this.#byFrontend = byFrontend
    for (const routes of [this.#global, ...this.#byFrontend.values()]) {
      for (const [path, route] of routes)
        if (!this.#endpointMethods.has(path)) this.#endpointMethods.set(path, route.methods.join(', '))
    }
    this.#apis = apis
    for (const api of apis.all) this.#apiRoutes.set(api, apiRoute(api))
  }

  /** A route outside every frontend (/healthz, /readyz): matched before the request's frontend is known. */
  global(path: string): Route | undefined {
    return this.#global.get(path)
  }

  /** Whether some frontend has an endpoint at this path: only then does routing need the request's frontend. */
  isEndpointPath(path: string): boolean {
    return this.#endpointMethods.has(path)
  }

  /** The frontend's endpoint at this path. */
  endpoint(frontend: Frontend, path: string): Route | undefined {
    return this.#byFrontend.get(frontend.name)?.get(path)
  }

  /** The route of a remote API (RemoteApiRoutes.match). */
  api(api: RemoteApi): ApiRoute {
    return this.#apiRoutes.get(api)!
  }

  /** The methods a 405 advertises for a request target: its endpoint's, its API's (every usual one when the API names none), else GET and HEAD. */
  allowFor(target: string, path: string): string {
    const methods = this.#endpointMethods.get(path)
    if (methods !== undefined) return methods
    const api = this.#apis.match(target)
    if (api === undefined) return 'GET, HEAD'
    return api === 'escape' ? USUAL_METHODS : (api.api.allowHeader ?? USUAL_METHODS)
  }
}

/** A remote API's flags: its `antiForgery` setting; a session read unless it takes no token. */
function apiRoute(api: RemoteApi): ApiRoute {
  return {
    api,
    antiForgery: api.antiForgery ? 'header' : 'none',
    session: api.token === 'none' ? 'none' : 'optional',
    slide: 'always',
    label: `api:${api.path}`,
    token: api.token,
    resource: resourceOf(api),
    cors: { methods: api.allowed && [...api.allowed], otherHeaders: true },
  }
}
