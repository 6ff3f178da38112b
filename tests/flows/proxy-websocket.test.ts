import assert from 'node:assert/strict'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { WebSocket, WebSocketServer } from 'ws'
import { CLIENT_ID, CLIENT_SECRET, CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import { introspect, startUpstream, type Upstream } from '../helpers/upstream.ts'

/** A ws client that queues its messages from the start, so none is missed between steps. */
class Client {
  readonly ws: WebSocket
  readonly #queue: Array<{ data: Buffer; isBinary: boolean }> = []
  readonly #waiting: Array<(message: { data: Buffer; isBinary: boolean }) => void> = []

  constructor(ws: WebSocket) {
    this.ws = ws
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const message = { data, isBinary }
      const waiter = this.#waiting.shift()
      if (waiter) waiter(message)
      else this.#queue.push(message)
    })
  }

  next(): Promise<{ data: Buffer; isBinary: boolean }> {
    const queued = this.#queue.shift()
    if (queued) return Promise.resolve(queued)
    return new Promise((resolve) => this.#waiting.push(resolve))
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return
    const closed = new Promise((resolve) => this.ws.once('close', resolve))
    this.ws.close()
    await closed
  }
}

type Handshake = { client: Client; status?: undefined } | { client?: undefined; status: number }

/** Opens a WebSocket; resolves with the client, or with the status of a refused handshake. */
function handshake(url: string, headers: Record<string, string>): Promise<Handshake> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers })
    const client = new Client(ws)
    let settled = false
    ws.on('error', (err) => {
      if (!settled) reject(err)
    })
    ws.once('open', () => {
      settled = true
      resolve({ client })
    })
    ws.once('unexpected-response', (req, res) => {
      settled = true
      res.resume()
      req.destroy()
      resolve({ status: res.statusCode ?? 0 })
    })
  })
}

/** A handshake over a raw socket, so the request target is sent exactly as written; resolves with the status line's code. */
function rawHandshake(origin: string, target: string, headers: string[] = []): Promise<number> {
  const { hostname, port, host } = new URL(origin)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname)
    let data = ''
    socket.setEncoding('latin1')
    socket.on('data', (chunk: string) => {
      data += chunk
      const match = /^HTTP\/1\.1 (\d{3})/.exec(data)
      if (match) {
        socket.destroy()
        resolve(Number(match[1]))
      }
    })
    socket.on('error', reject)
    socket.on('end', () => resolve(0))
    const lines = [
      `GET ${target} HTTP/1.1`,
      `Host: ${host}`,
      'Connection: Upgrade',
      'Upgrade: websocket',
      'Sec-WebSocket-Version: 13',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
      ...headers,
    ]
    socket.write(`${lines.join('\r\n')}\r\n\r\n`)
  })
}

