import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, describe, test } from 'node:test'
import pg from 'pg'
import { GatehouseError } from '../../src/errors.ts'
import { openStore } from '../../src/session/stores/open-store.ts'
import { PostgresStore, openPostgresStore } from '../../src/session/stores/postgres.ts'
import { migratePostgres } from '../../src/session/stores/postgres-schema.ts'
import { runStoreContract, sampleRecord } from './contract.ts'

// Runs against a real PostgreSQL (CI starts one). An unreachable server fails this file; it never skips.
const POSTGRES_URL = process.env.GATEHOUSE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const NOW = 1_700_000_000_000
const run = randomBytes(4).toString('hex')
const schemas: string[] = []

const admin = new pg.Pool({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 3000, max: 4 })
admin.on('error', () => {})
try {
  await admin.query('SELECT 1')
} catch (err) {
  throw new Error(
    `the PostgreSQL store tests need a server at ${POSTGRES_URL} (set GATEHOUSE_TEST_POSTGRES_URL to use another): ${String(err)}`,
  )
}

after(async () => {
  for (const schema of schemas) await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
  await admin.end()
})

/** A schema of its own for every store, so each test starts empty; all are dropped at the end. */
function freshSchema(): string {
  const schema = `gatehouse_test_${run}_${schemas.length}`
  schemas.push(schema)
  return schema
}

function urlWithSchema(schema: string, base = POSTGRES_URL): string {
  const url = new URL(base)
  url.searchParams.set('schema', schema)
  return url.toString()
}

runStoreContract('postgres', () => openPostgresStore(urlWithSchema(freshSchema())))

/** What the catalog holds for a schema: relations with their oids, and index definitions. */
async function catalog(schema: string): Promise<unknown> {
  const relations = await admin.query(
    `SELECT c.oid::int AS oid, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 ORDER BY c.relname`,
    [schema],
  )
  const indexes = await admin.query(
    'SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 ORDER BY indexname',
    [schema],
  )
  return { relations: relations.rows, indexes: indexes.rows }
}

describe('postgres store specifics', () => {
  test('applying the schema a second time changes nothing', async () => {
    const schema = freshSchema()
    const store = await openPostgresStore(urlWithSchema(schema))
    try {
      const record = sampleRecord()
      await store.set(record)
      const before = await catalog(schema)
      await migratePostgres(admin, schema)
      assert.deepEqual(await catalog(schema), before)
      assert.deepEqual(await store.get(record.idHash, NOW), record, 'data survives a re-run')
    } finally {
      await store.close()
    }
  })

  test('lookups by sub, sid and expiry are indexed', async () => {
    const schema = freshSchema()
    const store = await openPostgresStore(urlWithSchema(schema))
    await store.close()
    const { rows } = await admin.query<{ indexdef: string }>(
      "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'gatehouse_sessions'",
      [schema],
    )
    const definitions = rows.map((r) => r.indexdef).join('\n')
    assert.match(definitions, /UNIQUE INDEX .* \(id_hash\)/)
    assert.match(definitions, /INDEX gatehouse_sessions_sub .* \(sub\)$/m)
    assert.match(definitions, /INDEX gatehouse_sessions_sid .* \(sid\) WHERE \(sid IS NOT NULL\)$/m)
    assert.match(definitions, /INDEX gatehouse_sessions_expires .* \(expires_at\)$/m)
    const client = await admin.connect()
    try {
      // The table is empty, so forbid the sequential scan the planner would rightly prefer.
      await client.query('SET enable_seqscan = off')
      const plan = async (sql: string) =>
        (await client.query(`EXPLAIN ${sql}`)).rows.map((r: { 'QUERY PLAN': string }) => r['QUERY PLAN']).join('\n')
      assert.match(
        await plan(`DELETE FROM "${schema}".gatehouse_sessions WHERE sub = 'a' AND sid = 'b'`),
        /Index|Bitmap/,
      )
      assert.match(await plan(`DELETE FROM "${schema}".gatehouse_sessions WHERE sid = 'b'`), /gatehouse_sessions_sid/)
      assert.match(
        await plan(`SELECT id_hash FROM "${schema}".gatehouse_sessions WHERE expires_at <= 5 LIMIT 10`),
        /gatehouse_sessions_expires/,
      )
    } finally {
      client.release()
    }
  })

  test('several stores opening at once on a fresh schema all succeed and share their sessions', async () => {
    const schema = freshSchema()
    const stores = await Promise.all(Array.from({ length: 4 }, () => openPostgresStore(urlWithSchema(schema))))
    try {
      const record = sampleRecord()
      assert.equal(await stores[0]!.set(record), true)
      for (const store of stores) assert.deepEqual(await store.get(record.idHash, NOW), record)
      assert.equal(await stores[1]!.deleteWhere({ sid: record.sid! }), 1)
      assert.equal(await stores[2]!.get(record.idHash, NOW), undefined, 'revoked on one instance, refused by all')
    } finally {
      await Promise.all(stores.map((s) => s.close()))
    }
  })

  test('openStore routes postgres:// and postgresql:// URLs', async () => {
    for (const scheme of ['postgres:', 'postgresql:']) {
      const url = new URL(urlWithSchema(freshSchema()))
      url.protocol = scheme
      const store = await openStore(url.toString())
      try {
        assert.ok(store instanceof PostgresStore)
        await store.ping()
      } finally {
        await store.close()
      }
    }
  })

  test('a schema name that is not a plain identifier is refused', async () => {
    await assert.rejects(openPostgresStore(urlWithSchema('x"; DROP TABLE y; --')), /must be letters, digits and _/)
  })

  test('an unreachable server fails the open with store_unavailable, never showing the password', async () => {
    const err = await openStore('postgres://postgres:s3cret-pw@127.0.0.1:1/test').then(
      () => assert.fail('opened'),
      (e: unknown) => e,
    )
    assert.ok(err instanceof GatehouseError)
    assert.equal(err.code, 'store_unavailable')
    assert.doesNotMatch(`${err.message} ${String(err.cause)}`, /s3cret-pw/)
    assert.match(err.message, /127\.0\.0\.1:1/)
  })
})

test('a runtime role that may only read and write the tables starts once the schema was migrated by its owner', async () => {
  const admin = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/test' })
  await admin.connect()
  const schema = `gh_role_${process.pid}_${Date.now()}`
  const role = `gh_runtime_${process.pid}`
  try {
    const owner = await openStore(`postgres://postgres@127.0.0.1:5432/test?schema=${schema}`)
    await owner.close()
    await admin.query(`DROP ROLE IF EXISTS ${role}`)
    await admin.query(`CREATE ROLE ${role} LOGIN`)
    await admin.query(`GRANT USAGE ON SCHEMA ${schema} TO ${role}`)
    await admin.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ${schema} TO ${role}`)
    const store = await openStore(`postgres://${role}@127.0.0.1:5432/test?schema=${schema}`)
    try {
      await store.ping()
      assert.equal(await store.deleteWhere({ sub: 'nobody' }), 0)
    } finally {
      await store.close()
    }
  } finally {
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
    await admin.query(`DROP ROLE IF EXISTS ${role}`)
    await admin.end()
  }
})
