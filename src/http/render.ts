import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import { describeError, GatehouseError } from '../errors.ts'
import type { RequestContext } from './context.ts'
import { BASE_HEADERS, problemJson, problemPage, type Reply } from './reply.ts'

/** API routes answer problem+json; page routes (a browser navigates there) answer a small HTML page. */
export type ReplyKind = 'api' | 'page'

/** What writing a reply needs of its request: its method (no body for HEAD) and the Set-Cookie lines its steps queued. */
export interface ReplyTarget {
  req: IncomingMessage
  setCookies: readonly string[]
}

/** Writes a Reply: gatehouse's base headers, the reply's own, every queued Set-Cookie line, the body (not for HEAD). */
export function writeReply(res: ServerResponse, reply: Reply, target: ReplyTarget): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  res.statusCode = reply.status
  for (const [name, value] of Object.entries(BASE_HEADERS)) res.setHeader(name, value)
  for (const [name, value] of Object.entries(reply.headers)) res.setHeader(name, value)
  const cookies = [...target.setCookies, ...(reply.cookies ?? [])]
  if (cookies.length) res.setHeader('set-cookie', cookies)
  if (reply.body !== undefined) res.setHeader('content-length', Buffer.byteLength(reply.body))
  res.end(target.req.method === 'HEAD' ? undefined : reply.body)
}

/** Renders an error for the client and logs what the client must not see. */
export function failureReply(err: unknown, ctx: { log: Logger; requestId: string }, kind: ReplyKind): Reply {
  const status = err instanceof GatehouseError ? err.status : 500
  const report = err instanceof GatehouseError ? err.report : undefined
  // One line per failure: the report explains it to the operator (src/errors.ts FailureReport).
  if (report)
    ctx.log[status >= 500 ? 'error' : 'warn'](
      { requestId: ctx.requestId, ...report, status, ...(status >= 500 ? { err: describeError(err) } : {}) },
      err instanceof Error ? err.message : 'request failed',
    )
  // A busy API is load, not a fault: one warn line each (an attack would otherwise flood the error level).
  else if (err instanceof GatehouseError && err.code === 'upstream_busy')
    ctx.log.warn(
      { requestId: ctx.requestId, event: 'upstream_busy', err: describeError(err) },
      'request refused: the API is busy',
    )
  else if (status >= 500) ctx.log.error({ requestId: ctx.requestId, err: describeError(err) }, 'request failed')
  // Refused parameters are problem+json with `errors` on every route (SPEC §3), page routes included.
  const parameterErrors = err instanceof GatehouseError && err.errors !== undefined
  return kind === 'page' && !parameterErrors ? problemPage(err, ctx.requestId) : problemJson(err, ctx.requestId)
}

/**
 * Last resort for a failure outside an endpoint's reply (a proxied call, writing a reply, a protected
 * app handler that threw): a GatehouseError keeps its status (e.g. session_ended from getAccessToken
 * → 401), anything else is a 500 without internals. After the answer started, the connection is all
 * that can be closed. Returns the status answered.
 */
export function abort(res: ServerResponse, ctx: RequestContext, err: unknown, allow?: string): number {
  if (res.headersSent) {
    ctx.log.error({ requestId: ctx.requestId, err: describeError(err) }, 'response failed after it started')
    res.destroy()
    return res.statusCode
  }
  // The session is gone: so is its cookie.
  if (err instanceof GatehouseError && err.code === 'session_ended')
    ctx.services.sessions.clearCookies(ctx.cookies, ctx.partition, ctx.setCookies)
  const reply = failureReply(err, ctx, 'api')
  if (reply.status === 405 && allow !== undefined) reply.headers.allow = allow
  try {
    writeReply(res, reply, ctx)
  } catch {
    res.destroy()
  }
  return reply.status
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  421: 'Misdirected Request',
  429: 'Too Many Requests',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
}

/**
 * A refused WebSocket handshake, written to the raw socket (there is no ServerResponse for an
 * upgrade): the error's status and Retry-After, no body.
 */
export function refuseUpgrade(socket: Duplex, err: unknown): void {
  if (!socket.writable) return void socket.destroy()
  const status = err instanceof GatehouseError ? err.status : 500
  const retryAfterSec = err instanceof GatehouseError ? err.retryAfterSec : undefined
  const retry = retryAfterSec === undefined ? '' : `Retry-After: ${retryAfterSec}\r\n`
  // Then closed from our side: a client that keeps its half open must not keep the socket (and its place).
  socket.end(
    `HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\nConnection: close\r\n${retry}Content-Length: 0\r\n\r\n`,
    () => socket.destroy(),
  )
}