describe('remote API proxy: WebSockets', () => {
  let upstream: Upstream
  let flow: Flow
  let wsOrigin: string
  let cookie: string

  before(async () => {
    upstream = await startUpstream()
    flow = await startFlow({
      gatehouse: {
        remoteApis: [
          { path: '/live', target: upstream.url, token: 'user', websockets: true },
          { path: '/public-live', target: upstream.url, token: 'none', websockets: true },
          { path: '/plain', target: upstream.url, token: 'user' },
        ],
      },
    })
    wsOrigin = flow.origin.replace(/^http/, 'ws')
    const browser = flow.browser()
    await flow.login(browser)
    cookie = `${browser.cookieHeader()}; theme=dark`
  })
  after(async () => {
    await flow.close()
    await upstream.close()
  })

  test('a logged-in browser on the app origin connects; the upstream gets the user token and no cookie, and messages echo both ways', async () => {
    const before = upstream.received.length
    const opened = await handshake(`${wsOrigin}/live/ws?room=1`, {
      cookie,
      origin: flow.origin,
      'x-csrf': '1',
      authorization: 'Bearer forged',
    })
    assert.ok(opened.client, `handshake refused with ${opened.status}`)
    const { client } = opened
    try {
      const first = JSON.parse((await client.next()).data.toString('utf8')) as {
        authorization: string | null
        cookie: string | null
      }
      assert.equal(first.cookie, null)
      assert.match(first.authorization ?? '', /^Bearer /)
      assert.notEqual(first.authorization, 'Bearer forged')
      const info = await introspect(
        flow.idp.issuer,
        first.authorization!.slice('Bearer '.length),
        CLIENT_ID,
        CLIENT_SECRET,
      )
      assert.equal(info.active, true)
      assert.equal(info.sub, 'alice-0001')

      const seen = upstream.received.slice(before)
      assert.equal(seen.length, 1)
      assert.equal(seen[0]!.url, '/ws?room=1')
      assert.equal(seen[0]!.headers['x-csrf'], undefined)
      assert.equal(seen[0]!.headers['x-forwarded-host'], new URL(flow.origin).host)

      client.ws.send('hello through gatehouse')
      const text = await client.next()
      assert.equal(text.isBinary, false)
      assert.equal(text.data.toString('utf8'), 'hello through gatehouse')
      const bytes = Buffer.from([0, 1, 2, 250, 255])
      client.ws.send(bytes)
      const binary = await client.next()
      assert.equal(binary.isBinary, true)
      assert.deepEqual(binary.data, bytes)
      const large = 'x'.repeat(256 * 1024)
      client.ws.send(large)
      assert.equal((await client.next()).data.toString('utf8'), large)
    } finally {
      await client.close()
    }
  })

  test('a handshake from a foreign Origin is refused with 403 and never reaches the upstream', async () => {
    const before = upstream.received.length
    for (const origin of [
      'https://evil.example',
      'null',
      flow.origin.replace('127.0.0.1', 'localhost'),
      `${flow.origin}.evil.example`,
    ]) {
      const res = await handshake(`${wsOrigin}/live/ws`, { cookie, origin })
      assert.equal(res.status, 403, origin)
    }
    assert.equal(upstream.received.length, before)
  })

  test('a handshake without an Origin header is refused with 403', async () => {
    const before = upstream.received.length
    const res = await handshake(`${wsOrigin}/live/ws`, { cookie })
    assert.equal(res.status, 403)
    assert.equal(upstream.received.length, before)
  })

  test('a handshake without a session to an API that needs the user token is refused with 401', async () => {
    const before = upstream.received.length
    assert.equal((await handshake(`${wsOrigin}/live/ws`, { origin: flow.origin })).status, 401)
    assert.equal(
      (await handshake(`${wsOrigin}/live/ws`, { origin: flow.origin, cookie: '__Host-gatehouse=forged' })).status,
      401,
    )
    assert.equal(upstream.received.length, before)
  })

  test('an API with token "none" accepts a same-origin handshake without a session and sends no token', async () => {
    const opened = await handshake(`${wsOrigin}/public-live/ws`, { origin: flow.origin, cookie })
    assert.ok(opened.client, `handshake refused with ${opened.status}`)
    try {
      const first = JSON.parse((await opened.client.next()).data.toString('utf8')) as {
        authorization: string | null
        cookie: string | null
      }
      assert.deepEqual(first, { authorization: null, cookie: null })
    } finally {
      await opened.client.close()
    }
  })

  test('an API without websockets: true refuses the upgrade with 404 and the upstream sees nothing', async () => {
    const before = upstream.received.length
    assert.equal((await handshake(`${wsOrigin}/plain/ws`, { cookie, origin: flow.origin })).status, 404)
    assert.equal((await handshake(`${wsOrigin}/nowhere/ws`, { cookie, origin: flow.origin })).status, 404)
    assert.equal(await rawHandshake(flow.origin, '/plain/ws', [`Origin: ${flow.origin}`, `Cookie: ${cookie}`]), 404)
    assert.equal(upstream.received.length, before)
  })

  test('a path escape in the WebSocket URL is refused with 400 and the upstream sees nothing', async () => {
    const before = upstream.received.length
    for (const path of ['/live/%252e%252e/ws', '/live/x%2f..%2fws', '/live/..;/ws', '/live//ws', '/live/%5c..%5cws']) {
      assert.equal((await handshake(`${wsOrigin}${path}`, { cookie, origin: flow.origin })).status, 400, path)
    }
    for (const target of ['/live/../bff/user', '/live/%2e%2e/ws', '/live/./ws', '/live/ws/..']) {
      assert.equal(
        await rawHandshake(flow.origin, target, [`Origin: ${flow.origin}`, `Cookie: ${cookie}`]),
        400,
        target,
      )
    }
    assert.equal(upstream.received.length, before)
  })

  test('an upstream that refuses the WebSocket handshake gives 502 to the browser', async () => {
    const before = upstream.received.length
    // The test upstream drops handshakes for any path but /ws.
    assert.equal((await handshake(`${wsOrigin}/live/not-a-socket`, { cookie, origin: flow.origin })).status, 502)
    assert.equal(upstream.received.at(-1)?.url, '/not-a-socket')
    assert.equal(upstream.received.length, before + 1)
  })

  test('after refused handshakes and a closed connection, WebSockets and plain requests still work', async () => {
    const opened = await handshake(`${wsOrigin}/live/ws`, { cookie, origin: flow.origin })
    assert.ok(opened.client)
    await opened.client.next()
    opened.client.ws.terminate()
    const again = await handshake(`${wsOrigin}/live/ws`, { cookie, origin: flow.origin })
    assert.ok(again.client)
    try {
      await again.client.next()
      again.client.ws.send('still here')
      assert.equal((await again.client.next()).data.toString('utf8'), 'still here')
    } finally {
      await again.client.close()
    }
    const res = await fetch(`${flow.origin}/healthz`)
    assert.equal(res.status, 200)
  })
})

