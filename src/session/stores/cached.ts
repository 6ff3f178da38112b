import {
  capabilities,
  matchesFilter,
  type Countable,
  type FreshReadable,
  type LeaseCapable,
  type NoticeCapable,
  type SessionEndNotice,
  type SessionFilter,
  type SessionRecord,
  type SessionStore,
} from '../store.ts'

const MAX_ENTRIES = 10_000

interface Entry {
  record: SessionRecord
  /** When it was read from (or written to) the store. */
  at: number
}

/**
 * A short-lived in-process copy of session records in front of a networked store (Redis,
 * PostgreSQL), so that a burst of API calls on one session costs one store round trip, not one each.
 *
 * Revocation stays effective across instances: an entry is dropped as soon as the store's pub/sub
 * says its session ended (logout, back-channel logout, a replacing login, revocation on any instance
 * or from the CLI; the ending instance answers only after the store took the notice), and nothing
 * is served from the cache while that subscription is down. `ttlMs` bounds what pub/sub does
 * not carry: another instance's token refresh or sliding renewal (its writes are compare-and-set, so
 * an old copy can never be written back), or a notice lost in a reconnect.
 *
 * Only `get` is cached. `getFresh` (token refresh, re-reads after a lost race) and every write go to
 * the store; writes and deletes through this object update or drop the entry at once. The inner
 * store's other capabilities (leases, notices, count) are passed through when it has them.
 */
