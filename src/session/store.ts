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
export function matchesFilter(filter: SessionFilter, session: { sub: string; sid: string | undefined; partition: string }): boolean {
  return (filter.sub === undefined || session.sub === filter.sub) && (filter.sid === undefined || session.sid === filter.sid) && (filter.partition === undefined || session.partition === filter.partition)
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
 * The contract every store implements (tests/stores/contract.ts holds the shared suite).
 * Expired records are never returned, even before cleanup removes them.
 */
export interface SessionStore {
  get(idHash: string, now: number): Promise<SessionRecord | undefined>
  /** As `get`, but never from an in-process copy (src/session/stores/cached.ts); stores without one need not have it. */
  getFresh?(idHash: string, now: number): Promise<SessionRecord | undefined>
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
  /**
   * How many live (unexpired at `now`) sessions the store holds, for the `gatehouse_active_sessions`
   * gauge; called once per metrics scrape, so it must be cheap (an index count). Optional: without it
   * the gauge is not exported.
   */
  count?(now: number): Promise<number>
  /** Removes up to `limit` expired records; returns how many. */
  deleteExpired(now: number, limit: number): Promise<number>
  /**
   * Takes the named lease for `ttlMs` unless another owner holds an unexpired one; true when taken
   * (also when `owner` already holds it). One instance refreshes a session's tokens while the
   * others wait, so refresh-token rotation cannot race (SPEC §5).
   */
  acquireLease(name: string, owner: string, ttlMs: number, now: number): Promise<boolean>
  /** Gives the lease up if `owner` still holds it. */
  releaseLease(name: string, owner: string): Promise<void>
  /** Throws when the store cannot be reached (readiness). */
  ping(): Promise<void>
  close(): Promise<void>
  /** Tells every instance sharing the store that sessions ended (Redis pub/sub, PostgreSQL NOTIFY). Optional. */
  publishEnded?(notice: SessionEndNotice): Promise<void>
  /**
   * Receives what publishEnded sends, from every instance; resolves to a function that stops it.
   * `onLink(false)` when the subscription's connection is lost (notices may be missed from then on),
   * `onLink(true)` once it listens again. Optional.
   */
  subscribeEnded?(listener: (notice: SessionEndNotice) => void, onLink?: (listening: boolean) => void): Promise<() => Promise<void>>
}
