/**
 * Session store footprint: bytes per session, and sessions per GiB, in each store (docs/deployment.md,
 * "Sizing"). One login through the real flow (a real gatehouse in front of the embedded oidc-provider
 * IdP, on a memory store) gives a real session: its sealed blob (claims and tokens, AES-256-GCM) is
 * what every record carries. Then N sessions like it are written through each store's own `set()`,
 * exactly as logins write them (record, index entries, TTLs, counter rows), and the store's growth
 * is measured:
 *
 *   memory          V8 heap growth after full GCs (the MemoryStore's records and sub/sid indexes)
 *   sqlite          file size growth, after the store's close() (checkpoint, WAL emptied)
 *   redis           INFO used_memory growth on the server (and, as a cross-check, the sum of
 *                   MEMORY USAGE over the run's keys, which leaves out the expiry dict and the
 *                   server's hash-table buckets); the server may be shared: other clients' writes
 *                   meanwhile show up as noise, reported as the drift of used_memory after cleanup
 *   postgres        pg_total_relation_size of gatehouse_sessions (heap, indexes, TOAST) in a schema
 *                   of the run's own; the counter and lease tables are reported apart (the counter's
 *                   dead row versions grow with the writes until vacuum, not with the sessions)
 *   redis-cluster   used_memory growth summed over the primaries of a private 3-primary/3-replica
 *                   cluster started from the machine's redis-server (and over the replicas: each
 *                   holds a copy)
 *
 * Profiles of session data: `embedded`, the real session as the flow stored it, then the same claims
 * with JWT-shaped tokens sized so that the sealed blob has each length of --sealed (characters): larger
 * IdP tokens (JWT access and refresh tokens, many claims) make larger blobs, and the SQL stores fill
 * their pages in steps. Over all profiles each store's growth is fitted (least squares) as
 * `fixed + slope × sealed characters`, with the largest deviation from the fit.
 *
 * Each session has its own sub and sid (36-character UUIDs, as Keycloak's sub and most IdPs' sid):
 * one session per user, which is the most index entries per session.
 *
 *   node bench/store-size.ts [--sessions 20000] [--stores memory,sqlite,redis,postgres,redis-cluster]
 *                            [--sealed 1000,1500,2000,2500,3000,4000,6000,8000] [--out FILE]
 *
 * Env: GATEHOUSE_BENCH_REDIS_URL (default redis://127.0.0.1:6379/15), GATEHOUSE_BENCH_POSTGRES_URL
 * (default postgres://postgres@127.0.0.1:5432/test). Everything the run creates (SQLite files under
 * os.tmpdir(), Redis keys under ghsize<rand>:, PostgreSQL schemas gh_size_<rand>_<n>, the private
 * cluster) is removed at the end, also on failure or Ctrl-C.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs'
import { cpus, loadavg, tmpdir, totalmem } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { parseArgs } from 'node:util'
import type { Redis } from 'ioredis'
import { MemoryStore } from '../src/session/stores/memory.ts'
import { openStore } from '../src/session/stores/open-store.ts'
import { KeyRing } from '../src/session/seal.ts'
import type { SessionData } from '../src/session/session.ts'
import { hashSessionId, sessionSealPurpose } from '../src/session/sessions.ts'
import type { SessionRecord, SessionStore } from '../src/session/store.ts'
import { startFlow } from '../tests/helpers/flow.ts'
import { startRedisCluster, type RedisCluster } from '../tests/helpers/redis-topology.ts'

const STORE_NAMES = ['memory', 'sqlite', 'redis', 'postgres', 'redis-cluster'] as const
type StoreName = (typeof STORE_NAMES)[number]

const { values: flags } = parseArgs({
  options: {
    sessions: { type: 'string' },
    stores: { type: 'string' },
    sealed: { type: 'string' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
})
if (flags.help) {
  console.log(
    'usage: node bench/store-size.ts [--sessions 20000] [--stores memory,sqlite,redis,postgres,redis-cluster] [--sealed 1000,1500,2000,2500,3000,4000,6000,8000] [--out FILE]',
  )
  process.exit(0)
}

function listFlag<T extends string>(value: string | undefined, allowed: readonly T[], flag: string): T[] {
  const names = (value ?? allowed.join(',')).split(',').map((s) => s.trim()) as T[]
  for (const name of names)
    if (!allowed.includes(name)) throw new TypeError(`${flag}: unknown "${name}" (${allowed.join(', ')})`)
  return names
}
const SESSIONS = Number((flags.sessions ?? '20000').replace(/_/g, ''))
if (!Number.isSafeInteger(SESSIONS) || SESSIONS < 1000) throw new TypeError('--sessions must be an integer >= 1000')
const STORES = listFlag(flags.stores, STORE_NAMES, '--stores')
const SEALED = (flags.sealed ?? '1000,1500,2000,2500,3000,4000,6000,8000')
  .split(',')
  .filter((s) => s.trim() !== '')
  .map((s) => Number(s.trim()))
if (SEALED.some((n) => !Number.isSafeInteger(n) || n < 900 || n > 100_000))
  throw new TypeError('--sealed: sealed lengths in characters, each from 900 to 100000')
const REDIS_URL = process.env.GATEHOUSE_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379/15'
const POSTGRES_URL = process.env.GATEHOUSE_BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const RUN = randomBytes(4).toString('hex')
const HOUR = 3_600_000
const GIB = 2 ** 30
const CONCURRENCY = 16

const cleanups: Array<() => Promise<void>> = []
let interrupted = false
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, () => {
    interrupted = true
  })
function checkInterrupted(): void {
  if (interrupted) throw new Error('interrupted')
}

// ---------------------------------------------------------------------------------------------
// The real session, and the data of each profile

interface RealSession {
  record: SessionRecord
  data: SessionData
  /** Lengths in characters of what the sealed blob holds. */
  parts: {
    plaintextJson: number
    accessToken: number
    idToken: number
    refreshToken: number
    claims: number
    claimsJson: number
    sub: number
    sid: number
  }
}

