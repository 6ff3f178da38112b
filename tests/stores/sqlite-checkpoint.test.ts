import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, test } from 'node:test'
import { promisify } from 'node:util'
import { BackgroundCheckpoints, WAL_LIMIT_BYTES, WalCheckpointer } from '../../src/session/stores/sqlite-checkpoint.ts'
import { SqliteStore } from '../../src/session/stores/sqlite.ts'
import { sampleRecord } from './contract.ts'

const run = promisify(execFile)
const STORE_MODULE = new URL('../../src/session/stores/sqlite.ts', import.meta.url).pathname
const NOW = 1_700_000_000_000
/** SQLite's default auto-checkpoint: a commit taking the log past it would checkpoint. */
const DEFAULT_AUTOCHECKPOINT_BYTES = 1000 * 4096
const HOUR_MS = 3_600_000

const size = (path: string) => (existsSync(path) ? statSync(path).size : 0)
const rows = (db: DatabaseSync) =>
  Number((db.prepare('SELECT count(*) AS n FROM gatehouse_sessions').get() as { n: number }).n)

/** Waits (giving this thread's timers their turns) until `done` holds; fails the test if it never does. */
async function until(done: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (done()) return
    await sleep(20)
  }
  assert.fail(`never happened: ${what}`)
}

async function writeSessions(store: SqliteStore, count: number, sealedBytes = 600): Promise<void> {
  for (let i = 0; i < count; i++)
    assert.equal(await store.set(sampleRecord({ sub: `u${i}`, sealed: 'x'.repeat(sealedBytes) })), true)
}

