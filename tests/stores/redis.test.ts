import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, describe, test } from 'node:test'
import { Redis } from 'ioredis'
import { GatehouseError } from '../../src/errors.ts'
import type { SessionRecord } from '../../src/session/store.ts'
import { openStore } from '../../src/session/stores/open-store.ts'
import { RedisStore, openRedisStore } from '../../src/session/stores/redis.ts'
import { runStoreContract, sampleRecord } from './contract.ts'

// Runs against a real Redis (CI starts one). An unreachable server fails this file; it never skips.
const REDIS_URL = process.env.GATEHOUSE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const NOW = 1_700_000_000_000
const HOUR = 3_600_000
const DAY = 24 * HOUR
const run = randomBytes(4).toString('hex')
let n = 0

const admin = new Redis(REDIS_URL, {
  lazyConnect: true,
  maxRetriesPerRequest: 0,
  retryStrategy: () => null,
  connectTimeout: 3000,
})
let connectError: unknown
admin.on('error', (err) => {
  connectError = err
})
try {
  await admin.connect()
  await admin.ping()
} catch (err) {
  throw new Error(
    `the Redis store tests need a Redis server at ${REDIS_URL} (set GATEHOUSE_TEST_REDIS_URL to use another): ${String(connectError ?? err)}`,
  )
}

after(async () => {
  await deleteKeys(`gatehouse-test:${run}:*`)
  await admin.quit()
})

function freshPrefix(): string {
  return `gatehouse-test:${run}:${n++}:`
}

async function keysUnder(prefix: string): Promise<string[]> {
  const keys: string[] = []
  let cursor = '0'
  do {
    const [next, batch] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    cursor = next
    keys.push(...batch)
  } while (cursor !== '0')
  return keys.sort()
}

async function deleteKeys(pattern: string): Promise<void> {
  const keys = await keysUnder(pattern.slice(0, -1))
  for (let i = 0; i < keys.length; i += 500) await admin.unlink(...keys.slice(i, i + 500))
}

/** The contract runs at a fixed instant in 2023: the store's TTL clock sits a day earlier so keys outlive the test. */
async function openTestStore(prefix = freshPrefix(), now: () => number = () => NOW - DAY): Promise<RedisStore> {
  return openRedisStore(REDIS_URL, { keyPrefix: prefix, now })
}

runStoreContract('redis', () => openTestStore())

/** Redis Cluster's key → slot mapping: CRC16 (XMODEM) of the hash tag, or of the whole key without one. */
function hashSlot(key: string): number {
  const open = key.indexOf('{')
  const close = open === -1 ? -1 : key.indexOf('}', open + 1)
  const tagged = open !== -1 && close > open + 1 ? key.slice(open + 1, close) : key
  let crc = 0
  for (const byte of Buffer.from(tagged)) {
    crc ^= byte << 8
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
  }
  return crc % 16384
}

