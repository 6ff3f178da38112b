/**
 * The child processes of `npm run soak` (bench/soak.ts) other than gatehouse itself, which runs as
 * bench/target.ts starts it (`gatehouse serve`'s startServer):
 *
 *   node bench/soak-child.ts upstream   the API behind gatehouse, on two ports (the logged-in users'
 *                                       API and the token "none" API the hostile clients use):
 *                                       GET /small (56 B), POST /echo (reads ≤ 64 KiB, answers its
 *                                       size), any method /upload (reads the whole body, however
 *                                       slow, then answers), GET /stream (an event stream, one event
 *                                       a second, ≤ 10 min), GET /big (64 MiB, written only as fast as
 *                                       it is read)
 *   node bench/soak-child.ts idp        the embedded OpenID provider (src/demo/idp.ts); also answers
 *                                       its signing key, so the soak can sign back-channel logout tokens
 *   node bench/soak-child.ts hostile    the hostile clients, over raw sockets from their own loopback
 *                                       addresses (127.0.0.2–.6): held event streams, uploads that
 *                                       declare a big Content-Length and send 1 byte, GETs with a
 *                                       slowly sent body, downloads that are never read, malformed
 *                                       requests
 *
 * Options come as JSON in SOAK_CHILD; the child answers { ready } over IPC once it runs, exits on the
 * IPC message "stop" (the hostile child first answers its final { stats }) or when the parent goes
 * away. Everything is bounded: sockets, timers, bodies, durations.
 */
import { randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { connect, type AddressInfo, type Socket } from 'node:net'

const kind = process.argv[2]
const options = JSON.parse(process.env.SOAK_CHILD ?? '{}') as Record<string, unknown>

// ---------------------------------------------------------------------------------------------
// Upstream

const SMALL = Buffer.from(JSON.stringify({ id: 7, name: 'Widget', price: 9.99, tags: ['a', 'b'] }))
const BIG_CHUNK = Buffer.alloc(64 * 1024, 'x')
const BIG_CHUNKS = 1024 // 64 MiB
const STREAM_MAX_MS = 10 * 60_000

function upstreamHandler(req: IncomingMessage, res: ServerResponse): void {
  const path = (req.url ?? '/').split('?')[0]
  const json = (status: number, body: unknown): void => {
    const text = Buffer.from(JSON.stringify(body))
    res
      .writeHead(status, {
        'content-type': 'application/json',
        'content-length': String(text.length),
        'cache-control': 'private, max-age=0',
      })
      .end(text)
  }
  if (path === '/small') {
    req.resume()
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': String(SMALL.length),
      'cache-control': 'private, max-age=0',
    })
    return void res.end(SMALL)
  }
  if (path === '/echo' || path === '/upload') {
    // /echo: a small JSON API call (bounded); /upload: counts every byte, however slowly it comes.
    let bytes = 0
    const limit = path === '/echo' ? 64 * 1024 : Number.POSITIVE_INFINITY
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length
      if (bytes > limit) {
        json(413, { error: 'too large' })
        req.destroy()
      }
    })
    req.on('end', () => {
      if (!res.headersSent) json(200, { bytes })
    })
    req.on('error', () => undefined)
    return
  }
  if (path === '/stream') {
    req.resume()
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' })
    let n = 0
    const started = Date.now()
    const timer = setInterval(() => {
      if (Date.now() - started > STREAM_MAX_MS) {
        clearInterval(timer)
        return void res.end()
      }
      res.write(`data: {"tick":${n++}}\n\n`)
    }, 1_000)
    res.write(': open\n\n')
    res.once('close', () => clearInterval(timer))
    return
  }
  if (path === '/big') {
    req.resume()
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'content-length': String(BIG_CHUNK.length * BIG_CHUNKS),
    })
    let sent = 0
    // Writes only as fast as the reader takes it: what the upstream holds per download is bounded.
    const pump = (): void => {
      while (sent < BIG_CHUNKS) {
        sent++
        if (!res.write(BIG_CHUNK)) return void res.once('drain', pump)
      }
      res.end()
    }
    res.once('close', () => {
      sent = BIG_CHUNKS
    })
    return pump()
  }
  req.resume()
  json(404, { error: 'not found' })
}

