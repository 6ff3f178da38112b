import { hash, randomBytes } from 'node:crypto'
import { DEFAULTS } from '../config/defaults.ts'
import { GatehouseError } from '../errors.ts'
import { deleteCookie, repeatedCookieNames, serializeCookie, type SameSite } from '../http/cookies.ts'
import type { NewSession, ReadOptions, SessionBackend } from './backend.ts'
import { Leases, type HeldLease } from './leases.ts'
import { ProcessLeases } from './process-leases.ts'
import type { KeyRing } from './seal.ts'
import { initialExpiry, renewedExpiry, type ExpiryPolicy, type Session, type SessionData } from './session.ts'
import { SessionEvents, type EndReason } from './session-events.ts'
import { storeCall } from './store-call.ts'
import {
  capabilities,
  matchesFilter,
  type FreshReadable,
  type SessionFilter,
  type SessionRecord,
  type SessionStore,
} from './store.ts'

/** 256-bit ids, base64url: exactly 43 characters. Anything else in the cookie is not a session. */
const SESSION_ID = /^[A-Za-z0-9_-]{43}$/
const SEAL_PURPOSE = 'session'
const CLEANUP_BATCH = 500
const OPENED_CACHE_SIZE = 10_000

/**
 * Additional data for a session's sealed part: binds it to its record's id hash and identity columns,
 * so someone able to write to the store can neither move a sealed blob nor relabel its sub/sid/partition.
 */
export function sessionSealPurpose(record: {
  idHash: string
  sub: string
  sid: string | undefined
  partition: string
  createdAt: number
}): string {
  return JSON.stringify([
    SEAL_PURPOSE,
    record.idHash,
    record.sub,
    record.sid ?? null,
    record.partition,
    record.createdAt,
  ])
}

export function hashSessionId(id: string): string {
  return hash('sha256', id, 'base64url')
}

/** What a sealed value was opened as: the identity columns its seal is bound to, the text and the data. */
interface OpenedData {
  sub: string
  sid: string | undefined
  partition: string
  createdAt: number
  sealed: string
  data: SessionData
}

function sameIdentity(opened: OpenedData, record: SessionRecord): boolean {
  return (
    opened.sub === record.sub &&
    opened.sid === record.sid &&
    opened.partition === record.partition &&
    opened.createdAt === record.createdAt
  )
}

export interface SessionsOptions {
  store: SessionStore
  keyRing: KeyRing
  policy: ExpiryPolicy
  cookie?: SessionCookie
  now?: () => number
  /** Where endings are told; default: the store's notices alone (a CLI run, a test), no listeners or hooks. */
  events?: SessionEvents
}

/** A session as the admin API and the CLI list it: its record without the sealed part. */
export type SessionSummary = Omit<SessionRecord, 'sealed'>

/** The session cookie's name and attributes (SPEC §4). */
export interface SessionCookie {
  name: string
  /** The cookie name of a partition (frontend); default: `name` for every partition. */
  nameFor?: (partition: string) => string
  sameSite: SameSite
  maxAgeSec: number
}

/**
 * Server-mode sessions (`session.mode: "server"`): cookie ↔ Session through a SessionStore —
 * hashing, sealing, expiry and sliding renewal — and every ending, each told to the other instances.
 * The only holder of the store once gatehouse is wired (the CLI builds one over the store it opens).
 */
export class Sessions implements SessionBackend {
  readonly shared = true
  readonly leases: Leases | undefined
  readonly #store: SessionStore
  readonly #freshReads: FreshReadable | undefined
  readonly #claims: Leases
  readonly #events: SessionEvents
  readonly #keyRing: KeyRing
  readonly #policy: ExpiryPolicy
  readonly #cookie: SessionCookie
  readonly #now: () => number
  /** Decrypted session data by id hash, with what it was opened from (never modified in place: changes make new objects). */
  readonly #opened = new Map<string, OpenedData>()
  /** Id hashes by cookie value: every request of a session would hash the same value again. */
  readonly #idHashes = new Map<string, string>()

  constructor(options: SessionsOptions) {
    this.#store = options.store
    this.#keyRing = options.keyRing
    this.#policy = options.policy
    this.#cookie = options.cookie ?? {
      name: DEFAULTS.session.cookieName,
      sameSite: DEFAULTS.session.sameSite,
      maxAgeSec: options.policy.absoluteLifetimeMs / 1000,
    }
    this.#now = options.now ?? Date.now
    const can = capabilities(options.store)
    this.#freshReads = can.fresh
    this.leases = can.leases && new Leases(can.leases, this.#now)
    this.#claims = this.leases ?? new Leases(new ProcessLeases(), this.#now)
    this.#events = options.events ?? new SessionEvents({ notices: can.notices })
  }