export class CachedStore implements SessionStore, FreshReadable {
  readonly #inner: SessionStore
  readonly #notices: NoticeCapable | undefined
  readonly #ttlMs: number
  readonly #clock: () => number
  readonly #entries = new Map<string, Entry>()
  /** Bumped by every drop: a read that started before one must not put its (maybe ended) record back. */
  #epoch = 0
  #listening = false
  #unsubscribe: (() => Promise<void>) | undefined
  readonly #followers = new Set<{
    listener: (notice: SessionEndNotice) => void
    onLink: ((listening: boolean) => void) | undefined
  }>()
  readonly count?: Countable['count']
  readonly acquireLease?: LeaseCapable['acquireLease']
  readonly releaseLease?: LeaseCapable['releaseLease']
  readonly publishEnded?: NoticeCapable['publishEnded']
  readonly subscribeEnded?: NoticeCapable['subscribeEnded']

  constructor(inner: SessionStore, options: { ttlMs: number; clock?: () => number }) {
    this.#inner = inner
    const { count, leases, notices } = capabilities(inner)
    this.#notices = notices
    if (count) this.count = (now) => count.count(now)
    if (leases) {
      this.acquireLease = (name, owner, ttlMs, now) => leases.acquireLease(name, owner, ttlMs, now)
      this.releaseLease = (name, owner) => leases.releaseLease(name, owner)
    }
    if (notices) {
      this.publishEnded = (notice) => notices.publishEnded(notice)
      this.subscribeEnded = (listener, onLink) => this.#follow(notices, listener, onLink)
    }
    this.#ttlMs = options.ttlMs
    this.#clock = options.clock ?? (() => performance.now())
  }

  /** Listens for endings; until this succeeds (and whenever the link is down) every read goes to the store. */
  async start(): Promise<void> {
    if (!this.#notices || this.#unsubscribe) return
    this.#unsubscribe = await this.#notices.subscribeEnded(
      (notice) => {
        // The copy goes first: a follower that reads the store on this notice finds it gone here too.
        this.#drop(notice)
        for (const follower of this.#followers) follower.listener(notice)
      },
      (listening) => {
        this.#clear()
        this.#listening = listening
        for (const follower of this.#followers) follower.onLink?.(listening)
      },
    )
    this.#listening = true
  }

  /**
   * Another subscription to the store's notices (the session-event streams'): it shares the cache's
   * link while that one runs, instead of holding a second connection (a LISTEN connection of the
   * PostgreSQL pool, a Redis subscriber); before start() or after stop(), a link of its own.
   */
  async #follow(
    notices: NoticeCapable,
    listener: (notice: SessionEndNotice) => void,
    onLink?: (listening: boolean) => void,
  ): Promise<() => Promise<void>> {
    if (!this.#unsubscribe) return notices.subscribeEnded(listener, onLink)
    const follower = { listener, onLink }
    this.#followers.add(follower)
    return async () => {
      this.#followers.delete(follower)
    }
  }

  /** Whether reads are being served from the cache (the store's pub/sub is listening). */
  get active(): boolean {
    return this.#listening
  }

  async get(idHash: string, now: number): Promise<SessionRecord | undefined> {
    if (this.#usable(idHash, now)) {
      // A notice that reached this process's socket together with this request is read in the
      // same event-loop turn, after this request's handler started: yield once so it lands first.
      // Another instance answers a logout only after the store took its notice, so a request sent
      // after that answer mostly finds the notice already here; not always: the store may write
      // the publisher's reply before the subscribers' copies (docs/performance.md, fan-out).
      await new Promise((resolve) => setImmediate(resolve))
      const entry = this.#usable(idHash, now)
      if (entry) return entry.record
    }
    return this.getFresh(idHash, now)
  }

  #usable(idHash: string, now: number): Entry | undefined {
    const entry = this.#listening ? this.#entries.get(idHash) : undefined
    return entry !== undefined && this.#clock() - entry.at < this.#ttlMs && entry.record.expiresAt > now
      ? entry
      : undefined
  }

  async getFresh(idHash: string, now: number): Promise<SessionRecord | undefined> {
    const epoch = this.#epoch
    const record = await this.#inner.get(idHash, now)
    if (record === undefined) this.#entries.delete(idHash)
    else if (epoch === this.#epoch) this.#keep(record)
    return record
  }

  async set(record: SessionRecord, expectedVersion?: number): Promise<boolean> {
    const epoch = this.#epoch
    this.#entries.delete(record.idHash)
    const written = await this.#inner.set(record, expectedVersion)
    if (written && epoch === this.#epoch) this.#keep(record)
    return written
  }

  async delete(idHash: string): Promise<boolean> {
    this.#dropId(idHash)
    try {
      return await this.#inner.delete(idHash)
    } finally {
      this.#dropId(idHash)
    }
  }

  async deleteWhere(filter: SessionFilter): Promise<number> {
    this.#dropWhere(filter)
    try {
      return await this.#inner.deleteWhere(filter)
    } finally {
      this.#dropWhere(filter)
    }
  }

  list(filter: Parameters<SessionStore['list']>[0], now: number): Promise<SessionRecord[]> {
    return this.#inner.list(filter, now)
  }

  async deleteExpired(now: number, limit: number): Promise<number> {
    // What the store removes as expired at `now` is not served from here either, even when asked
    // about an earlier instant (a clock stepped back): the store contract says it is gone.
    this.#dropExpired(now)
    return this.#inner.deleteExpired(now, limit)
  }

  ping(): Promise<void> {
    return this.#inner.ping()
  }

  /** Stops listening and caching; the store itself stays open. */
  async stop(): Promise<void> {
    const unsubscribe = this.#unsubscribe
    this.#unsubscribe = undefined
    this.#listening = false
    this.#clear()
    await unsubscribe?.().catch(() => undefined)
  }

  async close(): Promise<void> {
    await this.stop()
    await this.#inner.close()
  }

  #keep(record: SessionRecord): void {
    if (!this.#listening) return
    // A read that started before a write of ours may finish after it: never go back a version.
    const known = this.#entries.get(record.idHash)
    if (known !== undefined && known.record.version > record.version) return
    this.#entries.delete(record.idHash)
    this.#entries.set(record.idHash, { record, at: this.#clock() })
    if (this.#entries.size > MAX_ENTRIES) this.#entries.delete(this.#entries.keys().next().value!)
  }

  #drop(notice: SessionEndNotice): void {
    if (notice.idHash !== undefined) this.#dropId(notice.idHash)
    if (notice.filter !== undefined) this.#dropWhere(notice.filter)
  }

  #dropId(idHash: string): void {
    this.#epoch++
    this.#entries.delete(idHash)
  }

  #dropExpired(now: number): void {
    for (const [idHash, { record }] of this.#entries) if (record.expiresAt <= now) this.#entries.delete(idHash)
  }

  #dropWhere(filter: SessionFilter): void {
    this.#epoch++
    for (const [idHash, { record }] of this.#entries) if (matchesFilter(filter, record)) this.#entries.delete(idHash)
  }

  #clear(): void {
    this.#epoch++
    this.#entries.clear()
  }
}
