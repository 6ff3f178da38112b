import type { IncomingMessage, ServerResponse } from 'node:http'
import { Transform, type Readable } from 'node:stream'
import type { Span } from '@opentelemetry/api'
import { Pool } from 'undici'
import { GatehouseError } from '../errors.ts'
import type { RequestContext } from '../http/context.ts'
import { corsUpstreamHeaders, matchOrigin } from '../http/cors.ts'
import type { Session } from '../session/session.ts'
import { dpopProof, type DpopKey } from '../tokens/dpop.ts'
import type { TokenOutcome } from '../tokens/tokens.ts'
import { span } from '../ops/tracing.ts'
import { downstreamResponseHeaders, upstreamRequestHeaders } from './headers.ts'
import type { ApiMatch } from './routes.ts'

/** Keep-alive connection pools, one per upstream origin; only configured targets ever get one. */
export class Upstreams {
  readonly #pools = new Map<string, Pool>()

  pool(origin: string): Pool {
    let pool = this.#pools.get(origin)
    if (!pool) {
      pool = new Pool(origin, { connections: 128, keepAliveTimeout: 10_000, connect: { timeout: 10_000 } })
      this.#pools.set(origin, pool)
    }
    return pool
  }

  async close(): Promise<void> {
    await Promise.all([...this.#pools.values()].map((pool) => pool.close().catch(() => pool.destroy())))
    this.#pools.clear()
  }
}

const NO_BODY = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS'])

/**
 * Streams the request to the API and the answer back (SPEC §5): no buffering either way, so large
 * bodies and Server-Sent Events pass through as they come. Errors before the answer starts are
 * thrown as 502/504 problems; after that the only honest signal left is closing the connection.
 */
export function forward(ctx: RequestContext, res: ServerResponse, match: ApiMatch, token: TokenOutcome, upstreams: Upstreams, session: Session | undefined): Promise<void> {
  // The API's configured path and the method only: never the request's URL (its query) or headers.
  const attributes = { 'gatehouse.api': match.api.path, 'http.request.method': METHODS.has(ctx.req.method ?? '') ? ctx.req.method! : '_OTHER' }
  return span('gatehouse.proxy', attributes, (current) => forwardIn(current, ctx, res, match, token, upstreams, session))
}

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])

async function forwardIn(current: Span, ctx: RequestContext, res: ServerResponse, match: ApiMatch, token: TokenOutcome, upstreams: Upstreams, session: Session | undefined): Promise<void> {
  const { req } = ctx
  const { api } = match
  const method = req.method ?? 'GET'
  const hasBody = !NO_BODY.has(method) || req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined
  // A declared body over the API's limit is refused before any upstream call; a chunked one is cut off when it gets there.
  const declared = Number(req.headers['content-length'] ?? 0)
  if (api.maxBodyBytes !== undefined && declared > api.maxBodyBytes) throw new GatehouseError('payload_too_large', `the ${api.path} API accepts at most ${api.maxBodyBytes} bytes`)
  const tooLarge = { hit: false }
  // A body parser mounted before gatehouse has already read the body: forwarding would silently send
  // an empty one. Fail loudly instead (docs/frameworks.md: mount gatehouse before body parsers).
  if (hasBody && req.readableEnded && Number(req.headers['content-length'] ?? 0) > 0) {
    throw new GatehouseError('internal', 'the request body was consumed before gatehouse: mount gatehouse before body parsers')
  }
  const abort = new AbortController()
  // Only a client that leaves before the answer was ended cancels the upstream call (aborting builds
  // a DOMException: too costly to do for every finished request).
  res.once('close', () => {
    if (!res.writableEnded) abort.abort()
  })
  // Made before the clock starts: signing is gatehouse's work, not the upstream's latency.
  const proof = token.kind === 'token' && token.proofKey ? await proofFor(token.proofKey, method, match, token.value) : undefined
  // The client left while the session or token was being resolved: its 'close' has fired already,
  // so nothing would ever cancel an upstream call made now. Make none.
  if (res.destroyed) return
  let upstream: Awaited<ReturnType<Pool['request']>>
  const startedAt = performance.now()
  try {
    upstream = await upstreams.pool(api.origin).request({
      path: match.upstreamPath,
      method: method as 'GET',
      headers: upstreamHeadersFor(ctx, token, false, proof),
      body: hasBody ? limitBody(req, api.maxBodyBytes, tooLarge) : null,
      signal: abort.signal,
      headersTimeout: api.timeoutMs,
      // A stream may idle between events (SSE); the client closing it ends the upstream call.
      bodyTimeout: 0,
    })
  } catch (err) {
    const failure = tooLarge.hit ? new GatehouseError('payload_too_large', `the ${api.path} API accepts at most ${api.maxBodyBytes} bytes`) : upstreamFailure(err, api.path, api.timeoutMs)
    current.setAttribute('http.response.status_code', failure.status)
    throw failure
  } finally {
    ctx.services.telemetry.proxied(api.path, performance.now() - startedAt)
  }
  const { config, sessions } = ctx.services
  const headers = downstreamResponseHeaders(upstream.headers, config.session.cookieName)
  // Its own CORS headers are gone; gatehouse's (set on res before) stay, with Vary and exposed names to match.
  if (ctx.services.cors !== undefined) corsUpstreamHeaders(headers, matchOrigin(ctx.services.cors, ctx.req.headers.origin) !== undefined)
  // A logout that happened while the upstream was answering wins over a cookie rewrite queued before it.
  const cookies = session && sessions.hasEnded(session) ? [] : ctx.setCookies
  if (cookies.length) {
    headers['set-cookie'] = [...cookies, ...[headers['set-cookie'] ?? []].flat()]
    // A response that sets gatehouse's cookie must never be stored by a shared cache, whatever the API said.
    headers['cache-control'] = 'no-store'
  }
  current.setAttribute('http.response.status_code', upstream.statusCode)
  res.writeHead(upstream.statusCode, headers)
  // An answer of unknown length may be a stream that idles (SSE): the browser gets its headers now.
  // A sized one sends them with its first bytes, in one write.
  if (upstream.headers['content-length'] === undefined) res.flushHeaders()
  await relay(upstream.body, res)
}

