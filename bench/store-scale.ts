/**
 * Session stores at scale: loads up to 1,000,000 sessions into each persistent store (SQLite, Redis,
 * PostgreSQL) and measures, at every size step, the latency of the calls gatehouse makes per request
 * and per back-channel logout:
 *
 *   get(idHash)                    every request with a session cookie
 *   deleteWhere({ sid })           logout by the IdP's sid
 *   deleteWhere({ sid, sub })      what /bff/backchannel actually sends for a token with sid and sub
 *   deleteWhere({ sub })           logout of all of a user's sessions
 *
 * The stores are opened through openStore() exactly as gatehouse opens them (their own schema,
 * indexes and key layout); only the bulk loading goes around them (a SQLite transaction on the same
 * file, multi-row INSERT … SELECT unnest() into the schema the Postgres store created, pipelined
 * commands mirroring the RedisStore key layout). Before measuring, the bench checks that the store
 * finds and fully deletes what was loaded.
 *
 *   node bench/store-scale.ts [--sizes 10000,100000,1000000] [--stores sqlite,redis,postgres]
 *                             [--lookups 3000] [--deletes 300] [--out bench/results/…json]
 *
 * Env: GATEHOUSE_BENCH_REDIS_URL (default redis://127.0.0.1:6379/15: a logical database of its own, so
 * the bench's ~1.75M keys do not slow down SCANs of anyone sharing the server), GATEHOUSE_BENCH_POSTGRES_URL
 * (default postgres://postgres@127.0.0.1:5432/test); GATEHOUSE_BENCH_SIZES / GATEHOUSE_BENCH_STORES
 * stand in for the flags. Everything the bench creates (SQLite file under os.tmpdir(), Postgres schema
 * gh_bench_<rand>, Redis keys under ghbench<rand>:) is removed at the end, also on failure or Ctrl-C.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, totalmem, tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { performance } from 'node:perf_hooks'
import { DatabaseSync, type StatementSync } from 'node:sqlite'
import { parseArgs } from 'node:util'
import type { SessionFilter, SessionRecord, SessionStore } from '../src/session/store.ts'
import { openStore } from '../src/session/stores/open-store.ts'

// ---------------------------------------------------------------------------------------------
// Options

const STORE_NAMES = ['sqlite', 'redis', 'postgres'] as const
type StoreName = (typeof STORE_NAMES)[number]

const { values: flags } = parseArgs({
  options: {
    sizes: { type: 'string' },
    stores: { type: 'string' },
    lookups: { type: 'string' },
    deletes: { type: 'string' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
})
if (flags.help) {
  console.log(
    'usage: node bench/store-scale.ts [--sizes 10000,100000,1000000] [--stores sqlite,redis,postgres] [--lookups 3000] [--deletes 300] [--out FILE]',
  )
  process.exit(0)
}

const SIZES = (flags.sizes ?? process.env.GATEHOUSE_BENCH_SIZES ?? '10000,100000,1000000')
  .split(',')
  .map((s) => Number(s.trim().replace(/_/g, '')))
for (const [i, size] of SIZES.entries()) {
  if (!Number.isSafeInteger(size) || size < 1000) throw new TypeError(`--sizes: ${size} is not an integer >= 1000`)
  if (i > 0 && size <= SIZES[i - 1]!)
    throw new TypeError('--sizes must increase (the stores grow from one step to the next)')
}
const STORES = (flags.stores ?? process.env.GATEHOUSE_BENCH_STORES ?? STORE_NAMES.join(','))
  .split(',')
  .map((s) => s.trim()) as StoreName[]
for (const s of STORES)
  if (!STORE_NAMES.includes(s)) throw new TypeError(`--stores: unknown store "${s}" (${STORE_NAMES.join(', ')})`)
const LOOKUPS = Number(flags.lookups ?? 3000)
const DELETES = Number(flags.deletes ?? 300)
const REDIS_URL = process.env.GATEHOUSE_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379/15'
const POSTGRES_URL = process.env.GATEHOUSE_BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
/** The project's goal: back-channel logout by sid at 1M sessions under 10 ms, in every persistent store. */
const GOAL_MS = 10

const RUN = randomBytes(4).toString('hex')
/** Set by Ctrl-C / SIGTERM: loaders and measurements stop at their next batch, then everything is cleaned up. */
let interrupted = false
function checkInterrupted(): void {
  if (interrupted) throw new Error('interrupted')
}
const T0 = Date.now()
const HOUR = 3_600_000

