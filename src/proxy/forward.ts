import type { IncomingMessage, ServerResponse } from 'node:http'
import { Transform, type Readable } from 'node:stream'
import type { Span } from '@opentelemetry/api'
import type { Pool } from 'undici'
import { GatehouseError } from '../errors.ts'
import type { Credentials } from '../tokens/credentials.ts'
import { dpopProof, type DpopKey } from '../tokens/dpop.ts'
import type { TokenOutcome } from '../tokens/tokens.ts'
import { span } from '../ops/tracing.ts'
import { isEventStreamAnswer, type ClientPlace } from './client-limits.ts'
import { corsUpstreamHeaders, downstreamResponseHeaders, upstreamRequestHeaders } from './headers.ts'
import type { ApiMatch } from './routes.ts'
import type { Upstreams } from './upstreams.ts'

const NO_BODY = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS'])

/**
 * Streams the request to the API and the answer back (SPEC §5): no buffering either way, so large
 * bodies and Server-Sent Events pass through as they come. Errors before the answer starts are
 * thrown as 502/504 problems; after that the only honest signal left is closing the connection.
 * `origin` is the browser-facing one (X-Forwarded-Host/Proto); `corsGranted` whether the request's
 * Origin is one of `cors.allowedOrigins` (undefined: CORS is off).
 */
export function forward(
  req: IncomingMessage,
  res: ServerResponse,
  match: ApiMatch,
  credentials: Credentials,
  origin: string,
  corsGranted: boolean | undefined,
  upstreams: Upstreams,
  place?: ClientPlace,
): Promise<void> {
  // The API's configured path and the method only: never the request's URL (its query) or headers.
  const attributes = {
    'gatehouse.api': match.api.path,
    'http.request.method': METHODS.has(req.method ?? '') ? req.method! : '_OTHER',
  }
  return span('gatehouse.proxy', attributes, (current) =>
    forwardIn(current, req, res, match, credentials, origin, corsGranted, upstreams, place),
  )
}

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])

