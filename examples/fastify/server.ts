/**
 * gatehouse inside a Fastify 5 app.
 *
 * gatehouse runs the OIDC login and serves its own endpoints (/bff/login, /bff/user, /bff/logout,
 * /signin-oidc, …) plus the `remoteApis` reverse proxy; Fastify keeps the app's own routes, guarded
 * by a route hook that applies gatehouse's `protect()` checks.
 *
 * How it is mounted: `gatehouse.handle` is a node:http handler `(req, res, next)`. An `onRequest`
 * hook hands it Fastify's raw objects (`request.raw`, `reply.raw`) and waits for one of two outcomes:
 *   - gatehouse calls `next()` (not its path) → the hook resolves and Fastify carries on as usual;
 *   - gatehouse answers on `reply.raw` itself (its endpoints, the proxy, a `frontends` file) → once
 *     that response has finished, the hook calls `reply.hijack()`, so Fastify neither runs later
 *     hooks/handlers nor tries to send a reply of its own.
 * Waiting for the outcome, rather than assuming next() comes synchronously, matters: with
 * `frontends` serving files, gatehouse checks the disk first and passes a missing asset on later.
 * `onRequest` is the first hook, before Fastify's content-type parsers: proxied request bodies
 * (uploads, JSON) and POST /bff/backchannel reach gatehouse as an unread stream. A `preHandler` or
 * `preValidation` hook would be too late (the body is parsed by then). No @fastify/middie needed.
 *
 * Protecting local routes: `requireSession` runs gatehouse's protect() (anti-forgery header + live
 * session). It is a route-level `onRequest` hook, so an anonymous or cross-site request is refused
 * before Fastify parses its body; as a `preHandler` it works the same, only after body parsing.
 *
 * Run it from the repo root (Node >= 22.18 or 24 runs .ts directly):
 *
 *   GATEHOUSE_CONFIG=./gatehouse.json node examples/fastify/server.ts
 *   GATEHOUSE_CONFIG_JSON='{"oidc":{…},"keys":["…"]}' PORT=3000 node examples/fastify/server.ts
 *
 * `${NAME}` in the config is replaced by the environment variable NAME (like `gatehouse serve`).
 * Set DOWNSTREAM_URL to an API that accepts the user's access token to enable GET /api/downstream.
 *
 * Routes:
 *   GET  /                 public text page
 *   GET  /api/me           the user's sub and name                  (protected: session + X-CSRF: 1)
 *   POST /api/notes        echoes a JSON body parsed by Fastify     (protected)
 *   GET  /api/downstream   calls DOWNSTREAM_URL with the user's access token, server-side (protected)
 *
 * Local routes must not overlap a `remoteApis` path: gatehouse's proxy matches first.
 */
import { readFile } from 'node:fs/promises'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
// In your app: `from 'gatehouse-bff'`. The examples import the source so they run inside this repo.
import {
  createGatehouse,
  GatehouseError,
  type Gatehouse,
  type GatehouseOptions,
  type RuntimeOptions,
} from '../../src/index.ts'

export interface AppOptions {
  /** Built with `createGatehouse`; the app never sees tokens except through `getAccessToken`. */
  gatehouse: Gatehouse
  /** A downstream API called server-side with the user's access token (enables GET /api/downstream). */
  downstreamUrl?: string | undefined
  /** Fastify's logger option (default: off; gatehouse logs its own requests). */
  logger?: boolean
}