// ---------------------------------------------------------------------------------------------
// Synthetic sessions: a pure function of the index i, so nothing of the data set is held in memory.
//
//   idHash     sha256 base64url, 43 chars (as hashSessionId makes them)
//   sub        4 sessions per sub (250,000 subs at 1M), Auth0-like "auth0|<24 hex>"
//   sid        2 sessions per IdP session (partitions "web" and "admin" of the same login), UUID
//   sealed     ~600 chars in the KeyRing format <kid>.<iv>.<ciphertext>.<tag> (random, never opened)
//   times      created within the last 4 h, expiring 8 h after creation: all live during the run

const SESSIONS_PER_SUB = 4
const SESSIONS_PER_SID = 2
const POOL = randomBytes(48 * 1024).toString('base64url')
const KID = createHash('sha256').update(POOL).digest('base64url').slice(0, 8)
const CIPHERTEXT_CHARS = 550

function idHashOf(i: number): string {
  return createHash('sha256').update(`gatehouse-bench:${i}`).digest('base64url')
}
function subOf(i: number): string {
  return `auth0|${createHash('md5')
    .update(`sub:${Math.floor(i / SESSIONS_PER_SUB)}`)
    .digest('hex')
    .slice(0, 24)}`
}
function sidOf(i: number): string {
  const h = createHash('md5')
    .update(`sid:${Math.floor(i / SESSIONS_PER_SID)}`)
    .digest('hex')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`
}
function sealedOf(i: number): string {
  const at = (n: number, len: number) => {
    const start = (Math.imul(i + n, 2654435761) >>> 0) % (POOL.length - len)
    return POOL.slice(start, start + len)
  }
  return `${KID}.${at(1, 16)}.${at(2, CIPHERTEXT_CHARS)}.${at(3, 22)}`
}
function recordOf(i: number): SessionRecord {
  const createdAt = T0 - ((i * 7919) % (4 * HOUR))
  return {
    idHash: idHashOf(i),
    sub: subOf(i),
    sid: sidOf(i),
    partition: i % 2 === 0 ? 'web' : 'admin',
    createdAt,
    renewedAt: createdAt,
    expiresAt: createdAt + 8 * HOUR,
    version: 1,
    sealed: sealedOf(i),
  }
}

// ---------------------------------------------------------------------------------------------
// Per-store bulk loaders, inspection and cleanup (the measured calls all go through SessionStore)

interface Target {
  name: StoreName
  /** The session.store location the store is opened with. */
  location: string
  /** Bench-side connections; runs after openStore() created the schema. */
  attach(): Promise<void>
  /** Inserts sessions [from, to), bypassing the store. */
  load(from: number, to: number, progress: (done: number) => void): Promise<void>
  /** After each load step (checkpoint, ANALYZE). */
  settle(): Promise<void>
  /** Bench-specific checks that the store really removed everything of a deleted session. */
  checkGone?(i: number): Promise<void>
  /** How the store's queries run at this size (EXPLAIN, for the SQL stores). */
  explain(sample: number): Promise<Record<string, string>>
  /** Bytes on disk / in memory. */
  footprint(): Promise<number | undefined>
  /** Removes everything the bench created; safe to call twice. */
  cleanup(): Promise<void>
  versionInfo(): Promise<string>
}

/** The statements SqliteStore and PostgresStore run for get/deleteWhere, for EXPLAIN. */
const SQL = {
  get: 'SELECT * FROM gatehouse_sessions WHERE id_hash = $1 AND expires_at > $2',
  sid: 'DELETE FROM gatehouse_sessions WHERE sid = $1',
  backchannel: 'DELETE FROM gatehouse_sessions WHERE sub = $1 AND sid = $2 AND partition = $3',
  // count(): the stores read their trigger-kept counter and subtract this range (schema version 2).
  count: 'SELECT count(*) AS expired FROM gatehouse_sessions WHERE expires_at <= $1',
  sub: 'DELETE FROM gatehouse_sessions WHERE sub = $1',
}

function sqliteTarget(): Target {
  const path = join(tmpdir(), `gh-bench-${RUN}.db`)
  let db: DatabaseSync | undefined
  let insert: StatementSync | undefined
  const CHUNK = 50_000
  return {
    name: 'sqlite',
    location: `sqlite:${path}`,
    async attach() {
      db = new DatabaseSync(path)
      // Loader connection only (a bigger page cache). synchronous = NORMAL as the store's own connection:
      // with OFF, nothing loaded would reach the disk and the store's first checkpoint (which fsyncs)
      // would pay for the whole load in the middle of a measured call.
      db.exec('PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -262144;')
      insert = db.prepare(
        'INSERT OR IGNORE INTO gatehouse_sessions (id_hash, sub, sid, partition, created_at, renewed_at, expires_at, version, sealed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
      )
    },
    async load(from, to, progress) {
      for (let start = from; start < to; start += CHUNK) {
        checkInterrupted()
        const end = Math.min(to, start + CHUNK)
        db!.exec('BEGIN')
        try {
          for (let i = start; i < end; i++) {
            const r = recordOf(i)
            insert!.run(
              r.idHash,
              r.sub,
              r.sid ?? null,
              r.partition,
              r.createdAt,
              r.renewedAt,
              r.expiresAt,
              r.version,
              r.sealed,
            )
          }
          db!.exec('COMMIT')
        } catch (err) {
          db!.exec('ROLLBACK')
          throw err
        }
        progress(end)
        await new Promise((resolve) => setImmediate(resolve)) // let signals in
      }
    },
    async settle() {
      db!.exec('PRAGMA wal_checkpoint(TRUNCATE)') // fsyncs the file: the load is on disk before measuring
    },
    async explain(i) {
      const r = recordOf(i)
      const plan = (sql: string, ...params: Array<string | number>) =>
        (db!.prepare(`EXPLAIN QUERY PLAN ${sql.replace(/\$\d/g, '?')}`).all(...params) as Array<{ detail: string }>)
          .map((row) => row.detail)
          .join('; ')
      return {
        get: plan(SQL.get, r.idHash, T0),
        sid: plan(SQL.sid, r.sid!),
        sub: plan(SQL.sub, r.sub),
        backchannel: plan(SQL.backchannel, r.sub, r.sid!, r.partition),
        count: plan(SQL.count, T0),
      }
    },
    async footprint() {
      return [path, `${path}-wal`].reduce((sum, p) => sum + (existsSync(p) ? statSync(p).size : 0), 0)
    },
    async versionInfo() {
      return `SQLite ${(db!.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v} (node:sqlite)`
    },
    async cleanup() {
      if (db?.isOpen) db.close()
      for (const p of [path, `${path}-wal`, `${path}-shm`, `${path}-journal`]) rmSync(p, { force: true })
    },
  }
}

async function redisTarget(): Promise<Target> {
  const { Redis } = await import('ioredis')
  const prefix = `ghbench${RUN}:`
  const url = new URL(REDIS_URL)
  url.searchParams.set('prefix', prefix)
  const admin = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 3000 })
  admin.on('error', () => {})
  let baseline = 0
  const usedMemory = async () => Number(/used_memory:(\d+)/.exec(await admin.info('memory'))?.[1] ?? 0)

  // The RedisStore key layout (src/session/stores/redis.ts), reproduced exactly: the store must find,
  // read and delete these keys and index entries as if it had written them itself.
  const escapeKeyPart = (value: string) =>
    value.replace(/[%{}:]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
  const recordKey = (idHash: string) => `${prefix}{s:${escapeKeyPart(idHash)}}`
  const subKey = (sub: string) => `${prefix}{u:${escapeKeyPart(sub)}}`
  const sidKey = (sid: string) => `${prefix}{d:${escapeKeyPart(sid)}}`
  const expiryKey = (idHash: string) => {
    let hash = 0
    for (let i = 0; i < idHash.length; i++) hash = (hash * 31 + idHash.charCodeAt(i)) >>> 0
    return `${prefix}{x:${(hash % 16).toString(16)}}`
  }
  const expiryMember = (r: SessionRecord) => JSON.stringify([r.idHash, r.sub, r.sid ?? null])

  const BATCH = 5_000
  let closed = false
  return {
    name: 'redis',
    location: url.toString(),
    async attach() {
      await admin.connect()
      baseline = await usedMemory()
    },
    async load(from, to, progress) {
      const inFlight = new Set<Promise<void>>()
      try {
        for (let start = from; start < to; start += BATCH) {
          checkInterrupted()
          const end = Math.min(to, start + BATCH)
          const pipeline = admin.pipeline()
          const subs = new Map<string, string[]>()
          const sids = new Map<string, string[]>()
          const shards = new Map<string, Array<string | number>>()
          for (let i = start; i < end; i++) {
            const r = recordOf(i)
            const key = recordKey(r.idHash)
            // As the ghPut script writes it: these fields in this order, sid only when there is one, PX TTL.
            pipeline.hset(
              key,
              'sub',
              r.sub,
              'partition',
              r.partition,
              'createdAt',
              r.createdAt,
              'renewedAt',
              r.renewedAt,
              'expiresAt',
              r.expiresAt,
              'version',
              r.version,
              'sealed',
              r.sealed,
            )
            if (r.sid !== undefined) pipeline.hset(key, 'sid', r.sid)
            pipeline.pexpire(key, Math.max(1, Math.ceil(r.expiresAt - Date.now())))
            push(subs, subKey(r.sub), r.idHash)
            if (r.sid !== undefined) push(sids, sidKey(r.sid), r.idHash)
            push(shards, expiryKey(r.idHash), r.expiresAt, expiryMember(r))
          }
          for (const [key, ids] of subs) pipeline.sadd(key, ...ids)
          for (const [key, ids] of sids) pipeline.sadd(key, ...ids)
          for (const [key, scoreMembers] of shards) pipeline.zadd(key, ...scoreMembers)
          const sent: Promise<void> = pipeline.exec().then((results) => {
            const failed = results?.find(([err]) => err)
            if (!results || failed) throw new Error(`Redis bulk load failed: ${String(failed?.[0] ?? 'no reply')}`)
            progress(end)
          })
          inFlight.add(sent)
          void sent.finally(() => inFlight.delete(sent)).catch(() => {})
          if (inFlight.size >= 2) await Promise.race(inFlight)
        }
      } finally {
        // Nothing may still be writing when cleanup deletes the keys.
        const settled = await Promise.allSettled(inFlight)
        const failed = settled.find((r) => r.status === 'rejected')
        if (failed) throw failed.reason
      }
    },
    async settle() {},
    async checkGone(i) {
      const r = recordOf(i)
      assert.equal(await admin.exists(recordKey(r.idHash)), 0, 'record key left behind')
      assert.equal(await admin.sismember(subKey(r.sub), r.idHash), 0, 'id left in the sub set')
      assert.equal(await admin.sismember(sidKey(r.sid!), r.idHash), 0, 'id left in the sid set')
      // Would fail if the bench's expiry shard differed from the store's: the store removes the member from its own shard.
      assert.equal(
        await admin.zscore(expiryKey(r.idHash), expiryMember(r)),
        null,
        'expiry index entry left behind (shard mismatch?)',
      )
    },
    async explain() {
      return {}
    },
    async footprint() {
      return (await usedMemory()) - baseline
    },
    async versionInfo() {
      return `Redis ${/redis_version:(\S+)/.exec(await admin.info('server'))?.[1] ?? '?'}`
    },
    async cleanup() {
      if (closed) return
      closed = true
      try {
        if (admin.status !== 'ready') await admin.connect().catch(() => {})
        // Full SCAN passes until one finds nothing.
        for (let pass = 0, found = 1; found > 0; pass++) {
          if (pass === 5) throw new Error(`Redis keys under ${prefix} keep appearing; delete them by hand`)
          found = 0
          let cursor = '0'
          do {
            const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 10_000)
            cursor = next
            found += keys.length
            for (let k = 0; k < keys.length; k += 1000) await admin.unlink(...keys.slice(k, k + 1000))
          } while (cursor !== '0')
        }
      } finally {
        await admin.quit().catch(() => admin.disconnect())
      }
    },
  }
}

async function postgresTarget(): Promise<Target> {
  const pg = (await import('pg')).default
  const schema = `gh_bench_${RUN}`
  const table = `"${schema}".gatehouse_sessions`
  const url = new URL(POSTGRES_URL)
  url.searchParams.set('schema', schema)
  const loaders = [new pg.Client({ connectionString: POSTGRES_URL }), new pg.Client({ connectionString: POSTGRES_URL })]
  for (const c of loaders) c.on('error', () => {})
  const admin = loaders[0]!
  const BATCH = 5_000
  let connected = false
  let closed = false
  const insert = `INSERT INTO ${table} (id_hash, sub, sid, partition, created_at, renewed_at, expires_at, version, sealed)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::integer[], $9::text[])
    ON CONFLICT (id_hash) DO NOTHING`
  return {
    name: 'postgres',
    location: url.toString(),
    async attach() {
      for (const c of loaders) {
        await c.connect()
        // Loader connections only: the store's pool commits every delete durably, as in production.
        await c.query('SET synchronous_commit = off')
      }
      await admin.query(`SET search_path TO "${schema}"`) // EXPLAIN runs the store's unqualified statements
      connected = true
    },
    async load(from, to, progress) {
      let next = from
      const worker = async (client: (typeof loaders)[number]) => {
        while (next < to) {
          checkInterrupted()
          const start = next
          const end = Math.min(to, start + BATCH)
          next = end
          const cols: Array<Array<string | number | null>> = Array.from({ length: 9 }, () => [])
          for (let i = start; i < end; i++) {
            const r = recordOf(i)
            const row = [
              r.idHash,
              r.sub,
              r.sid ?? null,
              r.partition,
              r.createdAt,
              r.renewedAt,
              r.expiresAt,
              r.version,
              r.sealed,
            ]
            row.forEach((v, c) => cols[c]!.push(v))
          }
          await client.query(insert, cols)
          progress(end)
        }
      }
      // allSettled: no INSERT may still be running when cleanup drops the schema.
      const settled = await Promise.allSettled(loaders.map(worker))
      const failed = settled.find((r) => r.status === 'rejected')
      if (failed) throw failed.reason
    },
    async settle() {
      // Production runs autovacuum, which analyzes a table this size after big inserts; this server has it off.
      await admin.query(`ANALYZE ${table}`)
    },
    async explain(i) {
      const r = recordOf(i)
      const plan = async (sql: string, params: Array<string | number>) => {
        await admin.query('BEGIN')
        try {
          const { rows } = await admin.query<{ 'QUERY PLAN': string }>(
            `EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) ${sql.replace('SELECT *', 'SELECT id_hash')}`,
            params,
          )
          return rows.map((row) => row['QUERY PLAN'].trim()).join(' | ')
        } finally {
          await admin.query('ROLLBACK') // EXPLAIN ANALYZE really deletes
        }
      }
      return {
        get: await plan(SQL.get, [r.idHash, T0]),
        sid: await plan(SQL.sid, [r.sid!]),
        sub: await plan(SQL.sub, [r.sub]),
        backchannel: await plan(SQL.backchannel, [r.sub, r.sid!, r.partition]),
        count: await plan(SQL.count, [T0]),
      }
    },
    async footprint() {
      const { rows } = await admin.query<{ bytes: string }>(`SELECT pg_total_relation_size($1) AS bytes`, [table])
      return Number(rows[0]!.bytes)
    },
    async versionInfo() {
      const { rows } = await admin.query<{ v: string }>("SELECT current_setting('server_version') AS v")
      const { rows: settings } = await admin.query<{ name: string; reset_val: string }>(
        `SELECT name, CASE WHEN unit = '8kB' THEN pg_size_pretty(reset_val::bigint * 8192) ELSE reset_val END AS reset_val FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers', 'autovacuum') ORDER BY name`,
      )
      return `PostgreSQL ${rows[0]!.v} (${settings.map((s) => `${s.name}=${s.reset_val}`).join(', ')})`
    },
    async cleanup() {
      if (closed) return
      closed = true
      try {
        const cleaner = connected ? admin : new pg.Client({ connectionString: POSTGRES_URL })
        if (!connected) await cleaner.connect()
        await cleaner.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
        if (!connected) await cleaner.end()
      } finally {
        await Promise.all(loaders.map((c) => c.end().catch(() => {})))
      }
    },
  }
}

