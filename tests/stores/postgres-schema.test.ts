import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, describe, test } from 'node:test'
import pg from 'pg'
import { GatehouseError } from '../../src/errors.ts'
import { openStore } from '../../src/session/stores/open-store.ts'
import { COUNTER_SLOTS } from '../../src/session/stores/postgres-schema.ts'
import { inspectPostgresStore, openPostgresStore } from '../../src/session/stores/postgres.ts'
import { sampleRecord } from './contract.ts'
import { POSTGRES_SCHEMA_V1, insertPostgresV1, type RawSession } from './schema-v1.ts'

// Runs against a real PostgreSQL (CI starts one). An unreachable server fails this file; it never skips.
const POSTGRES_URL = process.env.GATEHOUSE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const NOW = 1_700_000_000_000
const HOUR = 3_600_000
const run = randomBytes(4).toString('hex')
const schemas: string[] = []
const roles: string[] = []

const admin = new pg.Pool({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 3000, max: 6 })
admin.on('error', () => {})

after(async () => {
  for (const schema of schemas) await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
  for (const role of roles) await admin.query(`DROP ROLE IF EXISTS ${role}`)
  await admin.end()
})

function freshSchema(): string {
  const schema = `gh_counter_${run}_${schemas.length}`
  schemas.push(schema)
  return schema
}

function urlOf(schema: string, user?: string): string {
  const url = new URL(POSTGRES_URL)
  if (user !== undefined) url.username = user
  url.searchParams.set('schema', schema)
  return url.toString()
}

/** A schema as a version-1 gatehouse left it, with these sessions in it. */
async function v1Schema(sessions: RawSession[]): Promise<string> {
  const schema = freshSchema()
  await admin.query(`CREATE SCHEMA "${schema}"`)
  const client = await admin.connect()
  try {
    await client.query(`SET search_path TO "${schema}"`)
    await client.query(POSTGRES_SCHEMA_V1)
  } finally {
    client.release()
  }
  await insertPostgresV1(admin, schema, sessions)
  return schema
}

function v1Sessions(live: number, expired: number): RawSession[] {
  return [
    ...Array.from({ length: live }, (_, i) => ({
      idHash: `live-${i}`,
      sub: `u${i % 3}`,
      sid: `s${i}`,
      expiresAt: NOW + HOUR,
    })),
    ...Array.from({ length: expired }, (_, i) => ({ idHash: `old-${i}`, sub: 'gone', sid: null, expiresAt: NOW - i })),
  ]
}

async function counterRows(schema: string): Promise<Array<{ slot: number; n: number }>> {
  const { rows } = await admin.query<{ slot: number; n: string }>(
    `SELECT slot, n FROM "${schema}".gatehouse_session_count ORDER BY slot`,
  )
  return rows.map((r) => ({ slot: r.slot, n: Number(r.n) }))
}

const COUNTER_CREATED = [
  'table gatehouse_session_count',
  'trigger gatehouse_sessions_count_insert',
  'trigger gatehouse_sessions_count_delete',
]

