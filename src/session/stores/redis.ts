import type { Redis } from 'ioredis'
import { GatehouseError } from '../../errors.ts'
import type {
  Countable,
  LeaseCapable,
  NoticeCapable,
  SessionEndNotice,
  SessionFilter,
  SessionRecord,
  SessionStore,
} from '../store.ts'
import { parseNotice } from './notice.ts'
import { DEFAULTS } from '../../config/defaults.ts'
import { redisQueryProblem } from '../../config/store-url.ts'
import {
  connectCollecting,
  databaseOf,
  isSelectError,
  loadRedisDriver,
  redisStartupError,
  selectError,
  serverOptions,
} from './redis-open.ts'
import { decodeCredential, storeUrl } from './startup-error.ts'

/*
 * Key layout (P = keyPrefix, default "gatehouse:"; <x> = x with % { } : escaped as %XX):
 *
 *   P{s:<idHash>}             HASH  the record: sub, sid (absent when none), partition, createdAt,
 *                                   renewedAt, expiresAt, version, sealed. PX TTL = expiresAt - now.
 *   P{u:<sub>}                SET   ids of the sub's sessions
 *   P{d:<sid>}                SET   ids of the sessions with that IdP sid (back-channel logout may name
 *                                   only the sid, whatever the sub)
 *   P{x:0} … P{x:f}           ZSET  expiry index, 16 shards by id: member JSON [idHash, sub, sid|null],
 *                                   score expiresAt
 *   P{l:<name>}               STRING lease: "<expiresAt>:<owner>", PX TTL
 *
 * Every script and every command touches one key, so one hash slot, and the layout runs unchanged
 * on Redis Cluster. Lookups come by id hash alone (the cookie names nothing else) and by sid alone
 * (a logout token may carry only the sid), so a record can share neither its sub's nor its sid's
 * slot; writes that span slots are ordered steps, each atomic, that leave only harmless leftovers
 * when interrupted:
 *
 *   - The index sets are a superset of the truth. A write adds the id to the expiry index, then to
 *     the sub/sid sets, and only then writes the record; a delete removes the record first and the
 *     index entries after. So no live record is ever missing from its sub's or sid's set, and a
 *     back-channel logout always finds it. An interruption leaves an index entry whose record is
 *     gone or belongs elsewhere: readers re-check every candidate against its record (one
 *     single-key script each), and deleteExpired prunes such leftovers once their expiry has
 *     passed, reaching each through the expiry index, which an entry joins first and leaves last.
 *     Nothing else prunes an entry it did not delete itself: a missing record may be a login in
 *     flight (indexed, record not yet written).
 *   - Expiry scores may lag behind a renewal (renewals write only the record); deleteExpired
 *     re-scores a candidate it finds still live.
 *   - Ids are 256-bit random and sub/sid are bound into the sealed blob (sessions.ts), so an id
 *     never comes back after deletion and a record never changes sub or sid in practice. The store
 *     still supports it (the new sub/sid is indexed before the write); pruning the old entries is
 *     then best-effort.
 *
 * Expiry: get() compares expiresAt with the caller's clock, so a record is never served late; the
 * TTL only collects the garbage. It is computed from the store's clock (PX), not PEXPIREAT on the
 * server's, so it follows the same clock as the expiresAt it mirrors.
 */

export interface RedisStoreOptions {
  /** Prepended to every key; default "gatehouse:". Must not contain `{` or `}` (hash tags). */
  keyPrefix?: string
  /** The clock that turns expiresAt into a key TTL; default Date.now (tests run at a fixed instant). */
  now?: () => number
  /** What differs on a deployment of several nodes (Redis Cluster: redis-cluster.ts); default: one server. */
  deployment?: (client: Redis) => RedisDeployment
}

/**
 * What the store does differently on one server and on a Redis Cluster, whose keyed commands the
 * driver routes alone: where a SCAN of every key runs, what "reachable" means, how notices travel.
 */