/**
 * Pipes the answer to the client; resolves once the response is closed, whatever happened. Not
 * `stream.pipeline`: it aborts an AbortController (building a DOMException) on every success.
 */
function relay(body: Readable, res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    if (res.destroyed) {
      // Piping into a closed response would pause the body forever and pin its upstream connection.
      body.on('error', () => {})
      body.destroy()
      resolve()
      return
    }
    // Upstream reset mid-stream or the client went away: end both sides, the process keeps serving.
    // The listener stays: the body may emit its abort error after being destroyed, and an unheard
    // error would end the process.
    body.on('error', () => {
      res.destroy()
    })
    res.once('close', () => {
      if (!res.writableFinished) body.destroy()
      resolve()
    })
    body.pipe(res)
  })
}

/** The DPoP proof for the upstream request `match` makes: its URL is the target's origin and the rewritten path. */
export function proofFor(key: DpopKey, method: string, match: ApiMatch, accessToken: string): Promise<string> {
  // The path as undici sends it, not as the URL parser would re-encode it ("{" stays "{"): an API
  // compares htu with the request it received.
  const path = match.upstreamPath
  const end = path.search(/[?#]/)
  return dpopProof(key, method, `${match.api.origin}${end === -1 ? path : path.slice(0, end)}`, accessToken)
}

/** The upstream request's headers for this request and token (SPEC §5 header hygiene). */
export function upstreamHeadersFor(ctx: RequestContext, token: TokenOutcome, websocket: boolean, dpopProof?: string): Record<string, string | string[]> {
  const { config } = ctx.services
  return upstreamRequestHeaders(ctx.req.headers, {
    antiForgeryHeader: config.antiForgery.header.toLowerCase(),
    bearer: token.kind === 'token' ? token.value : undefined,
    dpopProof,
    clientIp: ctx.req.socket.remoteAddress,
    origin: ctx.origin,
    trustProxy: config.trustProxy,
    websocket,
  })
}

const TIMEOUTS = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])

export function upstreamFailure(err: unknown, apiPath: string, timeoutMs: number): GatehouseError {
  const code = (err as { code?: string }).code
  if (code && TIMEOUTS.has(code)) return new GatehouseError('upstream_timeout', `no answer from the ${apiPath} API within ${timeoutMs} ms`, { cause: err })
  return new GatehouseError('upstream_unavailable', `the ${apiPath} API could not be reached`, { cause: err })
}

/** The request body, cut off with an error once it passes `limit` bytes (no limit: the request itself). */
function limitBody(req: IncomingMessage, limit: number | undefined, state: { hit: boolean }): Readable {
  if (limit === undefined) return req
  let seen = 0
  const counted = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      seen += chunk.length
      if (seen > limit) {
        state.hit = true
        return done(new Error('request body over the limit'))
      }
      done(null, chunk)
    },
  })
  req.on('error', (err) => counted.destroy(err))
  return req.pipe(counted)
}
