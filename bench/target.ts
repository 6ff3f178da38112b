/**
 * One process under measurement, started by bench/run.ts as a child so that the load generator never
 * shares its event loop, CPU accounting or RSS with it:
 *
 *   node bench/target.ts upstream    the fast API: GET /small (a 56-byte JSON), GET /big (64 KiB JSON)
 *   node bench/target.ts idp         the embedded OpenID provider (src/demo/idp.ts)
 *   node bench/target.ts bare        the baseline: a plain undici reverse proxy, no security work
 *   node bench/target.ts gatehouse   gatehouse exactly as `gatehouse serve` runs it (startServer)
 *
 * The options come as JSON in BENCH_TARGET; the child answers { ready: url } over IPC once it
 * listens, and exits 0 on the IPC message "stop" (so that --cpu-prof writes its profile) or when the
 * parent goes away.
 */
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http'
import type { AddressInfo } from 'node:net'
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks'
import { pipeline } from 'node:stream/promises'
import { Pool } from 'undici'

export type TargetKind = 'upstream' | 'idp' | 'bare' | 'gatehouse'

export interface TargetOptions {
  /** 0 picks a free port. */
  port?: number
  /** bare: the upstream origin; the proxy maps /api/x to <target>/x like gatehouse's remoteApis entry. */
  target?: string
  /** idp: its clients (src/demo/idp.ts IdpClient). */
  clients?: unknown[]
  /** gatehouse: the options of createGatehouse / gatehouse.json. */
  gatehouse?: Record<string, unknown>
}

const kind = process.argv[2] as TargetKind
const options = JSON.parse(process.env.BENCH_TARGET ?? '{}') as TargetOptions

/** What the upstream answers: fixed bodies, built once. */
const SMALL = Buffer.from(JSON.stringify({ id: 7, name: 'Widget', price: 9.99, tags: ['a', 'b'] }))
const BIG = Buffer.from(JSON.stringify({ items: 'x'.repeat(64 * 1024 - 12) }))

async function startUpstream(port: number): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    const body = req.url === '/big' ? BIG : req.url === '/small' ? SMALL : undefined
    req.resume()
    if (!body) return void res.writeHead(404, { 'content-length': '0' }).end()
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': String(body.length),
      'cache-control': 'private, max-age=0',
    })
    res.end(body)
  })
  server.keepAliveTimeout = 65_000
  return listening(server, port)
}

/** RFC 9110 §7.6.1: what any proxy must not forward (nginx drops these too). Nothing else is touched. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
])

function withoutHopByHop(
  headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const name in headers) {
    const value = headers[name]
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value
  }
  return out
}

/**
 * The baseline: the same undici version and pool settings as gatehouse (src/proxy/forward.ts), the
 * same streaming both ways, and nothing else — no cookie, session, token, anti-forgery, header
 * hygiene, logging, metrics or tracing.
 */
async function startBareProxy(port: number, target: string): Promise<{ url: string; close(): Promise<void> }> {
  const pool = new Pool(target, { connections: 128, keepAliveTimeout: 10_000, connect: { timeout: 10_000 } })
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = req.url ?? '/'
    if (!url.startsWith('/api/')) return void res.writeHead(404, { 'content-length': '0' }).end()
    const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined
    const upstream = await pool.request({
      path: url.slice(4),
      method: (req.method ?? 'GET') as 'GET',
      headers: withoutHopByHop(req.headers),
      body: hasBody ? req : null,
      bodyTimeout: 0,
    })
    res.writeHead(upstream.statusCode, withoutHopByHop(upstream.headers))
    await pipeline(upstream.body, res)
  }
  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (res.headersSent) return void res.destroy()
      res.writeHead(502, { 'content-length': '0' }).end()
    })
  })
  server.keepAliveTimeout = 65_000
  const running = await listening(server, port)
  return { url: running.url, close: async () => (await running.close(), await pool.close()) }
}