async function listen(server: Server, port = 0): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', resolve)
  })
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  })
}

async function startUpstream(): Promise<{ ready: unknown; close(): Promise<void> }> {
  const servers = [createServer(upstreamHandler), createServer(upstreamHandler)]
  const urls: string[] = []
  for (const server of servers) {
    server.keepAliveTimeout = 65_000
    urls.push(await listen(server))
  }
  return { ready: { urls }, close: async () => void (await Promise.all(servers.map(closeServer))) }
}

// ---------------------------------------------------------------------------------------------
// IdP

async function startIdpChild(): Promise<{ ready: unknown; close(): Promise<void> }> {
  const { startIdp } = await import('../src/demo/idp.ts')
  const idp = await startIdp({
    port: 0,
    clients: options.clients as never,
    accessTokenTtlSec: options.accessTokenTtlSec as number,
  })
  return { ready: { url: idp.issuer, signingKey: idp.signingKey }, close: () => idp.close() }
}

// ---------------------------------------------------------------------------------------------
// Hostile clients

export interface HostileOptions {
  host: string
  port: number
  /** The Host header of well-formed requests (gatehouse's public origin's host). */
  hostHeader: string
  /** The token "none" API's path prefix at gatehouse (held sockets). */
  apiPath: string
  /** The API path prefix malformed requests aim at (one that needs a session: nothing reaches an upstream). */
  malformedApiPath: string
  /** How many sockets of each held kind are open at a time (0: none). */
  perKind: number
  /** How long a client holds a held socket before recycling it, ms (uniform in [min, max]). */
  holdMinMs: number
  holdMaxMs: number
  /** Seconds between the bytes of a slowly sent GET body. */
  dripMs: number
  /** Malformed requests per second, and how many may be in flight. */
  malformedPerSecond: number
  malformedConcurrency: number
  /** Source addresses of each kind, used in turn (all on 127.0.0.0/8: a per-client limit sees each as its own client). */
  sources: Record<HeldKindName | 'malformed', string[]>
}

export type HeldKindName = 'stream' | 'upload' | 'slowBody' | 'unreadDownload'

export interface HeldKindStats {
  /** Sockets opened so far. */
  opened: number
  /** Open now. */
  open: number
  /** Answer status codes ("none": no answer before the socket ended). */
  statuses: Record<string, number>
  /**
   * How sockets ended: `server closed` (gatehouse closed or reset it), `client recycled` (held for
   * its whole hold time, then closed by the client), `run ended` (still open at the end of the run),
   * `connect failed`; for never-read downloads, `server cut (found at recycle)` when gatehouse had
   * closed the connection by the time the client resumed reading.
   */
  endings: Record<string, number>
  /** Time from sending to the status line, ms: p50 / max over answered sockets. */
  answerMsP50: number | undefined
  answerMsMax: number | undefined
  /** Time from sending until gatehouse closed the socket, for those it closed: p50 / max. */
  serverCloseMsP50: number | undefined
  serverCloseMsMax: number | undefined
  /** Bytes received over all sockets of this kind. */
  bytesIn: number
}

export interface HostileStats {
  held: Record<HeldKindName, HeldKindStats>
  /** Per malformed pattern: answer status codes, or `closed` (no answer, connection closed), `timeout`, `error:<code>`. */
  malformed: Record<string, Record<string, number>>
}

/** A bounded sample for percentiles: the first 20,000 values, then reservoir sampling. */
class Sample {
  readonly values: number[] = []
  #seen = 0
  add(v: number): void {
    this.#seen++
    if (this.values.length < 20_000) return void this.values.push(v)
    const i = Math.floor(Math.random() * this.#seen)
    if (i < this.values.length) this.values[i] = v
  }
  quantile(q: number): number | undefined {
    if (!this.values.length) return undefined
    const sorted = [...this.values].sort((a, b) => a - b)
    return Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!)
  }
  max(): number | undefined {
    return this.values.length ? Math.round(Math.max(...this.values)) : undefined
  }
}