function push<V>(map: Map<string, V[]>, key: string, ...values: V[]): void {
  const list = map.get(key)
  if (list) list.push(...values)
  else map.set(key, values)
}

// ---------------------------------------------------------------------------------------------
// Measurements

interface Stats {
  n: number
  p50: number
  p99: number
  max: number
  mean: number
  /** Calls slower than the goal (10 ms). */
  over10ms: number
}

interface Step {
  store: StoreName
  sessions: number
  loadMs: number
  loadRowsPerSec: number
  footprintBytes: number | undefined
  /** 1-minute load average when the step was measured: other work on the machine shows here. */
  loadAverage: number
  get: Stats
  deleteBySid: Stats
  deleteBySub: Stats
  /** What /bff/backchannel asks of the store for a token with sid: acquireLease (jti replay marker), then deleteWhere({ sid, sub, partition }). */
  backchannel: Stats
  /** store.count(now) (the active-sessions gauge, once per metrics scrape), when the store has it. */
  count: Stats | undefined
  explain: Record<string, string>
}

function stats(samples: number[]): Stats {
  const sorted = [...samples].sort((a, b) => a - b)
  const at = (q: number) => sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!
  const round = (x: number) => Math.round(x * 1000) / 1000
  return {
    n: sorted.length,
    p50: round(at(0.5)),
    p99: round(at(0.99)),
    max: round(sorted.at(-1)!),
    mean: round(sorted.reduce((a, b) => a + b, 0) / sorted.length),
    over10ms: sorted.filter((x) => x > GOAL_MS).length,
  }
}