/** The store's escaping of a sub, sid or id inside a key (`%`, `{`, `}`, `:` as %XX). */
function part(value: string): string {
  return value.replace(/[%{}:]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
}

/**
 * Every index entry has its record and every record its index entries: the state a store must be in
 * after a run of operations that all completed (leftovers only come from interrupted ones).
 */
async function assertIndexesConsistent(prefix: string): Promise<void> {
  const keys = await keysUnder(prefix)
  const records = new Map<string, Record<string, string>>()
  for (const key of keys.filter((k) => k.startsWith(`${prefix}{s:`))) {
    records.set(decodeURIComponent(key.slice(prefix.length + 3, -1)), await admin.hgetall(key))
  }
  const expected = new Map<string, string[]>()
  const expectedMembers: string[] = []
  for (const [id, hash] of records) {
    const sets = [
      `${prefix}{u:${part(hash.sub!)}}`,
      ...(hash.sid === undefined ? [] : [`${prefix}{d:${part(hash.sid)}}`]),
    ]
    for (const set of sets) expected.set(set, [...(expected.get(set) ?? []), id])
    expectedMembers.push(JSON.stringify([id, hash.sub, hash.sid ?? null]))
  }
  const sets = new Map<string, string[]>()
  const members: string[] = []
  for (const key of keys) {
    if (key.startsWith(`${prefix}{u:`) || key.startsWith(`${prefix}{d:`))
      sets.set(key, (await admin.smembers(key)).sort())
    if (key.startsWith(`${prefix}{x:`)) members.push(...(await admin.zrange(key, '0', '-1')))
  }
  assert.deepEqual(
    sets,
    new Map([...expected].map(([k, ids]) => [k, ids.sort()])),
    'sub/sid sets hold exactly the stored records',
  )
  assert.deepEqual(members.sort(), expectedMembers.sort(), 'the expiry index holds exactly the stored records')
}

describe('redis store specifics', () => {
  test('a record key gets a TTL that ends at expiresAt, renewed with the record', async () => {
    const prefix = freshPrefix()
    const store = await openRedisStore(REDIS_URL, { keyPrefix: prefix })
    try {
      const now = Date.now()
      const record = sampleRecord({ createdAt: now, renewedAt: now, expiresAt: now + HOUR })
      await store.set(record)
      const key = `${prefix}{s:${record.idHash}}`
      const ttl = await admin.pttl(key)
      assert.ok(ttl > 0 && ttl <= HOUR, `PTTL ${ttl} within (0, ${HOUR}]`)
      assert.ok(ttl > HOUR - 10_000, `PTTL ${ttl} close to the lifetime`)
      await store.set({ ...record, expiresAt: now + 2 * HOUR, version: 2 }, 1)
      const renewed = await admin.pttl(key)
      assert.ok(renewed > HOUR && renewed <= 2 * HOUR, `renewed PTTL ${renewed} within (${HOUR}, ${2 * HOUR}]`)
    } finally {
      await store.close()
    }
  })

  test('a lease key expires with the lease', async () => {
    const prefix = freshPrefix()
    const store = await openRedisStore(REDIS_URL, { keyPrefix: prefix })
    try {
      assert.equal(await store.acquireLease('refresh:x', 'one', 5_000, Date.now()), true)
      const [key] = await keysUnder(prefix)
      const ttl = await admin.pttl(key!)
      assert.ok(ttl > 0 && ttl <= 5_000, `PTTL ${ttl} within (0, 5000]`)
    } finally {
      await store.close()
    }
  })

  test('a record removed by its TTL is not served, and deleteExpired then prunes its index entries', async () => {
    const prefix = freshPrefix()
    const store = await openRedisStore(REDIS_URL, { keyPrefix: prefix })
    try {
      const now = Date.now()
      const short = sampleRecord({ sub: 'alice', sid: 's1', expiresAt: now + 30 })
      const long = sampleRecord({ sub: 'alice', sid: 's2', expiresAt: now + HOUR })
      await store.set(short)
      await store.set(long)
      await new Promise((resolve) => setTimeout(resolve, 80))
      assert.equal(await admin.exists(`${prefix}{s:${short.idHash}}`), 0, 'Redis removed the key')
      assert.equal(await store.get(short.idHash, now), undefined)
      assert.equal(await store.deleteExpired(Date.now(), 10), 1)
      await assertIndexesConsistent(prefix)
      assert.deepEqual(
        (await store.list({ sub: 'alice', limit: 10 }, Date.now())).map((r) => r.idHash),
        [long.idHash],
      )
    } finally {
      await store.close()
    }
  })

  test('after inserts, updates, deletes and deleteWhere the indexes hold no dangling ids', async () => {
    const prefix = freshPrefix()
    const store = await openTestStore(prefix)
    try {
      const records: SessionRecord[] = []
      for (const sub of ['alice', 'bob', 'carol']) {
        for (const sid of ['s1', 's2', undefined]) {
          for (const partition of ['app', 'admin'])
            records.push(sampleRecord({ sub, sid: sid === undefined ? undefined : `${sub}-${sid}`, partition }))
        }
      }
      records.push(sampleRecord({ sub: 'dave', sid: 'shared' }), sampleRecord({ sub: 'erin', sid: 'shared' }))
      for (const r of records) assert.equal(await store.set(r), true)
      await assertIndexesConsistent(prefix)

      // A renewal (the expiry index lags behind it by design), a delete, and a late write to the deleted session.
      const [renewed, deleted] = records
      assert.equal(await store.set({ ...renewed!, version: 2, expiresAt: NOW + 3 * HOUR }, 1), true)
      assert.equal(await store.delete(deleted!.idHash), true)
      assert.equal(await store.set({ ...deleted!, version: 2, sealed: 'late refresh' }, 1), false)
      await assertIndexesConsistent(prefix)

      assert.equal(await store.deleteWhere({ sub: 'bob', sid: 'bob-s1' }), 2)
      assert.equal(await store.deleteWhere({ sub: 'carol', partition: 'admin' }), 3)
      assert.equal(await store.deleteWhere({ sid: 'shared' }), 2)
      assert.equal(await store.deleteWhere({ sid: 'alice-s2', partition: 'app' }), 1)
      await assertIndexesConsistent(prefix)
      assert.equal(await store.deleteWhere({ sub: 'alice' }), 4)
      await assertIndexesConsistent(prefix)

      // An update moving a session to another sub and sid: the old entries stay (pruned later), but
      // every read re-checks the record, so they change nothing.
      const moved = records.find((r) => r.sub === 'bob' && r.sid === 'bob-s2' && r.partition === 'app')!
      assert.equal(await store.set({ ...moved, sub: 'frank', sid: 'frank-s1', version: 2 }, 1), true)
      assert.equal(
        (await store.list({ sub: 'bob', limit: 100 }, NOW)).some((r) => r.idHash === moved.idHash),
        false,
      )
      assert.deepEqual(
        (await store.list({ sub: 'frank', limit: 100 }, NOW)).map((r) => r.idHash),
        [moved.idHash],
      )
      assert.equal(await store.deleteWhere({ sid: 'bob-s2' }), 1, 'only the admin session still has sid bob-s2')
      assert.deepEqual((await store.get(moved.idHash, NOW))?.sub, 'frank')

      // Once everything expired, one cleanup leaves no key behind, stale entries included.
      assert.equal(await store.deleteExpired(NOW + 4 * HOUR, 1000), 6)
      assert.deepEqual(await keysUnder(prefix), [], 'nothing is left once every session expired')
    } finally {
      await store.close()
    }
  })

  test('the key layout uses hash tags, and every command touches a single hash slot', async () => {
    const prefix = freshPrefix()
    const store = await openTestStore(prefix)
    const monitor = await admin.duplicate().monitor()
    const commands: string[][] = []
    monitor.on('monitor', (_time: string, args: string[]) => {
      // SCAN's MATCH pattern is not a key (and this file's own keysUnder() scans too).
      if (args[0]?.toLowerCase() !== 'scan' && args.some((a) => a.startsWith(prefix))) commands.push(args)
    })
    try {
      const record = sampleRecord({ sub: 'alice', sid: 's1' })
      await store.set(record)
      assert.deepEqual(
        (await keysUnder(prefix)).filter((k) => !k.startsWith(`${prefix}{x:`)),
        [`${prefix}{d:s1}`, `${prefix}{s:${record.idHash}}`, `${prefix}{u:alice}`].sort(),
      )
      assert.match((await keysUnder(`${prefix}{x:`))[0]!, /^gatehouse-test:[^{}]*\{x:[0-9a-f]\}$/)

      // A workload exercising every operation, including the rarer paths.
      await store.get(record.idHash, NOW)
      await store.set({ ...record, version: 2 }, 1)
      await store.set({ ...record, sub: 'bob', sid: 's2', version: 3, expiresAt: NOW }, 2)
      await store.list({ sub: 'bob', limit: 10 }, NOW)
      await store.list({ limit: 10 }, NOW)
      await store.set(sampleRecord({ sub: 'carol', sid: 's3' }))
      await store.deleteWhere({ sub: 'carol', sid: 's3', partition: 'app' })
      await store.deleteWhere({ sid: 's2' })
      await store.set(sampleRecord({ sub: 'dave', expiresAt: NOW - 1 }))
      await store.deleteExpired(NOW + 2 * HOUR, 100)
      await store.acquireLease('refresh:a', 'one', 10_000, NOW)
      await store.releaseLease('refresh:a', 'one')
      await store.delete(record.idHash)
      await new Promise((resolve) => setTimeout(resolve, 100)) // let MONITOR deliver the tail
      assert.ok(commands.length > 20, `saw ${commands.length} commands`)
      for (const args of commands) {
        const keys = args.filter((a) => a.startsWith(prefix))
        for (const key of keys) assert.equal((key.match(/\{/g) ?? []).length, 1, `${key} has exactly one hash tag`)
        assert.equal(new Set(keys.map(hashSlot)).size, 1, `${args[0]} touches one slot: ${keys.join(' ')}`)
      }
      const verbs = new Set(commands.map((args) => args[0]!.toLowerCase()))
      for (const verb of ['evalsha', 'hgetall', 'sadd', 'srem', 'smembers', 'zadd', 'zrem', 'zrangebyscore'])
        assert.ok(verbs.has(verb), `workload used ${verb}`)
    } finally {
      monitor.disconnect()
      await store.close()
    }
  })

  test('subs and sids holding braces, colons and percent signs neither move a hash slot nor collide', async () => {
    const prefix = freshPrefix()
    const store = await openTestStore(prefix)
    try {
      const odd = sampleRecord({ sub: 'a}:d:x', sid: '{x}' })
      const plain = sampleRecord({ sub: 'a', sid: 'x}' })
      const percent = sampleRecord({ sub: 'a%7D:d:x', sid: '%7Bx%7D' })
      for (const r of [odd, plain, percent]) await store.set(r)
      for (const key of await keysUnder(prefix))
        assert.match(key, /^[^{}]*\{[^{}]*\}$/, `${key} has one well-formed tag`)
      assert.deepEqual(
        (await store.list({ sub: 'a}:d:x', limit: 10 }, NOW)).map((r) => r.idHash),
        [odd.idHash],
      )
      assert.equal(await store.deleteWhere({ sid: '{x}' }), 1)
      assert.deepEqual(await store.get(plain.idHash, NOW), plain)
      assert.deepEqual(await store.get(percent.idHash, NOW), percent)
      assert.deepEqual(
        (await store.list({ limit: 10 }, NOW)).map((r) => r.idHash).sort(),
        [plain.idHash, percent.idHash].sort(),
      )
      await assertIndexesConsistent(prefix)
    } finally {
      await store.close()
    }
  })

  test('openStore routes redis:// and takes the key prefix from ?prefix=', async () => {
    const prefix = freshPrefix()
    const store = await openStore(`${REDIS_URL}?prefix=${encodeURIComponent(prefix)}`)
    try {
      assert.ok(store instanceof RedisStore)
      const now = Date.now()
      const record = sampleRecord({ expiresAt: now + HOUR })
      await store.set(record)
      assert.deepEqual(await store.get(record.idHash, now), record)
      assert.ok((await keysUnder(prefix)).includes(`${prefix}{s:${record.idHash}}`))
    } finally {
      await store.close()
    }
  })

  test('a key prefix holding a brace is refused', async () => {
    await assert.rejects(openRedisStore(REDIS_URL, { keyPrefix: 'gatehouse:{x}:' }), /must not contain \{ or \}/)
  })

  test('an unreachable server fails the open with store_unavailable, never showing the password', async () => {
    const err = await openStore('redis://user:s3cret-pw@127.0.0.1:1').then(
      () => assert.fail('opened'),
      (e: unknown) => e,
    )
    assert.ok(err instanceof GatehouseError)
    assert.equal(err.code, 'store_unavailable')
    assert.doesNotMatch(`${err.message} ${String(err.cause)}`, /s3cret-pw/)
    assert.match(err.message, /127\.0\.0\.1:1/)
  })
})
