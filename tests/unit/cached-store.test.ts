import assert from 'node:assert/strict'
import { test } from 'node:test'
import { CachedStore } from '../../src/session/stores/cached.ts'
import { MemoryStore } from '../../src/session/stores/memory.ts'
import type { SessionEndNotice, SessionRecord } from '../../src/session/store.ts'

// The read cache in front of a networked store, isolated: the inner store is the memory store with
// a pub/sub stand-in that the test drives (delivering notices, dropping and restoring the link) and
// a counter of the reads that reached it. tests/flows/multi-instance.test.ts runs the same cache
// against real Redis and PostgreSQL with two gatehouse instances.

const NOW = 1_700_000_000_000
const TTL = 1_000

class PubSubMemoryStore extends MemoryStore {
  reads = 0
  subscriptions = 0
  listener: ((notice: SessionEndNotice) => void) | undefined
  link: ((listening: boolean) => void) | undefined
  /** Set to hold the next inner read until the test releases it. */
  gate: Promise<void> | undefined

  override async get(idHash: string, now: number): Promise<SessionRecord | undefined> {
    this.reads++
    const record = await super.get(idHash, now)
    await this.gate
    return record
  }

  async publishEnded(notice: SessionEndNotice): Promise<void> {
    this.listener?.(notice)
  }

  async subscribeEnded(
    listener: (notice: SessionEndNotice) => void,
    onLink?: (listening: boolean) => void,
  ): Promise<() => Promise<void>> {
    this.subscriptions++
    this.listener = listener
    this.link = onLink
    return async () => {
      this.listener = undefined
    }
  }
}

function record(id: string, overrides: Partial<SessionRecord> = {}): SessionRecord {
  return {
    idHash: id,
    sub: `sub-${id}`,
    sid: `sid-${id}`,
    partition: 'app',
    createdAt: NOW,
    renewedAt: NOW,
    expiresAt: NOW + 3_600_000,
    version: 1,
    sealed: `sealed-${id}`,
    ...overrides,
  }
}

async function setup(): Promise<{ inner: PubSubMemoryStore; cache: CachedStore; clock: { t: number } }> {
  const inner = new PubSubMemoryStore()
  const clock = { t: 0 }
  const cache = new CachedStore(inner, { ttlMs: TTL, clock: () => clock.t })
  await cache.start()
  return { inner, cache, clock }
}

test('repeated reads within the TTL reach the store once; after the TTL the store is read again', async () => {
  const { inner, cache, clock } = await setup()
  await inner.set(record('a'))
  for (let i = 0; i < 5; i++) assert.equal((await cache.get('a', NOW))?.sealed, 'sealed-a')
  assert.equal(inner.reads, 1)
  clock.t = TTL - 1
  await cache.get('a', NOW)
  assert.equal(inner.reads, 1)
  clock.t = TTL
  await cache.get('a', NOW)
  assert.equal(inner.reads, 2, 'an entry as old as the TTL is not used')
})

test('a session ended elsewhere (notice by id hash) is refused at the next read, not after the TTL', async () => {
  const { inner, cache } = await setup()
  await inner.set(record('a'))
  assert.ok(await cache.get('a', NOW))
  await inner.delete('a') // another instance's logout: the store first, then the notice
  assert.ok(await cache.get('a', NOW), 'without the notice the copy is still used (this is what the TTL bounds)')
  inner.listener!({ idHash: 'a', reason: 'logout', origin: 'other' })
  assert.equal(await cache.get('a', NOW), undefined)
})

test('a notice with a filter drops exactly the matching sessions (sub, sid, partition)', async () => {
  const { inner, cache } = await setup()
  await inner.set(record('a'))
  await inner.set(record('b', { sub: 'sub-a', sid: 'other-sid' }))
  await inner.set(record('c', { sub: 'sub-a', partition: 'admin' }))
  await inner.set(record('d'))
  for (const id of ['a', 'b', 'c', 'd']) await cache.get(id, NOW)
  assert.equal(inner.reads, 4)
  inner.listener!({ filter: { sid: 'sid-a', partition: 'app' }, reason: 'backchannel', origin: 'other' })
  await cache.get('a', NOW)
  assert.equal(inner.reads, 5, 'a (sid and partition match) is read again')
  for (const id of ['b', 'c', 'd']) await cache.get(id, NOW)
  assert.equal(inner.reads, 5, 'b (other sid), c (other partition) and d are still cached')
  inner.listener!({ filter: { sub: 'sub-a' }, reason: 'revoked', origin: 'cli' })
  for (const id of ['a', 'b', 'c']) await cache.get(id, NOW)
  assert.equal(inner.reads, 8, 'every session of sub-a is read again')
  await cache.get('d', NOW)
  assert.equal(inner.reads, 8)
})

test('while the pub/sub link is down nothing is served from the cache, and it starts empty when the link is back', async () => {
  const { inner, cache } = await setup()
  await inner.set(record('a'))
  await cache.get('a', NOW)
  inner.link!(false)
  assert.equal(cache.active, false)
  await cache.get('a', NOW)
  await cache.get('a', NOW)
  assert.equal(inner.reads, 3, 'every read went to the store')
  await inner.delete('a') // a notice for this would have been missed while the link was down
  inner.link!(true)
  assert.equal(await cache.get('a', NOW), undefined, 'no copy from before the outage survives')
})

