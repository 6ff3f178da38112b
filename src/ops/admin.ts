import { createHash, randomUUID, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Logger } from 'pino'
import { GatehouseError } from '../errors.ts'
import { writeReply } from '../http/render.ts'
import { json, problemJson, type Reply } from '../http/reply.ts'
import type { Sessions } from '../session/sessions.ts'
import type { SessionFilter } from '../session/store.ts'
import type { Telemetry } from './metrics.ts'
import { CONSOLE_HEADERS, consoleFile, isConsolePath } from './admin-console.ts'
import type { AdminHealth } from './admin-health.ts'

const DEFAULT_LIMIT = 100
const MAX_LIMIT = 1000
const REALM = 'gatehouse-admin'
/** The admin listener sets no cookies. */
const NO_COOKIES: readonly string[] = []
const SESSIONS_PATH = '/admin/sessions'
/** A session's id hash in a path: SHA-256 in base64url (43 characters); anything else names no session. */
const ID_HASH = /^[A-Za-z0-9_-]{1,128}$/

export interface AdminOptions {
  telemetry: Telemetry
  /** Server-mode sessions, which tell every instance of what they revoke; undefined in cookie mode (none on the server to list or revoke). */
  sessions: Pick<Sessions, 'list' | 'endWhere' | 'endById'> | undefined
  /** The admin console's health report (`GET /admin/health`); without it that path answers 404. */
  health?: (() => Promise<AdminHealth>) | undefined
  /** `admin.token`. Unset: the admin API answers 403 and `/metrics` is open. */
  token: string | undefined
  log: Logger
}

interface AdminRoute {
  methods: readonly string[]
  /** `/metrics` is open when no token is configured; the session API never is. */
  needsToken: boolean
  /** The console's page and files, and whether a token is configured: never behind the token (they hold no secret). */
  open?: boolean
  run(url: URL, req: IncomingMessage): Promise<Reply>
}

/**
 * The admin listener's handler (SPEC §7): `GET /metrics` (Prometheus text) and the session API,
 * `GET /admin/sessions?sub=S&limit=N` and `DELETE /admin/sessions?sub=S | ?sid=S`. Everything needs
 * `Authorization: Bearer <admin.token>` when a token is configured (SPEC §10).
 */