describe('postgres session counter (schema version 2)', () => {
  test('count is exact across two stores on one schema and a connection writing by hand', async () => {
    const schema = freshSchema()
    const a = await openPostgresStore(urlOf(schema))
    const b = await openPostgresStore(urlOf(schema))
    try {
      const theirs = [sampleRecord({ sub: 'bob' }), sampleRecord({ sub: 'carol', expiresAt: NOW - 1 })]
      await a.set(sampleRecord({ sub: 'alice' }))
      await a.set(sampleRecord({ sub: 'alice', sid: 's2' }))
      for (const r of theirs) await b.set(r)
      assert.equal(await a.count(NOW), 3)
      assert.equal(await b.count(NOW), 3)
      // A gatehouse of version 1, or an operator, writing the table: the triggers count it too.
      await insertPostgresV1(admin, schema, [{ idHash: 'by-hand', sub: 'dave', sid: null, expiresAt: NOW + HOUR }])
      assert.equal(await a.count(NOW), 4)
      await admin.query(`DELETE FROM "${schema}".gatehouse_sessions WHERE sub = 'alice'`)
      assert.equal(await b.count(NOW), 2)
      assert.equal(await a.deleteWhere({ sub: 'bob' }), 1)
      assert.equal(await b.deleteExpired(NOW, 100), 1)
      assert.equal(await a.count(NOW), 1)
      assert.equal(await b.count(NOW - 2 * HOUR), 1)
      await admin.query(`TRUNCATE "${schema}".gatehouse_sessions`)
      assert.equal(await a.count(NOW - 2 * HOUR), 0, 'a TRUNCATE by hand resets the counter')
      await b.set(sampleRecord())
      assert.equal(await a.count(NOW), 1)
    } finally {
      await a.close()
      await b.close()
    }
  })

  test('concurrent writers of several instances add to different counter slots, and the sum stays exact', async () => {
    const schema = freshSchema()
    const stores = await Promise.all([0, 1, 2, 3].map(() => openPostgresStore(urlOf(schema))))
    try {
      // A few writes in flight per pool: enough for several server processes, few enough that the
      // four pools do not crowd a PostgreSQL that other test files use at the same time.
      const records = Array.from({ length: 48 }, (_, i) => sampleRecord({ sub: `u${i}` }))
      const written = await Promise.all(records.map((r, i) => stores[i % 4]!.set(r)))
      assert.ok(written.every(Boolean))
      const ended = await Promise.all(records.slice(0, 12).map((r, i) => stores[(i + 1) % 4]!.delete(r.idHash)))
      assert.ok(ended.every(Boolean))
      for (const store of stores) assert.equal(await store.count(NOW), 36)
      const slots = await counterRows(schema)
      assert.ok(slots.every((s) => s.slot >= 0 && s.slot < COUNTER_SLOTS))
      // Four pools, dozens of server processes: all of them landing on one slot of 32 would mean one hot row.
      assert.ok(slots.length > 1, `writes spread over ${slots.length} slot(s)`)
      assert.equal(
        slots.reduce((sum, s) => sum + s.n, 0),
        36,
      )
    } finally {
      await Promise.all(stores.map((s) => s.close()))
    }
  })

  test('a cleanup batch adds one number to the counter, not one per row', async () => {
    const schema = freshSchema()
    const store = await openPostgresStore(urlOf(schema))
    try {
      for (let i = 0; i < 30; i++) await store.set(sampleRecord({ sub: `u${i}`, expiresAt: NOW - 1 - i }))
      const client = await admin.connect()
      try {
        await client.query('BEGIN')
        const removed = await client.query(`DELETE FROM "${schema}".gatehouse_sessions WHERE expires_at <= $1`, [NOW])
        assert.equal(removed.rowCount, 30)
        const stats = await client.query<{ writes: string }>(
          `SELECT n_tup_upd + n_tup_ins AS writes FROM pg_stat_xact_user_tables WHERE schemaname = $1 AND relname = 'gatehouse_session_count'`,
          [schema],
        )
        assert.equal(Number(stats.rows[0]!.writes), 1, 'one statement, one counter write')
        await client.query('COMMIT')
      } finally {
        client.release()
      }
      assert.equal(await store.count(NOW - HOUR), 0)
    } finally {
      await store.close()
    }
  })

  test('a version-1 schema is upgraded in place: its sessions kept, the counter set from a count of them', async () => {
    const schema = await v1Schema(v1Sessions(5, 2))
    assert.deepEqual(await inspectPostgresStore(urlOf(schema)), { missing: COUNTER_CREATED })
    const store = await openPostgresStore(urlOf(schema))
    try {
      assert.deepEqual(store.migration, { created: COUNTER_CREATED, upgradedFrom: 1, counted: 7 })
      assert.equal(await store.count(NOW), 5)
      assert.equal(await store.count(NOW - HOUR), 7)
      assert.equal((await store.get('live-0', NOW))?.sub, 'u0')
      await store.set(sampleRecord())
      assert.equal(await store.deleteWhere({ sub: 'u0' }), 2)
      assert.equal(await store.deleteExpired(NOW, 10), 2)
      assert.equal(await store.count(NOW), 4)
    } finally {
      await store.close()
    }
    assert.deepEqual(await inspectPostgresStore(urlOf(schema)), { missing: [] })
    const again = await openPostgresStore(urlOf(schema))
    try {
      assert.deepEqual(again.migration, { created: [] })
      assert.equal(await again.count(NOW), 4)
    } finally {
      await again.close()
    }
  })

  test('a version-1 instance writing while another upgrades the schema: no insert or delete is miscounted', async () => {
    const schema = await v1Schema(v1Sessions(200, 0))
    const writer = new pg.Client({ connectionString: POSTGRES_URL })
    await writer.connect()
    let stop = false
    let inserted = 0
    let deleted = 0
    const writing = (async () => {
      for (let i = 0; !stop || i < 20; i++) {
        await insertPostgresV1(writer, schema, [{ idHash: `w-${i}`, sub: 'w', sid: null, expiresAt: NOW + HOUR }])
        inserted++
        if (i % 3 === 0) {
          const r = await writer.query(`DELETE FROM "${schema}".gatehouse_sessions WHERE id_hash = $1`, [`live-${i}`])
          deleted += r.rowCount ?? 0
        }
      }
    })()
    try {
      const store = await openPostgresStore(urlOf(schema))
      stop = true
      await writing
      try {
        assert.equal(store.migration?.upgradedFrom, 1)
        assert.equal(await store.count(NOW), 200 + inserted - deleted)
      } finally {
        await store.close()
      }
    } finally {
      stop = true
      await writing.catch(() => {})
      await writer.end()
    }
  })

  test('a counter trigger dropped by hand is put back and the counter set again from a count', async () => {
    const schema = freshSchema()
    const first = await openPostgresStore(urlOf(schema))
    for (let i = 0; i < 3; i++) await first.set(sampleRecord({ sub: `u${i}` }))
    await first.close()
    await admin.query(`DROP TRIGGER gatehouse_sessions_count_delete ON "${schema}".gatehouse_sessions`)
    await admin.query(`DELETE FROM "${schema}".gatehouse_sessions WHERE sub = 'u0'`)
    const store = await openPostgresStore(urlOf(schema))
    try {
      assert.deepEqual(store.migration, { created: ['trigger gatehouse_sessions_count_delete'], counted: 2 })
      assert.equal(await store.count(NOW), 2)
      assert.equal(await store.deleteWhere({ sub: 'u1' }), 1)
      assert.equal(await store.count(NOW), 1)
    } finally {
      await store.close()
    }
  })

  test('a runtime role set up for version 1: refused until the owner upgrades, then its writes are counted and it may count', async () => {
    const schema = await v1Schema(v1Sessions(3, 0))
    const role = `gh_rt_${run}`
    roles.push(role)
    await admin.query(`DROP ROLE IF EXISTS ${role}`)
    await admin.query(`CREATE ROLE ${role} LOGIN`)
    await admin.query(`GRANT USAGE ON SCHEMA "${schema}" TO ${role}`)
    await admin.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "${schema}" TO ${role}`)

    const refused = await openStore(urlOf(schema, role)).then(
      () => assert.fail('opened'),
      (e: unknown) => e,
    )
    assert.ok(refused instanceof GatehouseError)
    assert.match(
      refused.message,
      new RegExp(
        `schema ${schema} holds version 1 of the session schema and this user may not upgrade it to version 2 \\(.*\\): run gatehouse migrate as a user that may, such as the schema's owner$`,
      ),
    )
    await assert.rejects(inspectPostgresStore(urlOf(schema, role)), /holds version 1 of the session schema/)

    const owner = await openPostgresStore(urlOf(schema))
    assert.equal(owner.migration?.upgradedFrom, 1)
    await owner.close()
    const store = await openStore(urlOf(schema, role))
    try {
      assert.ok(store.count)
      assert.equal(await store.count(NOW), 3, 'SELECT on the new counter was granted like on the sessions')
      await store.set(sampleRecord())
      assert.equal(await store.deleteWhere({ sub: 'u0' }), 1)
      assert.equal(await store.count(NOW), 3)
      assert.equal(
        (await counterRows(schema)).reduce((sum, s) => sum + s.n, 0),
        3,
      )
    } finally {
      await store.close()
    }
  })

  test('another role cannot put the counting function on a table of its own: not the counter, nor its locks', async () => {
    const schema = freshSchema()
    const store = await openPostgresStore(urlOf(schema))
    await store.set(sampleRecord())
    await store.close()
    const role = `gh_other_${run}`
    roles.push(role)
    await admin.query(`DROP ROLE IF EXISTS ${role}`)
    await admin.query(`CREATE ROLE ${role} LOGIN`)
    await admin.query(`GRANT USAGE ON SCHEMA "${schema}" TO ${role}`)
    const other = new pg.Client({ connectionString: urlOf(schema, role).replace(/\?.*$/, '') })
    await other.connect()
    try {
      await other.query('CREATE TEMP TABLE t (x int)')
      await assert.rejects(
        other.query(
          `CREATE TRIGGER evil AFTER INSERT ON t REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION "${schema}".gatehouse_sessions_counted()`,
        ),
        /permission denied for function (\S+\.)?gatehouse_sessions_counted/,
      )
    } finally {
      await other.end()
    }
    // The owner may attach it (it owns the function), but the function itself refuses other tables.
    await admin.query(`CREATE TABLE "${schema}".other (x int)`)
    await admin.query(
      `CREATE TRIGGER evil AFTER INSERT ON "${schema}".other REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION "${schema}".gatehouse_sessions_counted()`,
    )
    await assert.rejects(
      admin.query(`INSERT INTO "${schema}".other SELECT generate_series(1, 10)`),
      /counts gatehouse_sessions only/,
    )
    assert.equal(
      (await counterRows(schema)).reduce((sum, r) => sum + r.n, 0),
      1,
    )
  })
})
