import { randomUUID } from 'node:crypto'
import { matchesFilter, type NoticeCapable, type SessionEndNotice, type SessionFilter } from './store.ts'

/** Why a session ended, as the browser is told (GET /bff/session-events, SPEC §8). */
export type EndReason = 'logout' | 'backchannel' | 'revoked' | 'expired' | 'refresh_refused' | 'replaced'

/** A session ending, for audit: one session, or every session a filter names (back-channel logout, revocation). */
export interface SessionEndEvent {
  reason: EndReason
  /** The session that ended, when it was one known session. */
  session?: { sub: string; sid: string | undefined; frontend: string }
  /** The sessions that ended, when a filter named them (they are not read one by one). */
  filter?: SessionFilter
}

interface Subscriber {
  idHash: string
  sub: string
  sid: string | undefined
  partition: string
  listener: (reason: EndReason) => void
}

/**
 * Fan-out of "this session ended" to the open /bff/session-events streams. Endings seen by this
 * instance arrive at once; with a store that can publish (Redis pub/sub, PostgreSQL NOTIFY) so do
 * endings on other instances and from the CLI. The streams' periodic store check is the safety net
 * for notices missed while a connection was down, and the only path with SQLite.
 */
export class SessionEvents {
  readonly #byId = new Map<string, Set<Subscriber>>()
  readonly #notices: NoticeCapable | undefined
  readonly #onLink: ((listening: boolean) => void) | undefined
  readonly #origin = randomUUID()
  readonly #onError: (err: unknown) => void
  #unsubscribe: (() => Promise<void>) | undefined

  readonly #onEnded: ((event: SessionEndEvent) => void) | undefined

  /**
   * `notices`: the store's ending notices (none: this instance only). `onEnded`: told of every ending
   * on this instance (the audit hook), not of other instances'.
   */
  constructor(
    options: {
      notices?: NoticeCapable | undefined
      onError?: (err: unknown) => void
      onEnded?: (event: SessionEndEvent) => void
      /** Told when the link carrying other instances' notices is lost (false) and back (true). */
      onLink?: (listening: boolean) => void
    } = {},
  ) {
    this.#onLink = options.onLink
    this.#notices = options.notices
    this.#onError = options.onError ?? (() => {})
    this.#onEnded = options.onEnded
  }

  /** Starts listening to other instances' notices, when the store can carry them. */
  async start(): Promise<void> {
    if (!this.#notices || this.#unsubscribe) return
    this.#unsubscribe = await this.#notices.subscribeEnded((notice) => {
      if (notice.origin === this.#origin) return // told our own listeners already
      if (notice.idHash !== undefined) this.#deliver(notice.idHash, notice.reason as EndReason)
      else if (notice.filter) this.#deliverWhere(notice.filter, notice.reason as EndReason)
    }, this.#onLink)
  }

  async close(): Promise<void> {
    const stop = this.#unsubscribe
    this.#unsubscribe = undefined
    await stop?.()
  }

  subscribe(
    session: { idHash: string; sub: string; sid: string | undefined; partition: string },
    listener: (reason: EndReason) => void,
  ): () => void {
    const subscriber: Subscriber = { ...session, listener }
    let set = this.#byId.get(session.idHash)
    if (!set) this.#byId.set(session.idHash, (set = new Set()))
    set.add(subscriber)
    return () => {
      set.delete(subscriber)
      if (set.size === 0) this.#byId.delete(session.idHash)
    }
  }

  get size(): number {
    let count = 0
    for (const set of this.#byId.values()) count += set.size
    return count
  }

  /**
   * Called by the session backends' `end` / `endWhere` (every ending goes through them), never by endpoints.
   * Tells this instance's streams at once, and the other instances through the store. Resolves once
   * the store took the notice (never rejects): an endpoint that awaits it answers only after other
   * instances' session caches have been told to drop the session.
   */
  ended(
    session: { idHash: string; sub: string; sid: string | undefined; partition: string },
    reason: EndReason,
  ): Promise<void> {
    const { idHash } = session
    this.#deliver(idHash, reason)
    this.#onEnded?.({ reason, session: { sub: session.sub, sid: session.sid, frontend: session.partition } })
    return this.#publish({ idHash, reason, origin: this.#origin })
  }

  endedWhere(filter: SessionFilter, reason: EndReason): Promise<void> {
    this.#deliverWhere(filter, reason)
    this.#onEnded?.({ reason, filter })
    return this.#publish({ filter, reason, origin: this.#origin })
  }

  async #publish(notice: SessionEndNotice): Promise<void> {
    await this.#notices?.publishEnded(notice).catch(this.#onError)
  }

  #deliver(idHash: string, reason: EndReason): void {
    for (const subscriber of [...(this.#byId.get(idHash) ?? [])]) subscriber.listener(reason)
  }

  #deliverWhere(filter: SessionFilter, reason: EndReason): void {
    for (const set of [...this.#byId.values()]) {
      for (const s of [...set]) if (matchesFilter(filter, s)) s.listener(reason)
    }
  }
}