export interface RedisDeployment {
  /** The servers that together hold every key (each one SCANned). */
  scanNodes(): Redis[]
  /** Resolves when every key can be read and written now; rejects otherwise. */
  ping(): Promise<void>
  /** The pub/sub channel for session-end notices, given the key prefix. */
  channel(prefix: string): string
  publish(channel: string, message: string): Promise<unknown>
  /** As NoticeCapable.subscribeEnded, for raw messages; the returned function stops listening. */
  subscribe(
    channel: string,
    onMessage: (message: string) => void,
    onLink?: (listening: boolean) => void,
  ): Promise<() => void>
}

const EXPIRY_SHARDS = 16
const SCAN_COUNT = 1000

// Every script touches only the keys it is given, all in one hash slot.
const SCRIPTS = {
  /** Insert-if-absent (ARGV[1] = '') or replace-if-version-matches, with the TTL. 1 = written, 2 = written with
   *  an earlier expiresAt, 0 = refused, -1 = sub/sid would change and the caller has not indexed them yet. */
  ghPut: {
    numberOfKeys: 1,
    lua: `
local key = KEYS[1]
local result = 1
if ARGV[1] == '' then
  if redis.call('EXISTS', key) == 1 then return 0 end
else
  local cur = redis.call('HMGET', key, 'version', 'sub', 'sid', 'expiresAt')
  if cur[1] ~= ARGV[1] then return 0 end
  local sid = false
  if ARGV[5] == '1' then sid = ARGV[6] end
  if ARGV[2] ~= '1' and (cur[2] ~= ARGV[4] or cur[3] ~= sid) then return -1 end
  if tonumber(ARGV[10]) < tonumber(cur[4]) then result = 2 end
end
redis.call('DEL', key)
redis.call('HSET', key, 'sub', ARGV[4], 'partition', ARGV[7], 'createdAt', ARGV[8], 'renewedAt', ARGV[9],
  'expiresAt', ARGV[10], 'version', ARGV[11], 'sealed', ARGV[12])
if ARGV[5] == '1' then redis.call('HSET', key, 'sid', ARGV[6]) end
redis.call('PEXPIRE', key, ARGV[3])
return result`,
  },
  /** Deletes the record; nil when absent, else {sub, sid} (sid '' = none, '=x' = x). */
  ghDelete: {
    numberOfKeys: 1,
    lua: `
local cur = redis.call('HMGET', KEYS[1], 'sub', 'sid')
if not cur[1] then return false end
redis.call('DEL', KEYS[1])
if cur[2] then return {cur[1], '=' .. cur[2]} end
return {cur[1], ''}`,
  },
  /** Deletes the record when it matches sub (ARGV[1]: '' = any, '=x' = x), sid (ARGV[2]) and partition (ARGV[3]),
   *  each given the same way. {0} gone, {1, sub, sid} deleted, {2} kept. */
  ghDeleteIf: {
    numberOfKeys: 1,
    lua: `
local cur = redis.call('HMGET', KEYS[1], 'sub', 'sid', 'partition')
if not cur[1] then return {0} end
local sid = ''
if cur[2] then sid = '=' .. cur[2] end
if (ARGV[1] ~= '' and ('=' .. cur[1]) ~= ARGV[1]) or (ARGV[2] ~= '' and sid ~= ARGV[2])
  or (ARGV[3] ~= '' and ('=' .. cur[3]) ~= ARGV[3]) then return {2} end
redis.call('DEL', KEYS[1])
return {1, cur[1], sid}`,
  },
  /** Deletes the record if expired at ARGV[1]. {0} gone, {1, sub, sid} deleted, {2, sub, sid, expiresAt} live. */
  ghExpire: {
    numberOfKeys: 1,
    lua: `
local cur = redis.call('HMGET', KEYS[1], 'sub', 'sid', 'expiresAt')
if not cur[1] then return {0} end
local sid = ''
if cur[2] then sid = '=' .. cur[2] end
if tonumber(cur[3]) <= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return {1, cur[1], sid}
end
return {2, cur[1], sid, cur[3]}`,
  },
  /** Takes the lease for owner ARGV[1] until ARGV[2] unless another owner holds it past now (ARGV[3]). */
  ghLease: {
    numberOfKeys: 1,
    lua: `
local held = redis.call('GET', KEYS[1])
if held then
  local sep = string.find(held, ':', 1, true)
  if string.sub(held, sep + 1) ~= ARGV[1] and tonumber(string.sub(held, 1, sep - 1)) > tonumber(ARGV[3]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2] .. ':' .. ARGV[1], 'PX', ARGV[4])
return 1`,
  },
  /** Deletes the lease if owner ARGV[1] holds it. */
  ghRelease: {
    numberOfKeys: 1,
    lua: `
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, string.find(held, ':', 1, true) + 1) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1`,
  },
} as const