describe('sqlite write-ahead log checkpoints', () => {
  let dir: string
  let n = 0
  const file = () => join(dir, `wal-${n++}.db`)
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'gatehouse-sqlite-wal-'))
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  test('commits do not checkpoint: the database file stays put while the log grows past 1,000 pages', async () => {
    const path = file()
    const store = new SqliteStore(path, { checkpointIntervalMs: HOUR_MS })
    try {
      const before = size(path)
      await writeSessions(store, 400)
      assert.ok(
        size(`${path}-wal`) > DEFAULT_AUTOCHECKPOINT_BYTES,
        `the log (${size(`${path}-wal`)} bytes) is past SQLite's default checkpoint threshold`,
      )
      assert.equal(size(path), before, 'no page was copied into the database file by a commit')
      assert.equal(await store.count(NOW), 400)
    } finally {
      await store.close()
    }
  })

  test('checkpoints run by themselves: the pages reach the database file, and a log past the limit is truncated', async () => {
    const path = file()
    const store = new SqliteStore(path, { checkpointIntervalMs: 10 })
    try {
      const before = size(path)
      await writeSessions(store, 700, 8000)
      assert.ok(size(`${path}-wal`) > WAL_LIMIT_BYTES, `the log (${size(`${path}-wal`)} bytes) is past the limit`)
      assert.equal(size(path), before)
      await until(() => size(`${path}-wal`) === 0, 'the log is truncated')
      assert.ok(size(path) > before + 700 * 8000, 'the sessions are in the database file')
      const reader = new DatabaseSync(path, { readOnly: true })
      try {
        assert.equal(rows(reader), 700)
      } finally {
        reader.close()
      }
    } finally {
      await store.close()
    }
  })

  test('a reader holding an old snapshot: checkpoints copy what they may without waiting, requests go on, the rest follows', async () => {
    const path = file()
    const store = new SqliteStore(path, { checkpointIntervalMs: 10 })
    const reader = new DatabaseSync(path)
    try {
      const before = size(path)
      await writeSessions(store, 100)
      reader.exec('BEGIN')
      assert.equal(rows(reader), 100)
      await until(() => size(path) > before, 'the first 100 sessions are checkpointed')
      // A checkpoint that ran while they were being written copied part of them: wait until the file
      // stops growing (checkpoints every 10 ms), so it holds all that precedes the reader's snapshot.
      let upToSnapshot = size(path)
      for (;;) {
        await sleep(60)
        if (size(path) === upToSnapshot) break
        upToSnapshot = size(path)
      }
      const later = [sampleRecord({ sub: 'later-1' }), sampleRecord({ sub: 'later-2' })]
      for (const r of later) assert.equal(await store.set(r), true, 'writes go on while the reader holds its snapshot')
      await writeSessions(store, 200)
      await sleep(100) // checkpoints run several times meanwhile
      assert.equal(size(path), upToSnapshot, 'nothing past the reader’s snapshot was copied')
      assert.deepEqual(await store.get(later[0]!.idHash, NOW), later[0], 'reads go on too')
      assert.equal(await store.count(NOW), 302)
      reader.exec('COMMIT')
      await until(() => size(path) > upToSnapshot, 'the rest is checkpointed once the reader lets go')
    } finally {
      reader.close()
      await store.close()
    }
  })

  // The reader is another process that lets go by itself after a few seconds: a checkpoint that
  // waited for it (the connection's own busy timeout is a minute here) would come back having
  // truncated the log, not busy.
  test('a checkpoint never waits for a reader: it copies what it may, says busy, and truncates once it can', async () => {
    const path = file()
    const db = new DatabaseSync(path)
    db.exec('PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 60000; CREATE TABLE t (x BLOB)')
    const checkpointer = new WalCheckpointer(db, { intervalMs: HOUR_MS, busyTimeoutMs: 60_000 })
    const insert = db.prepare('INSERT INTO t VALUES (randomblob(3000))')
    const reader = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { DatabaseSync } from 'node:sqlite'
         const db = new DatabaseSync(${JSON.stringify(path)})
         db.exec('BEGIN')
         db.prepare('SELECT count(*) FROM t').get()
         console.log('reading')
         setTimeout(() => db.exec('COMMIT'), 5000)
         setTimeout(() => {}, 600000)`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    )
    try {
      for (let i = 0; i < 100; i++) insert.run()
      const [line] = (await once(reader.stdout!, 'data')) as [Buffer]
      assert.equal(line.toString().trim(), 'reading')
      db.exec('BEGIN')
      for (let i = 0; i < 6000; i++) insert.run()
      db.exec('COMMIT')
      assert.ok(size(`${path}-wal`) > WAL_LIMIT_BYTES)
      const held = checkpointer.checkpoint()
      assert.equal(held.busy, true)
      assert.equal(held.truncated, false)
      assert.ok(held.checkpointed < held.log, 'the frames past the reader’s snapshot stay in the log')
      assert.ok(size(`${path}-wal`) > WAL_LIMIT_BYTES)
      assert.equal((db.prepare('PRAGMA busy_timeout').get() as { timeout: number }).timeout, 60_000, 'restored')
      reader.kill('SIGKILL')
      await once(reader, 'exit')
      assert.deepEqual(checkpointer.checkpoint(), { busy: false, log: 0, checkpointed: 0, truncated: true })
      assert.equal(size(`${path}-wal`), 0)
    } finally {
      reader.kill('SIGKILL')
      checkpointer.stop()
      db.close()
    }
  })

  test('the checkpoints run in a thread of their own: they go on while this thread is blocked', async () => {
    const path = file()
    const store = new SqliteStore(path, { checkpointIntervalMs: 10 })
    try {
      const start = size(path)
      await writeSessions(store, 20)
      await until(() => size(path) > start, 'a first checkpoint')
      const before = size(path)
      // From here on no timer or callback of this thread runs: writeSessions awaits nothing but the
      // store's settled promises, then this thread blocks. Only another thread can checkpoint.
      await writeSessions(store, 300)
      const blocker = new Int32Array(new SharedArrayBuffer(4))
      let grown = false
      for (let i = 0; i < 200 && !grown; i++) {
        Atomics.wait(blocker, 0, 0, 50)
        grown = size(path) > before
      }
      assert.ok(grown, 'checkpointed while this thread was blocked')
    } finally {
      await store.close()
    }
  })

  test('a checkpoint thread that cannot start: the checkpoints run from a timer in this thread instead', async () => {
    const path = file()
    const db = new DatabaseSync(path)
    db.exec('PRAGMA journal_mode = WAL; CREATE TABLE t (x BLOB)')
    // A folder, not a database file: the thread's own connection fails to open.
    const checkpoints = new BackgroundCheckpoints(db, dir, { intervalMs: 10, busyTimeoutMs: 5000 })
    try {
      const before = size(path)
      const insert = db.prepare('INSERT INTO t VALUES (randomblob(3000))')
      for (let i = 0; i < 200; i++) insert.run()
      await until(() => size(path) > before, 'checkpointed all the same')
    } finally {
      await checkpoints.stop()
      db.close()
    }
  })

  test('close empties the log even while another connection keeps the file open', async () => {
    const path = file()
    const other = new DatabaseSync(path)
    const store = new SqliteStore(path, { checkpointIntervalMs: HOUR_MS })
    try {
      await writeSessions(store, 50)
      assert.ok(size(`${path}-wal`) > 0)
      await store.close()
      assert.equal(size(`${path}-wal`), 0)
      assert.equal(rows(other), 50)
    } finally {
      other.close()
      await store.close()
    }
  })

  test('an in-memory database has no log and no timer, and works as before', async () => {
    const store = new SqliteStore(':memory:', { checkpointIntervalMs: 1 })
    try {
      await writeSessions(store, 10)
      await sleep(10)
      assert.equal(await store.count(NOW), 10)
    } finally {
      await store.close()
    }
  })

  test('two processes writing one file, each checkpointing every few milliseconds: no write fails, none is lost', async () => {
    const path = file()
    await new SqliteStore(path).close()
    const script = (who: string) => `
      const { SqliteStore } = await import(${JSON.stringify(STORE_MODULE)})
      const store = new SqliteStore(${JSON.stringify(path)}, { checkpointIntervalMs: 2 })
      for (let i = 0; i < 400; i++) {
        const ok = await store.set({ idHash: '${who}-' + i, sub: '${who}', sid: undefined, partition: 'app',
          createdAt: 1, renewedAt: 1, expiresAt: ${NOW + HOUR_MS}, version: 1, sealed: 'x'.repeat(2000) })
        if (!ok) throw new Error('not written: ' + i)
        if (i % 2 === 0) await store.deleteWhere({ sub: 'nobody' })
        await new Promise((resolve) => setImmediate(resolve))
      }
      await store.close()`
    await Promise.all(['a', 'b'].map((who) => run(process.execPath, ['--input-type=module', '-e', script(who)])))
    const store = new SqliteStore(path)
    try {
      assert.equal(await store.count(NOW), 800)
      assert.equal((await store.list({ sub: 'a', limit: 1000 }, NOW)).length, 400)
    } finally {
      await store.close()
    }
  })
})
