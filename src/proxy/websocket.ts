import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { GatehouseError } from '../errors.ts'
import { resolveSession, type Services } from '../http/context.ts'
import { matchOrigin } from '../http/cors.ts'
import { contextFor } from '../http/handle.ts'
import { resourceOf } from '../tokens/resource.ts'
import { proofFor, upstreamFailure, upstreamHeadersFor } from './forward.ts'
import { downstreamResponseHeaders } from './headers.ts'

/**
 * WebSocket upgrades to remote APIs with `websockets: true` (SPEC §5). A browser cannot add the
 * anti-forgery header to a handshake, so the Origin header must be the app's own instead
 * (cross-site WebSocket hijacking). The token is attached like for any API call.
 */
export function createUpgrade(services: Services): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  return (req, socket, head) => {
    socket.on('error', () => socket.destroy())
    upgrade(services, req, socket, head).catch((err: unknown) => {
      const status = err instanceof GatehouseError ? err.status : 500
      if (status >= 500) services.log.warn({ event: 'websocket_failed', status, code: err instanceof GatehouseError ? err.code : 'internal' }, 'websocket upgrade failed')
      refuse(socket, status, err instanceof GatehouseError ? err.retryAfterSec : undefined)
    })
  }
}

async function upgrade(services: Services, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
  const match = services.apis.match(req.url ?? '/')
  if (match === undefined) throw new GatehouseError('not_found')
  if (match === 'escape') throw new GatehouseError('path_escape')
  if (!match.api.websockets || (req.headers.upgrade ?? '').toLowerCase() !== 'websocket') throw new GatehouseError('not_found')
  // RFC 6455 §4.1: the handshake is a GET. Any other method would otherwise be upgraded as a GET
  // upstream, past a `methods` list that refuses it (validation makes GET a must with websockets).
  if (req.method !== 'GET') throw new GatehouseError('method_not_allowed')
  const ctx = contextFor(req, services)
  if (ctx.invalid) throw ctx.invalid
  // An SPA on one of cors.allowedOrigins may open them too (a handshake is not subject to CORS: this is the check).
  if (req.headers.origin !== ctx.origin && (services.cors === undefined || matchOrigin(services.cors, req.headers.origin) === undefined)) {
    throw new GatehouseError('forbidden', 'the WebSocket Origin is not this application')
  }
  const session = match.api.token === 'none' ? undefined : await resolveSession(ctx, true)
  // A WebSocket is a long-lived stream: one of the client's `limits.perClientStreams`, held until the socket closes.
  if (!services.upstreams.admit(req, socket, match.api, session, 'stream')) return
  const token = await services.tokens.tokenFor(session, match.api.token, ctx.partition, resourceOf(match.api))
  if (token.kind === 'token' && token.refreshed) await services.sessions.persist(token.refreshed, ctx.cookies, ctx.setCookies)
  const { config } = services
  // The handshake is an HTTP GET to the http(s) target: that is the proof's htm and htu (RFC 9449 §4.2).
  const proof = token.kind === 'token' && token.proofKey ? await proofFor(token.proofKey, 'GET', match, token.value) : undefined
  // The handshake holds one of the API's connections until the upgrade (the upgraded socket then leaves the pool);
  // the wait for it counts toward the API's timeout.
  const pool = services.upstreams.pool(match.api)
  const waitStartedAt = performance.now()
  if (!pool.tryAcquire()) {
    // A client that leaves while queued gives its place in the queue back at once.
    const gone = new AbortController()
    const onClose = () => gone.abort()
    socket.once('close', onClose)
    try {
      if ((await services.upstreams.wait(match.api, pool, match.api.timeoutMs, gone.signal)) === 'aborted') return
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
      headers: upstreamHeadersFor(ctx, token, true, proof),
      signal: AbortSignal.timeout(Math.max(1, Math.ceil(match.api.timeoutMs - (performance.now() - waitStartedAt)))),
    })
  } catch (err) {
    throw upstreamFailure(err, match.api.path, match.api.timeoutMs)
  } finally {
    pool.release()
  }
  if (socket.destroyed) return void upstream.socket.destroy()
  const headers = downstreamResponseHeaders(upstream.headers as Record<string, string | string[]>, config.session.cookieName)
  let response = 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n'
  for (const [name, value] of Object.entries(headers)) for (const item of [value].flat()) response += `${name}: ${item}\r\n`
  if (ctx.setCookies.length) response += 'cache-control: no-store\r\n'
  for (const cookie of ctx.setCookies) response += `set-cookie: ${cookie}\r\n`
  socket.write(`${response}\r\n`)
  if (head.length) upstream.socket.write(head)
  upstream.socket.on('error', () => socket.destroy())
  socket.on('close', () => upstream.socket.destroy())
  upstream.socket.on('close', () => socket.destroy())
  socket.pipe(upstream.socket).pipe(socket)
}

const REASONS: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 421: 'Misdirected Request', 429: 'Too Many Requests', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout' }

function refuse(socket: Duplex, status: number, retryAfterSec?: number): void {
  if (!socket.writable) return void socket.destroy()
  const retry = retryAfterSec === undefined ? '' : `Retry-After: ${retryAfterSec}\r\n`
  // Then closed from our side: a client that keeps its half open must not keep the socket (and its place).
  socket.end(`HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\nConnection: close\r\n${retry}Content-Length: 0\r\n\r\n`, () => socket.destroy())
}