type Arg = string | number
type Reply = Array<string | number>
interface ScriptCommands {
  ghPut(key: string, ...args: Arg[]): Promise<number>
  ghDelete(key: string): Promise<[string, string] | null>
  ghDeleteIf(key: string, sub: string, sid: string, partition: string): Promise<Reply>
  ghExpire(key: string, now: number): Promise<Reply>
  ghLease(key: string, owner: string, expiresAt: number, now: number, ttlMs: number): Promise<number>
  ghRelease(key: string, owner: string): Promise<number>
}
type Client = Redis & ScriptCommands

/** An index entry: the id and the sub/sid sets it sits in. */
interface Entry {
  idHash: string
  sub: string
  sid: string | undefined
}

/** Index entries to drop: SREM id from each set, then ZREM member from the id's expiry shard. */
interface Removal {
  idHash: string
  keys: string[]
  member: string | undefined
}

/**
 * Sessions on a shared Redis (several gatehouse instances). Single-key Lua scripts make every write
 * compare-and-set; the key layout and its crash-tolerance are described at the top of this file.
 */
export class RedisStore implements SessionStore, LeaseCapable, NoticeCapable, Countable {
  readonly #client: Client
  readonly #prefix: string
  readonly #now: () => number
  readonly #deployment: RedisDeployment
  readonly #unsubscribes = new Set<() => void>()
  #closed = false