/** The Fastify instance with gatehouse mounted (not yet `ready()`). */
export function createApp({ gatehouse, downstreamUrl, logger = false }: AppOptions): FastifyInstance {
  const app = Fastify({ logger })

  // gatehouse first, on the raw request, before any body parsing. Registered on the root instance so
  // it also runs for paths without a Fastify route (Fastify's 404 handler runs root hooks too).
  app.addHook('onRequest', async (request, reply) => {
    if (!(await passedOn(gatehouse.handle, request.raw, reply.raw))) reply.hijack()
  })

  /** protect() as a route hook: on refusal gatehouse has written its 401 problem+json; Fastify stays out. */
  const guard = gatehouse.protect()
  const requireSession = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (!(await passedOn(guard, request.raw, reply.raw))) reply.hijack()
  }

  app.get('/', async (_request, reply) => {
    reply.type('text/plain')
    return 'gatehouse + Fastify: log in at /bff/login, then GET /api/me with the header X-CSRF: 1\n'
  })

  app.get('/api/me', { onRequest: requireSession }, async (request) => {
    const session = (await gatehouse.getSession(request.raw))!
    return { sub: session.sub, name: session.claims.find((c) => c.type === 'name')?.value ?? null }
  })

  app.post('/api/notes', { onRequest: requireSession }, async (request, reply) => {
    const session = (await gatehouse.getSession(request.raw))!
    reply.code(201)
    return { sub: session.sub, note: request.body }
  })

  if (downstreamUrl) {
    app.get('/api/downstream', { onRequest: requireSession }, async (request, reply) => {
      // Refreshed when near expiry; throws GatehouseError('session_ended') if the IdP refuses the refresh.
      // Passing reply.raw lets a refreshed cookie-mode session reach the browser.
      const token = await gatehouse.getAccessToken(request.raw, 'user', reply.raw)
      const answer = await fetch(downstreamUrl, {
        headers: { authorization: `Bearer ${token}` },
        signal: AbortSignal.timeout(10_000),
      })
      return { status: answer.status, body: (await answer.json()) as unknown }
    })
  }

  // Fastify's default error reply includes err.message, also for 500s. Answer in gatehouse's style, without internals.
  app.setErrorHandler((err: FastifyError | GatehouseError, _request, reply) => {
    const known = err instanceof GatehouseError ? err : undefined
    const status =
      known?.status ??
      (!(err instanceof GatehouseError) && err.statusCode && err.statusCode < 500 ? err.statusCode : 500)
    reply.code(status).type('application/problem+json')
    return {
      title: known?.message ?? (status < 500 ? 'Bad request' : 'Internal error'),
      status,
      code: known?.code ?? (status < 500 ? 'bad_request' : 'internal'),
    }
  })
  return app
}

/**
 * Runs node-style middleware (gatehouse.handle, gatehouse.protect()) on the raw objects. Resolves true
 * when it called next(), false when it answered the request itself (its response finished or the
 * connection closed).
 */
export function passedOn(
  middleware: (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<boolean> {
  return new Promise((resolvePass, reject) => {
    const answered = () => resolvePass(false)
    res.once('finish', answered).once('close', answered)
    middleware(req, res, (err) => {
      res.off('finish', answered).off('close', answered)
      if (err) reject(err instanceof Error ? err : new Error(String(err)))
      else resolvePass(true)
    })
  })
}

/** A `node:http` request listener for a server you create yourself (Fastify finishes booting first). */
export async function createListener(
  options: AppOptions,
): Promise<(req: IncomingMessage, res: ServerResponse) => void> {
  const app = createApp(options)
  await app.ready()
  return (req, res) => app.routing(req, res)
}

export interface StartOptions {
  /** The gatehouse.json shape. `listen` gives host and port unless `host`/`port` override them. */
  config: GatehouseOptions
  runtime?: RuntimeOptions
  host?: string | undefined
  /** 0 picks a free port. */
  port?: number | undefined
  downstreamUrl?: string | undefined
  logger?: boolean
}

export interface Running {
  url: string
  server: Server
  gatehouse: Gatehouse
  app: FastifyInstance
  /** Stops accepting, lets in-flight requests finish, closes gatehouse (session store, upstream pools). */
  close(): Promise<void>
}

export async function start(options: StartOptions): Promise<Running> {
  const gatehouse = await createGatehouse(options.config, options.runtime)
  const app = createApp({
    gatehouse,
    downstreamUrl: options.downstreamUrl,
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  })
  // WebSockets to remoteApis with `websockets: true` arrive as `upgrade` events, not requests.
  app.server.on('upgrade', gatehouse.upgrade)
  const host = options.host ?? gatehouse.config.listen.host
  await app.listen({ host, port: options.port ?? gatehouse.config.listen.port })
  const { port } = app.server.address() as AddressInfo
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    server: app.server,
    gatehouse,
    app,
    async close() {
      await app.close()
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

// `node examples/fastify/server.ts`
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const running = await start({
      config: await loadConfig(),
      port: process.env.PORT ? Number(process.env.PORT) : undefined,
      host: process.env.HOST,
      downstreamUrl: process.env.DOWNSTREAM_URL,
    })
    console.log(`gatehouse + Fastify listening on ${running.url}`)
    for (const signal of ['SIGINT', 'SIGTERM'] as const)
      process.once(signal, () => void running.close().then(() => process.exit(0)))
  } catch (err) {
    console.error(err instanceof Error ? err.message : err)
    process.exit(1)
  }
}
