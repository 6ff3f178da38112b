/** What every session store keeps: bytes and indexed metadata, never plaintext tokens or raw ids. */
export interface SessionRecord {
  /** sha256 of the cookie's session id, base64url: a store dump yields no usable cookie. */
  idHash: string
  sub: string
  /** The IdP's session id (OIDC `sid`), indexed for back-channel logout. */
  sid: string | undefined
  /** Frontend / cookie partition the session belongs to. */
  partition: string
  createdAt: number
  renewedAt: number
  expiresAt: number
  /** Incremented on every write; writes are compare-and-set on it. */
  version: number
  /** Claims and tokens, sealed with the key ring. */
  sealed: string
}

/** Which sessions to end: by sub, by sid, or both (then both must match). At least one is given. */
export type SessionFilter =
  | { sub: string; sid?: string | undefined; partition?: string | undefined }
  | { sub?: string | undefined; sid: string; partition?: string | undefined }

/** Whether a session (a record, or anything with its identity columns) is one the filter names. */
export function matchesFilter(
  filter: SessionFilter,
  session: { sub: string; sid: string | undefined; partition: string },
): boolean {
  return (
    (filter.sub === undefined || session.sub === filter.sub) &&
    (filter.sid === undefined || session.sid === filter.sid) &&
    (filter.partition === undefined || session.partition === filter.partition)
  )
}

/** "These sessions ended", as instances tell each other through a shared store. */
export interface SessionEndNotice {
  /** The session's id hash, or a filter for several (back-channel logout, revocation). */
  idHash?: string
  filter?: SessionFilter
  reason: string
  /** The instance that sent it (it has told its own listeners already). */
  origin: string
}

/**
 * The methods every store has (src/testing/store-contract.ts holds the shared suite). Expired records
 * are never returned, even before cleanup removes them. What a store can do beyond these it declares
 * with the optional members, one small interface per capability (LeaseCapable, NoticeCapable,
 * Countable, FreshReadable); gatehouse detects them once at start-up (`capabilities` below).
 */
export interface SessionStore
  extends Partial<LeaseCapable>, Partial<NoticeCapable>, Partial<Countable>, Partial<FreshReadable> {
  get(idHash: string, now: number): Promise<SessionRecord | undefined>
  /**
   * Without expectedVersion: insert; false if the id exists. With it: replace only when the stored
   * version equals it (the new record carries expectedVersion + 1); false when it does not or the
   * record is gone, so an ended session is never written back.
   */
  set(record: SessionRecord, expectedVersion?: number): Promise<boolean>
  delete(idHash: string): Promise<boolean>
  /** Deletes every session matching the filter (sub and/or sid, narrowed by partition); returns how many. Indexed. */
  deleteWhere(filter: SessionFilter): Promise<number>
  /** Live sessions, oldest first: all, a sub's, or an IdP session's (sid; with sub too, both must match). Indexed when sub or sid is given. */
  list(filter: { sub?: string; sid?: string; limit: number }, now: number): Promise<SessionRecord[]>
  /** Removes up to `limit` expired records; returns how many. */
  deleteExpired(now: number, limit: number): Promise<number>
  /** Throws when the store cannot be reached (readiness). */
  ping(): Promise<void>
  close(): Promise<void>
}

/**
 * Named leases shared by every instance. One instance refreshes a session's tokens while the others
 * wait, so refresh-token rotation cannot race (SPEC §5); a logout token's jti is claimed once. Without
 * them gatehouse coordinates within its own process only.
 */
export interface LeaseCapable {
  /**
   * Takes the named lease for `ttlMs` unless another owner holds an unexpired one; true when taken
   * (also when `owner` already holds it).
   */
  acquireLease(name: string, owner: string, ttlMs: number, now: number): Promise<boolean>
  /** Gives the lease up if `owner` still holds it. */
  releaseLease(name: string, owner: string): Promise<void>
}

/** Ending notices between the instances sharing the store (Redis pub/sub, PostgreSQL NOTIFY). */
export interface NoticeCapable {
  /** Tells every instance sharing the store that sessions ended. */
  publishEnded(notice: SessionEndNotice): Promise<void>
  /**
   * Receives what publishEnded sends, from every instance; resolves to a function that stops it.
   * `onLink(false)` when the subscription's connection is lost (notices may be missed from then on),
   * `onLink(true)` once it listens again.
   */
  subscribeEnded(
    listener: (notice: SessionEndNotice) => void,
    onLink?: (listening: boolean) => void,
  ): Promise<() => Promise<void>>
}

export interface Countable {
  /**
   * How many live (unexpired at `now`) sessions the store holds, for the `gatehouse_active_sessions`
   * gauge; called once per metrics scrape, so it must be cheap (an index count). Without it the gauge
   * is not exported.
   */
  count(now: number): Promise<number>
}

export interface FreshReadable {
  /** As `get`, but never from an in-process copy (./stores/cached.ts). */
  getFresh(idHash: string, now: number): Promise<SessionRecord | undefined>
}

/**
 * What a store can do beyond the methods every store has, as typed handles (the store itself, or
 * undefined when it lacks the capability). Detected once where a store is wired, so that call sites
 * hold a handle instead of probing `store.count` on every call. A capability needs all of its
 * methods: a store with half of one (publishEnded without subscribeEnded) is treated as without it.
 */
export interface StoreCapabilities {
  readonly leases: LeaseCapable | undefined
  readonly notices: NoticeCapable | undefined
  readonly count: Countable | undefined
  readonly fresh: FreshReadable | undefined
}

export function capabilities(store: SessionStore): StoreCapabilities {
  return {
    leases: hasLeases(store) ? store : undefined,
    notices: hasNotices(store) ? store : undefined,
    count: isCountable(store) ? store : undefined,
    fresh: isFreshReadable(store) ? store : undefined,
  }
}

/** The capabilities with more than one method, and their methods. */
const CAPABILITY_METHODS = {
  leases: ['acquireLease', 'releaseLease'],
  notices: ['publishEnded', 'subscribeEnded'],
} as const satisfies Record<string, readonly (keyof SessionStore)[]>

/**
 * The capabilities a store has some but not all methods of — each treated as absent — with the
 * methods it defines and those it lacks, for a warning at start (a custom store's likely mistake).
 */
export function incompleteCapabilities(
  store: SessionStore,
): { capability: keyof typeof CAPABILITY_METHODS; has: string[]; missing: string[] }[] {
  return Object.entries(CAPABILITY_METHODS).flatMap(([capability, methods]) => {
    const has = methods.filter((m) => typeof store[m] === 'function')
    const missing = methods.filter((m) => typeof store[m] !== 'function')
    return has.length > 0 && missing.length > 0
      ? [{ capability: capability as keyof typeof CAPABILITY_METHODS, has, missing }]
      : []
  })
}

// The handles are the store itself, so its methods are looked up at each call (a test may wrap one).
function hasLeases(store: SessionStore): store is SessionStore & LeaseCapable {
  return typeof store.acquireLease === 'function' && typeof store.releaseLease === 'function'
}

function hasNotices(store: SessionStore): store is SessionStore & NoticeCapable {
  return typeof store.publishEnded === 'function' && typeof store.subscribeEnded === 'function'
}

function isCountable(store: SessionStore): store is SessionStore & Countable {
  return typeof store.count === 'function'
}

function isFreshReadable(store: SessionStore): store is SessionStore & FreshReadable {
  return typeof store.getFresh === 'function'
}
