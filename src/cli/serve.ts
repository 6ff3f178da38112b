import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Config } from '../config/types.ts'
import { buildGatehouse, type Gatehouse } from '../gatehouse.ts'
import { createLogger } from '../log.ts'

export interface RunningServer {
  server: Server
  gatehouse: Gatehouse
  url: string
  close(): Promise<void>
}

/** Listens with gatehouse as the whole request handler (the standalone server). */
export async function startServer(config: Config): Promise<RunningServer> {
  const log = createLogger(config.log.level)
  const gatehouse = await buildGatehouse(config, { logger: log })
  const server = createServer((req, res) => gatehouse.handle(req, res))
  server.on('upgrade', gatehouse.upgrade)
  await listen(server, config.listen.port, config.listen.host)
  const port = (server.address() as AddressInfo).port
  const url = `http://${config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host}:${port}`
  log.info({ event: 'listening', url, publicOrigin: config.publicOrigin }, 'gatehouse is listening')
  return { server, gatehouse, url, close: () => closeServer(server, gatehouse) }
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

/** Stop accepting, let in-flight requests finish (bounded), close the store. */
export async function closeServer(server: Server, gatehouse: Gatehouse, graceMs = 10_000): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()))
  server.closeIdleConnections()
  const timer = setTimeout(() => server.closeAllConnections(), graceMs)
  timer.unref()
  await closed
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