async function startGatehouse(
  port: number,
  gatehouseOptions: Record<string, unknown>,
): Promise<{ url: string; close(): Promise<void> }> {
  const { validateConfig } = await import('../src/config/validate.ts')
  const { startServer } = await import('../src/cli/serve.ts')
  const { config, issues } = validateConfig({ ...gatehouseOptions, listen: { host: '127.0.0.1', port } } as never)
  if (!config) throw new Error(`gatehouse options: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`)
  const running = await startServer(config)
  return { url: running.url, close: () => running.close() }
}

async function startIdpTarget(port: number, clients: unknown[]): Promise<{ url: string; close(): Promise<void> }> {
  const { startIdp } = await import('../src/demo/idp.ts')
  const idp = await startIdp({ port, clients: clients as never })
  return { url: idp.issuer, close: () => idp.close() }
}

async function listening(server: Server, port: number): Promise<{ url: string; close(): Promise<void> }> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', resolve)
  })
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

async function main(): Promise<void> {
  const port = options.port ?? 0
  const running =
    kind === 'upstream'
      ? await startUpstream(port)
      : kind === 'bare'
        ? await startBareProxy(port, options.target!)
        : kind === 'gatehouse'
          ? await startGatehouse(port, options.gatehouse!)
          : kind === 'idp'
            ? await startIdpTarget(port, options.clients ?? [])
            : undefined
  if (!running) throw new Error(`unknown target kind "${kind}"`)
  let stopping = false
  const stop = (): void => {
    if (stopping) return
    stopping = true
    // Bounded: a hung close must not keep the bench waiting (process.exit still writes --cpu-prof).
    setTimeout(() => process.exit(0), 3_000).unref()
    running.close().then(
      () => process.exit(0),
      () => process.exit(0),
    )
  }
  if (kind === 'gatehouse') {
    // An uncaught error would end gatehouse mid-run. Keep it serving, but tell the bench, which
    // reports every one: it is a crash that a real deployment would have had.
    process.on('uncaughtException', (err) => {
      const frame = err.stack
        ?.split('\n')
        .find((line) => line.includes('/src/'))
        ?.trim()
      process.send?.({
        uncaught: `${err.name}: ${err.message}${frame ? ` (${frame.replace(/^at /, '').replace(`file://${process.cwd()}/`, '')})` : ''}`,
      })
    })
  }
  // Event-loop delay and GC pauses of the measured window (bench/run.ts resets them before it and
  // reads them after): where a latency tail comes from. Both are cheap (a timer, one entry per GC).
  const delay = monitorEventLoopDelay({ resolution: 1 })
  const gc = { count: 0, totalMs: 0, maxMs: 0 }
  if (kind === 'bare' || kind === 'gatehouse') {
    delay.enable()
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        gc.count++
        gc.totalMs += entry.duration
        gc.maxMs = Math.max(gc.maxMs, entry.duration)
      }
    }).observe({ entryTypes: ['gc'] })
  }
  process.on('message', (message) => {
    if (message === 'stop') return stop()
    if (message === 'stats-reset') {
      delay.reset()
      Object.assign(gc, { count: 0, totalMs: 0, maxMs: 0 })
    }
    if (message === 'stats') {
      const ms = (ns: number) => Math.round(ns / 1e4) / 100
      process.send!({
        stats: {
          eventLoopDelayP99Ms: ms(delay.percentile(99)),
          eventLoopDelayMaxMs: ms(delay.max),
          gcCount: gc.count,
          gcTotalMs: Math.round(gc.totalMs * 10) / 10,
          gcMaxMs: Math.round(gc.maxMs * 100) / 100,
        },
      })
    }
  })
  process.on('disconnect', stop)
  process.on('SIGTERM', stop)
  process.send!({ ready: running.url })
}

main().catch((err: unknown) => {
  process.send?.({
    error:
      err instanceof Error
        ? `${err.message}${err.cause ? ` (${String((err.cause as Error).message ?? err.cause)})` : ''}`
        : String(err),
  })
  process.exit(1)
})
