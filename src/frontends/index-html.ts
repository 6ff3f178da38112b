import { createHash } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'

/** What a CDN-hosted frontend serves for every navigation: its index.html, fetched and cached. */
export class RemoteIndexHtml {
  readonly #url: string
  readonly #ttlMs: number
  readonly #now: () => number
  #cached: { body: Buffer; type: string; fetchedAt: number; etag: string } | undefined
  #pending: Promise<void> | undefined

  constructor(url: string, options: { ttlMs: number; now?: () => number }) {
    this.#url = url
    this.#ttlMs = options.ttlMs
    this.#now = options.now ?? Date.now
  }

  /**
   * Serves the cached copy while it is fresh, refetches after the TTL, and keeps serving the stale
   * copy when a refetch fails (stale-while-error). Only a first fetch that fails is a 502.
   * `extraHeaders` go on the 200 and the 304 (a client-side route's `Vary`).
   */
  async serve(
    req: IncomingMessage,
    res: ServerResponse,
    extraHeaders: Readonly<Record<string, string>> = {},
  ): Promise<'served' | 'unavailable'> {
    if (!this.#cached || this.#now() - this.#cached.fetchedAt > this.#ttlMs) {
      this.#pending ??= this.#fetch().finally(() => {
        this.#pending = undefined
      })
      await this.#pending.catch(() => undefined)
    }
    const page = this.#cached
    if (!page) return 'unavailable'
    const headers = {
      'content-type': page.type,
      etag: page.etag,
      'cache-control': 'no-cache',
      'x-content-type-options': 'nosniff',
      ...extraHeaders,
    }
    if (req.headers['if-none-match'] === page.etag) {
      res.writeHead(304, headers).end()
      return 'served'
    }
    res.writeHead(200, { ...headers, 'content-length': String(page.body.length) })
    res.end(req.method === 'HEAD' ? undefined : page.body)
    return 'served'
  }

  async #fetch(): Promise<void> {
    const answer = await fetch(this.#url, { signal: AbortSignal.timeout(10_000), redirect: 'follow' })
    if (!answer.ok) throw new Error(`index.html fetch answered ${answer.status}`)
    const body = Buffer.from(await answer.arrayBuffer())
    this.#cached = {
      body,
      type: answer.headers.get('content-type') ?? 'text/html; charset=utf-8',
      fetchedAt: this.#now(),
      etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`,
    }
  }
}
