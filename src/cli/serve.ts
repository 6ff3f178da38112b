import { packageVersion } from '../config/package-version.ts'
import { hostPort, storeKind } from '../config/store-url.ts'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import type { AccessLog } from '../access-log.ts'
import { maskCredentials } from '../config/mask.ts'
import type { Config } from '../config/types.ts'
import { buildGatehouse, type Gatehouse, type ServedGatehouse } from '../gatehouse.ts'
import { createLogger, stdoutAccessLog } from '../log.ts'

export interface RunningServer {
  server: Server
  gatehouse: ServedGatehouse
  url: string
  /** The admin listener (`/metrics`, session API) when `admin` is configured. */
  admin?: { server: Server; url: string } | undefined
  /** Drains and stops, logging `draining` (with the signal that asked, if one did) and `stopped`. */
  close(signal?: NodeJS.Signals): Promise<void>
}

/** How `gatehouse serve --workers` runs one worker (src/cli/workers.ts); without it, the single process of today. */
export interface ServeOptions {
  /** This worker's number, bound as `worker` into every log line. */
  worker?: number | undefined
  /** false: no admin listener even when `admin` is configured (only one worker opens it). */
  admin?: boolean | undefined
}

/*
 * Request limits of the public listener (docs/operations.md#limits). requestTimeout bounds receiving
 * a request — headers and body — and stops once the body is in (or the answer is complete), so
 * long downloads and event streams are not cut; an upload slower than this is. keepAliveTimeout
 * outlasts the usual 60 s idle timeout of load balancers, so they, not gatehouse, close idle
 * connections (no race ending in a 502). Header size stays at Node's 16 KiB (--max-http-header-size).
 */
const HEADERS_TIMEOUT_MS = 20_000
const REQUEST_TIMEOUT_MS = 300_000
const KEEP_ALIVE_TIMEOUT_MS = 65_000
/** The admin listener only answers small, quick requests. */
const ADMIN_REQUEST_TIMEOUT_MS = 30_000
/**
 * How long the start line waits for the IdP's discovery to say "ok" or "failed" before it says
 * "pending" (an IdP that is slow or still starting must not hold up the start; it is retried later).
 */
const DISCOVERY_WAIT_MS = 2_000

/** Listens with gatehouse as the whole request handler (the standalone server), plus the admin listener when configured. */
export async function startServer(config: Config, options: ServeOptions = {}): Promise<RunningServer> {
  const root = createLogger(config.log.level, undefined, config.log.format)
  const log = options.worker === undefined ? root : root.child({ worker: options.worker })
  // Access lines are batched: the last ones are written at close, or before exit on a fatal error.
  const access = stdoutAccessLog(log, config.log.format)
  const gatehouse = await buildGatehouse(config, {
    logger: log,
    accessLog: access,
    ...(options.worker === undefined ? {} : { instance: `worker ${options.worker}` }),
  })
  // Waited for before listening, not after: the start line comes once the server is all set up.
  const discovery = await discoveryStatus(gatehouse.discovery, DISCOVERY_WAIT_MS)
  // connectionsCheckingInterval: how often Node enforces the two timeouts (its 30 s default lets a slow-header client linger ~50 s).
  const server = createServer(
    { headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS, connectionsCheckingInterval: 2_000 },
    (req, res) => gatehouse.handle(req, res),
  )
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS
  server.on('upgrade', gatehouse.upgrade)
  let admin: RunningServer['admin']
  try {
    await listen(server, config.listen.port, config.listen.host)
    if (config.admin && options.admin !== false) {
      const adminServer = createServer(
        {
          headersTimeout: HEADERS_TIMEOUT_MS,
          requestTimeout: ADMIN_REQUEST_TIMEOUT_MS,
          connectionsCheckingInterval: 2_000,
        },
        gatehouse.adminHandler,
      )
      await listen(adminServer, config.admin.listen.port, config.admin.listen.host)
      admin = { server: adminServer, url: urlOf(adminServer, config.admin.listen.host) }
    }
  } catch (err) {
    // A port in use must not leave the other listener holding the process open.
    await closeServer(server, gatehouse, 0)
    throw err
  }
  const url = urlOf(server, config.listen.host)
  const version = packageVersion()
  // The start line. Its event stays "listening" (what deployments and tests look for).
  log.info(
    {
      event: 'listening',
      url,
      version,
      publicOrigin: config.publicOrigin ?? null,
      store: storeKind(config.session),
      // Validation refuses user info in it; masked all the same, as a logged URL must be.
      issuer: maskCredentials(config.oidc.authority),
      discovery,
      remoteApis: config.remoteApis.length,
      frontends: config.frontends.length,
      admin: admin?.url,
    },
    `gatehouse ${version} started`,
  )
  if (admin)
    log.info({ event: 'admin_listening', url: admin.url }, 'admin listener (metrics, session API) is listening')
  return {
    server,
    gatehouse,
    url,
    admin,
    close: (signal) => closeServer(server, gatehouse, undefined, admin?.server, { log, signal, access }),
  }
}