const bump = (record: Record<string, number>, key: string, by = 1): void => {
  record[key] = (record[key] ?? 0) + by
}

/** Malformed or hostile one-shot requests: name → raw bytes (Host is gatehouse's unless the pattern is about Host). */
function malformedPatterns(o: HostileOptions): Array<[string, () => Buffer]> {
  const host = o.hostHeader
  const api = o.malformedApiPath
  const req = (head: string): Buffer => Buffer.from(`${head}\r\nConnection: close\r\n\r\n`, 'latin1')
  return [
    ['foreign Host', () => req(`GET /bff/user HTTP/1.1\r\nHost: evil.example\r\nX-CSRF: 1`)],
    ['foreign Host, API', () => req(`GET ${api}/small HTTP/1.1\r\nHost: evil.example:443\r\nX-CSRF: 1`)],
    ['two Host headers', () => req(`GET /bff/user HTTP/1.1\r\nHost: ${host}\r\nHost: evil.example\r\nX-CSRF: 1`)],
    ['no Host', () => req(`GET /bff/user HTTP/1.1\r\nX-CSRF: 1`)],
    [
      'absolute-form, foreign host',
      () => req(`GET http://evil.example${api}/small HTTP/1.1\r\nHost: ${host}\r\nX-CSRF: 1`),
    ],
    ['TRACE', () => req(`TRACE / HTTP/1.1\r\nHost: ${host}`)],
    ['TRACE on the API', () => req(`TRACE ${api}/small HTTP/1.1\r\nHost: ${host}\r\nX-CSRF: 1`)],
    [
      'duplicate session cookies',
      () =>
        req(
          `GET /bff/user HTTP/1.1\r\nHost: ${host}\r\nX-CSRF: 1\r\nCookie: __Host-gatehouse=${'A'.repeat(43)}; __Host-gatehouse=${'B'.repeat(43)}\r\nCookie: __Host-gatehouse=${'C'.repeat(43)}`,
        ),
    ],
    ['path escape ../', () => req(`GET ${api}/../bff/user HTTP/1.1\r\nHost: ${host}\r\nX-CSRF: 1`)],
    ['path escape %2e%2e', () => req(`GET ${api}/%2e%2e/bff/user HTTP/1.1\r\nHost: ${host}\r\nX-CSRF: 1`)],
    ['path escape %2F', () => req(`GET ${api}/..%2Fbff%2Fuser HTTP/1.1\r\nHost: ${host}\r\nX-CSRF: 1`)],
    ['path with backslash', () => req(`GET ${api}/..\\bff\\user HTTP/1.1\r\nHost: ${host}\r\nX-CSRF: 1`)],
    ['path with %00', () => req(`GET ${api}/small%00.json HTTP/1.1\r\nHost: ${host}\r\nX-CSRF: 1`)],
    [
      'oversized header (20 KiB)',
      () => req(`GET ${api}/small HTTP/1.1\r\nHost: ${host}\r\nX-CSRF: 1\r\nX-Pad: ${'p'.repeat(20 * 1024)}`),
    ],
    [
      'oversized cookie (17 KiB)',
      () =>
        req(
          `GET /bff/user HTTP/1.1\r\nHost: ${host}\r\nX-CSRF: 1\r\nCookie: ${Array.from({ length: 17 }, (_, i) => `c${i}=${'v'.repeat(1000)}`).join('; ')}`,
        ),
    ],
    ['long URL (12 KiB)', () => req(`GET ${api}/${'a'.repeat(12 * 1024)} HTTP/1.1\r\nHost: ${host}\r\nX-CSRF: 1`)],
    ['garbage bytes', () => randomBytes(512)],
    ['invalid method', () => req(`G@T / HTTP/1.1\r\nHost: ${host}`)],
    ['HTTP/0.9', () => Buffer.from('GET /\r\n\r\n', 'latin1')],
    ['header without colon', () => req(`GET /bff/user HTTP/1.1\r\nHost: ${host}\r\nX-CSRF 1`)],
    [
      'Content-Length + Transfer-Encoding',
      () =>
        Buffer.from(
          `POST ${api}/upload HTTP/1.1\r\nHost: ${host}\r\nX-CSRF: 1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n`,
          'latin1',
        ),
    ],
    [
      'two Content-Lengths',
      () =>
        Buffer.from(
          `POST ${api}/upload HTTP/1.1\r\nHost: ${host}\r\nX-CSRF: 1\r\nContent-Length: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nab`,
          'latin1',
        ),
    ],
    [
      'bad chunk size',
      () =>
        Buffer.from(
          `POST ${api}/upload HTTP/1.1\r\nHost: ${host}\r\nX-CSRF: 1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n`,
          'latin1',
        ),
    ],
    [
      'huge Content-Length',
      () =>
        Buffer.from(
          `POST ${api}/upload HTTP/1.1\r\nHost: ${host}\r\nX-CSRF: 1\r\nContent-Length: 99999999999999999999999\r\nConnection: close\r\n\r\n`,
          'latin1',
        ),
    ],
    [
      'garbage logout token',
      () =>
        Buffer.from(
          `POST /bff/backchannel HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 20\r\nConnection: close\r\n\r\nlogout_token=garbage`,
          'latin1',
        ),
    ],
    ['CONNECT', () => req(`CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22`)],
    [
      'header injection attempt',
      () =>
        req(
          `GET ${api}/small HTTP/1.1\r\nHost: ${host}\r\nX-CSRF: 1\r\nX-Forwarded-Host: evil.example\r\nForwarded: host=evil.example;proto=https\r\nX-Forwarded-For: 1.2.3.4`,
        ),
    ],
  ]
}

