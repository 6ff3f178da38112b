import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Config } from '../config/types.ts'
import { buildGatehouse, type Gatehouse } from '../gatehouse.ts'
import { createLogger } from '../log.ts'

export interface RunningServer {
  server: Server
  gatehouse: Gatehouse
  url: string
  /** The admin listener (`/metrics`, session API) when `admin` is configured. */
  admin?: { server: Server; url: string } | undefined
  close(): Promise<void>
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

/** Listens with gatehouse as the whole request handler (the standalone server), plus the admin listener when configured. */
export async function startServer(config: Config): Promise<RunningServer> {
  const log = createLogger(config.log.level)
  const gatehouse = await buildGatehouse(config, { logger: log })
  // connectionsCheckingInterval: how often Node enforces the two timeouts (its 30 s default lets a slow-header client linger ~50 s).
  const server = createServer({ headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS, connectionsCheckingInterval: 2_000 }, (req, res) => gatehouse.handle(req, res))
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS
  server.on('upgrade', gatehouse.upgrade)
  let admin: RunningServer['admin']
  try {
    await listen(server, config.listen.port, config.listen.host)
    if (config.admin) {
      const adminServer = createServer({ headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: ADMIN_REQUEST_TIMEOUT_MS, connectionsCheckingInterval: 2_000 }, gatehouse.adminHandler)
      await listen(adminServer, config.admin.listen.port, config.admin.listen.host)
      admin = { server: adminServer, url: urlOf(adminServer, config.admin.listen.host) }
    }
  } catch (err) {
    // A port in use must not leave the other listener holding the process open.
    await closeServer(server, gatehouse, 0)
    throw err
  }
  const url = urlOf(server, config.listen.host)
  log.info({ event: 'listening', url, publicOrigin: config.publicOrigin }, 'gatehouse is listening')
  if (admin) log.info({ event: 'admin_listening', url: admin.url }, 'admin listener (metrics, session API) is listening')
  return { server, gatehouse, url, admin, close: () => closeServer(server, gatehouse, undefined, admin?.server) }
}

function urlOf(server: Server, host: string): string {
  const port = (server.address() as AddressInfo).port
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`
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
 * `admin`, the admin listener, closes alongside.
 */
export async function closeServer(server: Server, gatehouse: Gatehouse, graceMs = 10_000, admin?: Server): Promise<void> {
  const servers = admin && admin.listening ? [server, admin] : [server]
  const closed = Promise.all(servers.map((s) => new Promise<void>((resolve) => (s.listening ? s.close(() => resolve()) : resolve()))))
  // close() ends the connections idle right now. One still answering (a download, an event stream)
  // is left to finish, but would then sit out its keep-alive timeout: close those as they go idle.
  const sweep = setInterval(() => {
    for (const s of servers) s.closeIdleConnections()
  }, 100)
  for (const s of servers) s.closeIdleConnections()
  const timer = setTimeout(() => {
    for (const s of servers) s.closeAllConnections()
  }, graceMs)
  timer.unref()
  await closed
  clearInterval(sweep)
  clearTimeout(timer)
  await gatehouse.close()
}

/** Runs until SIGTERM/SIGINT, then shuts down and exits 0. */
export function exitOnSignal(close: () => Promise<void>): void {
  let stopping = false
  const stop = () => {
    if (stopping) return
    stopping = true
    close().then(
      () => process.exit(0),
      () => process.exit(1),
    )
  }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
}