  async read(
    cookies: ReadonlyMap<string, string>,
    partition: string,
    options: ReadOptions,
    writes: string[],
  ): Promise<Session | undefined> {
    const name = this.#name(partition)
    const cookieValue = cookies.get(name)
    if (cookieValue === undefined) return undefined
    // Twice the name: the first may be a tossed cookie (another path, a nameless `=name=value`). Pick
    // none, and clear none: a deletion would hit the real cookie, never the tossed one.
    if (repeatedCookieNames(cookies).has(name)) {
      options.onAmbiguous?.()
      return undefined
    }
    const session = await this.resolve(cookieValue, partition, options)
    if (!session) this.clearCookies(cookies, partition, writes)
    return session
  }

  async start(input: NewSession, writes: string[]): Promise<{ session: Session; replaced: number }> {
    const { cookieValue, session, replaced } = await this.create(input)
    writes.push(
      serializeCookie(this.#name(input.partition), cookieValue, {
        sameSite: this.#cookie.sameSite,
        maxAgeSec: this.#cookie.maxAgeSec,
      }),
    )
    return { session, replaced }
  }

  clearCookies(cookies: ReadonlyMap<string, string>, partition: string, writes: string[]): void {
    const name = this.#name(partition)
    if (cookies.has(name)) writes.push(deleteCookie(name, this.#cookie.sameSite))
  }

  #name(partition: string): string {
    return this.#cookie.nameFor?.(partition) ?? this.#cookie.name
  }

  /** Server mode writes no session cookie after a read, so nothing can be written back late. */
  hasEnded(): boolean {
    return false
  }

  /** Nothing to do: every change is already in the store. */
  async persist(): Promise<void> {}

  current(session: Session): Promise<Session | undefined> {
    return this.reload(session.idHash)
  }

  /** The session a cookie value names, or undefined (no cookie, malformed, unknown, expired, ended). */
  async resolve(
    cookieValue: string | undefined,
    partition: string,
    options: { slide: boolean },
  ): Promise<Session | undefined> {
    if (!cookieValue || !SESSION_ID.test(cookieValue)) return undefined
    const idHash = this.#idHashOf(cookieValue)
    const now = this.#now()
    const record = await storeCall(() => this.#store.get(idHash, now))
    if (!record || record.partition !== partition) return undefined
    const session = this.#open(record)
    if (!session) return undefined
    if (!options.slide) return session
    const expiresAt = renewedExpiry(this.#policy, session, now)
    if (expiresAt === undefined) return session
    const renewed: SessionRecord = { ...record, renewedAt: now, expiresAt, version: record.version + 1 }
    if (await storeCall(() => this.#store.set(renewed, record.version)))
      return { ...session, renewedAt: now, expiresAt, version: renewed.version }
    // Lost a race: another request renewed it, or it was ended meanwhile (then it must stay ended).
    const fresh = await storeCall(() => this.#fresh(idHash, now))
    return fresh ? this.#open(fresh) : undefined
  }

  /**
   * Starts a session and returns the cookie value. A new login replaces an older session of the
   * same sub + sid (SPEC §4), told as ended ('replaced'), and the id is always fresh (no session fixation).
   */
  async create(input: NewSession): Promise<{ cookieValue: string; session: Session; replaced: number }> {
    const cookieValue = randomBytes(32).toString('base64url')
    const idHash = hashSessionId(cookieValue)
    const now = this.#now()
    const older: SessionFilter | undefined =
      input.sid === undefined ? undefined : { sub: input.sub, sid: input.sid, partition: input.partition }
    const replaced = older === undefined ? 0 : await storeCall(() => this.#store.deleteWhere(older))
    // Told before the new session is written: the older ones are gone even if that write fails, and
    // the other instances must stop serving them from their caches.
    if (older !== undefined && replaced > 0) await this.#events.endedWhere(older, 'replaced')
    const meta = { idHash, sub: input.sub, sid: input.sid, partition: input.partition, createdAt: now }
    const record: SessionRecord = {
      ...meta,
      renewedAt: now,
      expiresAt: initialExpiry(this.#policy, now),
      version: 1,
      sealed: this.#keyRing.seal(JSON.stringify(input.data), sessionSealPurpose(meta)),
    }
    if (!(await storeCall(() => this.#store.set(record)))) throw new GatehouseError('internal', 'session id collision')
    return { cookieValue, session: { ...record, data: input.data }, replaced }
  }

  /** Replaces the sealed data (e.g. refreshed tokens); false when the session ended or changed meanwhile. */
  async update(session: Session, data: SessionData): Promise<boolean> {
    // Only the record's fields go to the store: spreading the Session would hand it the plaintext data.
    const { data: _plain, ...meta } = session
    const record: SessionRecord = {
      ...meta,
      version: session.version + 1,
      sealed: this.#keyRing.seal(JSON.stringify(data), sessionSealPurpose(session)),
    }
    return storeCall(() => this.#store.set(record, session.version))
  }

  /** The current state of a session by id hash (no sliding), e.g. after another instance changed it. */
  async reload(idHash: string): Promise<Session | undefined> {
    const record = await storeCall(() => this.#fresh(idHash, this.#now()))
    return record && this.#open(record)
  }

  /**
   * Applies `change` to the session's data with compare-and-set, re-reading and re-applying when a
   * concurrent write (a sliding renewal) won. Undefined when the session was ended meanwhile:
   * an ended session is never written back.
   */
  async modify(session: Session, change: (data: SessionData) => SessionData | undefined): Promise<Session | undefined> {
    let current: Session | undefined = session
    for (let attempt = 0; current && attempt < 5; attempt++) {
      const data = change(current.data)
      if (data === undefined) return current
      if (await this.update(current, data)) return { ...current, version: current.version + 1, data }
      current = await this.reload(current.idHash)
    }
    if (current) throw new GatehouseError('store_unavailable', 'session kept changing during an update')
    return undefined
  }

  async end(session: Session, reason: EndReason): Promise<void> {
    await storeCall(() => this.#store.delete(session.idHash))
    await this.#events.ended(session, reason)
  }

  /** Ends the session with this id hash (the admin API names one by it); false when there is no such live session. */
  async endById(idHash: string, reason: EndReason): Promise<boolean> {
    const record = await storeCall(() => this.#store.get(idHash, this.#now()))
    if (!record) return false
    if (!(await storeCall(() => this.#store.delete(idHash)))) return false
    await this.#events.ended(record, reason)
    return true
  }

  async endWhere(filter: SessionFilter, reason: EndReason): Promise<number> {
    const ended = await storeCall(() => this.#store.deleteWhere(filter))
    await this.#events.endedWhere(filter, reason)
    return ended
  }

  claimOnce(marker: string, ttlMs: number): Promise<HeldLease | undefined> {
    return this.#claims.take(marker, ttlMs)
  }

  ping(): Promise<void> {
    return this.#store.ping()
  }

  /** Live sessions, oldest first (all, or a sub's), without their sealed part: tokens never leave the store this way. */
  async list(filter: { sub?: string; limit: number }): Promise<SessionSummary[]> {
    const records = await storeCall(() => this.#store.list(filter, this.#now()))
    return records.map(({ sealed: _sealed, ...summary }) => summary)
  }

  async findWhere(filter: SessionFilter, limit: number): Promise<Session[]> {
    // The sid index is the narrower one (an IdP session spans a handful of records).
    const query =
      filter.sid !== undefined
        ? { sid: filter.sid, ...(filter.sub !== undefined ? { sub: filter.sub } : {}), limit }
        : { sub: filter.sub!, limit }
    const records = await storeCall(() => this.#store.list(query, this.#now()))
    return records.filter((r) => matchesFilter(filter, r)).flatMap((r) => this.#open(r) ?? [])
  }

  /** Removes expired sessions in batches until none are left; returns how many. */
  async removeExpired(): Promise<number> {
    let total = 0
    for (;;) {
      const removed = await storeCall(() => this.#store.deleteExpired(this.#now(), CLEANUP_BATCH))
      total += removed
      if (removed < CLEANUP_BATCH) return total
      // Let requests run between batches: a synchronous store (node:sqlite) would otherwise hold the event loop.
      await new Promise((resolve) => setImmediate(resolve))
    }
  }

  #open(record: SessionRecord): Session | undefined {
    // The store is read on every request (revocation stays instant); only the decryption of a sealed
    // value already opened for the same record identity is skipped. A sealed value carries a random
    // IV, so equal text means equal content; a changed record or a moved blob misses the cache.
    const known = this.#opened.get(record.idHash)
    let data: SessionData
    if (known !== undefined && known.sealed === record.sealed && sameIdentity(known, record)) {
      data = known.data
    } else {
      const plain = this.#keyRing.unseal(record.sealed, sessionSealPurpose(record))
      if (plain === undefined) return undefined
      try {
        data = JSON.parse(plain) as SessionData
      } catch {
        return undefined
      }
      this.#opened.delete(record.idHash)
      this.#opened.set(record.idHash, {
        sub: record.sub,
        sid: record.sid,
        partition: record.partition,
        createdAt: record.createdAt,
        sealed: record.sealed,
        data,
      })
      if (this.#opened.size > OPENED_CACHE_SIZE) this.#opened.delete(this.#opened.keys().next().value!)
    }
    const { sealed: _sealed, ...meta } = record
    return { ...meta, data }
  }

  #idHashOf(cookieValue: string): string {
    let idHash = this.#idHashes.get(cookieValue)
    if (idHash === undefined) {
      idHash = hashSessionId(cookieValue)
      // Bounded like #opened, oldest out first: made-up cookie values can only push out entries, costing a hash each.
      if (this.#idHashes.size >= OPENED_CACHE_SIZE) this.#idHashes.delete(this.#idHashes.keys().next().value!)
      this.#idHashes.set(cookieValue, idHash)
    }
    return idHash
  }

  #fresh(idHash: string, now: number): Promise<SessionRecord | undefined> {
    return this.#freshReads ? this.#freshReads.getFresh(idHash, now) : this.#store.get(idHash, now)
  }
}