/** "ok" or "failed" once the discovery begun at start ends, "pending" if it has not within `waitMs`. */
async function discoveryStatus(discovery: Promise<boolean>, waitMs: number): Promise<'ok' | 'failed' | 'pending'> {
  let timer: NodeJS.Timeout | undefined
  const pending = new Promise<'pending'>((resolve) => (timer = setTimeout(() => resolve('pending'), waitMs)))
  try {
    return await Promise.race([discovery.then((ok) => (ok ? 'ok' : 'failed')), pending])
  } finally {
    clearTimeout(timer)
  }
}

function urlOf(server: Server, host: string): string {
  return `http://${hostPort({ host, port: (server.address() as AddressInfo).port })}`
}

export function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
}

/**
 * Stop accepting, let in-flight requests finish (bounded by `graceMs`), close the store (SPEC §7).
 * `admin`, the admin listener, closes alongside. With `report`, logs `draining` and `stopped` (with
 * how many connections were cut at the end of the grace period).
 */
export async function closeServer(
  server: Server,
  gatehouse: Gatehouse,
  graceMs = 10_000,
  admin?: Server,
  report?: { log: Logger; signal?: NodeJS.Signals | undefined; access?: AccessLog },
): Promise<void> {
  const servers = admin && admin.listening ? [server, admin] : [server]
  const startedAt = performance.now()
  if (report) {
    const connections = (await Promise.all(servers.map(openConnections))).reduce((sum, n) => sum + n, 0)
    report.log.info(
      { event: 'draining', signal: report.signal ?? null, connections, graceMs },
      `draining: ${connections} open connection(s), at most ${graceMs / 1000} s`,
    )
  }
  const closed = Promise.all(
    servers.map((s) => new Promise<void>((resolve) => (s.listening ? s.close(() => resolve()) : resolve()))),
  )
  // close() ends the connections idle right now. One still answering (a download, an event stream)
  // is left to finish, but would then sit out its keep-alive timeout: close those as they go idle.
  const sweep = setInterval(() => {
    for (const s of servers) s.closeIdleConnections()
  }, 100)
  for (const s of servers) s.closeIdleConnections()
  let cut = 0
  const timer = setTimeout(() => {
    for (const s of servers) {
      s.getConnections((_err, count) => {
        cut += count
        s.closeAllConnections()
      })
    }
  }, graceMs)
  timer.unref()
  await closed
  clearInterval(sweep)
  clearTimeout(timer)
  await gatehouse.close()
  await report?.access?.close()
  if (report) {
    const stopped = { event: 'stopped', ms: Math.round(performance.now() - startedAt), connectionsCut: cut }
    if (cut)
      report.log.warn(stopped, `gatehouse stopped; ${cut} connection(s) still open after ${graceMs / 1000} s were cut`)
    else report.log.info(stopped, 'gatehouse stopped')
  }
}

/** Connections open on `server` now, idle keep-alive ones included. */
function openConnections(server: Server): Promise<number> {
  return new Promise((resolve) => server.getConnections((err, count) => resolve(err ? 0 : count)))
}

/** The stop exitOnSignal installs, and how to name what it closes once started. */
export type SignalStop = ((signal: NodeJS.Signals) => void) & {
  closeWith(close: (signal: NodeJS.Signals) => Promise<void>): void
}

/**
 * Runs until SIGTERM/SIGINT, then shuts down (`close` learns which signal) and exits 0. Returns the
 * same stop, for other ways of asking. Install it before starting: a supervisor may signal as soon as
 * it reads the start line, and a signal that meets no handler kills the process without draining.
 * Without a `close` yet (`closeWith` names it once started), a signal exits 0 at once.
 */
export function exitOnSignal(close?: (signal: NodeJS.Signals) => Promise<void>): SignalStop {
  let stopping = false
  let target = close
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return
    stopping = true
    ;(target ? target(signal) : Promise.resolve()).then(
      () => process.exit(0),
      () => process.exit(1),
    )
  }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
  return Object.assign(stop, {
    closeWith: (next: (signal: NodeJS.Signals) => Promise<void>) => {
      target = next
    },
  })
}
