import { Pool } from 'undici'

/** How a wait for a connection ended: one was handed over, the queue was full, the wait ran out, or the client left. */
export type WaitOutcome = 'granted' | 'full' | 'timeout' | 'aborted'

interface Waiter {
  grant(): void
}

/**
 * One remote API's upstream connections: an undici Pool of `connections`, and in front of it a
 * bounded first-come queue of requests waiting for one. undici's own queue has no bound, and its
 * headersTimeout starts only once a request has a connection, so a pool held by slow requests would
 * make every later request wait without limit. gatehouse therefore never hands the pool more
 * requests than it has connections: a request either takes a free one at once (`tryAcquire`, no
 * promise and no timer), or waits in the queue for at most the time it is given, or is refused.
 */
export class ApiPool {
  readonly dispatcher: Pool
  readonly connections: number
  readonly queueLimit: number
  #inFlight = 0
  /** In arrival order (a Set keeps insertion order): the first waiter gets the next free connection. */
  readonly #waiting = new Set<Waiter>()

  constructor(origin: string, connections: number, queueLimit: number) {
    this.connections = connections
    this.queueLimit = queueLimit
    this.dispatcher = new Pool(origin, { connections, keepAliveTimeout: 10_000, connect: { timeout: 10_000 } })
  }

  /** Requests holding a connection now. */
  get inFlight(): number {
    return this.#inFlight
  }

  /** Requests waiting for one. */
  get queued(): number {
    return this.#waiting.size
  }

  /** Takes a free connection if there is one. */
  tryAcquire(): boolean {
    if (this.#inFlight >= this.connections) return false
    this.#inFlight++
    return true
  }

  /**
   * Waits, behind those already waiting, for a connection; at most `timeoutMs`. 'granted' means the
   * caller now holds one and must `release()` it.
   */
  wait(timeoutMs: number, signal?: AbortSignal): Promise<WaitOutcome> {
    if (this.#waiting.size >= this.queueLimit) return Promise.resolve('full')
    if (signal?.aborted) return Promise.resolve('aborted')
    return new Promise((resolve) => {
      const end = (outcome: WaitOutcome) => {
        this.#waiting.delete(waiter)
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        resolve(outcome)
      }
      const onAbort = () => end('aborted')
      const waiter: Waiter = { grant: () => end('granted') }
      const timer = setTimeout(() => end('timeout'), Math.max(0, timeoutMs))
      timer.unref()
      signal?.addEventListener('abort', onAbort, { once: true })
      this.#waiting.add(waiter)
    })
  }

  /** Gives a connection back: to the first waiter, or to the free ones. */
  release(): void {
    for (const waiter of this.#waiting) {
      waiter.grant()
      return
    }
    this.#inFlight--
  }

  async close(): Promise<void> {
    await this.dispatcher.close().catch(() => this.dispatcher.destroy())
  }
}
