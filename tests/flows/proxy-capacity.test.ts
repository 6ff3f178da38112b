import assert from 'node:assert/strict'
import { createServer, type Server, type ServerResponse } from 'node:http'
import { connect, type AddressInfo, type Socket } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { CSRF, startFlow, type Flow } from '../helpers/flow.ts'

// Held requests must not take the gateway down (SECURITY.md T43, T44). Clients that hold requests
// open — a long stream, an upload that declares 1 MB and sends 1 byte, a body sent slowly, a
// download never read — once pinned every connection of the one pool per upstream origin, with an
// unbounded queue behind it. Now each API has its own pool with a bounded wait, each client a cap
// on what it holds, and stalled bodies and readers are cut off. The hostile clients here are raw
// sockets, so that exactly what they send (and do not read) is under the test's control.

const PROBLEM_JSON = /^application\/problem\+json/

/** Polls `condition` every 20 ms; fails after `ms` (a bound on waiting, not a timing assertion). */
async function waitFor(condition: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await condition())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

interface UpstreamRequest {
  url: string
  /** The upstream's response is over: answered, or its connection closed (the call was abandoned). */
  closed: boolean
}

/**
 * A real API that keeps no timer alive once its client has gone, and records what it holds:
 *   /echo             JSON { url }
 *   /slow?ms=N        answers after N ms
 *   /hold             answers when the test calls releaseHolds()
 *   /stream?type=T    an endless stream (one line every 100 ms) of content type T until the client leaves
 *   /upload           reads the body, answers { bytes }
 *   /download?mb=N    N MiB, written as fast as the reader takes them
 */
class TestApi {
  readonly server: Server
  readonly requests: UpstreamRequest[] = []
  #open = 0
  #maxOpen = 0
  readonly #timers = new Set<NodeJS.Timeout>()
  readonly #holds = new Set<() => void>()