function randomInt(below: number): number {
  return Math.floor(Math.random() * below)
}

function distinct(count: number, below: number): number[] {
  const picked = new Set<number>()
  while (picked.size < Math.min(count, below)) picked.add(randomInt(below))
  return [...picked]
}

/**
 * Deletes each group by `filter` (timed, with `before` when given), checks the count, then puts the
 * group's sessions back through the store.
 */
async function timeDeletes(
  store: SessionStore,
  groups: number[][],
  filter: (first: number) => SessionFilter,
  before?: () => Promise<void>,
): Promise<number[]> {
  const times: number[] = []
  for (const group of groups) {
    checkInterrupted()
    const f = filter(group[0]!)
    const t = performance.now()
    await before?.()
    const deleted = await store.deleteWhere(f)
    times.push(performance.now() - t)
    assert.equal(
      deleted,
      group.length,
      `deleteWhere(${JSON.stringify(f)}) deleted ${deleted}, expected ${group.length}`,
    )
  }
  for (const group of groups)
    for (const i of group) assert.equal(await store.set(recordOf(i)), true, `re-insert of session ${i} refused`)
  return times
}

/** The loaded sessions must look to the store exactly like its own: readable, and found and fully removed by deleteWhere. */
async function verify(store: SessionStore, target: Target, size: number): Promise<void> {
  const now = Date.now()
  for (const i of [0, size - 1, randomInt(size)])
    assert.deepEqual(await store.get(idHashOf(i), now), recordOf(i), `session ${i} not read back as loaded`)
  const s = 2 * randomInt(Math.floor(size / 2))
  assert.equal(await store.deleteWhere({ sid: sidOf(s) }), 2, 'deleteWhere by sid did not find the loaded sessions')
  assert.equal(await store.get(idHashOf(s), now), undefined)
  await target.checkGone?.(s)
  await target.checkGone?.(s + 1)
  let u = s
  while (Math.floor(u / SESSIONS_PER_SUB) === Math.floor(s / SESSIONS_PER_SUB))
    u = SESSIONS_PER_SUB * randomInt(Math.floor(size / SESSIONS_PER_SUB))
  assert.equal(
    await store.deleteWhere({ sub: subOf(u) }),
    SESSIONS_PER_SUB,
    'deleteWhere by sub did not find the loaded sessions',
  )
  for (let k = 0; k < SESSIONS_PER_SUB; k++) await target.checkGone?.(u + k)
  for (const i of new Set([s, s + 1, u, u + 1, u + 2, u + 3])) assert.equal(await store.set(recordOf(i)), true)
  assert.equal((await store.list({ sub: subOf(u), limit: 10 }, now)).length, SESSIONS_PER_SUB)
}