async function loginOnce(): Promise<RealSession> {
  const store = new MemoryStore()
  const flow = await startFlow({ runtime: { store } })
  try {
    const browser = flow.browser()
    const answer = await flow.login(browser)
    if (answer.status !== 302) throw new Error(`login ended with ${answer.status}, not the redirect after the callback`)
    const [record] = await store.list({ limit: 10 }, Date.now())
    if (!record) throw new Error('the login stored no session')
    const plain = new KeyRing(flow.keys).unseal(record.sealed, sessionSealPurpose(record))
    if (plain === undefined) throw new Error('the stored session does not unseal with the flow keys')
    const data = JSON.parse(plain) as SessionData
    return {
      record,
      data,
      parts: {
        plaintextJson: Buffer.byteLength(plain),
        accessToken: data.tokens.accessToken?.length ?? 0,
        idToken: data.tokens.idToken?.length ?? 0,
        refreshToken: data.tokens.refreshToken?.length ?? 0,
        claims: data.claims.length,
        claimsJson: JSON.stringify(data.claims).length,
        sub: record.sub.length,
        sid: record.sid?.length ?? 0,
      },
    }
  } finally {
    await flow.close()
    await store.close()
  }
}

/** A JWT-shaped string of `length` characters (at least 5): header.payload.signature in base64url. */
function jwtShaped(length: number): string {
  const body = randomBytes(length)
    .toString('base64url')
    .slice(0, Math.max(3, length) - 2)
  const a = Math.max(1, Math.floor(body.length * 0.05))
  const b = Math.max(1, Math.floor(body.length * 0.6))
  return `${body.slice(0, a)}.${body.slice(a, a + b)}.${body.slice(a + b)}`
}

/** Sealed length of `data` (AES-GCM adds nothing to the length; base64url 4/3; kid, IV, tag and dots 49). */
const sealedLength = (data: SessionData): number => 49 + Math.ceil((Buffer.byteLength(JSON.stringify(data)) * 4) / 3)

/**
 * The real session's data with its three tokens replaced by JWT-shaped ones (access 45 %, id 35 %,
 * refresh 20 % of the token characters) so that the sealed blob is `sealed` characters long.
 */