  constructor() {
    this.server = createServer((req, res) => {
      const record: UpstreamRequest = { url: req.url ?? '', closed: false }
      this.requests.push(record)
      res.once('close', () => (record.closed = true))
      const url = new URL(req.url ?? '/', 'http://api.invalid')
      switch (url.pathname) {
        case '/slow':
          return this.#later(res, Number(url.searchParams.get('ms') ?? 1000), () => res.end('slow'))
        case '/hold': {
          const answer = () => res.end('held')
          this.#holds.add(answer)
          res.once('close', () => this.#holds.delete(answer))
          return
        }
        case '/stream':
          return this.#stream(res, url.searchParams.get('type') ?? 'text/event-stream')
        case '/upload': {
          let bytes = 0
          req.on('data', (chunk: Buffer) => (bytes += chunk.length))
          req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ bytes })))
          return
        }
        case '/download':
          return this.#download(res, Number(url.searchParams.get('mb') ?? 1))
        default:
          req.resume()
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ url: req.url }))
      }
    })
    this.server.on('connection', (socket: Socket) => {
      this.#maxOpen = Math.max(this.#maxOpen, ++this.#open)
      socket.once('close', () => this.#open--)
    })
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`
  }

  /** Requests under `prefix` the API is still answering. */
  active(prefix: string): number {
    return this.requests.filter((r) => !r.closed && r.url.startsWith(prefix)).length
  }

  /** The most connections gatehouse held open to this API at once since the last `resetMax()`. */
  get maxOpen(): number {
    return this.#maxOpen
  }

  resetMax(): void {
    this.#maxOpen = this.#open
  }

  /** Answers every /hold request. */
  releaseHolds(): void {
    for (const answer of this.#holds) answer()
    this.#holds.clear()
  }

  async close(): Promise<void> {
    this.releaseHolds()
    for (const timer of this.#timers) clearTimeout(timer)
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  #later(res: ServerResponse, ms: number, run: () => void): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer)
      run()
    }, ms)
    this.#timers.add(timer)
    res.once('close', () => {
      clearTimeout(timer)
      this.#timers.delete(timer)
    })
  }

  #stream(res: ServerResponse, type: string): void {
    res.writeHead(200, { 'content-type': type, 'cache-control': 'no-cache' })
    let n = 0
    const tick = () => {
      if (res.destroyed) return
      res.write(`data: event ${n++}\n\n`)
      this.#later(res, 100, tick)
    }
    tick()
  }

  #download(res: ServerResponse, mb: number): void {
    const total = mb * 1024 * 1024
    const chunk = Buffer.alloc(64 * 1024, 0x61)
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) })
    let sent = 0
    const pump = () => {
      while (sent < total) {
        if (res.destroyed) return
        sent += chunk.length
        if (!res.write(chunk)) return void res.once('drain', pump)
      }
      res.end()
    }
    pump()
  }
}

/**
 * A client on a raw socket: the request head is written at once, the body (if any) is the caller's to
 * write. `read: false` never reads the answer (the socket stays paused, its buffers fill up).
 */
class RawClient {
  readonly socket: Socket
  readonly closed: Promise<void>
  #data = ''

  constructor(origin: string, head: string[], options: { read?: boolean; body?: string } = {}) {
    const { hostname, port, host } = new URL(origin)
    this.socket = connect(Number(port), hostname)
    this.socket.on('error', () => {})
    this.closed = new Promise((resolve) => this.socket.once('close', () => resolve()))
    if (options.read === false) this.socket.pause()
    else this.socket.on('data', (chunk: Buffer) => (this.#data += chunk.toString('latin1')))
    const [line, ...headers] = head
    this.socket.write(`${[line, `Host: ${host}`, ...headers].join('\r\n')}\r\n\r\n${options.body ?? ''}`, 'latin1')
  }

  get text(): string {
    return this.#data
  }

  /** The answer's status, once its status line has arrived. */
  get status(): number | undefined {
    const match = /^HTTP\/1\.1 (\d{3})/.exec(this.#data)
    return match ? Number(match[1]) : undefined
  }

  header(name: string): string | undefined {
    const head = this.#data.slice(0, this.#data.indexOf('\r\n\r\n'))
    return new RegExp(`^${name}: *(.*)$`, 'im').exec(head)?.[1]?.trim()
  }

  /** The `code` of a problem+json answer (read to its end: the answers here carry a Content-Length). */
  problemCode(): string {
    assert.match(this.header('content-type') ?? '', PROBLEM_JSON)
    return (JSON.parse(this.#data.slice(this.#data.indexOf('\r\n\r\n') + 4)) as { code: string }).code
  }

  write(text: string): void {
    this.socket.write(text, 'latin1')
  }

  destroy(): void {
    this.socket.destroy()
  }
}

interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

/** Prometheus text → samples (label values here hold no quotes or commas). */
function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (!match) continue
    const labels: Record<string, string> = {}
    for (const pair of (match[2] ?? '').split(',').filter(Boolean)) {
      const [key, quoted] = pair.split('=') as [string, string]
      labels[key] = quoted.slice(1, -1)
    }
    samples.push({ name: match[1]!, labels, value: Number(match[3]) })
  }
  return samples
}

/** gatehouse's metrics, scraped through its admin handler. */
async function scrape(flow: Flow): Promise<Sample[]> {
  const server = createServer((req, res) => flow.gatehouse.adminHandler(req, res))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  try {
    const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`)
    assert.equal(res.status, 200)
    return parseMetrics(await res.text())
  } finally {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

function metric(samples: Sample[], name: string, labels: Record<string, string>): number {
  const found = samples.find(
    (s) =>
      s.name === name &&
      Object.entries(labels).every(([k, v]) => s.labels[k] === v) &&
      Object.keys(s.labels).length === Object.keys(labels).length,
  )
  return found?.value ?? 0
}

const refused = async (flow: Flow, api: string, reason: string) =>
  metric(await scrape(flow), 'gatehouse_proxy_refused_total', { api, reason })

/** A fetch from a client gatehouse knows by `X-Forwarded-For` (flows with trustProxy on). */
function fetchAs(client: string, url: string, init: RequestInit = {}): Promise<Response> {
  return fetch(url, {
    ...init,
    headers: { ...CSRF, 'x-forwarded-for': client, ...(init.headers as Record<string, string> | undefined) },
  })
}

async function problemOf(res: Response): Promise<{ code: string }> {
  assert.match(res.headers.get('content-type') ?? '', PROBLEM_JSON)
  return (await res.json()) as { code: string }
}

describe('200 held requests from one client do not starve another client of the same upstream', () => {
  const api = new TestApi()
  let flow: Flow
  let browser: ReturnType<Flow['browser']>
  const CONNECTIONS = 16
  const PER_CLIENT = 8
  const STREAMS = 4
  const HELD = 200

  before(async () => {
    const target = await api.listen()
    flow = await startFlow({
      gatehouse: {
        remoteApis: [
          // The anonymous long streams' API, and the logged-in client's (which anonymous clients may call too), on one origin.
          { path: '/open', target, token: 'none', timeout: '3s', connections: CONNECTIONS, queue: 2 * CONNECTIONS },
          {
            path: '/api',
            target,
            token: 'userOrNone',
            timeout: '3s',
            connections: CONNECTIONS,
            queue: 2 * CONNECTIONS,
          },
        ],
        limits: { perClient: PER_CLIENT, perClientStreams: STREAMS, bodyIdleTimeout: '1s', writeIdleTimeout: '1s' },
      },
    })
    browser = flow.browser()
    await flow.login(browser)
  })
  after(async () => {
    await flow?.close()
    await api.close()
  })

  /** The sum of `reasons`' refusal counters of `path`. */
  async function refusedOf(path: string, reasons: readonly string[]): Promise<number> {
    const samples = await scrape(flow)
    return reasons.reduce(
      (sum, reason) => sum + metric(samples, 'gatehouse_proxy_refused_total', { api: path, reason }),
      0,
    )
  }

  /**
   * Opens HELD hostile requests to `path` and waits until gatehouse has refused or ended `total` of
   * them for `reasons` (whatever the order in which they arrived and ended), then makes the logged-in
   * client's call. Afterwards every hostile socket is closed and the pools must drain.
   */
  async function underSiege(
    path: string,
    open: () => RawClient,
    reasons: readonly string[],
    total: number,
  ): Promise<void> {
    const before = await refusedOf(path, reasons)
    api.resetMax()
    const rssBefore = process.memoryUsage().rss
    const hostile: RawClient[] = []
    try {
      for (let i = 0; i < HELD; i++) hostile.push(open())
      await waitFor(
        async () => (await refusedOf(path, reasons)) - before === total,
        `${total} ${reasons.join('/')} refusals on ${path}`,
      )
      const res = await browser.get(`${flow.origin}/api/echo`, CSRF)
      assert.equal(res.status, 200, res.text)
      assert.ok(
        api.maxOpen <= 2 * CONNECTIONS,
        `gatehouse opened ${api.maxOpen} upstream connections; the pools have ${2 * CONNECTIONS}`,
      )
      const growthMb = (process.memoryUsage().rss - rssBefore) / 1024 / 1024
      assert.ok(growthMb < 200, `rss grew by ${Math.round(growthMb)} MB`)
    } finally {
      for (const client of hostile) client.destroy()
    }
    // Nothing stays held once the hostile clients are gone: every place and connection comes back.
    await waitFor(async () => {
      const samples = await scrape(flow)
      return ['/open', '/api'].every(
        (path) =>
          metric(samples, 'gatehouse_proxy_in_flight', { api: path }) === 0 &&
          metric(samples, 'gatehouse_proxy_queue_length', { api: path }) === 0,
      )
    }, 'the pools to drain')
  }

  test('(a) long streams on a token "none" API: one client keeps limits.perClientStreams of them, the rest get 429; another client is served', async () => {
    // Asked for as EventSource asks (Accept: text/event-stream): counted as streams from the start.
    await underSiege(
      '/open',
      () => new RawClient(flow.origin, ['GET /open/stream HTTP/1.1', 'X-CSRF: 1', 'Accept: text/event-stream']),
      ['per_client_streams'],
      HELD - STREAMS,
    )
    const streams = new RawClient(flow.origin, ['GET /open/stream HTTP/1.1', 'X-CSRF: 1', 'Accept: text/event-stream'])
    await waitFor(() => streams.status !== undefined, 'a stream after the siege')
    assert.equal(streams.status, 200, 'the client may stream again once its streams ended')
    streams.destroy()
  })

  test('(b) uploads that declare 1 MB and send 1 byte: held at most limits.perClient at a time, then ended by the body-idle timeout; another client is served', async () => {
    // Every one of them is refused (429) or, once admitted, ended by the body-idle timeout (408).
    await underSiege(
      '/api',
      () =>
        new RawClient(
          flow.origin,
          [
            'POST /api/upload HTTP/1.1',
            'X-CSRF: 1',
            'Content-Type: application/octet-stream',
            `Content-Length: ${1024 * 1024}`,
          ],
          { body: 'x' },
        ),
      ['per_client', 'body_idle'],
      HELD,
    )
  })

  test('(c) GETs whose Content-Length body arrives a byte at a time: held at most limits.perClient at a time; another client is served', async () => {
    const drips: NodeJS.Timeout[] = []
    try {
      // Never idle (a byte every 200 ms): PER_CLIENT of them stay in flight, the rest are refused.
      await underSiege(
        '/api',
        () => {
          const client = new RawClient(flow.origin, ['GET /api/upload HTTP/1.1', 'X-CSRF: 1', 'Content-Length: 1000'])
          const drip = setInterval(() => client.write('x'), 200)
          drips.push(drip)
          client.socket.once('close', () => clearInterval(drip))
          return client
        },
        ['per_client'],
        HELD - PER_CLIENT,
      )
    } finally {
      for (const drip of drips) clearInterval(drip)
    }
  })

  test('(d) large downloads the client never reads: held at most limits.perClient at a time, then ended by the write-idle timeout; another client is served', async () => {
    // Every one of them is refused (429) or, once admitted, ended by the write-idle timeout.
    await underSiege(
      '/api',
      () => new RawClient(flow.origin, ['GET /api/download?mb=64 HTTP/1.1', 'X-CSRF: 1'], { read: false }),
      ['per_client', 'write_idle'],
      HELD,
    )
  })
})

describe('per-client caps (limits.perClient, limits.perClientStreams) and idle timeouts', () => {
  const api = new TestApi()
  let flow: Flow
  const PER_CLIENT = 3
  const STREAMS = 2

  before(async () => {
    const target = await api.listen()
    flow = await startFlow({
      gatehouse: {
        // Clients are told apart by X-Forwarded-For here (the address as trustProxy resolves it).
        trustProxy: true,
        remoteApis: [
          { path: '/api', target, token: 'userOrNone', timeout: '3s' },
          { path: '/live', target, token: 'none', websockets: true },
        ],
        limits: { perClient: PER_CLIENT, perClientStreams: STREAMS, bodyIdleTimeout: '1s', writeIdleTimeout: '1s' },
      },
    })
  })
  after(async () => {
    await flow?.close()
    await api.close()
  })

  /** `count` requests from `client` that the API holds (each answers after a minute), once all have reached it. */
  async function hold(client: string, count: number): Promise<RawClient[]> {
    const before = api.active('/slow')
    const held = Array.from(
      { length: count },
      () => new RawClient(flow.origin, ['GET /api/slow?ms=60000 HTTP/1.1', 'X-CSRF: 1', `X-Forwarded-For: ${client}`]),
    )
    await waitFor(() => api.active('/slow') === before + count, `${count} held requests at the API`)
    return held
  }

  test('a client over limits.perClient gets 429 too_many_requests with Retry-After, others do not; once its requests end it is served again', async () => {
    const before = await refused(flow, '/api', 'per_client')
    const held = await hold('203.0.113.1', PER_CLIENT)
    const over = await fetchAs('203.0.113.1', `${flow.origin}/api/echo`)
    assert.equal(over.status, 429)
    assert.equal((await problemOf(over)).code, 'too_many_requests')
    assert.match(over.headers.get('retry-after') ?? '', /^[1-9]\d?$/, 'Retry-After: a few seconds')
    assert.equal(await refused(flow, '/api', 'per_client'), before + 1)
    // Another address, and a logged-in browser (its session is its key), are not affected.
    assert.equal((await fetchAs('203.0.113.2', `${flow.origin}/api/echo`)).status, 200)
    const browser = flow.browser()
    await flow.login(browser)
    assert.equal(
      (await browser.get(`${flow.origin}/api/echo`, { ...CSRF, 'x-forwarded-for': '203.0.113.1' })).status,
      200,
    )
    for (const client of held) client.destroy()
    await waitFor(
      async () => (await fetchAs('203.0.113.1', `${flow.origin}/api/echo`)).status === 200,
      'the client to be served again',
    )
  })

  test('every way a request ends gives its place back exactly once: afterwards the client again holds exactly limits.perClient', async () => {
    const client = '203.0.113.3'
    // Finished.
    for (let i = 0; i < 2 * PER_CLIENT; i++)
      assert.equal((await fetchAs(client, `${flow.origin}/api/echo?i=${i}`)).status, 200)
    // Refused with 429 (over the cap), then the held ones left by the client.
    const held = await hold(client, PER_CLIENT)
    assert.equal((await fetchAs(client, `${flow.origin}/api/echo`)).status, 429)
    for (const c of held) c.destroy()
    await waitFor(() => api.active('/slow') === 0, 'the abandoned calls to end at the API')
    // Refused before it takes a place (no anti-forgery header).
    assert.equal((await fetchAs(client, `${flow.origin}/api/echo`, { headers: { 'x-csrf': '' } })).status, 401)
    // Ended by the body-idle timeout (408) and by the write-idle timeout (connection closed).
    const stalled = new RawClient(
      flow.origin,
      ['POST /api/upload HTTP/1.1', 'X-CSRF: 1', `X-Forwarded-For: ${client}`, 'Content-Length: 100'],
      { body: 'x' },
    )
    await waitFor(() => stalled.status !== undefined, 'the 408')
    assert.equal(stalled.status, 408)
    const unread = new RawClient(
      flow.origin,
      ['GET /api/download?mb=64 HTTP/1.1', 'X-CSRF: 1', `X-Forwarded-For: ${client}`],
      { read: false },
    )
    await waitFor(
      () => api.requests.some((r) => r.url.startsWith('/download') && r.closed),
      'the unread download to be ended',
    )
    unread.destroy()
    // An event stream answered to an ordinary request (moved to a stream place), ended by the client.
    const stream = new RawClient(flow.origin, ['GET /api/stream HTTP/1.1', 'X-CSRF: 1', `X-Forwarded-For: ${client}`])
    await waitFor(() => stream.text.includes('data: event 1'), 'the stream')
    stream.destroy()
    // Exactly PER_CLIENT again: no place leaked (fewer would fit) and none given back twice (more would fit).
    await waitFor(
      async () => (await fetchAs(client, `${flow.origin}/api/echo`)).status === 200,
      'the places to come back',
    )
    const again = await hold(client, PER_CLIENT)
    assert.equal((await fetchAs(client, `${flow.origin}/api/echo`)).status, 429)
    for (const c of again) c.destroy()
    await waitFor(() => api.active('/slow') === 0, 'the held calls to end')
  })

  test('event streams and WebSockets count against limits.perClientStreams, apart from ordinary requests', async () => {
    const client = '203.0.113.4'
    const before = await refused(flow, '/api', 'per_client_streams')
    const accept = ['X-CSRF: 1', `X-Forwarded-For: ${client}`, 'Accept: text/event-stream']
    const streams = Array.from(
      { length: STREAMS },
      () => new RawClient(flow.origin, ['GET /api/stream HTTP/1.1', ...accept]),
    )
    await waitFor(() => streams.every((s) => s.text.includes('data: event 0')), 'the streams')
    // A third stream asked for by Accept is refused before any upstream call.
    const third = await fetchAs(client, `${flow.origin}/api/stream`, { headers: { accept: 'text/event-stream' } })
    assert.equal(third.status, 429)
    assert.equal((await problemOf(third)).code, 'too_many_requests')
    assert.ok(third.headers.get('retry-after'))
    // One the upstream has already answered as a stream is never refused afterwards (the API acted on
    // it): it keeps its ordinary place.
    const streamCallsBefore = api.requests.filter((r) => r.url.startsWith('/stream')).length
    const recognised = await fetchAs(client, `${flow.origin}/api/stream`)
    assert.equal(recognised.status, 200)
    void recognised.body?.cancel()
    assert.equal(api.requests.filter((r) => r.url.startsWith('/stream')).length, streamCallsBefore + 1)
    assert.equal(await refused(flow, '/api', 'per_client_streams'), before + 1)
    // A WebSocket is a stream too.
    const ws = new RawClient(flow.origin, [
      'GET /live/ws HTTP/1.1',
      `Origin: ${flow.origin}`,
      `X-Forwarded-For: ${client}`,
      'Connection: Upgrade',
      'Upgrade: websocket',
      'Sec-WebSocket-Version: 13',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    ])
    await waitFor(() => ws.status !== undefined, 'the handshake answer')
    assert.equal(ws.status, 429)
    assert.ok(ws.header('retry-after'))
    // Ordinary requests still have their own places.
    assert.equal((await fetchAs(client, `${flow.origin}/api/echo`)).status, 200)
    for (const s of streams) s.destroy()
    await waitFor(
      async () =>
        (await fetchAs(client, `${flow.origin}/api/stream?again`, {
          headers: { accept: 'text/event-stream' },
          signal: AbortSignal.timeout(2_000),
        })
          .then((r) => (void r.body?.cancel(), r.status))
          .catch(() => 0)) === 200,
      'a stream place to come back',
    )
  })

  test("a request body that sends nothing for limits.bodyIdleTimeout ends that request with 408 body_idle and frees its upstream connection; the same client's other upload completes", async () => {
    const client = '203.0.113.5'
    const before = await refused(flow, '/api', 'body_idle')
    const uploadsBefore = api.requests.filter((r) => r.url === '/upload').length
    const stalled = new RawClient(
      flow.origin,
      ['POST /api/upload HTTP/1.1', 'X-CSRF: 1', `X-Forwarded-For: ${client}`, `Content-Length: ${1024 * 1024}`],
      { body: 'x'.repeat(10) },
    )
    await waitFor(
      () => api.requests.filter((r) => r.url === '/upload').length === uploadsBefore + 1,
      'the stalled upload at the API',
    )
    const good = await fetchAs(client, `${flow.origin}/api/upload`, { method: 'POST', body: Buffer.alloc(200_000, 1) })
    assert.equal(good.status, 200)
    assert.deepEqual(await good.json(), { bytes: 200_000 })
    await stalled.closed
    assert.equal(stalled.status, 408)
    assert.equal(stalled.problemCode(), 'body_idle')
    assert.match(stalled.header('connection') ?? '', /close/i)
    await waitFor(() => api.active('/upload') === 0, 'the upstream call of the stalled upload to end')
    assert.equal(await refused(flow, '/api', 'body_idle'), before + 1)
  })

  test("a client that reads nothing of an answer for limits.writeIdleTimeout loses it, freeing the upstream connection; the same client's other requests are served", async () => {
    const client = '203.0.113.6'
    const before = await refused(flow, '/api', 'write_idle')
    const downloadsBefore = api.requests.filter((r) => r.url.startsWith('/download')).length
    const unread = new RawClient(
      flow.origin,
      ['GET /api/download?mb=64 HTTP/1.1', 'X-CSRF: 1', `X-Forwarded-For: ${client}`],
      { read: false },
    )
    await waitFor(
      () => api.requests.filter((r) => r.url.startsWith('/download')).length === downloadsBefore + 1,
      'the download at the API',
    )
    assert.equal((await fetchAs(client, `${flow.origin}/api/echo`)).status, 200)
    const read = await fetchAs(client, `${flow.origin}/api/download?mb=4`)
    assert.equal((await read.arrayBuffer()).byteLength, 4 * 1024 * 1024, 'a download that is read completes')
    await waitFor(() => api.active('/download') === 0, 'the unread download to be ended at the API')
    assert.equal(await refused(flow, '/api', 'write_idle'), before + 1)
    unread.destroy()
  })
})

describe("an API's bounded wait for a connection (remoteApis[].connections, .queue)", () => {
  const api = new TestApi()
  let flow: Flow

  before(async () => {
    const target = await api.listen()
    flow = await startFlow({
      gatehouse: {
        trustProxy: true,
        remoteApis: [
          { path: '/narrow', target, token: 'none', timeout: '2s', connections: 2, queue: 2 },
          { path: '/wide', target, token: 'none', timeout: '2s' },
        ],
      },
    })
  })
  after(async () => {
    await flow?.close()
    await api.close()
  })

  test('with every connection held: a full queue answers 503 upstream_busy at once, a wait past the API timeout answers 503 too, both with Retry-After; another API on the same upstream origin is served', async () => {
    const start = await scrape(flow)
    const busyBefore = metric(start, 'gatehouse_proxy_refused_total', { api: '/narrow', reason: 'upstream_busy' })
    const waitsBefore = metric(start, 'gatehouse_proxy_queue_wait_seconds_count', { api: '/narrow' })
    // Two streams from two clients hold both connections (their answers started within the timeout).
    const held = ['198.51.100.1', '198.51.100.2'].map(
      (ip) => new RawClient(flow.origin, ['GET /narrow/stream HTTP/1.1', 'X-CSRF: 1', `X-Forwarded-For: ${ip}`]),
    )
    try {
      await waitFor(() => held.every((h) => h.text.includes('data: event 0')), 'the held streams')
      const queued = ['198.51.100.3', '198.51.100.4'].map((ip) => fetchAs(ip, `${flow.origin}/narrow/echo`))
      await waitFor(
        async () => metric(await scrape(flow), 'gatehouse_proxy_queue_length', { api: '/narrow' }) === 2,
        'two requests in the queue',
      )
      const full = await fetchAs('198.51.100.5', `${flow.origin}/narrow/echo`)
      assert.equal(full.status, 503)
      assert.equal((await problemOf(full)).code, 'upstream_busy')
      assert.match(full.headers.get('retry-after') ?? '', /^[1-9]\d?$/)
      assert.equal(
        (await fetchAs('198.51.100.6', `${flow.origin}/wide/echo`)).status,
        200,
        'the other API on the same origin is not blocked',
      )
      for (const res of await Promise.all(queued)) {
        assert.equal(res.status, 503)
        assert.equal((await problemOf(res)).code, 'upstream_busy')
        assert.ok(res.headers.get('retry-after'))
      }
      const samples = await scrape(flow)
      assert.equal(
        metric(samples, 'gatehouse_proxy_refused_total', { api: '/narrow', reason: 'upstream_busy' }),
        busyBefore + 3,
      )
      assert.equal(metric(samples, 'gatehouse_proxy_queue_wait_seconds_count', { api: '/narrow' }), waitsBefore + 2)
      assert.equal(metric(samples, 'gatehouse_proxy_in_flight', { api: '/narrow' }), 2)
      assert.equal(metric(samples, 'gatehouse_proxy_queue_length', { api: '/narrow' }), 0)
    } finally {
      for (const h of held) h.destroy()
    }
    await waitFor(
      async () => (await fetchAs('198.51.100.7', `${flow.origin}/narrow/echo`)).status === 200,
      'the API to be served again once the streams ended',
    )
  })

  test('the time spent waiting for a connection counts toward the API timeout; a request that gets one in time is answered', async () => {
    // Both connections held for at least 1.5 s: a queued call the API answers in 1.2 s no longer fits
    // the 2 s timeout (it would, had the wait not counted).
    const held = ['192.0.2.1', '192.0.2.2'].map((ip) => fetchAs(ip, `${flow.origin}/narrow/hold`))
    await waitFor(() => api.active('/hold') === 2, 'two calls holding the connections')
    const late = fetchAs('192.0.2.3', `${flow.origin}/narrow/slow?ms=1200`)
    await new Promise((resolve) => setTimeout(resolve, 1_500))
    api.releaseHolds()
    const answer = await late
    assert.equal(answer.status, 504)
    assert.equal((await problemOf(answer)).code, 'upstream_timeout')
    for (const res of await Promise.all(held)) assert.equal(res.status, 200)
    // Both connections held for a moment: a queued call gets one and is answered.
    const before = metric(await scrape(flow), 'gatehouse_proxy_queue_wait_seconds_count', { api: '/narrow' })
    const brief = ['192.0.2.1', '192.0.2.2'].map((ip) => fetchAs(ip, `${flow.origin}/narrow/hold`))
    await waitFor(() => api.active('/hold') === 2, 'two calls holding the connections')
    const queued = fetchAs('192.0.2.3', `${flow.origin}/narrow/echo`)
    await waitFor(
      async () => metric(await scrape(flow), 'gatehouse_proxy_queue_length', { api: '/narrow' }) === 1,
      'the call in the queue',
    )
    api.releaseHolds()
    assert.equal((await queued).status, 200)
    for (const res of await Promise.all(brief)) assert.equal(res.status, 200)
    assert.equal(metric(await scrape(flow), 'gatehouse_proxy_queue_wait_seconds_count', { api: '/narrow' }), before + 1)
  })
})
