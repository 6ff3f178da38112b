import {
  matchesFilter,
  type Countable,
  type LeaseCapable,
  type SessionFilter,
  type SessionRecord,
  type SessionStore,
} from '../store.ts'

/** In-process store: for tests, the demo's throwaway runs and single-instance setups that accept losing sessions on restart. */
export class MemoryStore implements SessionStore, LeaseCapable, Countable {
  readonly #records = new Map<string, SessionRecord>()
  readonly #bySub = new Map<string, Set<string>>()
  readonly #bySid = new Map<string, Set<string>>()
  readonly #leases = new Map<string, { owner: string; expiresAt: number }>()

  async get(idHash: string, now: number): Promise<SessionRecord | undefined> {
    const record = this.#records.get(idHash)
    return record && record.expiresAt > now ? { ...record } : undefined
  }

  async set(record: SessionRecord, expectedVersion?: number): Promise<boolean> {
    const current = this.#records.get(record.idHash)
    if (expectedVersion === undefined ? current !== undefined : current?.version !== expectedVersion) return false
    if (current) this.#unindex(current)
    this.#records.set(record.idHash, { ...record })
    addTo(this.#bySub, record.sub, record.idHash)
    if (record.sid !== undefined) addTo(this.#bySid, record.sid, record.idHash)
    return true
  }

  async delete(idHash: string): Promise<boolean> {
    const current = this.#records.get(idHash)
    if (!current) return false
    this.#records.delete(idHash)
    this.#unindex(current)
    return true
  }

  async deleteWhere(filter: SessionFilter): Promise<number> {
    let count = 0
    const candidates =
      filter.sub !== undefined ? (this.#bySub.get(filter.sub) ?? []) : (this.#bySid.get(filter.sid!) ?? [])
    for (const idHash of [...candidates]) {
      if (!matchesFilter(filter, this.#records.get(idHash)!)) continue
      await this.delete(idHash)
      count++
    }
    return count
  }

  async list(filter: { sub?: string; sid?: string; limit: number }, now: number): Promise<SessionRecord[]> {
    const index =
      filter.sid !== undefined
        ? this.#bySid.get(filter.sid)
        : filter.sub !== undefined
          ? this.#bySub.get(filter.sub)
          : undefined
    const ids =
      filter.sid === undefined && filter.sub === undefined
        ? this.#records.keys()
        : (index ?? new Set<string>()).values()
    const out: SessionRecord[] = []
    for (const idHash of ids) {
      const record = this.#records.get(idHash)!
      if (filter.sub !== undefined && record.sub !== filter.sub) continue
      if (record.expiresAt > now) out.push({ ...record })
      if (out.length >= filter.limit) break
    }
    return out
  }

  async count(now: number): Promise<number> {
    let live = 0
    for (const record of this.#records.values()) if (record.expiresAt > now) live++
    return live
  }

  async deleteExpired(now: number, limit: number): Promise<number> {
    for (const [name, lease] of this.#leases) if (lease.expiresAt <= now) this.#leases.delete(name)
    let count = 0
    for (const record of this.#records.values()) {
      if (count >= limit) break
      if (record.expiresAt <= now) {
        await this.delete(record.idHash)
        count++
      }
    }
    return count
  }

  async acquireLease(name: string, owner: string, ttlMs: number, now: number): Promise<boolean> {
    const held = this.#leases.get(name)
    if (held && held.owner !== owner && held.expiresAt > now) return false
    this.#leases.set(name, { owner, expiresAt: now + ttlMs })
    return true
  }

  async releaseLease(name: string, owner: string): Promise<void> {
    if (this.#leases.get(name)?.owner === owner) this.#leases.delete(name)
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    this.#records.clear()
    this.#bySub.clear()
    this.#bySid.clear()
    this.#leases.clear()
  }

  #unindex(record: SessionRecord): void {
    removeFrom(this.#bySub, record.sub, record.idHash)
    if (record.sid !== undefined) removeFrom(this.#bySid, record.sid, record.idHash)
  }
}

function addTo(index: Map<string, Set<string>>, key: string, idHash: string): void {
  let ids = index.get(key)
  if (!ids) index.set(key, (ids = new Set()))
  ids.add(idHash)
}

function removeFrom(index: Map<string, Set<string>>, key: string, idHash: string): void {
  const ids = index.get(key)
  ids?.delete(idHash)
  if (ids?.size === 0) index.delete(key)
}