  /** Takes over `client` (closes it on close()): a Redis, or a Cluster with `options.deployment`. */
  constructor(client: Redis, options: RedisStoreOptions = {}) {
    const prefix = options.keyPrefix ?? DEFAULTS.storeUrl.redisPrefix
    if (/[{}]/.test(prefix))
      throw new TypeError(
        `Redis key prefix "${prefix}" must not contain { or }: they would change the keys' hash slots`,
      )
    for (const [name, definition] of Object.entries(SCRIPTS)) client.defineCommand(name, definition)
    this.#client = client as Client
    this.#prefix = prefix
    this.#now = options.now ?? Date.now
    this.#deployment = (options.deployment ?? singleServer)(client)
    if (!options.deployment) reviveAfterEnd(client, () => this.#closed)
  }

  async get(idHash: string, now: number): Promise<SessionRecord | undefined> {
    const record = toRecord(idHash, await this.#client.hgetall(this.#recordKey(idHash)))
    return record && record.expiresAt > now ? record : undefined
  }

  async set(record: SessionRecord, expectedVersion?: number): Promise<boolean> {
    const key = this.#recordKey(record.idHash)
    const args = [
      Math.max(1, Math.ceil(record.expiresAt - this.#now())),
      record.sub,
      record.sid === undefined ? '0' : '1',
      record.sid ?? '',
      record.partition,
      record.createdAt,
      record.renewedAt,
      record.expiresAt,
      record.version,
      record.sealed,
    ]
    if (expectedVersion === undefined) {
      await this.#index(record)
      return (await this.#client.ghPut(key, '', '1', ...args)) === 1
    }
    // A renewal or token refresh keeps sub and sid: already indexed, so one round trip.
    let result = await this.#client.ghPut(key, String(expectedVersion), '0', ...args)
    if (result === -1) {
      await this.#index(record)
      result = await this.#client.ghPut(key, String(expectedVersion), '1', ...args)
    }
    // The expiry index may lag behind (deleteExpired re-scores), never run ahead of the record.
    if (result === 2) await this.#client.zadd(this.#expiryKey(record.idHash), record.expiresAt, expiryMember(record))
    return result >= 1
  }

  async delete(idHash: string): Promise<boolean> {
    const deleted = await this.#client.ghDelete(this.#recordKey(idHash))
    if (!deleted) return false
    await this.#unindex([this.#removal({ idHash, sub: deleted[0], sid: decodeSid(deleted[1]) })])
    return true
  }

  async deleteWhere(filter: SessionFilter): Promise<number> {
    const { sub, sid, partition } = filter
    if (sub === undefined && sid === undefined) throw new TypeError('deleteWhere needs a sub or a sid')
    // An IdP session (sid) spans a handful of records; a sub may have more: the sid set is the narrower.
    const ids = await this.#client.smembers(sid === undefined ? this.#subKey(sub!) : this.#sidKey(sid))
    const results = await Promise.all(
      ids.map((id) =>
        this.#client.ghDeleteIf(
          this.#recordKey(id),
          encodeOptional(sub),
          encodeOptional(sid),
          encodeOptional(partition),
        ),
      ),
    )
    // Only what this call deleted is unindexed here. An entry whose record is missing may belong to a
    // login in flight (indexed, record not yet written): deleteExpired prunes it once it has expired.
    const removals = results.flatMap(([status, recordSub, recordSid], i) =>
      status === 1
        ? [this.#removal({ idHash: ids[i]!, sub: String(recordSub), sid: decodeSid(String(recordSid)) })]
        : [],
    )
    await this.#unindex(removals)
    return removals.length
  }

  async list(filter: { sub?: string; sid?: string; limit: number }, now: number): Promise<SessionRecord[]> {
    const live: SessionRecord[] = []
    const collect = async (ids: string[]) => {
      const hashes = await Promise.all(ids.map((id) => this.#client.hgetall(this.#recordKey(id))))
      hashes.forEach((hash, i) => {
        const record = toRecord(ids[i]!, hash)
        if (
          record &&
          record.expiresAt > now &&
          (filter.sub === undefined || record.sub === filter.sub) &&
          (filter.sid === undefined || record.sid === filter.sid)
        )
          live.push(record)
      })
    }
    if (filter.sid !== undefined) {
      await collect(await this.#client.smembers(this.#sidKey(filter.sid)))
    } else if (filter.sub !== undefined) {
      await collect(await this.#client.smembers(this.#subKey(filter.sub)))
    } else {
      // No index of all sessions (it would be one hot key): SCAN the record keys, stopping at limit.
      const pattern = `${this.#prefix.replace(/[*?[\]\\]/g, '\\$&')}{s:*`
      for (const node of this.#deployment.scanNodes()) {
        let cursor = '0'
        do {
          const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT)
          cursor = next
          await collect(keys.map((key) => unescapeKeyPart(key.slice(this.#prefix.length + '{s:'.length, -'}'.length))))
        } while (cursor !== '0' && live.length < filter.limit)
        if (live.length >= filter.limit) break
      }
    }
    return live.sort((a, b) => a.createdAt - b.createdAt).slice(0, filter.limit)
  }

  /**
   * ZCOUNT over the expiry index shards: one cheap command per shard, no record read. Approximate by
   * the index's design: a session renewed past its first expiry counts again once cleanup re-scores
   * it, and leftovers of interrupted writes count until cleanup prunes them.
   */
  async count(now: number): Promise<number> {
    const counts = await Promise.all(
      Array.from({ length: EXPIRY_SHARDS }, (_, shard) =>
        this.#client.zcount(this.#shardKey(shard), `(${now}`, '+inf'),
      ),
    )
    return counts.reduce((sum, n) => sum + n, 0)
  }

  async deleteExpired(now: number, limit: number): Promise<number> {
    // Most expired records are already gone by TTL and only their index entries are left; both count,
    // once per id (a record whose sub/sid changed has two entries).
    const removed = new Set<string>()
    for (let round = 0; removed.size < limit && round < 4; round++) {
      const want = limit - removed.size
      const shards = await Promise.all(
        Array.from({ length: EXPIRY_SHARDS }, (_, shard) =>
          this.#client.zrangebyscore(this.#shardKey(shard), '-inf', now, 'LIMIT', 0, want),
        ),
      )
      const candidates = shards.flatMap((members, shard) =>
        members.map((member) => ({ key: this.#shardKey(shard), member, entry: parseExpiryMember(member) })),
      )
      if (candidates.length === 0) break
      const batch = candidates.slice(0, want)
      const results = await Promise.all(
        batch.map(({ entry }) => (entry ? this.#client.ghExpire(this.#recordKey(entry.idHash), now) : [0])),
      )
      const removals: Removal[] = []
      const fixes: Array<Promise<unknown>> = []
      results.forEach(([status, sub, sid, expiresAt], i) => {
        const { key, member, entry } = batch[i]!
        if (!entry) {
          fixes.push(this.#client.zrem(key, member)) // not ours: drop it so it cannot clog every batch
        } else if (status === 0 || status === 1) {
          removed.add(entry.idHash)
          removals.push(this.#removal(entry))
        } else if (sub === entry.sub && decodeSid(String(sid)) === entry.sid) {
          fixes.push(this.#client.zadd(key, 'XX', Number(expiresAt), member)) // renewed since indexed
        } else {
          // The record now carries another sub or sid (an update changed them): drop what no longer applies.
          removals.push(this.#removal(entry, { sub: String(sub), sid: decodeSid(String(sid)) }))
        }
      })
      await Promise.all(fixes)
      await this.#unindex(removals)
    }
    return removed.size
  }

  async acquireLease(name: string, owner: string, ttlMs: number, now: number): Promise<boolean> {
    const expiresAt = now + ttlMs
    const px = Math.max(1, Math.ceil(expiresAt - this.#now()))
    return (await this.#client.ghLease(this.#leaseKey(name), owner, expiresAt, now, px)) === 1
  }

  async releaseLease(name: string, owner: string): Promise<void> {
    await this.#client.ghRelease(this.#leaseKey(name), owner)
  }

  async ping(): Promise<void> {
    await this.#deployment.ping()
  }

  async publishEnded(notice: SessionEndNotice): Promise<void> {
    await this.#deployment.publish(this.#channel(), JSON.stringify(notice))
  }

  async subscribeEnded(
    listener: (notice: SessionEndNotice) => void,
    onLink?: (listening: boolean) => void,
  ): Promise<() => Promise<void>> {
    if (this.#closed) throw new GatehouseError('store_unavailable', 'the session store is closed')
    const unsubscribe = await this.#deployment.subscribe(
      this.#channel(),
      (message) => {
        const notice = parseNotice(message)
        if (notice) listener(notice)
      },
      onLink,
    )
    if (this.#closed) {
      unsubscribe()
      throw new GatehouseError('store_unavailable', 'the session store is closed')
    }
    this.#unsubscribes.add(unsubscribe)
    return async () => {
      this.#unsubscribes.delete(unsubscribe)
      unsubscribe()
    }
  }

  #channel(): string {
    return this.#deployment.channel(this.#prefix)
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    for (const unsubscribe of this.#unsubscribes) unsubscribe()
    this.#unsubscribes.clear()
    try {
      await this.#client.quit()
    } catch {}
    // After QUIT too: a Sentinel client's links to the sentinels close only on disconnect().
    this.#client.disconnect()
  }

  /** Expiry index first, then the sub/sid sets: an entry is never in a set without being reachable by deleteExpired. */
  async #index(record: SessionRecord): Promise<void> {
    await this.#client.zadd(this.#expiryKey(record.idHash), record.expiresAt, expiryMember(record))
    await Promise.all(this.#removal(record).keys.map((key) => this.#client.sadd(key, record.idHash)))
  }

  /** What removing an index entry takes; sets the record still belongs to (`current` sub/sid) are kept. */
  #removal(entry: Entry, current?: { sub: string; sid: string | undefined }): Removal {
    const keys: string[] = []
    if (current?.sub !== entry.sub) keys.push(this.#subKey(entry.sub))
    if (entry.sid !== undefined && current?.sid !== entry.sid) keys.push(this.#sidKey(entry.sid))
    return { idHash: entry.idHash, keys, member: expiryMember(entry) }
  }

  /** The reverse of #index: the sub/sid sets first, the expiry index last. */
  async #unindex(removals: Removal[]): Promise<void> {
    await Promise.all(removals.flatMap((r) => r.keys.map((key) => this.#client.srem(key, r.idHash))))
    const byShard = new Map<string, string[]>()
    for (const { idHash, member } of removals) {
      if (member === undefined) continue
      const key = this.#expiryKey(idHash)
      byShard.set(key, [...(byShard.get(key) ?? []), member])
    }
    await Promise.all([...byShard].map(([key, members]) => this.#client.zrem(key, ...members)))
  }

  #recordKey(idHash: string): string {
    return `${this.#prefix}{s:${escapeKeyPart(idHash)}}`
  }

  #subKey(sub: string): string {
    return `${this.#prefix}{u:${escapeKeyPart(sub)}}`
  }

  #sidKey(sid: string): string {
    return `${this.#prefix}{d:${escapeKeyPart(sid)}}`
  }

  #expiryKey(idHash: string): string {
    let hash = 0
    for (let i = 0; i < idHash.length; i++) hash = (hash * 31 + idHash.charCodeAt(i)) >>> 0
    return this.#shardKey(hash % EXPIRY_SHARDS)
  }

  #shardKey(shard: number): string {
    return `${this.#prefix}{x:${shard.toString(16)}}`
  }

  #leaseKey(name: string): string {
    return `${this.#prefix}{l:${escapeKeyPart(name)}}`
  }
}

/**
 * Reconnects a client that ended without its owner closing it. ioredis 6 with Sentinel's failover
 * detector can end a client for good: the sentinels' switch announcement closes a link that is still
 * reconnecting, and that reconnect then gives up ("Connection is closed.", status "end").
 */
function reviveAfterEnd(client: Redis, closed: () => boolean): void {
  client.on('end', () => {
    if (closed()) return
    setTimeout(() => {
      if (!closed() && client.status === 'end') client.connect().catch(() => {})
    }, 100).unref()
  })
}

/**
 * Gives the links a Sentinel client opens to the sentinels an error listener. ioredis 6 leaves its
 * failover detector's links without one, so each of their errors (a sentinel down, a refused AUTH)
 * is printed to stderr with a stack. A client without Sentinel is left as it is.
 */
export function quietSentinelLinks(client: Redis): void {
  type Connector = { connectToSentinel?: (this: Connector, ...args: unknown[]) => Redis }
  const connector = (client as unknown as { connector?: Connector }).connector
  const open = connector?.connectToSentinel
  if (!connector || typeof open !== 'function') return
  connector.connectToSentinel = function (...args) {
    const link = open.apply(this, args)
    link.on('error', () => {})
    return link
  }
}

/** One Redis server (or the primary Sentinel names, which the driver follows). */
function singleServer(client: Redis): RedisDeployment {
  return {
    scanNodes: () => [client],
    ping: async () => {
      await client.ping()
    },
    channel: (prefix) => `${prefix}session-ended`,
    publish: (channel, message) => client.publish(channel, message),
    async subscribe(channel, onMessage, onLink) {
      // A connection in subscriber mode can do nothing else: it gets its own.
      const subscriber = client.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null })
      quietSentinelLinks(subscriber)
      // Reported on changes only: ioredis says "close" at every failed reconnect attempt, and at disconnect().
      let started = false
      let listening = false
      let stopped = false
      subscriber.on('error', () => {})
      subscriber.on('message', (from: string, message: string) => {
        if (from === channel) onMessage(message)
      })
      subscriber.on('close', () => {
        if (!listening || stopped) return
        listening = false
        onLink?.(false)
      })
      // ioredis says "ready" before its own resubscription is confirmed: listening again is only
      // reported once a SUBSCRIBE of ours has been answered.
      subscriber.on('ready', () => {
        if (!started || listening || stopped) return
        subscriber.subscribe(channel).then(
          () => {
            if (listening || stopped || subscriber.status !== 'ready') return
            listening = true
            onLink?.(true)
          },
          () => {},
        )
      })
      reviveAfterEnd(subscriber, () => stopped)
      try {
        await subscriber.subscribe(channel)
      } catch (err) {
        stopped = true
        subscriber.disconnect()
        throw err
      }
      started = true
      listening = true
      return () => {
        stopped = true
        subscriber.disconnect()
      }
    },
  }
}

/**
 * Opens a store on `redis://` or `rediss://` (TLS) URL; the path picks the database (`/3`, default 0),
 * `?prefix=` sets the key prefix, and no other parameter is accepted. The optional peer `ioredis` is
 * imported only here. A server that cannot be used fails the open, within seconds, with one line
 * naming the cause (redis-open.ts).
 */
export async function openRedisStore(location: string, options: RedisStoreOptions = {}): Promise<RedisStore> {
  const url = storeUrl(location)
  const db = databaseOf(url)
  const problem = redisQueryProblem(url)
  if (problem) throw new GatehouseError('config_invalid', `session.store ${problem}`)
  const keyPrefix = options.keyPrefix ?? url.searchParams.get('prefix') ?? undefined
  const { Redis: Driver } = await loadRedisDriver(url.protocol)
  // The URL is read here, not by ioredis: it would copy the query into its options over these ones
  // (`?db=5` writing to another database than the one checked, `?connectTimeout=` lifting the bounds),
  // and take the database as a string that, when SELECT fails, leaves it in database 0.
  // Fail fast while Redis is away (requests answer 503 within seconds), reconnect in the background.
  const client = new Driver({
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: Number(url.port || 6379),
    ...serverOptions({
      username: url.username ? decodeCredential(url.username) : undefined,
      password: url.password ? decodeCredential(url.password) : undefined,
      tls: url.protocol === 'rediss:',
    }),
    db,
    lazyConnect: true,
  })
  // Start-up errors are collected only until the open is done: later ones belong to the runtime's reconnects.
  const { ok, errors } = await connectCollecting(client)
  if (!ok) throw await redisStartupError(url, db, errors)
  const failedSelect = errors.find(isSelectError)
  if (failedSelect) {
    const databases = await client.config('GET', 'databases').then(
      (reply) => Number((reply as string[])[1]),
      () => NaN,
    )
    client.disconnect()
    throw selectError(url, db, failedSelect, databases)
  }
  try {
    return new RedisStore(client, { ...options, ...(keyPrefix === undefined ? {} : { keyPrefix }) })
  } catch (err) {
    client.disconnect()
    throw err
  }
}

function toRecord(idHash: string, hash: Record<string, string>): SessionRecord | undefined {
  if (hash.version === undefined) return undefined
  return {
    idHash,
    sub: hash.sub!,
    sid: hash.sid,
    partition: hash.partition!,
    createdAt: Number(hash.createdAt),
    renewedAt: Number(hash.renewedAt),
    expiresAt: Number(hash.expiresAt),
    version: Number(hash.version),
    sealed: hash.sealed!,
  }
}

function expiryMember(e: Entry): string {
  return JSON.stringify([e.idHash, e.sub, e.sid ?? null])
}

function parseExpiryMember(member: string): Entry | undefined {
  try {
    const [idHash, sub, sid] = JSON.parse(member) as unknown[]
    if (typeof idHash === 'string' && typeof sub === 'string' && (typeof sid === 'string' || sid === null))
      return { idHash, sub, sid: sid ?? undefined }
  } catch {}
  return undefined
}

/** For the scripts: '' = not given / none, '=x' = x (so an empty string stays distinguishable). */
function encodeOptional(value: string | undefined): string {
  return value === undefined ? '' : `=${value}`
}

function decodeSid(encoded: string): string | undefined {
  return encoded === '' ? undefined : encoded.slice(1)
}

/** Injective and free of `{`, `}` and `:`, so a sub or sid can neither move a key's hash slot nor forge another key. */
function escapeKeyPart(value: string): string {
  return value.replace(/[%{}:]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
}

function unescapeKeyPart(value: string): string {
  return value.replace(/%(25|7B|7D|3A)/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)))
}