function sizedData(real: SessionData, sealed: number): SessionData {
  const withTokens = (total: number): SessionData => ({
    ...real,
    tokens: {
      ...real.tokens,
      accessToken: jwtShaped(Math.round(total * 0.45)),
      idToken: jwtShaped(Math.round(total * 0.35)),
      refreshToken: jwtShaped(total - Math.round(total * 0.45) - Math.round(total * 0.35)),
    },
  })
  let total = 60
  for (let i = 0; i < 8; i++) {
    const off = sealed - sealedLength(withTokens(total))
    if (off === 0) break
    total = Math.max(60, total + Math.round((off * 3) / 4))
  }
  const data = withTokens(total)
  if (Math.abs(sealedLength(data) - sealed) > 3)
    throw new Error(
      `cannot size a session to ${sealed} sealed characters (the claims alone make ${sealedLength(withTokens(60))})`,
    )
  return data
}

// ---------------------------------------------------------------------------------------------
// Sessions as a login writes them

interface Maker {
  record(): SessionRecord
  sealedChars: number
}

function maker(keyRing: KeyRing, data: SessionData, partition: string): Maker {
  const plain = JSON.stringify(data)
  const record = (): SessionRecord => {
    const now = Date.now()
    const meta = {
      idHash: hashSessionId(randomBytes(32).toString('base64url')),
      sub: randomUUID(),
      sid: randomUUID(),
      partition,
      createdAt: now,
    }
    return {
      ...meta,
      renewedAt: now,
      expiresAt: now + 8 * HOUR,
      version: 1,
      sealed: keyRing.seal(plain, sessionSealPurpose(meta)),
    }
  }
  return { record, sealedChars: record().sealed.length }
}

/** Writes `count` new sessions through store.set(), `CONCURRENCY` at a time (one at a time is the same for SQLite). */
async function writeSessions(
  store: SessionStore,
  make: Maker,
  count: number,
  concurrency = CONCURRENCY,
): Promise<number> {
  const started = performance.now()
  let next = 0
  const worker = async () => {
    while (next < count) {
      next++
      if (next % 1000 === 0) checkInterrupted()
      if (!(await store.set(make.record()))) throw new Error('a new session was refused (id collision?)')
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return performance.now() - started
}

// ---------------------------------------------------------------------------------------------
// Per store: the growth for `count` sessions of one profile

interface Measured {
  store: StoreName
  /** `embedded` (the real session) or `sealed-<n>`. */
  profile: string
  sessions: number
  sealedChars: number
  /** Growth in bytes for all the sessions. */
  bytes: number
  bytesPerSession: number
  sessionsPerGiB: number
  writeMs: number
  /** Store-specific details: the cross-checks and what was summed. */
  detail: Record<string, number | string>
}

function result(
  store: StoreName,
  profile: string,
  make: Maker,
  bytes: number,
  writeMs: number,
  detail: Record<string, number | string>,
): Measured {
  const perSession = bytes / SESSIONS
  return {
    store,
    profile,
    sessions: SESSIONS,
    sealedChars: make.sealedChars,
    bytes,
    bytesPerSession: Math.round(perSession),
    sessionsPerGiB: Math.round(GIB / perSession),
    writeMs: Math.round(writeMs),
    detail,
  }
}

async function measureMemory(profile: string, make: Maker): Promise<Measured> {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const settle = async (): Promise<number> => {
    for (let i = 0; i < 4; i++) {
      gc()
      await new Promise((resolve) => setImmediate(resolve))
    }
    return process.memoryUsage().heapUsed
  }
  const store = new MemoryStore()
  const before = await settle()
  const writeMs = await writeSessions(store, make, SESSIONS, 1)
  const after = await settle()
  const live = await store.count(Date.now())
  await store.close()
  if (live !== SESSIONS) throw new Error(`memory store holds ${live} sessions, not ${SESSIONS}`)
  return result('memory', profile, make, after - before, writeMs, { heapUsedBefore: before, heapUsedAfter: after })
}

async function measureSqlite(profile: string, make: Maker): Promise<Measured> {
  const dir = mkdtempSync(join(tmpdir(), 'gh-size-'))
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'sessions.db')
  const size = () => [path, `${path}-wal`].reduce((sum, p) => sum + (existsSync(p) ? statSync(p).size : 0), 0)
  // The empty store first: what it holds before any session (schema pages) is not per session.
  await (await openStore(`sqlite:${path}`)).close()
  const empty = size()
  const store = await openStore(`sqlite:${path}`)
  let writeMs: number
  try {
    writeMs = await writeSessions(store, make, SESSIONS, 1)
    const live = await store.count?.(Date.now())
    if (live !== SESSIONS) throw new Error(`SQLite holds ${live} sessions, not ${SESSIONS}`)
  } finally {
    await store.close()
  }
  const full = size()
  rmSync(dir, { recursive: true, force: true })
  return result('sqlite', profile, make, full - empty, writeMs, { emptyFileBytes: empty, fileBytes: full })
}

async function redisClient(url: string): Promise<Redis> {
  const { Redis } = await import('ioredis')
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 3000 })
  client.on('error', () => {})
  await client.connect()
  return client
}

