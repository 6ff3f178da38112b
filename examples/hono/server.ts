/**
 * gatehouse in front of a Hono app on Node (@hono/node-server).
 *
 * gatehouse runs the OIDC login and serves its own endpoints (/bff/login, /bff/user, /bff/logout,
 * /signin-oidc, …) plus the `remoteApis` reverse proxy; Hono keeps the app's own routes, guarded by
 * a middleware that applies gatehouse's `protect()` checks.
 *
 * How it is mounted: Hono speaks fetch (Request → Response), gatehouse speaks node:http. So the
 * node:http server runs gatehouse first and hands everything gatehouse does not own to Hono's node
 * listener:
 *
 *   const hono = getRequestListener(app.fetch)
 *   createServer((req, res) => gatehouse.handle(req, res, () => hono(req, res)))
 *
 * Proxied request bodies therefore reach gatehouse as an untouched stream. Inside Hono,
 * @hono/node-server exposes the node objects as `c.env.incoming` / `c.env.outgoing`, which is what
 * gatehouse's getSession()/getAccessToken()/protect() take.
 *
 * Run it from the repo root (Node >= 22.18 or 24 runs .ts directly):
 *
 *   GATEHOUSE_CONFIG=./gatehouse.json node examples/hono/server.ts
 *   GATEHOUSE_CONFIG_JSON='{"oidc":{…},"keys":["…"]}' PORT=3000 node examples/hono/server.ts
 *
 * `${NAME}` in the config is replaced by the environment variable NAME (like `gatehouse serve`).
 * Set DOWNSTREAM_URL to an API that accepts the user's access token to enable GET /api/downstream.
 *
 * Routes:
 *   GET  /                 public text page
 *   GET  /api/me           the user's sub and name                  (protected: session + X-CSRF: 1)
 *   POST /api/notes        echoes a JSON body parsed by Hono        (protected)
 *   GET  /api/downstream   calls DOWNSTREAM_URL with the user's access token, server-side (protected)
 *
 * Local routes must not overlap a `remoteApis` path: gatehouse's proxy matches first.
 */
import { readFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { getRequestListener, type HttpBindings } from '@hono/node-server'
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response'
import { Hono } from 'hono'
import { createMiddleware } from 'hono/factory'
import { HTTPException } from 'hono/http-exception'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
// In your app: `from 'gatehouse-bff'`. The examples import the source so they run inside this repo.
import {
  createGatehouse,
  GatehouseError,
  type Gatehouse,
  type GatehouseOptions,
  type RuntimeOptions,
  type SessionInfo,
} from '../../src/index.ts'

/** Hono's typing for this app: node bindings from @hono/node-server, the session set by `requireSession`. */
export type AppEnv = { Bindings: HttpBindings; Variables: { session: SessionInfo } }

export interface AppOptions {
  /** Built with `createGatehouse`; the app never sees tokens except through `getAccessToken`. */
  gatehouse: Gatehouse
  /** A downstream API called server-side with the user's access token (enables GET /api/downstream). */
  downstreamUrl?: string | undefined
}

/** The Hono app (gatehouse is not inside it: see `createListener`). */
export function createApp({ gatehouse, downstreamUrl }: AppOptions): Hono<AppEnv> {
  const app = new Hono<AppEnv>()

  /**
   * protect() as Hono middleware. On refusal gatehouse has already written its 401 problem+json to
   * the node response, and RESPONSE_ALREADY_SENT tells @hono/node-server not to write another.
   * On success the session is put on the context for the handlers.
   */
  const requireSession = createMiddleware<AppEnv>(async (c, next) => {
    const { incoming, outgoing } = c.env
    if (!(await passesProtect(gatehouse, incoming, outgoing))) return RESPONSE_ALREADY_SENT
    c.set('session', (await gatehouse.getSession(incoming))!)
    await next()
  })

  app.get('/', (c) => c.text('gatehouse + Hono: log in at /bff/login, then GET /api/me with the header X-CSRF: 1\n'))

  app.get('/api/me', requireSession, (c) => {
    const session = c.get('session')
    return c.json({ sub: session.sub, name: session.claims.find((claim) => claim.type === 'name')?.value ?? null })
  })

  app.post('/api/notes', requireSession, async (c) => {
    const note: unknown = await c.req.json().catch(() => {
      throw new HTTPException(400, { message: 'the body must be JSON' })
    })
    return c.json({ sub: c.get('session').sub, note }, 201)
  })

  if (downstreamUrl) {
    app.get('/api/downstream', requireSession, async (c) => {
      // Refreshed when near expiry; throws GatehouseError('session_ended') if the IdP refuses the refresh.
      // Passing the node response lets a refreshed cookie-mode session reach the browser.
      const token = await gatehouse.getAccessToken(c.env.incoming, 'user', c.env.outgoing)
      const answer = await fetch(downstreamUrl, {
        headers: { authorization: `Bearer ${token}` },
        signal: AbortSignal.timeout(10_000),
      })
      return c.json({ status: answer.status, body: (await answer.json()) as unknown })
    })
  }

  // Answer errors in gatehouse's style, without internals.
  app.onError((err, c) => {
    const known = err instanceof GatehouseError ? err : undefined
    const status = (known?.status ??
      (err instanceof HTTPException && err.status < 500 ? err.status : 500)) as ContentfulStatusCode
    const title = known?.message ?? (status < 500 ? err.message : 'Internal error')
    return c.json({ title, status, code: known?.code ?? (status < 500 ? 'bad_request' : 'internal') }, status, {
      'content-type': 'application/problem+json',
    })
  })
  return app
}

/**
 * gatehouse.protect() for a framework that does not run node-style middleware: resolves true when the
 * request may go on (live session and anti-forgery header), false when gatehouse refused it and has
 * already written its 401 problem+json to `res` (seen by the response finishing).
 */
export function passesProtect(gatehouse: Gatehouse, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  return new Promise((resolvePass, reject) => {
    const refused = () => resolvePass(false)
    res.once('finish', refused).once('close', refused)
    gatehouse.protect()(req, res, (err) => {
      res.off('finish', refused).off('close', refused)
      if (err) reject(err)
      else resolvePass(true)
    })
  })
}

/** The `node:http` request listener: gatehouse first, everything else to Hono. */
export function createListener(options: AppOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const hono = getRequestListener(createApp(options).fetch)
  return (req, res) => options.gatehouse.handle(req, res, () => void hono(req, res))
}

export interface StartOptions {
  /** The gatehouse.json shape. `listen` gives host and port unless `host`/`port` override them. */
  config: GatehouseOptions
  runtime?: RuntimeOptions
  host?: string | undefined
  /** 0 picks a free port. */
  port?: number | undefined
  downstreamUrl?: string | undefined
}

export interface Running {
  url: string
  server: Server
  gatehouse: Gatehouse
  /** Stops accepting, lets in-flight requests finish, closes gatehouse (session store, upstream pools). */
  close(): Promise<void>
}

export async function start(options: StartOptions): Promise<Running> {
  const gatehouse = await createGatehouse(options.config, options.runtime)
  // A plain node:http server rather than @hono/node-server's serve(): gatehouse must see the request first.
  const server = createServer(createListener({ gatehouse, downstreamUrl: options.downstreamUrl }))
  // WebSockets to remoteApis with `websockets: true` arrive as `upgrade` events, not requests.
  server.on('upgrade', gatehouse.upgrade)
  const host = options.host ?? gatehouse.config.listen.host
  await new Promise<void>((done, fail) =>
    server.once('error', fail).listen(options.port ?? gatehouse.config.listen.port, host, done),
  )
  const { port } = server.address() as AddressInfo
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    server,
    gatehouse,
    async close() {
      await new Promise<void>((done) => {
        server.close(() => done())
        server.closeIdleConnections()
      })
      await gatehouse.close()
    },
  }
}

/** GATEHOUSE_CONFIG_JSON (inline JSON) or the file GATEHOUSE_CONFIG (default ./gatehouse.json), with `${NAME}` → env NAME. */
export async function loadConfig(env: NodeJS.ProcessEnv = process.env): Promise<GatehouseOptions> {
  const text = env.GATEHOUSE_CONFIG_JSON ?? (await readFile(env.GATEHOUSE_CONFIG ?? 'gatehouse.json', 'utf8'))
  const substituted = text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
    const value = env[name]
    if (value === undefined) throw new Error(`environment variable ${name} is not set`)
    return JSON.stringify(value).slice(1, -1) // escaped for a JSON string
  })
  return JSON.parse(substituted) as GatehouseOptions
}

// `node examples/hono/server.ts`
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const running = await start({
      config: await loadConfig(),
      port: process.env.PORT ? Number(process.env.PORT) : undefined,
      host: process.env.HOST,
      downstreamUrl: process.env.DOWNSTREAM_URL,
    })
    console.log(`gatehouse + Hono listening on ${running.url}`)
    for (const signal of ['SIGINT', 'SIGTERM'] as const)
      process.once(signal, () => void running.close().then(() => process.exit(0)))
  } catch (err) {
    console.error(err instanceof Error ? err.message : err)
    process.exit(1)
  }
}