async function measure(
  store: SessionStore,
  size: number,
): Promise<Pick<Step, 'get' | 'deleteBySid' | 'deleteBySub' | 'backchannel' | 'count'>> {
  // Warm-up (JIT, connection pools), not measured.
  for (let k = 0; k < 300; k++) await store.get(idHashOf(randomInt(size)), Date.now())

  const getTimes: number[] = []
  for (let k = 0; k < LOOKUPS; k++) {
    if (k % 100 === 0) checkInterrupted()
    const i = randomInt(size)
    const idHash = idHashOf(i)
    const now = Date.now()
    const t = performance.now()
    const record = await store.get(idHash, now)
    getTimes.push(performance.now() - t)
    assert.equal(record?.sub, subOf(i), `get(${i}) missed`)
  }

  // Whole sid pairs / sub quadruples inside the loaded range.
  const sidGroups = () =>
    distinct(DELETES, Math.floor(size / SESSIONS_PER_SID)).map((g) =>
      Array.from({ length: SESSIONS_PER_SID }, (_, k) => g * SESSIONS_PER_SID + k),
    )
  const subGroups = distinct(DELETES, Math.floor(size / SESSIONS_PER_SUB)).map((g) =>
    Array.from({ length: SESSIONS_PER_SUB }, (_, k) => g * SESSIONS_PER_SUB + k),
  )
  const bySid = await timeDeletes(store, sidGroups(), (i) => ({ sid: sidOf(i) }))
  const bySub = await timeDeletes(store, subGroups, (i) => ({ sub: subOf(i) }))
  // The endpoint's filter names the frontend's partition too: of a sid pair ("web", "admin") it ends one session.
  const webSessions = distinct(DELETES, Math.floor(size / SESSIONS_PER_SID)).map((g) => [g * SESSIONS_PER_SID])
  const backchannel = await timeDeletes(
    store,
    webSessions,
    (i) => ({ sid: sidOf(i), sub: subOf(i), partition: recordOf(i).partition }),
    async () =>
      assert.equal(
        await store.acquireLease!(`jti:https://idp.example/:${randomUUID()}`, randomUUID(), 60_000, Date.now()),
        true,
      ),
  )

  let count: Stats | undefined
  if (store.count) {
    const times: number[] = []
    for (let k = 0; k < 5; k++) {
      const t = performance.now()
      const live = await store.count(Date.now())
      times.push(performance.now() - t)
      assert.ok(live >= size - 10, `count() = ${live}, expected about ${size}`)
    }
    count = stats(times)
  }
  return {
    get: stats(getTimes),
    deleteBySid: stats(bySid),
    deleteBySub: stats(bySub),
    backchannel: stats(backchannel),
    count,
  }
}