const usedMemory = async (client: Redis): Promise<number> =>
  Number(/used_memory:(\d+)/.exec(await client.info('memory'))?.[1] ?? NaN)

/** Keys under `prefix` on one server, SCANned. */
async function keysOf(client: Redis, prefix: string): Promise<string[]> {
  const keys: string[] = []
  let cursor = '0'
  do {
    const [next, batch] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 5000)
    cursor = next
    keys.push(...batch)
  } while (cursor !== '0')
  return keys
}

/** UNLINKs every key under `prefix`, one key per command (on a cluster node, keys of several slots may not share one). */
async function unlinkPrefix(client: Redis, prefix: string): Promise<void> {
  for (let pass = 0; pass < 5; pass++) {
    const keys = await keysOf(client, prefix)
    if (keys.length === 0) return
    for (let k = 0; k < keys.length; k += 1000) {
      const pipeline = client.pipeline()
      for (const key of keys.slice(k, k + 1000)) pipeline.unlink(key)
      for (const [err] of (await pipeline.exec()) ?? []) if (err) throw err
    }
  }
  throw new Error(`Redis keys under ${prefix} keep appearing; delete them by hand`)
}

async function memoryUsageSum(client: Redis, keys: string[]): Promise<number> {
  let sum = 0
  for (let k = 0; k < keys.length; k += 500) {
    const pipeline = client.pipeline()
    for (const key of keys.slice(k, k + 500)) pipeline.memory('USAGE', key, 'SAMPLES', '0')
    for (const [err, bytes] of (await pipeline.exec()) ?? []) {
      if (err) throw err
      sum += Number(bytes)
    }
  }
  return sum
}

/**
 * Writes and removes `WARM_UP` sessions under a prefix of their own before a server's first baseline:
 * the scripts get loaded, connection buffers sized, and on a server with replicas the replication
 * backlog (1 MB per primary by default, counted in used_memory) filled to its cap, so none of these
 * one-time costs is counted per session.
 */
async function warmUp(location: (prefix: string) => string, nodes: Redis[], make: Maker): Promise<void> {
  const prefix = `ghsize${RUN}warmup:`
  const store = await openStore(location(prefix))
  try {
    await writeSessions(store, make, WARM_UP)
  } finally {
    await store.close()
    for (const node of nodes) await unlinkPrefix(node, prefix)
  }
}
const WARM_UP = 3000
const warmedUp = new Set<string>()

const backlog = async (client: Redis): Promise<number> =>
  Number(/mem_replication_backlog:(\d+)/.exec(await client.info('memory'))?.[1] ?? NaN)