/**
 * A WebSocket upstream that holds each handshake until the test lets it through: `reached` resolves
 * once one arrived, `release()` answers it with 101. Sequencing by events, no timing.
 */
async function startHeldUpstream(): Promise<{
  url: string
  reached(): Promise<void>
  release(): void
  close(): Promise<void>
}> {
  const wss = new WebSocketServer({ noServer: true })
  let arrived: () => void = () => {}
  let arrival = new Promise<void>((resolve) => (arrived = resolve))
  let pending: (() => void) | undefined
  const server = createServer((_req, res) => res.writeHead(404).end())
  server.on('upgrade', (req, socket, head) => {
    pending = () => wss.handleUpgrade(req, socket, head, (ws) => ws.send('open'))
    arrived()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    reached: () => arrival,
    release() {
      const answer = pending!
      pending = undefined
      arrival = new Promise<void>((resolve) => (arrived = resolve))
      answer()
    },
    async close() {
      for (const client of wss.clients) client.terminate()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/** Opens a WebSocket and resolves with the 101's headers once it is open. */
function openWith(
  url: string,
  headers: Record<string, string>,
): Promise<{ ws: WebSocket; headers: IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers })
    let answer: IncomingHttpHeaders = {}
    ws.once('upgrade', (res) => (answer = res.headers))
    ws.once('open', () => resolve({ ws, headers: answer }))
    ws.once('error', reject)
    ws.once('unexpected-response', (_req, res) => reject(new Error(`handshake refused with ${res.statusCode}`)))
  })
}

describe('remote API proxy: WebSockets in cookie mode', () => {
  let upstream: Awaited<ReturnType<typeof startHeldUpstream>>
  let flow: Flow
  let offsetMs = 0

  before(async () => {
    upstream = await startHeldUpstream()
    flow = await startFlow({
      gatehouse: {
        session: { mode: 'cookie' },
        remoteApis: [{ path: '/held', target: upstream.url, token: 'user', websockets: true }],
      },
      runtime: { now: () => Date.now() + offsetMs },
    })
  })
  after(async () => {
    await flow.close()
    await upstream.close()
  })

  /** A logged-in browser whose access token has expired: its next handshake refreshes it and rewrites the session cookie. */
  async function expiredSession(): Promise<{ cookie: string; logoutUrl: string }> {
    offsetMs = 0
    const browser = flow.browser()
    await flow.login(browser)
    const claims = JSON.parse((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) as Array<{
      type: string
      value: unknown
    }>
    offsetMs = 2 * 3_600_000 // past the access token's expiry
    return {
      cookie: browser.cookieHeader(),
      logoutUrl: claims.find((c) => c.type === 'bff:logout_url')!.value as string,
    }
  }

  const sessionCookies = (headers: IncomingHttpHeaders) =>
    (headers['set-cookie'] ?? []).filter((c) => c.startsWith('__Host-gatehouse'))

  test('a handshake that refreshed the session carries the rewritten session cookie in its 101', async () => {
    const { cookie } = await expiredSession()
    const opening = openWith(`${flow.origin.replace(/^http/, 'ws')}/held/ws`, { cookie, origin: flow.origin })
    await upstream.reached()
    upstream.release()
    const { ws, headers } = await opening
    ws.terminate()
    assert.equal(sessionCookies(headers).length, 1, 'the refreshed session is written back')
    assert.equal(headers['cache-control'], 'no-store')
  })

  test('a session logged out while its handshake was with the upstream: the 101 carries no session cookie', async () => {
    const { cookie, logoutUrl } = await expiredSession()
    const opening = openWith(`${flow.origin.replace(/^http/, 'ws')}/held/ws`, { cookie, origin: flow.origin })
    // The handshake refreshed the session (a cookie rewrite is queued) and now waits for the upstream.
    await upstream.reached()
    const logout = await fetch(`${flow.origin}${logoutUrl}`, { headers: { cookie }, redirect: 'manual' })
    assert.equal(logout.status, 302)
    upstream.release()
    const { ws, headers } = await opening
    ws.terminate()
    assert.deepEqual(sessionCookies(headers), [], 'no cookie puts the ended session back')
    const after = await fetch(`${flow.origin}/bff/user`, { headers: { ...CSRF, cookie } })
    assert.equal(after.status, 401, 'the session stays ended')
  })
})