// ---------------------------------------------------------------------------------------------
// Run

const cleanups = new Set<() => Promise<void>>()
async function cleanUp(): Promise<void> {
  for (const fn of [...cleanups]) {
    cleanups.delete(fn)
    await fn().catch((err: unknown) => console.error(`cleanup failed: ${String(err)}`))
  }
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (!interrupted) {
      // The run stops at its next batch and cleans up on its way out (nothing left in flight).
      interrupted = true
      process.exitCode = 130
      console.error(`\n${signal}: stopping, then cleaning up… (again to clean up at once)`)
      return
    }
    void cleanUp().finally(() => process.exit(130))
  })
}

const log = (msg: string) =>
  console.error(`[${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${msg}`)
const ms = (x: number) => (x < 10 ? x.toFixed(2) : x.toFixed(1))
const started = performance.now()
const steps: Step[] = []
const versions: Record<string, string> = {}
let failure: unknown

try {
  for (const name of STORES) {
    const target = name === 'sqlite' ? sqliteTarget() : name === 'redis' ? await redisTarget() : await postgresTarget()
    cleanups.add(target.cleanup)
    const storeStarted = performance.now()
    let store: SessionStore | undefined
    try {
      store = await openStore(target.location)
      const opened = store
      cleanups.add(() => opened.close())
      await target.attach()
      versions[name] = await target.versionInfo()
      let loaded = 0
      for (const size of SIZES) {
        log(`${name}: loading ${loaded.toLocaleString('en')} → ${size.toLocaleString('en')}`)
        const t = performance.now()
        let reported = loaded
        await target.load(loaded, size, (done) => {
          if (done - reported >= 250_000) {
            reported = done
            log(
              `${name}:   ${done.toLocaleString('en')} (${Math.round((done - loaded) / ((performance.now() - t) / 1000)).toLocaleString('en')}/s)`,
            )
          }
        })
        await target.settle()
        const loadMs = performance.now() - t
        const from = loaded
        loaded = size
        await verify(store, target, size)
        const results = await measure(store, size)
        const step: Step = {
          store: name,
          sessions: size,
          loadMs: Math.round(loadMs),
          loadRowsPerSec: Math.round((size - from) / (loadMs / 1000)),
          footprintBytes: await target.footprint(),
          loadAverage: Math.round(loadavg()[0]! * 100) / 100,
          ...results,
          explain: await target.explain(SESSIONS_PER_SUB * randomInt(Math.floor(size / SESSIONS_PER_SUB))),
        }
        steps.push(step)
        log(
          `${name} @ ${size.toLocaleString('en')}: load ${(loadMs / 1000).toFixed(1)} s · get p50 ${ms(step.get.p50)} p99 ${ms(step.get.p99)} · ` +
            `sid p50 ${ms(step.deleteBySid.p50)} p99 ${ms(step.deleteBySid.p99)} · sub p50 ${ms(step.deleteBySub.p50)} p99 ${ms(step.deleteBySub.p99)} · ` +
            `backchannel p50 ${ms(step.backchannel.p50)} p99 ${ms(step.backchannel.p99)} · count ${step.count ? ms(step.count.p50) : '-'} ms`,
        )
      }
    } finally {
      if (store) await store.close()
      cleanups.delete(target.cleanup)
      await target.cleanup()
      log(`${name}: done in ${((performance.now() - storeStarted) / 1000).toFixed(1)} s (cleaned up)`)
    }
  }
} catch (err) {
  failure = err
} finally {
  await cleanUp()
}

