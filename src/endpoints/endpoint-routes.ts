import type { Config } from '../config/types.ts'
import { GatehouseError } from '../errors.ts'
import type { Frontend } from '../frontends/frontends.ts'
import type { Handler } from '../http/context.ts'
import { GET_ROUTE_CORS, READ_ROUTE_CORS } from '../http/cors.ts'
import type { Route } from '../http/routes.ts'
import { backchannel } from './backchannel.ts'
import { callback } from './callback.ts'
import { diagnostics } from './diagnostics.ts'
import { healthz, readyz } from './health.ts'
import { login, silentLogin } from './login.ts'
import { logout } from './logout.ts'
import { postLogout } from './post-logout.ts'
import { sessionEvents } from './session-events.ts'
import { silentLoginCallback } from './silent-login-callback.ts'
import { user } from './user.ts'

/**
 * A route as the table lists it: every check stated, none by default, so a new route says what the
 * dispatcher checks before it runs (tests/unit/endpoint-routes.test.ts pins the table).
 */
type Spec = Omit<Route, 'label'>

/** No anti-forgery check, no session read before the route runs: for navigations, the IdP's calls, probes. */
const UNCHECKED = { antiForgery: 'none', session: 'none', slide: 'never' } as const

const READ = ['GET', 'HEAD'] as const
/** Login, callback and logout change state: a HEAD must not redeem a code or end a session. */
const NAVIGATE = ['GET'] as const

const notAReply: Handler = async () => {
  throw new GatehouseError('internal', 'a streaming route has no reply')
}

/** gatehouse's endpoints outside every frontend: the health probes. */
export function probeRoutes(): Map<string, Route> {
  return new Map<string, Route>([
    ['/healthz', withFlags('healthz', { handler: healthz, kind: 'api', methods: READ, ...UNCHECKED })],
    ['/readyz', withFlags('readyz', { handler: readyz, kind: 'api', methods: READ, ...UNCHECKED })],
  ])
}

/**
 * A frontend's management endpoints (SPEC §3), under its path: `/bff/user` for the frontend at "/",
 * `/admin/bff/user` and `/admin/signin-oidc` for the one at "/admin", each with the checks the
 * dispatcher makes before it runs (src/http/routes.ts). Logout and the callback read the session
 * themselves, after their cheaper checks (logout) or the code exchange (callback).
 */
export function endpointRoutes(config: Config, frontend: Frontend): Map<string, Route> {
  const base = `${frontend.prefix}${config.managementBasePath}`
  const entries: [string, Spec][] = [
    [`${base}/login`, { handler: login, kind: 'page', methods: NAVIGATE, ...UNCHECKED }],
    [
      `${base}/user`,
      {
        handler: user,
        kind: 'api',
        methods: READ,
        cors: READ_ROUTE_CORS,
        antiForgery: 'header',
        session: config.anonymousSessionResponse === 200 ? 'optional' : 'required',
        slide: 'query',
      },
    ],
    [`${base}/logout`, { handler: logout, kind: 'page', methods: NAVIGATE, ...UNCHECKED }],
    [`${base}/silent-login`, { handler: silentLogin, kind: 'page', methods: NAVIGATE, ...UNCHECKED }],
    // EventSource cannot send the anti-forgery header: Fetch Metadata tells the app's own page instead.
    [
      `${base}/session-events`,
      {
        handler: notAReply,
        stream: sessionEvents,
        kind: 'api',
        methods: ['GET'],
        cors: GET_ROUTE_CORS,
        antiForgery: 'fetchMetadata',
        session: 'required',
        slide: 'never',
      },
    ],
    [
      `${base}/silent-login-callback`,
      {
        handler: silentLoginCallback,
        kind: 'page',
        methods: READ,
        antiForgery: 'none',
        session: 'optional',
        slide: 'never',
      },
    ],
    [
      `${frontend.prefix}${config.oidc.redirectPath}`,
      { handler: callback, kind: 'page', methods: NAVIGATE, failures: 'login', ...UNCHECKED },
    ],
    [
      `${frontend.prefix}${config.oidc.postLogoutRedirectPath}`,
      { handler: postLogout, kind: 'page', methods: NAVIGATE, ...UNCHECKED },
    ],
  ]
  // Back-channel logout needs sessions the server can find and end: not in cookie mode.
  if (config.session.mode === 'server')
    entries.push([
      `${base}/backchannel`,
      { handler: backchannel, kind: 'api', methods: ['POST'], failures: 'backchannel', ...UNCHECKED },
    ])
  // Like every API call: the app's own script, with a session. Never an anonymous token dispenser.
  if (config.diagnostics)
    entries.push([
      `${base}/diagnostics`,
      {
        handler: diagnostics,
        kind: 'api',
        methods: READ,
        cors: READ_ROUTE_CORS,
        antiForgery: 'header',
        session: 'required',
        slide: 'never',
      },
    ])
  return new Map(entries.map(([path, spec]) => [path, withFlags(labelOf(config, frontend, path), spec)]))
}

/**
 * The `route` label of a frontend's endpoint: the endpoint's name, the same whatever paths and
 * frontends are configured ("bff_user", "callback"), so dashboards work across deployments.
 */
function labelOf(config: Config, frontend: Frontend, path: string): string {
  const base = `${frontend.prefix}${config.managementBasePath}/`
  if (path === `${frontend.prefix}${config.oidc.redirectPath}`) return 'callback'
  if (path === `${frontend.prefix}${config.oidc.postLogoutRedirectPath}`) return 'post_logout'
  if (path.startsWith(base)) return `bff_${path.slice(base.length).replace(/[^A-Za-z0-9]+/g, '_')}`
  return 'other'
}

function withFlags(label: string, spec: Spec): Route {
  return { ...spec, label }
}