async function forwardIn(
  current: Span,
  req: IncomingMessage,
  res: ServerResponse,
  match: ApiMatch,
  credentials: Credentials,
  origin: string,
  corsGranted: boolean | undefined,
  upstreams: Upstreams,
  place: ClientPlace | undefined,
): Promise<void> {
  const { api } = match
  const { token, session } = credentials
  const method = req.method ?? 'GET'
  const hasBody =
    !NO_BODY.has(method) ||
    req.headers['content-length'] !== undefined ||
    req.headers['transfer-encoding'] !== undefined
  // A declared body over the API's limit is refused before any upstream call; a chunked one is cut off when it gets there.
  const declared = Number(req.headers['content-length'] ?? 0)
  if (api.maxBodyBytes !== undefined && declared > api.maxBodyBytes)
    throw new GatehouseError('payload_too_large', `the ${api.path} API accepts at most ${api.maxBodyBytes} bytes`)
  const tooLarge = { hit: false }
  // A body parser mounted before gatehouse has already read the body: forwarding would silently send
  // an empty one. Fail loudly instead (docs/frameworks.md: mount gatehouse before body parsers).
  if (hasBody && req.readableEnded && Number(req.headers['content-length'] ?? 0) > 0) {
    throw new GatehouseError(
      'internal',
      'the request body was consumed before gatehouse: mount gatehouse before body parsers',
    )
  }
  const abort = new AbortController()
  // Only a client that leaves before the answer was ended cancels the upstream call (aborting builds
  // a DOMException: too costly to do for every finished request). 'close' comes once: `on` spares once()'s wrapper.
  res.on('close', () => {
    if (!res.writableEnded) abort.abort()
  })
  // Made before the clock starts: signing is gatehouse's work, not the upstream's latency.
  const proof =
    token.kind === 'token' && token.proofKey ? await proofFor(token.proofKey, method, match, token.value) : undefined
  // The client left while the session or token was being resolved: its 'close' has fired already,
  // so nothing would ever cancel an upstream call made now. Make none.
  if (res.destroyed) return
  // One of the API's connections: a free one at once, else a bounded wait that counts toward the API's
  // timeout (503 upstream_busy past it, or when too many already wait).
  const pool = upstreams.pool(api)
  const waitStartedAt = performance.now()
  if (!pool.tryAcquire()) {
    try {
      if ((await upstreams.wait(api, pool, api.timeoutMs, abort.signal)) === 'aborted') return
    } catch (err) {
      current.setAttribute('http.response.status_code', 503)
      throw err
    }
    if (res.destroyed) return void pool.release()
  }
  const release = once(() => pool.release())
  const { limits } = upstreams
  const stalled = { hit: false }
  const onBodyIdle = () => {
    stalled.hit = true
    upstreams.refused(api, 'body_idle')
    // Before the answer: a 408 (the connection then closes: the rest of that body will never be read).
    // After: the connection is all there is to end. Either way the upstream call ends, freeing its connection.
    if (res.headersSent) return void res.destroy()
    res.setHeader('connection', 'close')
    abort.abort()
  }
  let upstream: Awaited<ReturnType<Pool['request']>>
  const startedAt = performance.now()
  try {
    upstream = await pool.dispatcher.request({
      path: match.upstreamPath,
      method: method as 'GET',
      headers: upstreamHeadersFor(req, origin, token, upstreams, false, proof),
      body: hasBody
        ? requestBody(req, { limit: api.maxBodyBytes, tooLarge, idleMs: limits.bodyIdleTimeoutMs, onIdle: onBodyIdle })
        : null,
      signal: abort.signal,
      headersTimeout: Math.max(1, Math.ceil(api.timeoutMs - (startedAt - waitStartedAt))),
      // A stream may idle between events (SSE); the client closing it ends the upstream call.
      bodyTimeout: 0,
    })
  } catch (err) {
    release()
    // The client left before the answer (its 'close' aborted the call): not the API's failure. The
    // access line says 499, no error is logged.
    if (abort.signal.aborted && !stalled.hit && res.destroyed) return
    const failure = stalled.hit
      ? new GatehouseError('body_idle', `the request body sent nothing for ${limits.bodyIdleTimeoutMs} ms`)
      : tooLarge.hit
        ? new GatehouseError('payload_too_large', `the ${api.path} API accepts at most ${api.maxBodyBytes} bytes`)
        : upstreamFailure(err, api.path, api.timeoutMs)
    current.setAttribute('http.response.status_code', failure.status)
    throw failure
  } finally {
    upstreams.answered(api, performance.now() - startedAt)
  }
  // The connection is the API's again once the answer has been read to its end or abandoned.
  upstream.body.once('close', release)
  // The upstream has acted on the request: it is never refused now, only counted as a stream when a place is free.
  if (isEventStreamAnswer(upstream.headers['content-type'])) place?.toStream()
  // A user's token from the session (not a client token: that answer is the same for everyone) makes the answer private by default.
  const headers = downstreamResponseHeaders(upstream.headers, upstreams.cookieName, {
    userToken: token.kind === 'token' && session !== undefined && api.token !== 'client',
  })
  // Its own CORS headers are gone; gatehouse's (set on res before) stay, with Vary and exposed names to match.
  if (corsGranted !== undefined) corsUpstreamHeaders(headers, corsGranted)
  const cookies = credentials.setCookies
  if (cookies.length) {
    headers['set-cookie'] = [...cookies, ...[headers['set-cookie'] ?? []].flat()]
    // A response that sets gatehouse's cookie must never be stored by a shared cache, whatever the API said.
    headers['cache-control'] = 'no-store'
  }
  current.setAttribute('http.response.status_code', upstream.statusCode)
  try {
    res.writeHead(upstream.statusCode, headers)
  } catch (err) {
    // An answer that cannot be passed on must not keep its connection: nothing else would read it.
    upstream.body.on('error', () => {})
    upstream.body.destroy()
    throw err
  }
  // An answer of unknown length may be a stream that idles (SSE): the browser gets its headers now.
  // A sized one sends them with its first bytes, in one write.
  if (upstream.headers['content-length'] === undefined) res.flushHeaders()
  await relay(upstream.body, res, limits.writeIdleTimeoutMs, () => upstreams.refused(api, 'write_idle'))
}

/**
 * Pipes the answer to the client; resolves once the response is closed, whatever happened. Not
 * `stream.pipeline`: it aborts an AbortController (building a DOMException) on every success.
 */
function relay(body: Readable, res: ServerResponse, writeIdleMs: number, onWriteIdle: () => void): Promise<void> {
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
    res.on('close', () => {
      if (!res.writableFinished) body.destroy()
      resolve()
    })
    if (writeIdleMs > 0) watchWrites(body, res, writeIdleMs, onWriteIdle)
    body.pipe(res)
  })
}

/**
 * A client that accepts nothing of the answer for `idleMs` (its socket's buffers full, so the pipe
 * has paused the body) loses it: it would otherwise hold the API's connection as long as it likes.
 * One timer per answer, armed only while the pipe is paused; a client that reads, however slowly,
 * resumes it.
 */