const totalMs = performance.now() - started

// ---------------------------------------------------------------------------------------------
// Report

const header = [
  'store',
  'sessions',
  'load s',
  'get p50',
  'get p99',
  'sid p50',
  'sid p99',
  'sub p50',
  'sub p99',
  'backchannel p50',
  'backchannel p99',
  'count()',
]
const rows = steps.map((s) => [
  s.store,
  s.sessions.toLocaleString('en'),
  (s.loadMs / 1000).toFixed(1),
  ms(s.get.p50),
  ms(s.get.p99),
  ms(s.deleteBySid.p50),
  ms(s.deleteBySid.p99),
  ms(s.deleteBySub.p50),
  ms(s.deleteBySub.p99),
  ms(s.backchannel.p50),
  ms(s.backchannel.p99),
  s.count ? ms(s.count.p50) : '-',
])
if (rows.length > 0) {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)))
  const line = (cells: string[]) =>
    `| ${cells.map((cell, c) => (c < 1 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join(' | ')} |`
  console.log(
    `\nlatencies in ms: get(idHash) ×${LOOKUPS}; deleteWhere({ sid }), deleteWhere({ sub }) and backchannel (acquireLease + ` +
      `deleteWhere({ sid, sub, partition })) ×${DELETES} each; count(now) median of 5\n`,
  )
  console.log(line(header))
  console.log(`|${widths.map((w, c) => (c < 1 ? `${'-'.repeat(w + 1)}-` : `${'-'.repeat(w + 1)}:`)).join('|')}|`)
  for (const r of rows) console.log(line(r))
}