async function measureRedis(profile: string, make: Maker): Promise<Measured> {
  const prefix = `ghsize${RUN}${profile.replace(/\W/g, '')}:`
  const admin = await redisClient(REDIS_URL)
  cleanups.push(async () => {
    if (admin.status !== 'ready') return
    await unlinkPrefix(admin, prefix)
    await admin.quit().catch(() => admin.disconnect())
  })
  const location = (keyPrefix: string) => {
    const url = new URL(REDIS_URL)
    url.searchParams.set('prefix', keyPrefix)
    return url.toString()
  }
  if (!warmedUp.has('redis')) {
    await warmUp(location, [admin], make)
    warmedUp.add('redis')
  }
  const store = await openStore(location(prefix))
  try {
    const before = await usedMemory(admin)
    const writeMs = await writeSessions(store, make, SESSIONS)
    const after = await usedMemory(admin)
    const keys = await keysOf(admin, prefix)
    const usage = await memoryUsageSum(admin, keys)
    await unlinkPrefix(admin, prefix)
    // UNLINK frees in the background: give it a moment before reading the drift.
    await new Promise((resolve) => setTimeout(resolve, 500))
    const drift = (await usedMemory(admin)) - before
    return result('redis', profile, make, after - before, writeMs, {
      keys: keys.length,
      memoryUsageSum: usage,
      memoryUsagePerSession: Math.round(usage / SESSIONS),
      usedMemoryDriftAfterCleanup: drift,
    })
  } finally {
    await store.close()
  }
}

async function measurePostgres(profile: string, make: Maker): Promise<Measured> {
  const pg = (await import('pg')).default
  const schema = `gh_size_${RUN}_${profile.replace(/\W/g, '_')}`
  const admin = new pg.Client({ connectionString: POSTGRES_URL })
  admin.on('error', () => {})
  await admin.connect()
  cleanups.push(async () => {
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    await admin.end()
  })
  const url = new URL(POSTGRES_URL)
  url.searchParams.set('schema', schema)
  const store = await openStore(url.toString())
  const sizes = async () => {
    const { rows } = await admin.query<{ sessions: string; toast: string; indexes: string; others: string }>(
      `SELECT pg_total_relation_size($1::regclass) AS sessions,
              coalesce(pg_total_relation_size((SELECT reltoastrelid FROM pg_class WHERE oid = $1::regclass)), 0) AS toast,
              pg_indexes_size($1::regclass) AS indexes,
              pg_total_relation_size($2::regclass) + pg_total_relation_size($3::regclass) AS others`,
      [`"${schema}".gatehouse_sessions`, `"${schema}".gatehouse_leases`, `"${schema}".gatehouse_session_count`],
    )
    const row = rows[0]!
    return {
      sessions: Number(row.sessions),
      toast: Number(row.toast),
      indexes: Number(row.indexes),
      others: Number(row.others),
    }
  }
  try {
    const before = await sizes()
    const writeMs = await writeSessions(store, make, SESSIONS)
    const after = await sizes()
    const { rows } = await admin.query<{ avg: string }>(
      `SELECT avg(pg_column_size(sealed))::int AS avg FROM "${schema}".gatehouse_sessions`,
    )
    return result('postgres', profile, make, after.sessions - before.sessions, writeMs, {
      tableBytes: after.sessions,
      indexBytes: after.indexes,
      toastBytes: after.toast,
      sealedColumnBytesAvg: Number(rows[0]!.avg),
      counterAndLeaseTablesBytes: after.others,
    })
  } finally {
    await store.close()
  }
}

interface ClusterNodes {
  primaries: Redis[]
  replicas: Redis[]
}

let cluster: RedisCluster | undefined
let clusterNodes: ClusterNodes | undefined

async function startCluster(): Promise<{ cluster: RedisCluster; nodes: ClusterNodes }> {
  if (cluster && clusterNodes) return { cluster, nodes: clusterNodes }
  const started = await startRedisCluster()
  cluster = started
  cleanups.push(async () => {
    for (const c of [...(clusterNodes?.primaries ?? []), ...(clusterNodes?.replicas ?? [])]) c.disconnect()
    await started.stop()
  })
  const connect = (port: number) => redisClient(`redis://127.0.0.1:${port}`)
  clusterNodes = {
    primaries: await Promise.all(started.nodes.filter((n) => n.role === 'primary').map((n) => connect(n.port))),
    replicas: await Promise.all(started.nodes.filter((n) => n.role === 'replica').map((n) => connect(n.port))),
  }
  return { cluster: started, nodes: clusterNodes }
}