export function createAdminHandler(options: AdminOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const { telemetry, sessions, log } = options
  // Compared as SHA-256 digests: equal lengths, so neither the bytes nor the token's length leak through timing.
  const expected = options.token === undefined ? undefined : sha256(options.token)

  const routes = new Map<string, AdminRoute>([
    [
      '/metrics',
      {
        methods: ['GET', 'HEAD'],
        needsToken: false,
        run: async () => {
          const body = await telemetry.metrics()
          return { status: 200, headers: { 'content-type': telemetry.contentType, 'cache-control': 'no-store' }, body }
        },
      },
    ],
    [
      SESSIONS_PATH,
      {
        methods: ['GET', 'DELETE'],
        needsToken: true,
        run: async (url, req) =>
          req.method === 'DELETE' ? revoke(serverSessions(), url) : list(serverSessions(), url),
      },
    ],
    [
      '/admin/console',
      {
        methods: ['GET', 'HEAD'],
        needsToken: false,
        open: true,
        run: async () => json(200, { tokenConfigured: expected !== undefined }),
      },
    ],
    [
      '/admin/health',
      {
        methods: ['GET', 'HEAD'],
        needsToken: true,
        run: async () => {
          if (!options.health) throw new GatehouseError('not_found')
          return json(200, await options.health())
        },
      },
    ],
  ])

  /** `DELETE /admin/sessions/{idHash}`: one session, as the console's "Revoke" names it. */
  const oneSession: AdminRoute = {
    methods: ['DELETE'],
    needsToken: true,
    run: async (url) => {
      const server = serverSessions()
      const idHash = url.pathname.slice(SESSIONS_PATH.length + 1)
      if (!ID_HASH.test(idHash)) throw new GatehouseError('not_found', 'no such session')
      const revoked = await server.endById(idHash, 'revoked')
      log.info({ event: 'admin_revoke', by: 'id', sessions: revoked ? 1 : 0 }, 'sessions revoked through the admin API')
      if (!revoked) throw new GatehouseError('not_found', 'no such session (ended or expired)')
      return json(200, { revoked: 1 })
    },
  }

  /** The console's page, script and styles. */
  const consoleRoute: AdminRoute = {
    methods: ['GET', 'HEAD'],
    needsToken: false,
    open: true,
    run: async (url) => {
      const file = consoleFile(url.pathname)
      if (!file) throw new GatehouseError('not_found', 'the admin console is not part of this install')
      return { status: 200, headers: { ...CONSOLE_HEADERS, 'content-type': file.type }, body: file.body.toString() }
    },
  }

  function routeOf(path: string): AdminRoute | undefined {
    const route = routes.get(path)
    if (route) return route
    if (isConsolePath(path)) return consoleRoute
    if (path.startsWith(`${SESSIONS_PATH}/`)) return oneSession
    return undefined
  }

  /** The server-side sessions the session API works on; in cookie mode there are none (404). */
  function serverSessions(): NonNullable<AdminOptions['sessions']> {
    if (!sessions) throw new GatehouseError('not_found', 'session.mode is "cookie": there are no server-side sessions')
    return sessions
  }

  async function list(sessions: Pick<Sessions, 'list'>, url: URL): Promise<Reply> {
    const sub = single(url, 'sub')
    const limitParam = single(url, 'limit') ?? String(DEFAULT_LIMIT)
    const limit = /^\d{1,4}$/.test(limitParam) ? Number(limitParam) : 0
    if (limit < 1 || limit > MAX_LIMIT)
      throw new GatehouseError('bad_request', undefined, {
        errors: { limit: [`must be a whole number from 1 to ${MAX_LIMIT}`] },
      })
    // Metadata only: the sealed tokens never leave the store through this API.
    const found = await sessions.list(sub === undefined ? { limit } : { sub, limit })
    return json(200, {
      sessions: found.map((r) => ({
        idHash: r.idHash,
        sub: r.sub,
        sid: r.sid ?? null,
        partition: r.partition,
        createdAt: r.createdAt,
        renewedAt: r.renewedAt,
        expiresAt: r.expiresAt,
      })),
    })
  }

  async function revoke(sessions: Pick<Sessions, 'endWhere'>, url: URL): Promise<Reply> {
    const sub = single(url, 'sub')
    const sid = single(url, 'sid')
    if ((sub === undefined) === (sid === undefined)) {
      throw new GatehouseError('bad_request', 'give exactly one of sub or sid', {
        errors: { [sub === undefined ? 'sub' : 'sid']: ['exactly one of sub or sid is required'] },
      })
    }
    const filter: SessionFilter = sub !== undefined ? { sub } : { sid: sid! }
    const revoked = await sessions.endWhere(filter, 'revoked')
    log.info(
      { event: 'admin_revoke', by: sub !== undefined ? 'sub' : 'sid', sessions: revoked },
      'sessions revoked through the admin API',
    )
    return json(200, { revoked })
  }

  function authorize(route: AdminRoute, req: IncomingMessage): void {
    if (route.open) return
    if (expected === undefined) {
      if (route.needsToken) throw new GatehouseError('forbidden', 'admin.token is not configured: the admin API is off')
      return
    }
    const presented = bearerToken(req.headers.authorization)
    if (presented === undefined || !timingSafeEqual(sha256(presented), expected)) {
      throw new GatehouseError(
        'admin_unauthorized',
        presented === undefined ? 'send Authorization: Bearer <admin.token>' : 'the bearer token is not admin.token',
      )
    }
  }

  return (req, res) => {
    const requestId = randomUUID()
    const target = req.url ?? '/'
    const question = target.indexOf('?')
    const path = question === -1 ? target : target.slice(0, question)
    const route = routeOf(path)
    const answer = async (): Promise<Reply> => {
      if (!route) throw new GatehouseError('not_found')
      authorize(route, req)
      if (!route.methods.includes(req.method ?? '')) throw new GatehouseError('method_not_allowed')
      return route.run(new URL(`http://admin.invalid${target}`), req)
    }
    answer()
      .catch((err: unknown) => {
        const reply = problemJson(err, requestId)
        if (reply.status === 401) {
          // RFC 6750 §3: a challenge on every 401; error="invalid_token" when a token was sent but is wrong.
          reply.headers['www-authenticate'] =
            bearerToken(req.headers.authorization) === undefined
              ? `Bearer realm="${REALM}"`
              : `Bearer realm="${REALM}", error="invalid_token"`
          log.warn(
            {
              event: 'admin_refused',
              requestId,
              path: route === oneSession ? `${SESSIONS_PATH}/{idHash}` : route ? path : undefined,
            },
            'admin request without the admin token refused',
          )
        }
        if (reply.status === 405 && route) reply.headers.allow = route.methods.join(', ')
        if (reply.status >= 500)
          log.error(
            { event: 'admin_failed', requestId, err: err instanceof Error ? `${err.name}: ${err.message}` : 'unknown' },
            'admin request failed',
          )
        return reply
      })
      .then((reply) => writeReply(res, reply, { req, setCookies: NO_COOKIES }))
      .catch(() => res.destroy())
  }
}

/**
 * The token of an `Authorization: Bearer <token>` header (RFC 6750 §2.1; the scheme is case-insensitive).
 * Any characters are taken, not only b64token ones: admin.token is whatever the operator chose.
 */
function bearerToken(header: string | undefined): string | undefined {
  const match = /^Bearer +(.*\S) *$/i.exec(header ?? '')
  return match?.[1]
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value).digest()
}

/** A query parameter given at most once; repeating it is ambiguous and refused. */
function single(url: URL, name: string): string | undefined {
  const all = url.searchParams.getAll(name)
  if (all.length > 1)
    throw new GatehouseError('bad_request', undefined, { errors: { [name]: ['must be given at most once'] } })
  if (all[0] === '') throw new GatehouseError('bad_request', undefined, { errors: { [name]: ['must not be empty'] } })
  return all[0]
}
