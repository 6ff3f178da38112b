import { matchesFilter, type SessionEndNotice, type SessionFilter, type SessionRecord, type SessionStore } from '../store.ts'

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
 * the store; writes and deletes through this object update or drop the entry at once.
 */
export class CachedStore implements SessionStore {
  readonly #inner: SessionStore
  readonly #ttlMs: number
  readonly #clock: () => number
  readonly #entries = new Map<string, Entry>()
  /** Bumped by every drop: a read that started before one must not put its (maybe ended) record back. */
  #epoch = 0
  #listening = false
  #unsubscribe: (() => Promise<void>) | undefined
  readonly count?: (now: number) => Promise<number>

  constructor(inner: SessionStore, options: { ttlMs: number; clock?: () => number }) {
    this.#inner = inner
    if (inner.count) this.count = (now) => inner.count!(now)
    this.#ttlMs = options.ttlMs
    this.#clock = options.clock ?? (() => performance.now())
  }

  /** Listens for endings; until this succeeds (and whenever the link is down) every read goes to the store. */
  async start(): Promise<void> {
    if (!this.#inner.subscribeEnded || this.#unsubscribe) return
    this.#unsubscribe = await this.#inner.subscribeEnded(
      (notice) => this.#drop(notice),
      (listening) => {
        this.#clear()
        this.#listening = listening
      },
    )
    this.#listening = true
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
      // after that answer finds the notice already here.
      await new Promise((resolve) => setImmediate(resolve))
      const entry = this.#usable(idHash, now)
      if (entry) return entry.record
    }
    return this.getFresh(idHash, now)
  }

  #usable(idHash: string, now: number): Entry | undefined {
    const entry = this.#listening ? this.#entries.get(idHash) : undefined
    return entry !== undefined && this.#clock() - entry.at < this.#ttlMs && entry.record.expiresAt > now ? entry : undefined
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

  deleteExpired(now: number, limit: number): Promise<number> {
    // Expired entries are never served (get checks expiresAt): nothing to drop.
    return this.#inner.deleteExpired(now, limit)
  }

  acquireLease(name: string, owner: string, ttlMs: number, now: number): Promise<boolean> {
    return this.#inner.acquireLease(name, owner, ttlMs, now)
  }

  releaseLease(name: string, owner: string): Promise<void> {
    return this.#inner.releaseLease(name, owner)
  }

  ping(): Promise<void> {
    return this.#inner.ping()
  }

  publishEnded(notice: SessionEndNotice): Promise<void> {
    return this.#inner.publishEnded ? this.#inner.publishEnded(notice) : Promise.resolve()
  }

  subscribeEnded(listener: (notice: SessionEndNotice) => void, onLink?: (listening: boolean) => void): Promise<() => Promise<void>> {
    if (!this.#inner.subscribeEnded) return Promise.resolve(async () => {})
    return this.#inner.subscribeEnded(listener, onLink)
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

  #dropWhere(filter: SessionFilter): void {
    this.#epoch++
    for (const [idHash, { record }] of this.#entries) if (matchesFilter(filter, record)) this.#entries.delete(idHash)
  }

  #clear(): void {
    this.#epoch++
    this.#entries.clear()
  }
}