/** Waits until every replica has applied what its primary wrote (offsets equal). */
async function replicasCaughtUp(nodes: ClusterNodes): Promise<void> {
  const offset = async (client: Redis, field: string) =>
    Number(new RegExp(`${field}:(\\d+)`).exec(await client.info('replication'))?.[1] ?? NaN)
  for (let tries = 0; tries < 200; tries++) {
    const primary = await Promise.all(nodes.primaries.map((c) => offset(c, 'master_repl_offset')))
    const replica = await Promise.all(nodes.replicas.map((c) => offset(c, 'slave_repl_offset')))
    if (replica.every((r) => primary.includes(r))) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error('the cluster replicas did not catch up within 10 s')
}

async function measureCluster(profile: string, make: Maker): Promise<Measured> {
  const { cluster, nodes } = await startCluster()
  if (!warmedUp.has('redis-cluster')) {
    await warmUp((keyPrefix) => cluster.url(keyPrefix), nodes.primaries, make)
    warmedUp.add('redis-cluster')
  }
  const prefix = `ghsize${RUN}${profile.replace(/\W/g, '')}:`
  const store = await openStore(cluster.url(prefix))
  try {
    const sum = async (clients: Redis[], read = usedMemory) =>
      (await Promise.all(clients.map(read))).reduce((a, b) => a + b, 0)
    await replicasCaughtUp(nodes)
    const primariesBefore = await sum(nodes.primaries)
    const replicasBefore = await sum(nodes.replicas)
    const backlogBefore = await sum(nodes.primaries, backlog)
    const writeMs = await writeSessions(store, make, SESSIONS)
    await replicasCaughtUp(nodes)
    const primaries = (await sum(nodes.primaries)) - primariesBefore
    const replicas = (await sum(nodes.replicas)) - replicasBefore
    const backlogGrowth = (await sum(nodes.primaries, backlog)) - backlogBefore
    const perPrimary = await Promise.all(nodes.primaries.map(async (c) => (await keysOf(c, prefix)).length))
    for (const c of nodes.primaries) await unlinkPrefix(c, prefix)
    return result('redis-cluster', profile, make, primaries, writeMs, {
      replicasBytes: replicas,
      replicasBytesPerSession: Math.round(replicas / SESSIONS),
      keysPerPrimary: perPrimary.join(','),
      replicationBacklogGrowthOnPrimaries: backlogGrowth,
    })
  } finally {
    await store.close()
  }
}

const MEASURE: Record<StoreName, (profile: string, make: Maker) => Promise<Measured>> = {
  memory: measureMemory,
  sqlite: measureSqlite,
  redis: measureRedis,
  postgres: measurePostgres,
  'redis-cluster': measureCluster,
}

// ---------------------------------------------------------------------------------------------
// Run

const started = performance.now()
const measured: Measured[] = []
let failure: unknown
let real: RealSession | undefined
const versions: Record<string, string> = {}
try {
  real = await loginOnce()
  console.log(
    `real session (embedded IdP): sealed ${real.record.sealed.length} chars; plaintext JSON ${real.parts.plaintextJson} B: ` +
      `access token ${real.parts.accessToken}, id token ${real.parts.idToken}, refresh token ${real.parts.refreshToken} chars, ` +
      `${real.parts.claims} claims (${real.parts.claimsJson} chars of JSON); sub ${real.parts.sub}, sid ${real.parts.sid} chars`,
  )
  const keyRing = new KeyRing([randomBytes(32).toString('base64url')])
  const profiles: Array<[string, SessionData]> = [
    ['embedded', real.data],
    ...SEALED.map((n): [string, SessionData] => [`sealed-${n}`, sizedData(real!.data, n)]),
  ]
  const makers = new Map(profiles.map(([name, data]) => [name, maker(keyRing, data, real!.record.partition)]))
  for (const name of STORES) {
    for (const [profile] of profiles) {
      checkInterrupted()
      const make = makers.get(profile)!
      process.stdout.write(`${name}, ${profile} (sealed ${make.sealedChars} chars), ${SESSIONS} sessions … `)
      const m = await MEASURE[name](profile, make)
      measured.push(m)
      console.log(`${m.bytesPerSession} B/session, ${m.sessionsPerGiB.toLocaleString('en')} sessions/GiB`)
    }
  }
  if (STORES.some((s) => s === 'redis')) {
    const admin = await redisClient(REDIS_URL)
    versions.redis = /redis_version:(\S+)/.exec(await admin.info('server'))?.[1] ?? '?'
    versions.redisAllocator = /mem_allocator:(\S+)/.exec(await admin.info('memory'))?.[1] ?? '?'
    await admin.quit()
  }
  if (STORES.some((s) => s === 'postgres')) {
    const pg = (await import('pg')).default
    const admin = new pg.Client({ connectionString: POSTGRES_URL })
    await admin.connect()
    versions.postgres = (await admin.query<{ v: string }>('SHOW server_version')).rows[0]!.v
    await admin.end()
  }
} catch (err) {
  failure = err
} finally {
  for (const cleanup of cleanups.reverse())
    await cleanup().catch((err: unknown) => console.error(`cleanup: ${String(err)}`))
}

// Fit bytes = fixed + slope × sealed per store (least squares over the profiles), with the largest miss.
const fits = STORES.flatMap((store) => {
  const points = measured.filter((m) => m.store === store).map((m) => [m.sealedChars, m.bytesPerSession] as const)
  // Two points would fit any line exactly (and the embedded profile may sit next to a --sealed one).
  if (points.length < 3) return []
  const n = points.length
  const mx = points.reduce((a, [x]) => a + x, 0) / n
  const my = points.reduce((a, [, y]) => a + y, 0) / n
  const slope =
    points.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0) / points.reduce((a, [x]) => a + (x - mx) ** 2, 0)
  const fixed = my - slope * mx
  const worst = Math.max(...points.map(([x, y]) => Math.abs(y - (fixed + slope * x))))
  return [
    { store, fixed: Math.round(fixed), slope: Math.round(slope * 100) / 100, largestMissBytes: Math.round(worst) },
  ]
})

