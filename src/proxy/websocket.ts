import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Credentials } from '../tokens/credentials.ts'
import { proofFor, upstreamFailure, upstreamHeadersFor } from './forward.ts'
import { downstreamResponseHeaders } from './headers.ts'
import type { ApiMatch } from './routes.ts'
import type { Upstreams } from './upstreams.ts'

/**
 * Forwards a WebSocket handshake the upgrade entry (src/http/upgrade.ts) accepted to the API and, once
 * the API switches protocols, pipes the two sockets into each other (SPEC §5). The token is attached
 * like for every API call; `origin` is the browser-facing one (X-Forwarded-Host/Proto).
 */
export async function forwardUpgrade(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  match: ApiMatch,
  credentials: Credentials,
  origin: string,
  upstreams: Upstreams,
): Promise<void> {
  const { token } = credentials
  // The handshake is an HTTP GET to the http(s) target: that is the proof's htm and htu (RFC 9449 §4.2).
  const proof =
    token.kind === 'token' && token.proofKey ? await proofFor(token.proofKey, 'GET', match, token.value) : undefined
  // The handshake holds one of the API's connections until the upgrade (the upgraded socket then leaves the pool);
  // the wait for it counts toward the API's timeout.
  const pool = upstreams.pool(match.api)
  const waitStartedAt = performance.now()
  if (!pool.tryAcquire()) {
    // A client that leaves while queued gives its place in the queue back at once.
    const gone = new AbortController()
    const onClose = () => gone.abort()
    socket.once('close', onClose)
    try {
      if ((await upstreams.wait(match.api, pool, match.api.timeoutMs, gone.signal)) === 'aborted') return
    } finally {
      socket.off('close', onClose)
    }
  }
  let upstream: Awaited<ReturnType<typeof pool.dispatcher.upgrade>>
  try {
    if (socket.destroyed) return
    upstream = await pool.dispatcher.upgrade({
      path: match.upstreamPath,
      method: 'GET',
      protocol: 'websocket',
      headers: upstreamHeadersFor(req, origin, token, upstreams, true, proof),
      signal: AbortSignal.timeout(Math.max(1, Math.ceil(match.api.timeoutMs - (performance.now() - waitStartedAt)))),
    })
  } catch (err) {
    throw upstreamFailure(err, match.api.path, match.api.timeoutMs)
  } finally {
    pool.release()
  }
  if (socket.destroyed) return void upstream.socket.destroy()
  const headers = downstreamResponseHeaders(upstream.headers as Record<string, string | string[]>, upstreams.cookieName)
  let response = 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n'
  for (const [name, value] of Object.entries(headers))
    for (const item of [value].flat()) response += `${name}: ${item}\r\n`
  const cookies = credentials.setCookies
  if (cookies.length) response += 'cache-control: no-store\r\n'
  for (const cookie of cookies) response += `set-cookie: ${cookie}\r\n`
  socket.write(`${response}\r\n`)
  if (head.length) upstream.socket.write(head)
  upstream.socket.on('error', () => socket.destroy())
  socket.on('close', () => upstream.socket.destroy())
  upstream.socket.on('close', () => socket.destroy())
  socket.pipe(upstream.socket).pipe(socket)
}