test('a read that was in flight when a notice arrived does not put the ended session back', async () => {
  const { inner, cache } = await setup()
  await inner.set(record('a'))
  let release!: () => void
  inner.gate = new Promise((resolve) => (release = resolve))
  const reading = cache.get('a', NOW) // started before the logout, answers the old record
  inner.listener!({ idHash: 'a', reason: 'logout', origin: 'other' })
  await inner.delete('a')
  release()
  assert.ok(await reading)
  inner.gate = undefined
  assert.equal(await cache.get('a', NOW), undefined, 'the next read goes to the store')
})

test('a read that started before a write of ours and ends after it does not put the older version back', async () => {
  const { inner, cache } = await setup()
  const first = record('a')
  await inner.set(first)
  let release!: () => void
  inner.gate = new Promise((resolve) => (release = resolve))
  const reading = cache.getFresh('a', NOW) // reads version 1, answers late
  await new Promise((resolve) => setImmediate(resolve))
  inner.gate = undefined
  assert.equal(await cache.set({ ...first, version: 2, sealed: 'v2' }, 1), true)
  release()
  assert.equal((await reading)?.version, 1)
  const reads = inner.reads
  assert.equal((await cache.get('a', NOW))?.sealed, 'v2', 'the copy is still version 2')
  assert.equal(inner.reads, reads, 'served from the cache')
})

test('writes and deletes through the cache update or drop the copy at once', async () => {
  const { inner, cache } = await setup()
  const first = record('a')
  await cache.set(first)
  await cache.get('a', NOW)
  const renewed = { ...first, version: 2, sealed: 'v2' }
  assert.equal(await cache.set(renewed, 1), true)
  assert.equal((await cache.get('a', NOW))?.sealed, 'v2', 'a compare-and-set that won is the new copy')
  assert.equal(await cache.set({ ...first, version: 2, sealed: 'stale' }, 1), false)
  assert.equal((await cache.get('a', NOW))?.sealed, 'v2', "a lost compare-and-set leaves the store's record")
  await cache.delete('a')
  assert.equal(await cache.get('a', NOW), undefined)
  await cache.set(record('b'))
  await cache.get('b', NOW)
  assert.equal(await cache.deleteWhere({ sub: 'sub-b' }), 1)
  assert.equal(await cache.get('b', NOW), undefined)
  assert.ok(inner.reads >= 2)
})

test('an expired record is never served from the cache, and getFresh always reads the store', async () => {
  const { inner, cache } = await setup()
  await inner.set(record('a', { expiresAt: NOW + 10 }))
  await cache.get('a', NOW)
  assert.equal(await cache.get('a', NOW + 10), undefined, 'expired at its expiresAt')
  await inner.set(record('b'))
  await cache.get('b', NOW)
  const reads = inner.reads
  await cache.getFresh('b', NOW)
  await cache.getFresh('b', NOW)
  assert.equal(inner.reads, reads + 2)
})

test('no caching before start() or after stop()', async () => {
  const inner = new PubSubMemoryStore()
  const cache = new CachedStore(inner, { ttlMs: TTL, clock: () => 0 })
  await inner.set(record('a'))
  await cache.get('a', NOW)
  await cache.get('a', NOW)
  assert.equal(inner.reads, 2, 'not listening yet: every read goes to the store')
  await cache.start()
  await cache.get('a', NOW)
  await cache.get('a', NOW)
  assert.equal(inner.reads, 3)
  await cache.stop()
  await cache.get('a', NOW)
  assert.equal(inner.reads, 4)
  assert.equal(inner.listener, undefined, 'unsubscribed')
})

test("another subscription to the notices shares the cache's link: one store subscription, every notice and link change passed on, the copy dropped first", async () => {
  const { inner, cache } = await setup()
  await inner.set(record('a'))
  await cache.get('a', NOW)
  const seen: string[] = []
  const stop = await cache.subscribeEnded!(
    (notice) => seen.push(`notice ${notice.idHash} (cached: ${inner.reads})`),
    (listening) => seen.push(`link ${listening}`),
  )
  assert.equal(inner.subscriptions, 1, 'no second subscription to the store')
  inner.listener!({ idHash: 'a', reason: 'logout', origin: 'other' })
  // Dropped before the follower heard of it: a read now goes to the store.
  await cache.get('a', NOW)
  assert.equal(inner.reads, 2)
  inner.link!(false)
  inner.link!(true)
  await stop()
  inner.listener!({ idHash: 'b', reason: 'logout', origin: 'other' })
  assert.deepEqual(seen, ['notice a (cached: 1)', 'link false', 'link true'], 'nothing after it stopped')
})

test('a subscription before the cache listens, or after it stopped, gets a link of its own', async () => {
  const inner = new PubSubMemoryStore()
  const cache = new CachedStore(inner, { ttlMs: TTL })
  await cache.subscribeEnded!(() => {})
  assert.equal(inner.subscriptions, 1)
  await cache.start()
  await cache.stop()
  await cache.subscribeEnded!(() => {})
  assert.equal(inner.subscriptions, 3)
})