if (measured.length > 0) {
  console.log('\n| store | profile | sealed chars | bytes/session | sessions per GiB |')
  console.log('|---|---|--:|--:|--:|')
  for (const m of measured)
    console.log(
      `| ${m.store} | ${m.profile} | ${m.sealedChars} | ${m.bytesPerSession.toLocaleString('en')} | ${m.sessionsPerGiB.toLocaleString('en')} |`,
    )
  for (const m of measured.filter((x) => x.store === 'redis-cluster'))
    console.log(`redis-cluster ${m.profile}: the replicas hold ${m.detail.replicasBytesPerSession} B/session more`)
  for (const m of measured.filter((x) => x.store === 'redis'))
    console.log(
      `redis ${m.profile}: MEMORY USAGE sum ${m.detail.memoryUsagePerSession} B/session; used_memory drift after cleanup ${m.detail.usedMemoryDriftAfterCleanup} B`,
    )
  for (const f of fits)
    console.log(
      `fit ${f.store}: bytes/session ≈ ${f.fixed} + ${f.slope} × sealed chars (largest miss ${f.largestMissBytes} B)`,
    )
}
const totalMs = performance.now() - started
console.log(`\ntotal ${(totalMs / 1000).toFixed(1)} s`)

const date = new Date()
const stamp = date
  .toISOString()
  .replace(/:\d\d\.\d+Z$/, 'Z')
  .replace(/:/g, '')
const out = flags.out ?? join(dirname(new URL(import.meta.url).pathname), 'results', `store-size-${stamp}.json`)
if (measured.length > 0) {
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
          memGiB: Math.round(totalmem() / GIB),
          loadavg: loadavg().map((l) => Math.round(l * 100) / 100),
          node: process.version,
          platform: `${process.platform} ${process.arch}`,
        },
        versions,
        options: { sessions: SESSIONS, stores: STORES, sealed: SEALED },
        realSession: real && {
          sealedChars: real.record.sealed.length,
          partition: real.record.partition,
          ...real.parts,
        },
        measured,
        fits,
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
