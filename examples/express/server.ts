/**
 * gatehouse inside an Express 5 app.
 *
 * gatehouse runs the OIDC login and serves its own endpoints (/bff/login, /bff/user, /bff/logout,
 * /signin-oidc, …) plus the `remoteApis` reverse proxy; the app keeps its own routes and guards its
 * API with `gatehouse.protect()`.
 *
 * Run it from the repo root (Node >= 22.18 or 24 runs .ts directly):
 *
 *   GATEHOUSE_CONFIG=./gatehouse.json node examples/express/server.ts
 *   GATEHOUSE_CONFIG_JSON='{"oidc":{…},"keys":["…"]}' PORT=3000 node examples/express/server.ts
 *
 * `${NAME}` in the config is replaced by the environment variable NAME (like `gatehouse serve`).
 * Set DOWNSTREAM_URL to an API that accepts the user's access token to enable GET /api/downstream.
 *
 * Routes:
 *   GET  /                 public text page
 *   GET  /api/me           the user's sub and name                 (protected: session + X-CSRF: 1)
 *   POST /api/notes        echoes a JSON body parsed by Express    (protected)
 *   GET  /api/downstream   calls DOWNSTREAM_URL with the user's access token, server-side (protected)
 *
 * Local routes must not overlap a `remoteApis` path: gatehouse's proxy matches first.
 */
import { readFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import express, { type ErrorRequestHandler } from 'express'
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
}

/** The Express app with gatehouse mounted. It is also a complete `node:http` request listener. */
export function createApp({ gatehouse, downstreamUrl }: AppOptions): express.Express {
  const app = express()

  // 1. gatehouse first and at the root: it matches on the full `req.url` (app.use('/auth', …) would
  //    strip the prefix) and calls next() for every path that is not its own.
  app.use(gatehouse.handle)

  // 2. Body parsers only after gatehouse: a parser mounted before it would read the body stream of
  //    proxied requests (remoteApis) and of POST /bff/backchannel before gatehouse can.
  app.use(express.json({ limit: '100kb' }))

  app.get('/', (_req, res) => {
    res
      .type('text/plain')
      .send('gatehouse + Express: log in at /bff/login, then GET /api/me with the header X-CSRF: 1\n')
  })

  // protect(): 401 application/problem+json (never a redirect) without a live session or without
  // the anti-forgery header. After it, getSession() is cached for this request.
  app.get('/api/me', gatehouse.protect(), async (req, res) => {
    const session = (await gatehouse.getSession(req))!
    res.json({ sub: session.sub, name: session.claims.find((c) => c.type === 'name')?.value ?? null })
  })

  app.post('/api/notes', gatehouse.protect(), async (req, res) => {
    const session = (await gatehouse.getSession(req))!
    res.status(201).json({ sub: session.sub, note: req.body as unknown })
  })

  if (downstreamUrl) {
    app.get('/api/downstream', gatehouse.protect(), async (req, res) => {
      // Refreshed when near expiry; throws GatehouseError('session_ended') if the IdP refuses the refresh.
      const token = await gatehouse.getAccessToken(req, 'user', res)
      const answer = await fetch(downstreamUrl, {
        headers: { authorization: `Bearer ${token}` },
        signal: AbortSignal.timeout(10_000),
      })
      res.json({ status: answer.status, body: (await answer.json()) as unknown })
    })
  }

  // Express 5 routes rejected promises here. Answer in gatehouse's style, without internals.
  const onError: ErrorRequestHandler = (err: unknown, _req, res, next) => {
    if (res.headersSent) return next(err)
    const known = err instanceof GatehouseError ? err : undefined
    const status = known?.status ?? (hasStatus(err) && err.status < 500 ? err.status : 500)
    res
      .status(status)
      .type('application/problem+json')
      .json({
        title: known?.message ?? (status < 500 ? 'Bad request' : 'Internal error'),
        status,
        code: known?.code ?? (status < 500 ? 'bad_request' : 'internal'),
      })
  }
  app.use(onError)
  return app
}

/** The request listener for a `node:http` server: for Express the app itself. */
export function createListener(options: AppOptions): express.Express {
  return createApp(options)
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

function hasStatus(err: unknown): err is { status: number } {
  return typeof err === 'object' && err !== null && typeof (err as { status?: unknown }).status === 'number'
}

// `node examples/express/server.ts`
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const running = await start({
      config: await loadConfig(),
      port: process.env.PORT ? Number(process.env.PORT) : undefined,
      host: process.env.HOST,
      downstreamUrl: process.env.DOWNSTREAM_URL,
    })
    console.log(`gatehouse + Express listening on ${running.url}`)
    for (const signal of ['SIGINT', 'SIGTERM'] as const)
      process.once(signal, () => void running.close().then(() => process.exit(0)))
  } catch (err) {
    console.error(err instanceof Error ? err.message : err)
    process.exit(1)
  }
}
