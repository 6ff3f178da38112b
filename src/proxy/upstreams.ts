import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Config } from '../config/types.ts'
import { GatehouseError } from '../errors.ts'
import type { ProxyRefusal, Telemetry } from '../ops/metrics.ts'
import type { Session } from '../session/session.ts'
import { ApiPool, type WaitOutcome } from './api-pool.ts'
import {
  addressKey,
  clientAddress,
  ClientLimits,
  isEventStreamRequest,
  type ClientPlace,
  type PlaceKind,
} from './client-limits.ts'
import type { RemoteApi } from './routes.ts'

/** Seconds a client over its cap is told to wait: one of its own requests usually ends by then. */
const PER_CLIENT_RETRY_AFTER_SEC = 1
/** Seconds a client is told to wait when an API's pool is saturated: long enough to let it drain a little. */
const BUSY_RETRY_AFTER_SEC = 2

/**
 * What the proxy holds of the upstreams, and what each client may hold of that: one keep-alive pool
 * per remote API (not per origin: one API's held requests never starve another API on the same host),
 * each with a bounded wait queue (src/proxy/api-pool.ts), and per-client caps on requests in flight.
 * Only configured targets ever get a pool. Also the few settings the proxied requests' headers need.
 */
export class Upstreams {
  readonly #pools = new Map<string, ApiPool>()
  readonly #clients: ClientLimits
  readonly #config: Pick<Config, 'limits' | 'trustProxy'>
  readonly #telemetry: Telemetry | undefined
  /** The anti-forgery header's name in lower case: never forwarded. */
  readonly antiForgeryHeader: string
  /** The session cookie's name: every gatehouse cookie starts with it, and no upstream may set one (src/proxy/headers.ts). */
  readonly cookieName: string
  readonly trustProxy: boolean

  constructor(
    config: Pick<Config, 'limits' | 'trustProxy' | 'remoteApis' | 'antiForgery' | 'session'>,
    telemetry?: Telemetry,
  ) {
    this.#config = config
    this.#clients = new ClientLimits(config.limits)
    this.#telemetry = telemetry
    this.antiForgeryHeader = config.antiForgery.header.toLowerCase()
    this.cookieName = config.session.cookieName
    this.trustProxy = config.trustProxy
    telemetry?.watchProxyPools(
      config.remoteApis.map((api) => api.path),
      () => [...this.#pools].map(([api, pool]) => ({ api, inFlight: pool.inFlight, queued: pool.queued })),
    )
  }

  get limits(): Config['limits'] {
    return this.#config.limits
  }

  /** The API's own pool (made at its first request). */
  pool(api: RemoteApi): ApiPool {
    let pool = this.#pools.get(api.path)
    if (!pool) {
      pool = new ApiPool(api.origin, api.connections, api.queue)
      this.#pools.set(api.path, pool)
    }
    return pool
  }

  /**
   * A place for this request among its client's (`limits.perClient`, or `limits.perClientStreams` for a
   * WebSocket or an event stream), given back when `closed` emits 'close' — however the request ends.
   * The client is its session, else its address as `trustProxy` resolves it. Throws 429
   * too_many_requests when the client holds all its places. Undefined when the request is already gone
   * (its 'close' has fired: nothing would give the place back, and no upstream call is made for it).
   */
  admit(
    req: IncomingMessage,
    closed: ServerResponse | Duplex,
    api: RemoteApi,
    session: Session | undefined,
    kind: PlaceKind = isEventStreamRequest(req.headers) ? 'stream' : 'request',
  ): ClientPlace | undefined {
    if (closed.destroyed) return undefined
    // A user's sessions share one key (a new login is no new allowance); anonymous clients go by address.
    const forwarded = session ? undefined : addressKey(clientAddress(req, this.#config.trustProxy))
    // An unreadable forwarded address must not put every such client under one key: the socket's then.
    const client = session
      ? `user ${session.partition} ${session.data.issuer ?? ''} ${session.sub}`
      : forwarded === 'unknown'
        ? addressKey(req.socket.remoteAddress)
        : forwarded!
    const place = this.#clients.take(client, kind)
    if (!place) throw this.#tooMany(api, kind)
    closed.once('close', place.release)
    return place
  }

  /** Waits for a connection of `api`'s pool; throws 503 upstream_busy when the queue is full or the wait runs out. */
  async wait(api: RemoteApi, pool: ApiPool, timeoutMs: number, signal?: AbortSignal): Promise<'granted' | 'aborted'> {
    const started = performance.now()
    const outcome = await pool.wait(timeoutMs, signal)
    if (outcome !== 'full') this.#telemetry?.proxyWaited(api.path, performance.now() - started)
    if (outcome === 'granted' || outcome === 'aborted') return outcome
    throw this.#busy(api, pool, outcome)
  }

  refused(api: RemoteApi, reason: ProxyRefusal): void {
    this.#telemetry?.proxyRefused(api.path, reason)
  }

  /** How long the API took to answer (or fail), from the upstream call's start to its headers. */
  answered(api: RemoteApi, durationMs: number): void {
    this.#telemetry?.proxied(api.path, durationMs)
  }

  #tooMany(api: RemoteApi, kind: PlaceKind): GatehouseError {
    this.refused(api, kind === 'stream' ? 'per_client_streams' : 'per_client')
    const what =
      kind === 'stream'
        ? `${this.#clients.limit('stream')} streams (WebSockets, event streams)`
        : `${this.#clients.limit('request')} requests`
    return new GatehouseError(
      'too_many_requests',
      `this client already has ${what} in flight through gatehouse; retry once one has ended`,
      { retryAfterSec: PER_CLIENT_RETRY_AFTER_SEC },
    )
  }

  #busy(api: RemoteApi, pool: ApiPool, outcome: Exclude<WaitOutcome, 'granted' | 'aborted'>): GatehouseError {
    this.refused(api, 'upstream_busy')
    const why =
      outcome === 'full'
        ? `its ${pool.connections} connections are in use and ${pool.queueLimit} requests already wait`
        : `none of its ${pool.connections} connections became free within ${api.timeoutMs} ms`
    return new GatehouseError('upstream_busy', `the ${api.path} API is busy: ${why}`, {
      retryAfterSec: BUSY_RETRY_AFTER_SEC,
    })
  }

  async close(): Promise<void> {
    await Promise.all([...this.#pools.values()].map((pool) => pool.close()))
    this.#pools.clear()
  }
}
