import type { SessionFilter } from './store.ts'

/** Why a session ended, as the browser is told (GET /bff/session-events, SPEC §8). */
export type EndReason = 'logout' | 'backchannel' | 'revoked' | 'expired' | 'refresh_refused'

interface Subscriber {
  idHash: string
  sub: string
  sid: string | undefined
  partition: string
  listener: (reason: EndReason) => void
}

/**
 * In-process fan-out of "this session ended" to the open /bff/session-events streams. Endings seen
 * by this instance arrive at once; endings elsewhere (another instance, the CLI) are found by the
 * streams' periodic store check.
 */
export class SessionEvents {
  readonly #byId = new Map<string, Set<Subscriber>>()

  subscribe(session: { idHash: string; sub: string; sid: string | undefined; partition: string }, listener: (reason: EndReason) => void): () => void {
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

  ended(idHash: string, reason: EndReason): void {
    for (const subscriber of [...(this.#byId.get(idHash) ?? [])]) subscriber.listener(reason)
  }

  endedWhere(filter: SessionFilter, reason: EndReason): void {
    for (const set of [...this.#byId.values()]) {
      for (const s of [...set]) {
        if (filter.sub !== undefined && s.sub !== filter.sub) continue
        if (filter.sid !== undefined && s.sid !== filter.sid) continue
        if (filter.partition !== undefined && s.partition !== filter.partition) continue
        s.listener(reason)
      }
    }
  }
}