function startHostile(): { ready: unknown; stats(): HostileStats; close(): void } {
  const o = options as unknown as HostileOptions
  const sockets = new Set<Socket>()
  /** Held sockets still open: how to count each one if the run ends first. */
  const finalizers = new Map<Socket, () => void>()
  const timers = new Set<NodeJS.Timeout>()
  let stopping = false
  const later = (ms: number, fn: () => void): void => {
    const t = setTimeout(() => {
      timers.delete(t)
      fn()
    }, ms)
    timers.add(t)
  }

  interface Held {
    stats: HeldKindStats
    answerMs: Sample
    serverCloseMs: Sample
    /** What the client sends once connected; `onAnswer` runs when the status line has arrived. */
    request(socket: Socket): void
    onAnswer?(socket: Socket): void
    /** Never-read downloads: the socket is paused after the status line. */
    paused?: boolean
  }
  const head = (method: string, path: string, extra = ''): string =>
    `${method} ${o.apiPath}${path} HTTP/1.1\r\nHost: ${o.hostHeader}\r\nX-CSRF: 1\r\nUser-Agent: soak-hostile\r\n${extra}\r\n`
  const newStats = (): HeldKindStats => ({
    opened: 0,
    open: 0,
    statuses: {},
    endings: {},
    answerMsP50: undefined,
    answerMsMax: undefined,
    serverCloseMsP50: undefined,
    serverCloseMsMax: undefined,
    bytesIn: 0,
  })
  const held: Record<HeldKindName, Held> = {
    stream: {
      stats: newStats(),
      answerMs: new Sample(),
      serverCloseMs: new Sample(),
      request: (s) => void s.write(head('GET', '/stream', 'Accept: text/event-stream\r\n')),
    },
    upload: {
      stats: newStats(),
      answerMs: new Sample(),
      serverCloseMs: new Sample(),
      // Declares 100 MiB, sends 1 byte, then nothing.
      request: (s) =>
        void s.write(
          `${head('POST', '/upload', 'Content-Type: application/octet-stream\r\nContent-Length: 104857600\r\n')}x`,
        ),
    },
    slowBody: {
      stats: newStats(),
      answerMs: new Sample(),
      serverCloseMs: new Sample(),
      // A GET with a 1 KiB body sent one byte every dripMs.
      request: (s) => {
        s.write(head('GET', '/upload', 'Content-Type: text/plain\r\nContent-Length: 1024\r\n'))
        let sent = 0
        const drip = (): void => {
          if (s.destroyed || stopping || sent >= 1024) return
          sent++
          s.write('.')
          later(o.dripMs, drip)
        }
        later(o.dripMs, drip)
      },
    },
    unreadDownload: {
      stats: newStats(),
      answerMs: new Sample(),
      serverCloseMs: new Sample(),
      request: (s) => void s.write(head('GET', '/big')),
      onAnswer: (s) => void s.pause(),
      paused: true,
    },
  }

  const openHeld = (name: HeldKindName): void => {
    const k = held[name]
    const startedAt = performance.now()
    const hold = o.holdMinMs + Math.random() * (o.holdMaxMs - o.holdMinMs)
    const socket = connect({
      host: o.host,
      port: o.port,
      localAddress: o.sources[name][k.stats.opened % o.sources[name].length],
    })
    socket.setNoDelay(true)
    sockets.add(socket)
    k.stats.opened++
    k.stats.open++
    let status: string | undefined
    let head = ''
    let ending: string | undefined
    let connected = false
    socket.on('connect', () => {
      connected = true
      k.request(socket)
    })
    socket.on('data', (chunk: Buffer) => {
      k.stats.bytesIn += chunk.length
      if (status !== undefined) return
      head += chunk.subarray(0, 64).toString('latin1')
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(head)
      if (m) {
        status = m[1]!
        k.answerMs.add(performance.now() - startedAt)
        k.onAnswer?.(socket)
      } else if (head.length >= 12) status = 'unparsable'
    })
    socket.on('error', () => undefined)
    const count = (): void => {
      finalizers.delete(socket)
      sockets.delete(socket)
      k.stats.open--
      bump(k.stats.statuses, status ?? 'none')
      bump(k.stats.endings, ending!)
    }
    finalizers.set(socket, () => {
      ending ??= 'run ended'
      count()
    })
    socket.on('close', () => {
      if (!finalizers.has(socket)) return
      if (ending === undefined) {
        ending = connected ? 'server closed' : 'connect failed'
        if (connected) k.serverCloseMs.add(performance.now() - startedAt)
      }
      count()
      // Recycled: a new socket of the same kind after a short pause.
      if (!stopping) later(100 + Math.random() * 400, () => openHeld(name))
    })
    later(hold, () => {
      if (socket.destroyed) return
      if (k.paused && status !== undefined) {
        // A never-read download: read now to find out whether gatehouse had already cut it (its FIN
        // or reset sits behind the unread bytes), then close.
        ending = 'client recycled'
        const cut = (): void => {
          ending = 'server cut (found at recycle)'
          socket.destroy()
        }
        socket.on('end', cut)
        socket.on('error', cut)
        socket.resume()
        later(2_000, () => socket.destroy())
        return
      }
      ending = 'client recycled'
      socket.destroy()
    })
  }

  // Ramp up: each kind opens one socket every 50 ms until it has perKind open.
  const ramp = new Map<HeldKindName, number>()
  if (o.perKind > 0) {
    for (const name of Object.keys(held) as HeldKindName[]) {
      ramp.set(name, 0)
      const step = (): void => {
        if (stopping || ramp.get(name)! >= o.perKind) return
        ramp.set(name, ramp.get(name)! + 1)
        openHeld(name)
        later(50, step)
      }
      step()
    }
  }

  // Malformed requests: a fresh socket each, at a fixed rate, bounded in flight.
  const patterns = malformedPatterns(o)
  const malformed: HostileStats['malformed'] = {}
  for (const [name] of patterns) malformed[name] = {}
  let inFlight = 0
  let next = 0
  const sendMalformed = (): void => {
    const [name, build] = patterns[next++ % patterns.length]!
    inFlight++
    const socket = connect({
      host: o.host,
      port: o.port,
      localAddress: o.sources.malformed[next % o.sources.malformed.length],
    })
    sockets.add(socket)
    let head = ''
    let outcome: string | undefined
    const done = (result: string): void => {
      if (outcome !== undefined) return
      outcome = result
      bump(malformed[name]!, result)
      socket.destroy()
    }
    socket.setTimeout(10_000, () => done('timeout'))
    socket.on('connect', () => socket.write(build()))
    socket.on('data', (chunk: Buffer) => {
      head += chunk.subarray(0, 64).toString('latin1')
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(head)
      if (m) done(m[1]!)
      else if (head.length >= 12) done('unparsable answer')
    })
    socket.on('error', (err: NodeJS.ErrnoException) => done(`error:${err.code ?? err.message}`))
    socket.on('close', () => {
      sockets.delete(socket)
      inFlight--
      done('closed')
    })
  }
  if (o.malformedPerSecond > 0) {
    const interval = 1000 / o.malformedPerSecond
    const tick = (): void => {
      if (stopping) return
      if (inFlight < o.malformedConcurrency) sendMalformed()
      later(interval, tick)
    }
    tick()
  }

  return {
    ready: { ok: true },
    stats(): HostileStats {
      const out = {} as HostileStats['held']
      for (const [name, k] of Object.entries(held) as Array<[HeldKindName, Held]>) {
        out[name] = {
          ...k.stats,
          statuses: { ...k.stats.statuses },
          endings: { ...k.stats.endings },
          answerMsP50: k.answerMs.quantile(0.5),
          answerMsMax: k.answerMs.max(),
          serverCloseMsP50: k.serverCloseMs.quantile(0.5),
          serverCloseMsMax: k.serverCloseMs.max(),
        }
      }
      return { held: out, malformed: structuredClone(malformed) }
    },
    close(): void {
      stopping = true
      for (const t of timers) clearTimeout(t)
      timers.clear()
      // Held sockets still open count as "run ended", with their status so far.
      for (const finalize of [...finalizers.values()]) finalize()
      for (const socket of sockets) {
        socket.removeAllListeners('close')
        socket.destroy()
      }
      sockets.clear()
    },
  }
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  let close: () => Promise<void> | void
  let stats: (() => unknown) | undefined
  if (kind === 'upstream') {
    const u = await startUpstream()
    close = u.close
    process.send!({ ready: u.ready })
  } else if (kind === 'idp') {
    const i = await startIdpChild()
    close = i.close
    process.send!({ ready: i.ready })
  } else if (kind === 'hostile') {
    const h = startHostile()
    stats = () => h.stats()
    close = () => h.close()
    process.send!({ ready: h.ready })
    // Open sockets per kind every 5 s, for the soak's samples.
    setInterval(() => {
      const s = h.stats()
      process.send?.({ open: Object.fromEntries(Object.entries(s.held).map(([n, k]) => [n, k.open])) })
    }, 5_000).unref()
  } else throw new Error(`unknown soak child "${kind}"`)
  let stopping = false
  const stop = (): void => {
    if (stopping) return
    stopping = true
    setTimeout(() => process.exit(0), 3_000).unref()
    Promise.resolve(close())
      .catch(() => undefined)
      .then(() => {
        const final = stats?.()
        if (final && process.connected) process.send!({ stats: final }, () => process.exit(0))
        else process.exit(0)
      })
  }
  process.on('message', (m) => {
    if (m === 'stop') stop()
  })
  process.on('disconnect', stop)
  process.on('SIGTERM', stop)
}

main().catch((err: unknown) => {
  process.send?.({ error: err instanceof Error ? err.message : String(err) })
  process.exit(1)
})