// Flatness: the largest step against the smallest, per store and operation.
const notes: string[] = []
for (const name of STORES) {
  const mine = steps.filter((s) => s.store === name)
  if (mine.length < 2) continue
  const first = mine[0]!
  const last = mine.at(-1)!
  for (const op of ['get', 'deleteBySid', 'deleteBySub', 'backchannel', 'count'] as const) {
    const [a, b] = [first[op], last[op]]
    if (!a || !b) continue
    const ratio = b.p50 / a.p50
    if (ratio > 2 && b.p50 - a.p50 > 0.2)
      notes.push(
        `${name} ${op}: p50 ${ms(a.p50)} ms at ${first.sessions.toLocaleString('en')} → ${ms(b.p50)} ms at ${last.sessions.toLocaleString('en')} (×${ratio.toFixed(1)}): not flat`,
      )
  }
}
const largest = SIZES.at(-1)!
const goal = STORES.map((name) => {
  const s = steps.find((x) => x.store === name && x.sessions === largest)
  return {
    store: name,
    sessions: largest,
    p50: s?.deleteBySid.p50,
    p99: s?.deleteBySid.p99,
    met: s ? s.deleteBySid.p99 < GOAL_MS : undefined,
  }
})
console.log('')
for (const g of goal)
  console.log(
    `goal: logout by sid at ${largest.toLocaleString('en')} sessions < ${GOAL_MS} ms — ${g.store}: ${g.met === undefined ? 'not measured' : `${g.met ? 'met' : 'NOT met'} (p50 ${ms(g.p50!)} ms, p99 ${ms(g.p99!)} ms)`}`,
  )
for (const n of notes) console.log(`note: ${n}`)
console.log(`\ntotal ${(totalMs / 1000).toFixed(1)} s`)

const date = new Date()
const stamp = date
  .toISOString()
  .replace(/:\d\d\.\d+Z$/, 'Z')
  .replace(/:/g, '')
const out = flags.out ?? join(dirname(new URL(import.meta.url).pathname), 'results', `store-scale-${stamp}.json`)
if (steps.length > 0) {
  mkdirSync(dirname(out), { recursive: true })
  writeFileSync(
    out,
    `${JSON.stringify(
      {
        date: date.toISOString(),
        totalMs: Math.round(totalMs),
        complete: failure === undefined,
        machine: {
          nproc: cpus().length,
          cpu: cpus()[0]?.model,
          memGiB: Math.round(totalmem() / 2 ** 30),
          node: process.version,
          platform: `${process.platform} ${process.arch}`,
        },
        versions,
        options: {
          sizes: SIZES,
          stores: STORES,
          lookups: LOOKUPS,
          deletes: DELETES,
          sessionsPerSub: SESSIONS_PER_SUB,
          sessionsPerSid: SESSIONS_PER_SID,
          sealedChars: sealedOf(0).length,
        },
        goal: { deleteBySidP99BelowMs: GOAL_MS, results: goal },
        notes,
        steps,
      },
      null,
      2,
    )}\n`,
  )
  console.log(`results: ${relative(process.cwd(), out)}`)
}
if (failure !== undefined) {
  if (interrupted) console.error('interrupted: cleaned up')
  else console.error(failure)
  process.exitCode = interrupted ? 130 : 1
}
