import { createHash } from 'node:crypto'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { WebSocketServer } from 'ws'

export interface RecordedRequest {
  method: string
  url: string
  headers: IncomingHttpHeaders
}

export interface Upstream {
  url: string
  server: Server
  /** Every request the upstream received, in order (WebSocket handshakes included). */
  received: RecordedRequest[]
  close(): Promise<void>
}

/**
 * A real HTTP API for proxy tests. Routes:
 *   /echo…            JSON { method, url, headers } of what arrived
 *   /status/N         answers status N
 *   /slow?ms=N        answers after N ms
 *   /download?mb=N    streams N MiB of bytes
 *   /upload           counts the request body, answers { bytes, sha256 }
 *   /body             answers JSON { method, url, headers, body } with the request body as text
 *   /sse?events=N&gapMs=M  Server-Sent Events, one every M ms
 *   /reset            destroys the connection without an answer
 *   /redirect?status=N&to=L  answers status N with Location L (never followed by the upstream itself)
 *   /cors             grants CORS to whatever Origin asked, with credentials (a too-generous API)
 *   /ws               WebSocket echo: first message back is the Authorization header seen
 */
export async function startUpstream(): Promise<Upstream> {
  const received: RecordedRequest[] = []
  /** Pending /slow answers, cleared on close so a long one does not keep the test process alive. */
  const slowTimers = new Set<NodeJS.Timeout>()
  const server = createServer((req, res) => {
    received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers })
    const url = new URL(req.url ?? '/', 'http://upstream.invalid')
    const path = url.pathname
    if (path === '/reset') return void req.socket.destroy()
    if (path.startsWith('/status/'))
      return void res.writeHead(Number(path.slice(8)), { 'content-type': 'text/plain' }).end('status')
    if (path === '/redirect') {
      return void res
        .writeHead(Number(url.searchParams.get('status') ?? 302), {
          location: url.searchParams.get('to') ?? '/',
          'content-type': 'text/plain',
        })
        .end('redirect')
    }
    if (path === '/cors') {
      const origin = req.headers.origin ?? '*'
      return void res
        .writeHead(req.method === 'OPTIONS' ? 204 : 200, {
          'access-control-allow-origin': origin,
          'access-control-allow-credentials': 'true',
          'access-control-allow-methods': 'GET, POST, PUT, DELETE',
          'access-control-allow-headers': req.headers['access-control-request-headers'] ?? '*',
          'access-control-expose-headers': 'x-secret',
          'access-control-max-age': '86400',
          vary: 'Origin',
          'content-type': 'text/plain',
        })
        .end(req.method === 'OPTIONS' ? undefined : 'cors')
    }
    if (path === '/slow') {
      const timer = setTimeout(
        () => {
          slowTimers.delete(timer)
          res.end('slow')
        },
        Number(url.searchParams.get('ms') ?? 1000),
      )
      slowTimers.add(timer)
      return
    }
    if (path === '/download') {
      const total = Number(url.searchParams.get('mb') ?? 1) * 1024 * 1024
      const chunk = Buffer.alloc(64 * 1024, 0x61)
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) })
      let sent = 0
      const pump = () => {
        while (sent < total) {
          sent += chunk.length
          if (!res.write(chunk)) return void res.once('drain', pump)
        }
        res.end()
      }
      return pump()
    }
    if (path === '/upload') {
      let bytes = 0
      const hash = createHash('sha256')
      req.on('data', (d: Buffer) => {
        bytes += d.length
        hash.update(d)
      })
      req.on('end', () =>
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify({ bytes, sha256: hash.digest('hex') })),
      )
      return
    }
    if (path === '/body') {
      const chunks: Buffer[] = []
      req.on('data', (d: Buffer) => chunks.push(d))
      req.on('end', () =>
        res.writeHead(200, { 'content-type': 'application/json' }).end(
          JSON.stringify({
            method: req.method,
            url: req.url,
            headers: req.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        ),
      )
      return
    }
    if (path === '/sse') {
      const events = Number(url.searchParams.get('events') ?? 3)
      const gapMs = Number(url.searchParams.get('gapMs') ?? 200)
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
      let n = 0
      const tick = () => {
        res.write(`id: ${n}\ndata: event ${n}\n\n`)
        if (++n < events) setTimeout(tick, gapMs)
        else res.end()
      }
      return tick()
    }
    req.resume()
    req.on('end', () => {
      res.writeHead(200, {
        'content-type': 'application/json',
        'set-cookie': ['upstream=1; Path=/', '__Host-gatehouse=planted; Path=/; Secure'],
      })
      res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers }))
    })
  })
  const wss = new WebSocketServer({ noServer: true })
  server.on('upgrade', (req, socket, head) => {
    received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers })
    if (!req.url?.startsWith('/ws')) return void socket.destroy()
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.send(JSON.stringify({ authorization: req.headers.authorization ?? null, cookie: req.headers.cookie ?? null }))
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    server,
    received,
    close: async () => {
      for (const timer of slowTimers) clearTimeout(timer)
      slowTimers.clear()
      for (const client of wss.clients) client.terminate()
      wss.close()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/** Asks the IdP whether it accepts a token (RFC 7662), as the test client. */
export async function introspect(
  issuer: string,
  token: string,
  clientId: string,
  clientSecret: string,
): Promise<Record<string, unknown>> {
  const meta = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as {
    introspection_endpoint: string
  }
  const res = await fetch(meta.introspection_endpoint, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ token }),
  })
  return (await res.json()) as Record<string, unknown>
}
