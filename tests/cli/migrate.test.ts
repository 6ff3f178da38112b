import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { after, describe, test } from 'node:test'
import pg from 'pg'
import { generateKey } from '../../src/session/seal.ts'
import {
  POSTGRES_SCHEMA_V1,
  SQLITE_SCHEMA_V1,
  insertPostgresV1,
  insertSqliteV1,
  type RawSession,
} from '../stores/schema-v1.ts'

// The CLI from its sources, as `gatehouse …` runs it: what `migrate` reports, and how `serve` stops
// on a store it cannot open.
const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname
const POSTGRES_URL = process.env.GATEHOUSE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const REDIS_URL = process.env.GATEHOUSE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const run = randomBytes(4).toString('hex')
const dir = mkdtempSync(join(tmpdir(), 'gatehouse-migrate-'))
after(() => rmSync(dir, { recursive: true, force: true }))

function gatehouse(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // In the test's folder: a location resolved against the working directory lands there.
    const child = spawn(process.execPath, [MAIN, ...args], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

/** Sessions a version-1 gatehouse left, one of them expired (still a row, counted as one). */
const V1_SESSIONS: RawSession[] = [
  { idHash: 'a', sub: 'alice', sid: 's1', expiresAt: Date.now() + 3_600_000 },
  { idHash: 'b', sub: 'bob', sid: null, expiresAt: Date.now() + 3_600_000 },
  { idHash: 'c', sub: 'carol', sid: 's3', expiresAt: 1 },
]

let n = 0
/** A config file with this session block (the rest valid). */
function config(session: Record<string, unknown>): string {
  const path = join(dir, `config-${n++}.json`)
  writeFileSync(
    path,
    JSON.stringify({
      oidc: { authority: 'https://idp.example.com', clientId: 'spa', clientSecret: 'x' },
      keys: [generateKey()],
      listen: { port: 0 },
      session,
    }),
  )
  return path
}

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

const SHIPPED = [
  'table gatehouse_sessions',
  'index gatehouse_sessions_sub',
  'index gatehouse_sessions_sid',
  'index gatehouse_sessions_expires',
  'table gatehouse_leases',
  'table gatehouse_session_count',
  'trigger gatehouse_sessions_count_insert',
  'trigger gatehouse_sessions_count_delete',
]
/** What upgrading a version-1 schema creates. */
const VERSION_2 = SHIPPED.slice(-3)

describe('gatehouse migrate says what it did', () => {
  test('PostgreSQL: the schema, tables and indexes it created, then that nothing was needed', async () => {
    const schema = `gh_migrate_${run}`
    const url = new URL(POSTGRES_URL)
    url.searchParams.set('schema', schema)
    const cfg = config({ store: url.toString() })
    const where = `postgres://${url.host}${url.pathname}, schema ${schema}`
    const admin = new pg.Client({ connectionString: POSTGRES_URL })
    await admin.connect()
    try {
      const first = await gatehouse(['migrate', '--config', cfg])
      assert.equal(first.code, 0, first.stderr)
      assert.equal(
        first.stdout,
        `created schema version 2 (${where}):\n${[`schema ${schema}`, ...SHIPPED].map((o) => `  ${o}\n`).join('')}`,
      )
      const tables = await admin.query('SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY 1', [schema])
      assert.deepEqual(
        tables.rows.map((r: { tablename: string }) => r.tablename),
        ['gatehouse_leases', 'gatehouse_session_count', 'gatehouse_sessions'],
      )

      const again = await gatehouse(['migrate', '--config', cfg])
      assert.equal(again.code, 0, again.stderr)
      assert.equal(again.stdout, `nothing to do: schema version 2 is already in place (${where})\n`)

      // An index dropped by hand is put back, and only it is reported.
      await admin.query(`DROP INDEX "${schema}".gatehouse_sessions_sid`)
      const repaired = await gatehouse(['migrate', '--config', cfg])
      assert.equal(repaired.stdout, `created schema version 2 (${where}):\n  index gatehouse_sessions_sid\n`)

      // A counter trigger dropped by hand is put back, and the counter set again from a count.
      await admin.query(`DROP TRIGGER gatehouse_sessions_count_insert ON "${schema}".gatehouse_sessions`)
      await insertPostgresV1(admin, schema, [{ idHash: 'by-hand', sub: 'a', sid: null, expiresAt: 1 }])
      const recounted = await gatehouse(['migrate', '--config', cfg])
      assert.equal(
        recounted.stdout,
        `created schema version 2 (${where}):\n  trigger gatehouse_sessions_count_insert\n  gatehouse_session_count set from a count of gatehouse_sessions: 1 row\n`,
      )
    } finally {
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
      await admin.end()
    }
  })

  test('SQLite: the file, tables and indexes it created, then that nothing was needed', async () => {
    const path = join(dir, 'sessions.db')
    const cfg = config({ store: `sqlite:${path}` })
    const first = await gatehouse(['migrate', '--config', cfg])
    assert.equal(first.code, 0, first.stderr)
    assert.equal(
      first.stdout,
      `created schema version 2 (sqlite:${path}):\n${[`file ${path}`, ...SHIPPED].map((o) => `  ${o}\n`).join('')}`,
    )
    const again = await gatehouse(['migrate', '--config', cfg])
    assert.equal(again.stdout, `nothing to do: schema version 2 is already in place (sqlite:${path})\n`)
  })

  test('PostgreSQL version 1: upgraded in place to version 2, the sessions counted', async () => {
    const schema = `gh_migrate_v1_${run}`
    const url = new URL(POSTGRES_URL)
    url.searchParams.set('schema', schema)
    const cfg = config({ store: url.toString() })
    const where = `postgres://${url.host}${url.pathname}, schema ${schema}`
    const admin = new pg.Client({ connectionString: POSTGRES_URL })
    await admin.connect()
    try {
      await admin.query(`CREATE SCHEMA "${schema}"; SET search_path TO "${schema}"; ${POSTGRES_SCHEMA_V1}`)
      await insertPostgresV1(admin, schema, V1_SESSIONS)
      const upgraded = await gatehouse(['migrate', '--config', cfg])
      assert.equal(upgraded.code, 0, upgraded.stderr)
      assert.equal(
        upgraded.stdout,
        `upgraded schema version 1 to 2 (${where}):\n${VERSION_2.map((o) => `  ${o}\n`).join('')}  gatehouse_session_count set from a count of gatehouse_sessions: 3 rows\n`,
      )
      const { rows } = await admin.query(`SELECT sum(n)::int AS n FROM "${schema}".gatehouse_session_count`)
      assert.equal(rows[0].n, 3)
      const again = await gatehouse(['migrate', '--config', cfg])
      assert.equal(again.stdout, `nothing to do: schema version 2 is already in place (${where})\n`)
    } finally {
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
      await admin.end()
    }
  })

  test('SQLite version 1: upgraded in place to version 2, the sessions counted', async () => {
    const path = join(dir, 'v1-sessions.db')
    const db = new DatabaseSync(path)
    db.exec(`PRAGMA journal_mode = WAL; ${SQLITE_SCHEMA_V1}`)
    insertSqliteV1(db, V1_SESSIONS)
    db.close()
    const cfg = config({ store: `sqlite:${path}` })
    const upgraded = await gatehouse(['migrate', '--config', cfg])
    assert.equal(upgraded.code, 0, upgraded.stderr)
    assert.equal(
      upgraded.stdout,
      `upgraded schema version 1 to 2 (sqlite:${path}):\n${VERSION_2.map((o) => `  ${o}\n`).join('')}  gatehouse_session_count set from a count of gatehouse_sessions: 3 rows\n`,
    )
    const check = new DatabaseSync(path, { readOnly: true })
    try {
      assert.equal((check.prepare('SELECT n FROM gatehouse_session_count').get() as { n: number }).n, 3)
      assert.equal((check.prepare('SELECT count(*) AS n FROM gatehouse_sessions').get() as { n: number }).n, 3)
    } finally {
      check.close()
    }
    const again = await gatehouse(['migrate', '--config', cfg])
    assert.equal(again.stdout, `nothing to do: schema version 2 is already in place (sqlite:${path})\n`)
  })

  test('Redis, memory and cookie mode: why nothing is needed', async () => {
    const redis = await gatehouse(['migrate', '--config', config({ store: `${REDIS_URL}/2?prefix=app1:` })])
    assert.equal(redis.code, 0, redis.stderr)
    assert.equal(
      redis.stdout,
      `nothing to do: Redis needs no schema: keys under the prefix "app1:" in database 2 are created as sessions are written (${REDIS_URL}/2 answered)\n`,
    )
    const memory = await gatehouse(['migrate', '--config', config({ store: 'memory' })])
    assert.equal(memory.code, 0, memory.stderr)
    assert.match(
      memory.stdout,
      /^nothing to do: session\.store is "memory": sessions live in the process's memory, which has no schema\n$/,
    )
    const cookie = await gatehouse(['migrate', '--config', config({ mode: 'cookie' })])
    assert.equal(cookie.code, 0, cookie.stderr)
    assert.match(
      cookie.stdout,
      /^nothing to do: session\.mode is "cookie": sessions live in the browser's cookie, no store holds them\n$/,
    )
  })

  test('SQLite in memory (:memory:, a file: URI with mode=memory): says so, and claims no file', async () => {
    for (const store of ['sqlite::memory:', 'sqlite:file:in-memory.db?mode=memory']) {
      const res = await gatehouse(['migrate', '--config', config({ store })])
      assert.equal(res.code, 0, res.stderr)
      assert.equal(
        res.stdout,
        `nothing to do: session.store "${store}" is an in-memory SQLite database: every process that opens it gets new, empty tables, and nothing of it outlives the process\n`,
      )
    }
    assert.ok(!readdirSync(dir).some((f) => f.startsWith('file:') || f.startsWith('in-memory.db') || f === ':memory:'))
  })

  test('SQLite through a file: URI: the file the URI names is created, the location reported as written', async () => {
    const path = join(dir, 'uri-sessions.db')
    const res = await gatehouse(['migrate', '--config', config({ store: `sqlite:file:${path}` })])
    assert.equal(res.code, 0, res.stderr)
    assert.equal(
      res.stdout,
      `created schema version 2 (sqlite:file:${path}):\n${SHIPPED.map((o) => `  ${o}\n`).join('')}`,
    )
    assert.ok(existsSync(path))
  })

  test('a Redis database index out of range fails migrate with one line', async () => {
    const res = await gatehouse(['migrate', '--config', config({ store: `${REDIS_URL}/99` })])
    assert.equal(res.code, 1)
    assert.match(
      res.stderr,
      /^gatehouse: session store redis:\/\/[^/]+\/99: database index 99 is out of range \(this server has \d+ databases: 0 to \d+\)\n$/,
    )
  })
})

describe('gatehouse serve with a store it cannot open', () => {
  test('exits 1 with one line naming the store and the cause: no stack trace, no password', async () => {
    const port = await freePort()
    const res = await gatehouse(['serve', '--config', config({ store: `redis://gh:hunter2-pw@127.0.0.1:${port}/0` })])
    assert.equal(res.code, 1)
    assert.equal(
      res.stderr,
      `gatehouse: session store redis://127.0.0.1:${port}/0: connection refused (is Redis running at 127.0.0.1:${port}?)\n`,
    )
    assert.doesNotMatch(res.stdout + res.stderr, /hunter2-pw/)
    assert.doesNotMatch(res.stdout + res.stderr, /\n\s+at /, 'no stack trace')
  })

  test('a missing PostgreSQL database is named the same way', async () => {
    const base = new URL(POSTGRES_URL)
    const res = await gatehouse([
      'serve',
      '--config',
      config({ store: `postgres://postgres:hunter3-pw@${base.host}/gh_none_${run}` }),
    ])
    assert.equal(res.code, 1)
    assert.equal(
      res.stderr,
      `gatehouse: session store postgres://${base.host}/gh_none_${run}: database "gh_none_${run}" does not exist\n`,
    )
    assert.doesNotMatch(res.stdout, /hunter3-pw/)
  })
})
