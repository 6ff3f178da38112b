import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after } from 'node:test'
import { Redis } from 'ioredis'
import type { SessionEndNotice } from '../../src/session/store.ts'
import { CachedStore } from '../../src/session/stores/cached.ts'
import { MemoryStore } from '../../src/session/stores/memory.ts'
import { openRedisStore } from '../../src/session/stores/redis.ts'
import { runStoreContract } from './contract.ts'

// The read cache in front of a store must keep the store's contract: it runs the same suite as every
// store, listening (so reads are served from its copies), over the memory store with an in-process
// pub/sub and over a real Redis with its own. An unreachable Redis fails this file; it never skips.

const REDIS_URL = process.env.GATEHOUSE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const NOW = 1_700_000_000_000
const DAY = 24 * 3_600_000
/** Longer than the suite: an entry the contract reads again is served from the cache, not re-read. */
const TTL_MS = 600_000

/** The memory store with notices delivered in-process, so the cache in front of it listens. */
class NoticeMemoryStore extends MemoryStore {
  readonly #listeners = new Set<(notice: SessionEndNotice) => void>()

  async publishEnded(notice: SessionEndNotice): Promise<void> {
    for (const listener of this.#listeners) listener(notice)
  }

  async subscribeEnded(listener: (notice: SessionEndNotice) => void): Promise<() => Promise<void>> {
    this.#listeners.add(listener)
    return async () => {
      this.#listeners.delete(listener)
    }
  }
}

async function listening(cache: CachedStore): Promise<CachedStore> {
  await cache.start()
  assert.ok(cache.active, 'the cache listens, so reads are served from it')
  return cache
}

runStoreContract('cached (memory)', () => listening(new CachedStore(new NoticeMemoryStore(), { ttlMs: TTL_MS })))

const run = randomBytes(4).toString('hex')
let n = 0
const admin = new Redis(REDIS_URL, {
  lazyConnect: true,
  maxRetriesPerRequest: 0,
  retryStrategy: () => null,
  connectTimeout: 3000,
})
after(async () => {
  const prefix = `gatehouse-test:${run}:`
  let cursor = '0'
  do {
    const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    cursor = next
    if (keys.length) await admin.unlink(...keys)
  } while (cursor !== '0')
  await admin.quit()
})

// The contract runs at a fixed instant in 2023: the store's TTL clock sits a day earlier so keys outlive the test.
runStoreContract('cached (redis)', async () =>
  listening(
    new CachedStore(
      await openRedisStore(REDIS_URL, { keyPrefix: `gatehouse-test:${run}:${n++}:`, now: () => NOW - DAY }),
      { ttlMs: TTL_MS },
    ),
  ),
)