function watchWrites(body: Readable, res: ServerResponse, idleMs: number, onIdle: () => void): void {
  let paused = false
  let timer: NodeJS.Timeout | undefined
  const check = () => {
    if (!paused || res.destroyed) return
    onIdle()
    // 'close' then destroys the body, which ends the upstream call and frees its connection.
    res.destroy()
  }
  body.on('pause', () => {
    paused = true
    // refresh() re-arms the timer also after it has fired.
    if (timer) timer.refresh()
    else (timer = setTimeout(check, idleMs)).unref()
  })
  body.on('resume', () => {
    paused = false
  })
  res.on('close', () => clearTimeout(timer))
}

/** The DPoP proof for the upstream request `match` makes: its URL is the target's origin and the rewritten path. */
export function proofFor(key: DpopKey, method: string, match: ApiMatch, accessToken: string): Promise<string> {
  // The path as undici sends it, not as the URL parser would re-encode it ("{" stays "{"): an API
  // compares htu with the request it received.
  const path = match.upstreamPath
  const end = path.search(/[?#]/)
  return dpopProof(key, method, `${match.api.origin}${end === -1 ? path : path.slice(0, end)}`, accessToken)
}

/** The upstream request's headers for this request and token (SPEC §5 header hygiene); `origin` is the browser-facing one. */
export function upstreamHeadersFor(
  req: IncomingMessage,
  origin: string,
  token: TokenOutcome,
  upstreams: Upstreams,
  websocket: boolean,
  dpopProof?: string,
): Record<string, string | string[]> {
  return upstreamRequestHeaders(req.headers, {
    antiForgeryHeader: upstreams.antiForgeryHeader,
    bearer: token.kind === 'token' ? token.value : undefined,
    dpopProof,
    clientIp: req.socket.remoteAddress,
    origin,
    trustProxy: upstreams.trustProxy,
    websocket,
  })
}

const TIMEOUTS = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])

export function upstreamFailure(err: unknown, apiPath: string, timeoutMs: number): GatehouseError {
  const code = (err as { code?: string }).code
  if (code && TIMEOUTS.has(code))
    return new GatehouseError('upstream_timeout', `no answer from the ${apiPath} API within ${timeoutMs} ms`, {
      cause: err,
    })
  return new GatehouseError('upstream_unavailable', `the ${apiPath} API could not be reached`, { cause: err })
}

interface BodyOptions {
  /** Largest body passed on; past it the body errors and `tooLarge.hit` is set. Undefined: no limit. */
  limit: number | undefined
  tooLarge: { hit: boolean }
  /** `onIdle` runs once the client has sent nothing for this long while gatehouse was reading; 0: never. */
  idleMs: number
  onIdle: () => void
}

/**
 * The request body as sent upstream: the request itself when nothing is watched, else the request
 * piped through a counter. The counter, not the request, is what undici destroys when the call ends
 * early, so the client's connection stays usable for a 408 or 413 answer.
 */
function requestBody(req: IncomingMessage, o: BodyOptions): Readable {
  const { limit, idleMs } = o
  // A body already received in full (a small JSON POST, usually) has nothing left to stall.
  if (limit === undefined && (idleMs === 0 || req.complete)) return req
  let seen = 0
  let timer: NodeJS.Timeout | undefined
  const counted = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      timer?.refresh()
      seen += chunk.length
      if (limit !== undefined && seen > limit) {
        o.tooLarge.hit = true
        return done(new Error('request body over the limit'))
      }
      done(null, chunk)
    },
  })
  if (idleMs > 0 && !req.complete) {
    // Quiet while gatehouse is not reading (the upstream is slow to take the body, so the pipe paused
    // the request) is not the client's doing: the timer is re-armed then.
    timer = setTimeout(() => {
      if (req.complete || counted.destroyed) return
      if (req.readableFlowing === false || req.readableLength > 0) return void timer!.refresh()
      // Once only: a late chunk must not re-arm it.
      timer = undefined
      o.onIdle()
    }, idleMs)
    timer.unref()
    counted.once('close', () => clearTimeout(timer))
    req.once('end', () => clearTimeout(timer))
  }
  // The client leaving destroys the counting stream with its error; undici may not be listening yet (the
  // request still waits for a connection), and an unheard 'error' would end the process.
  counted.on('error', () => {})
  req.on('error', (err) => counted.destroy(err))
  return req.pipe(counted)
}

/** `fn`, run at its first call only. */
function once(fn: () => void): () => void {
  let done = false
  return () => {
    if (done) return
    done = true
    fn()
  }
}
