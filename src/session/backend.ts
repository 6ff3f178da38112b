import type { HeldLease, Leases } from './leases.ts'
import type { Session, SessionData } from './session.ts'
import type { EndReason } from './session-events.ts'
import type { SessionFilter } from './store.ts'

export interface NewSession {
  sub: string
  sid: string | undefined
  partition: string
  data: SessionData
}

export interface ReadOptions {
  /** Renew a sliding session that is due. */
  slide: boolean
  /** Called when the session cookie came more than once (the caller logs it; never with the values). */
  onAmbiguous?: () => void
}

/**
 * Where sessions live: in a store (`session.mode: "server"`, class Sessions) or in the browser's
 * encrypted cookie (`"cookie"`, class CookieSessions). Endpoints, the proxy, the token service and
 * the admin API speak only this interface; none of them holds the store. Every ending goes through
 * `end` / `endWhere`, which tell this instance's listeners, the audit hook and the other instances.
 * `writes` collects the Set-Cookie lines the response must carry.
 */
export interface SessionBackend {
  /** True when a shared store coordinates instances (token-refresh lease, revocation, back-channel logout). */
  readonly shared: boolean
  /**
   * The request's session, or undefined; a cookie naming no live session is cleared via `writes`.
   * A session cookie (or cookie-mode chunk) the request carries more than once is ambiguous: no
   * session, nothing cleared (that would delete the real cookie, not the tossed one), `onAmbiguous` called.
   */
  read(
    cookies: ReadonlyMap<string, string>,
    partition: string,
    options: ReadOptions,
    writes: string[],
  ): Promise<Session | undefined>
  /** Starts a session (always a fresh id) and sets its cookie; `replaced`: older sessions of the same sub + sid it ended. */
  start(input: NewSession, writes: string[]): Promise<{ session: Session; replaced: number }>
  /**
   * Ends the session (cookie mode: remembers it ended in this process, nothing else is kept) and tells
   * of it: this instance's session-event streams and onSessionEnded at once, the other instances
   * through the store; resolves once the store took the notice.
   */
  end(session: Session, reason: EndReason): Promise<void>
  /** Ends every session the filter names and tells of it as `end` does; returns how many the store held (cookie mode: 0). */
  endWhere(filter: SessionFilter, reason: EndReason): Promise<number>
  /**
   * Claims `marker` for `ttlMs` unless it is claimed already (a logout token's jti): the claim, to
   * give back when the work it guards failed, or undefined. Across instances when the store has
   * leases, else within this process.
   */
  claimOnce(marker: string, ttlMs: number): Promise<HeldLease | undefined>
  /**
   * Leases shared by the instances (one token refresh per session at a time); undefined in cookie
   * mode and over a store without leases: callers coordinate within the process then.
   */
  readonly leases: Leases | undefined
  /** Throws when the sessions' store cannot be reached (readiness); cookie mode has none to fail. */
  ping(): Promise<void>
  /** Deletes every session cookie of the partition this request carried. */
  clearCookies(cookies: ReadonlyMap<string, string>, partition: string, writes: string[]): void
  /** After this request changed the session (refreshed tokens): cookie mode rewrites its cookie. */
  persist(session: Session, cookies: ReadonlyMap<string, string>, writes: string[]): Promise<void>
  /** True when this process ended the session after it was read (cookie mode; server mode relies on compare-and-set). */
  hasEnded(session: Session): boolean
  /** The newest known state of a session, undefined when it has ended meanwhile. */
  current(session: Session): Promise<Session | undefined>
  /**
   * Changes the session's data, applied to its newest state; `change` may return undefined to leave
   * that state as it is (then it is returned). Undefined when the session ended meanwhile: an ended
   * session stays ended.
   */
  modify(session: Session, change: (data: SessionData) => SessionData | undefined): Promise<Session | undefined>
  /** Periodic cleanup; returns how many sessions were removed. */
  removeExpired(): Promise<number>
  /**
   * Server mode: up to `limit` live sessions a back-channel logout is about to end (their refresh
   * tokens may need revoking, Back-Channel Logout §2.7). Cookie mode keeps none on the server.
   */
  findWhere?(filter: SessionFilter, limit: number): Promise<Session[]>
}
