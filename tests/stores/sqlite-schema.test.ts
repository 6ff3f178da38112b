import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { after, before, describe, test } from 'node:test'
import { promisify } from 'node:util'
import { execFile } from 'node:child_process'
import { SqliteStore } from '../../src/session/stores/sqlite.ts'
import { inspectSqliteFile } from '../../src/session/stores/sqlite-open.ts'
import { sampleRecord } from './contract.ts'
import { SQLITE_SCHEMA_V1, insertSqliteV1, type RawSession } from './schema-v1.ts'

const run = promisify(execFile)
const STORE_MODULE = new URL('../../src/session/stores/sqlite.ts', import.meta.url).pathname
const NOW = 1_700_000_000_000
const HOUR = 3_600_000

/** Sessions as a version-1 gatehouse left them: `live` unexpired at NOW, `expired` not yet cleaned up. */
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

function counterOf(path: string): number {
  const db = new DatabaseSync(path)
  try {
    return Number((db.prepare('SELECT n FROM gatehouse_session_count WHERE id = 0').get() as { n: number }).n)
  } finally {
    db.close()
  }
}

describe('sqlite session counter (schema version 2)', () => {
  let dir: string
  let n = 0
  const file = () => join(dir, `counter-${n++}.db`)
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'gatehouse-sqlite-schema-'))
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  test('a new file gets the counter, its triggers and a count of zero', async () => {
    const path = file()
    const store = new SqliteStore(path)
    try {
      assert.deepEqual(store.migration.created.slice(-3), [
        'table gatehouse_session_count',
        'trigger gatehouse_sessions_count_insert',
        'trigger gatehouse_sessions_count_delete',
      ])
      assert.equal(store.migration.upgradedFrom, undefined)
      assert.equal(store.migration.counted, undefined, 'nothing was there to count')
      assert.equal(counterOf(path), 0)
    } finally {
      await store.close()
    }
  })

  test('count is exact across two stores on one file and a third connection writing by hand', async () => {
    const path = file()
    const a = new SqliteStore(path)
    const b = new SqliteStore(path)
    const other = new DatabaseSync(path)
    try {
      const mine = [sampleRecord({ sub: 'alice' }), sampleRecord({ sub: 'alice', sid: 's2' })]
      const theirs = [sampleRecord({ sub: 'bob' }), sampleRecord({ sub: 'carol', expiresAt: NOW - 1 })]
      for (const r of mine) await a.set(r)
      for (const r of theirs) await b.set(r)
      assert.equal(await a.count(NOW), 3)
      assert.equal(await b.count(NOW), 3)
      // Another tool (or a gatehouse of version 1) writing the table: the triggers count it too.
      insertSqliteV1(other, [{ idHash: 'by-hand', sub: 'dave', sid: null, expiresAt: NOW + HOUR }])
      assert.equal(await a.count(NOW), 4)
      other.exec("DELETE FROM gatehouse_sessions WHERE sub = 'alice'")
      assert.equal(await b.count(NOW), 2)
      assert.equal(await b.set({ ...theirs[0]!, version: 2, expiresAt: NOW + 2 * HOUR }, 1), true)
      assert.equal(await a.deleteWhere({ sub: 'bob' }), 1)
      assert.equal(await b.deleteExpired(NOW, 100), 1)
      assert.equal(await a.count(NOW), 1)
      assert.equal(await b.count(NOW - 2 * HOUR), 1)
      assert.equal(counterOf(path), 1, 'the counter holds every row, the expired ones removed')
    } finally {
      other.close()
      await a.close()
      await b.close()
    }
  })

  test('count reads the counter and a range of the expires_at index, never the whole table', async () => {
    const path = file()
    const store = new SqliteStore(path)
    await store.close()
    const db = new DatabaseSync(path)
    try {
      const plan = (
        db
          .prepare('EXPLAIN QUERY PLAN SELECT count(*) FROM gatehouse_sessions WHERE expires_at <= ?')
          .all(NOW) as Array<{ detail: string }>
      )
        .map((p) => p.detail)
        .join('\n')
      assert.match(plan, /USING COVERING INDEX gatehouse_sessions_expires \(expires_at<\?\)/)
    } finally {
      db.close()
    }
  })

  test('a version-1 file is upgraded in place: its sessions kept, the counter set from a count of them', async () => {
    const path = file()
    const v1 = new DatabaseSync(path)
    v1.exec('PRAGMA journal_mode = WAL')
    v1.exec(SQLITE_SCHEMA_V1)
    insertSqliteV1(v1, v1Sessions(5, 2))
    v1.close()
    assert.deepEqual(inspectSqliteFile(path), {
      state: 'present',
      file: path,
      missing: [
        'table gatehouse_session_count',
        'trigger gatehouse_sessions_count_insert',
        'trigger gatehouse_sessions_count_delete',
      ],
    })

    const store = new SqliteStore(path)
    try {
      assert.deepEqual(store.migration, {
        created: [
          'table gatehouse_session_count',
          'trigger gatehouse_sessions_count_insert',
          'trigger gatehouse_sessions_count_delete',
        ],
        upgradedFrom: 1,
        counted: 7,
      })
      assert.equal(await store.count(NOW), 5)
      assert.equal(await store.count(NOW - HOUR), 7)
      assert.equal((await store.get('live-0', NOW))?.sub, 'u0', 'the sessions are still there')
      assert.equal((await store.list({ sub: 'u1', limit: 10 }, NOW)).length, 2)
      await store.set(sampleRecord())
      assert.equal(await store.deleteWhere({ sub: 'u0' }), 2)
      assert.equal(await store.deleteExpired(NOW, 10), 2)
      assert.equal(await store.count(NOW), 4)
    } finally {
      await store.close()
    }
    assert.deepEqual(inspectSqliteFile(path), { state: 'present', file: path, missing: [] })
    const again = new SqliteStore(path)
    try {
      assert.deepEqual(again.migration, { created: [] }, 'upgraded once')
      assert.equal(await again.count(NOW), 4)
    } finally {
      await again.close()
    }
  })

  test('a counter trigger dropped by hand is put back and the counter set again from a count', async () => {
    const path = file()
    const first = new SqliteStore(path)
    for (let i = 0; i < 3; i++) await first.set(sampleRecord({ sub: `u${i}` }))
    await first.close()
    const db = new DatabaseSync(path)
    db.exec('DROP TRIGGER gatehouse_sessions_count_delete')
    db.exec("DELETE FROM gatehouse_sessions WHERE sub = 'u0'") // uncounted while the trigger was gone
    db.close()
    const store = new SqliteStore(path)
    try {
      assert.deepEqual(store.migration, { created: ['trigger gatehouse_sessions_count_delete'], counted: 2 })
      assert.equal(await store.count(NOW), 2)
      assert.equal(await store.deleteWhere({ sub: 'u1' }), 1)
      assert.equal(await store.count(NOW), 1)
    } finally {
      await store.close()
    }
  })

  test('three processes opening a version-1 file at once: exactly one upgrades it, all count the same', async () => {
    const path = file()
    const v1 = new DatabaseSync(path)
    v1.exec('PRAGMA journal_mode = WAL')
    v1.exec(SQLITE_SCHEMA_V1)
    insertSqliteV1(v1, v1Sessions(4, 1))
    v1.close()
    const script = `
      const { SqliteStore } = await import(${JSON.stringify(STORE_MODULE)})
      const store = new SqliteStore(${JSON.stringify(path)})
      console.log(JSON.stringify({ migration: store.migration, count: await store.count(${NOW}) }))
      await store.close()`
    const results = await Promise.all(
      [0, 1, 2].map(async () => {
        const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script])
        return JSON.parse(stdout) as { migration: { created: string[]; upgradedFrom?: number }; count: number }
      }),
    )
    assert.equal(results.filter((r) => r.migration.upgradedFrom === 1).length, 1)
    assert.equal(results.filter((r) => r.migration.created.length === 0).length, 2)
    assert.deepEqual(
      results.map((r) => r.count),
      [4, 4, 4],
    )
  })
})
