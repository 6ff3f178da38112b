// A bring-your-own session store: gatehouse's SessionStore over any async key-value service (a
// document database, a cloud KV, a company cache). It scans instead of indexing, so it suits a few
// thousand sessions; a real one would keep sub/sid indexes as the built-in stores do.
// docs/extending.md shows how to pass it to createGatehouse and check it with `gatehouse-bff/testing`.
import { matchesFilter, type SessionFilter, type SessionRecord, type SessionStore } from '../../src/index.ts'

/** The few operations the store needs from the key-value service. */
export interface KeyValue {
  get(key: string): Promise<string | undefined>
  put(key: string, value: string): Promise<void>
  /** Writes only when the key holds `expected` (undefined: does not exist); false when it does not. */
  putIf(key: string, value: string, expected: string | undefined): Promise<boolean>
  delete(key: string): Promise<void>
  /** Deletes only when the key still holds `expected`; false when it does not. */
  deleteIf(key: string, expected: string): Promise<boolean>
  keys(prefix: string): Promise<string[]>
}

/** An in-process KeyValue for the example and its test; swap in a client for your service. */
export class MapKeyValue implements KeyValue {
  readonly #map = new Map<string, string>()
  async get(key: string) {
    return this.#map.get(key)
  }
  async put(key: string, value: string) {
    this.#map.set(key, value)
  }
  async putIf(key: string, value: string, expected: string | undefined) {
    if (this.#map.get(key) !== expected) return false
    this.#map.set(key, value)
    return true
  }
  async delete(key: string) {
    this.#map.delete(key)
  }
  async deleteIf(key: string, expected: string) {
    if (this.#map.get(key) !== expected) return false
    return this.#map.delete(key)
  }
  async keys(prefix: string) {
    return [...this.#map.keys()].filter((k) => k.startsWith(prefix))
  }
}

const SESSION = 'session:'
const LEASE = 'lease:'

export class KeyValueStore implements SessionStore {
  readonly #kv: KeyValue

  constructor(kv: KeyValue) {
    this.#kv = kv
  }

  async get(idHash: string, now: number): Promise<SessionRecord | undefined> {
    const text = await this.#kv.get(SESSION + idHash)
    const record = text === undefined ? undefined : parse(text)
    return record && record.expiresAt > now ? record : undefined
  }

  async set(record: SessionRecord, expectedVersion?: number): Promise<boolean> {
    const key = SESSION + record.idHash
    const current = await this.#kv.get(key)
    if (
      expectedVersion === undefined
        ? current !== undefined
        : current === undefined || (JSON.parse(current) as SessionRecord).version !== expectedVersion
    )
      return false
    // Compare-and-set on the stored text: a concurrent writer makes this write fail, never both succeed.
    return this.#kv.putIf(key, JSON.stringify(record), current)
  }

  async delete(idHash: string): Promise<boolean> {
    const existed = (await this.#kv.get(SESSION + idHash)) !== undefined
    await this.#kv.delete(SESSION + idHash)
    return existed
  }

  async deleteWhere(filter: SessionFilter): Promise<number> {
    let count = 0
    for (const record of await this.#all()) {
      if (matchesFilter(filter, record) && (await this.delete(record.idHash))) count++
    }
    return count
  }

  async list(filter: { sub?: string; sid?: string; limit: number }, now: number): Promise<SessionRecord[]> {
    return (await this.#all())
      .filter(
        (r) =>
          r.expiresAt > now &&
          (filter.sub === undefined || r.sub === filter.sub) &&
          (filter.sid === undefined || r.sid === filter.sid),
      )
      .sort((a, b) => a.createdAt - b.createdAt)
      .slice(0, filter.limit)
  }

  async deleteExpired(now: number, limit: number): Promise<number> {
    let removed = 0
    for (const { record, text } of (await this.#entries()).filter((e) => e.record.expiresAt <= now).slice(0, limit)) {
      // Only the record as scanned: one renewed meanwhile is live again and stays.
      if (await this.#kv.deleteIf(SESSION + record.idHash, text)) removed++
    }
    return removed
  }

  async acquireLease(name: string, owner: string, ttlMs: number, now: number): Promise<boolean> {
    const key = LEASE + name
    const current = await this.#kv.get(key)
    const held = current === undefined ? undefined : (JSON.parse(current) as { owner: string; expiresAt: number })
    if (held && held.owner !== owner && held.expiresAt > now) return false
    return this.#kv.putIf(key, JSON.stringify({ owner, expiresAt: now + ttlMs }), current)
  }

  async releaseLease(name: string, owner: string): Promise<void> {
    const current = await this.#kv.get(LEASE + name)
    // Conditional: if the lease expired and another owner took it since, theirs stays.
    if (current !== undefined && (JSON.parse(current) as { owner: string }).owner === owner)
      await this.#kv.deleteIf(LEASE + name, current)
  }

  /** Optional (the gatehouse_active_sessions gauge); called once per metrics scrape. */
  async count(now: number): Promise<number> {
    return (await this.#all()).filter((r) => r.expiresAt > now).length
  }

  async ping(): Promise<void> {
    await this.#kv.get('ping')
  }

  async close(): Promise<void> {}

  async #all(): Promise<SessionRecord[]> {
    return (await this.#entries()).map((e) => e.record)
  }

  async #entries(): Promise<Array<{ record: SessionRecord; text: string }>> {
    const entries: Array<{ record: SessionRecord; text: string }> = []
    for (const key of await this.#kv.keys(SESSION)) {
      const text = await this.#kv.get(key)
      if (text !== undefined) entries.push({ record: parse(text), text })
    }
    return entries
  }
}

/** JSON has no undefined: a session without an IdP sid comes back with `sid: undefined`, as it was stored. */
function parse(text: string): SessionRecord {
  const record = JSON.parse(text) as SessionRecord
  return { ...record, sid: record.sid ?? undefined }
}
