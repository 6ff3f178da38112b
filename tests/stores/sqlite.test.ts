import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { after, before, describe, test } from 'node:test'
import { KeyRing, generateKey } from '../../src/session/seal.ts'
import { Sessions, hashSessionId } from '../../src/session/sessions.ts'
import type { SessionData } from '../../src/session/session.ts'
import { SqliteStore } from '../../src/session/stores/sqlite.ts'
import { runStoreContract, sampleRecord } from './contract.ts'

const NOW = 1_700_000_000_000

describe('sqlite on a file', () => {
  let dir: string
  let n = 0
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'gatehouse-sqlite-'))
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  runStoreContract('sqlite file', async () => new SqliteStore(join(dir, `contract-${n++}.db`)))
})

describe('sqlite in memory', () => {
  runStoreContract('sqlite :memory:', async () => new SqliteStore(':memory:'))
})

describe('sqlite file layout', () => {
  let dir: string
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'gatehouse-sqlite-'))
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  test('sessions survive closing and reopening the file', async () => {
    const path = join(dir, 'reopen.db')
    const record = sampleRecord()
    const first = new SqliteStore(path)
    await first.set(record)
    await first.close()
    const second = new SqliteStore(path)
    try {
      assert.deepEqual(await second.get(record.idHash, NOW), record)
    } finally {
      await second.close()
    }
  })

  test('two stores on one file (two gatehouse processes, or the CLI): what one writes or deletes, the other reads at once, though it had just read the record', async () => {
    const path = join(dir, 'shared.db')
    const a = new SqliteStore(path)
    const b = new SqliteStore(path)
    try {
      const record = sampleRecord()
      await a.set(record)
      assert.equal((await b.get(record.idHash, NOW))?.version, 1)
      assert.equal((await a.get(record.idHash, NOW))?.version, 1)
      // Reads served from a's own copy while nothing changed elsewhere must not hide b's writes.
      assert.equal(await b.set({ ...record, version: 2, sealed: 'by-b' }, 1), true)
      assert.equal((await a.get(record.idHash, NOW))?.sealed, 'by-b')
      assert.equal(
        await a.set({ ...record, version: 2, sealed: 'stale' }, 1),
        false,
        "a's compare-and-set sees b's version",
      )
      assert.equal(await b.delete(record.idHash), true)
      assert.equal(await a.get(record.idHash, NOW), undefined)
      const other = sampleRecord()
      await a.set(other)
      await a.get(other.idHash, NOW)
      assert.equal(await b.deleteWhere({ sub: other.sub }), 1)
      assert.equal(await a.get(other.idHash, NOW), undefined, 'a deleteWhere elsewhere is seen too')
    } finally {
      await a.close()
      await b.close()
    }
  })

  test('a record read before its expiry is not returned after it', async () => {
    const store = new SqliteStore(join(dir, 'expiry.db'))
    try {
      const record = sampleRecord()
      await store.set(record)
      assert.ok(await store.get(record.idHash, NOW))
      assert.equal(await store.get(record.idHash, record.expiresAt), undefined)
    } finally {
      await store.close()
    }
  })

  test('a missing parent directory is created', async () => {
    const path = join(dir, 'nested', 'deeper', 'sessions.db')
    const store = new SqliteStore(path)
    await store.close()
    assert.ok(existsSync(path))
  })

  test('the file is in WAL mode so several processes can share it', async () => {
    const path = join(dir, 'wal.db')
    const store = new SqliteStore(path)
    await store.close()
    const db = new DatabaseSync(path)
    try {
      const row = db.prepare('PRAGMA journal_mode').get() as { journal_mode: string }
      assert.equal(row.journal_mode, 'wal')
    } finally {
      db.close()
    }
  })

  test('lookups by sub, sid and expiry are indexed', async () => {
    const path = join(dir, 'indexes.db')
    const store = new SqliteStore(path)
    await store.close()
    const db = new DatabaseSync(path)
    try {
      const rows = db
        .prepare(
          "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'gatehouse_sessions' AND sql IS NOT NULL",
        )
        .all() as Array<{ sql: string }>
      const indexedColumns = rows.map((r) => /\(([^)]*)\)/.exec(r.sql)?.[1]?.trim())
      for (const column of ['sub', 'sid', 'expires_at'])
        assert.ok(indexedColumns.includes(column), `an index on ${column} (found ${indexedColumns.join(', ')})`)
      const plan = db
        .prepare("EXPLAIN QUERY PLAN SELECT * FROM gatehouse_sessions WHERE sub = 'a' AND sid = 'b'")
        .all() as Array<{ detail: string }>
      assert.match(plan.map((p) => p.detail).join('\n'), /USING INDEX/)
    } finally {
      db.close()
    }
  })

  test('the database file holds only the hash of the session id, never the cookie value', async () => {
    const path = join(dir, 'hashed.db')
    const store = new SqliteStore(path)
    const sessions = new Sessions({
      store,
      keyRing: new KeyRing([generateKey()]),
      policy: { lifetimeMs: 3_600_000, sliding: true, absoluteLifetimeMs: 86_400_000 },
    })
    const data: SessionData = {
      claims: [{ type: 'sub', value: 'alice' }],
      tokens: {
        accessToken: 'at-PLAINTEXT-ACCESS',
        refreshToken: 'rt-PLAINTEXT-REFRESH',
        idToken: 'it-PLAINTEXT-ID',
        accessTokenExpiresAt: undefined,
        scope: 'openid',
      },
      logoutSid: 'sid-1',
      sessionState: undefined,
    }
    const { cookieValue } = await sessions.create({ sub: 'alice', sid: 'sid-1', partition: 'app', data })
    const bytes = () =>
      Buffer.concat([path, `${path}-wal`].filter((p) => existsSync(p)).map((p) => readFileSync(p))).toString('latin1')
    const check = (when: string) => {
      const text = bytes()
      assert.ok(text.includes(hashSessionId(cookieValue)), `${when}: the hash is stored`)
      assert.ok(!text.includes(cookieValue), `${when}: the raw cookie id is not stored`)
      for (const secret of ['at-PLAINTEXT-ACCESS', 'rt-PLAINTEXT-REFRESH', 'it-PLAINTEXT-ID'])
        assert.ok(!text.includes(secret), `${when}: ${secret} is sealed`)
    }
    check('before close')
    await store.close()
    check('after close')
  })
})
