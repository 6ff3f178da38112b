import type { DatabaseSync, StatementSync } from 'node:sqlite'
import type { Countable, LeaseCapable, SessionFilter, SessionRecord, SessionStore } from '../store.ts'
import { missingObjects, type MigrationResult } from './migration.ts'
import { openSqliteFile } from './sqlite-open.ts'
import { rowToRecord, type SessionRow } from './sql-row.ts'

const SCHEMA = `
CREATE TABLE IF NOT EXISTS gatehouse_sessions (
  id_hash    TEXT PRIMARY KEY,
  sub        TEXT NOT NULL,
  sid        TEXT,
  partition  TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  renewed_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  version    INTEGER NOT NULL,
  sealed     TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS gatehouse_sessions_sub ON gatehouse_sessions (sub);
CREATE INDEX IF NOT EXISTS gatehouse_sessions_sid ON gatehouse_sessions (sid) WHERE sid IS NOT NULL;
CREATE INDEX IF NOT EXISTS gatehouse_sessions_expires ON gatehouse_sessions (expires_at);
CREATE TABLE IF NOT EXISTS gatehouse_leases (
  name       TEXT PRIMARY KEY,
  owner      TEXT NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
`

const RECENT_LIMIT = 10_000

/**
 * The embedded default store on the built-in node:sqlite. WAL mode lets several gatehouse processes
 * on one host share the file; every statement is prepared once.
 */
export class SqliteStore implements SessionStore, LeaseCapable, Countable {
  readonly #db: DatabaseSync
  readonly #get: StatementSync
  readonly #insert: StatementSync
  readonly #update: StatementSync
  readonly #delete: StatementSync
  readonly #deleteExpired: StatementSync
  readonly #listAll: StatementSync
  readonly #listBySub: StatementSync
  readonly #listBySid: StatementSync
  readonly #listBySidAndSub: StatementSync
  readonly #acquireLease: StatementSync
  readonly #releaseLease: StatementSync
  readonly #dataVersion: StatementSync
  /**
   * Records this connection read or wrote, reused while no other connection (another gatehouse
   * process on the file, the CLI) has committed anything: `PRAGMA data_version` changes exactly
   * then, and costs less than reading the row. Writes through this store keep it current.
   */
  readonly #recent = new Map<string, SessionRecord>()
  #seenVersion: number | bigint | undefined
  #closed = false

  /** What opening the file created (the file, tables, indexes); empty when all was in place. */
  readonly migration: MigrationResult

  /** Throws a one-line start-up error naming the cause (src/session/stores/sqlite-open.ts). */
  constructor(path: string) {
    const opened = openSqliteFile(path, (db) => {
      db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;')
      const present = (
        db.prepare("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')").all() as Array<{ name: string }>
      ).map((r) => r.name)
      const missing = missingObjects(present)
      if (missing.length > 0) db.exec(SCHEMA)
      return missing
    })
    this.#db = opened.db
    this.migration = { created: opened.created }
    this.#get = this.#db.prepare('SELECT * FROM gatehouse_sessions WHERE id_hash = ? AND expires_at > ?')
    this.#insert = this.#db.prepare(
      'INSERT OR IGNORE INTO gatehouse_sessions (id_hash, sub, sid, partition, created_at, renewed_at, expires_at, version, sealed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
    )
    this.#update = this.#db.prepare(
      'UPDATE gatehouse_sessions SET sub = ?, sid = ?, partition = ?, created_at = ?, renewed_at = ?, expires_at = ?, version = ?, sealed = ? WHERE id_hash = ? AND version = ?',
    )
    this.#delete = this.#db.prepare('DELETE FROM gatehouse_sessions WHERE id_hash = ?')
    this.#deleteExpired = this.#db.prepare(
      'DELETE FROM gatehouse_sessions WHERE id_hash IN (SELECT id_hash FROM gatehouse_sessions WHERE expires_at <= ? LIMIT ?)',
    )
    this.#listAll = this.#db.prepare(
      'SELECT * FROM gatehouse_sessions WHERE expires_at > ? ORDER BY created_at LIMIT ?',
    )
    // One statement, so two processes on the same file cannot both take the lease.
    this.#acquireLease = this.#db.prepare(
      `INSERT INTO gatehouse_leases (name, owner, expires_at) VALUES (?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
       WHERE gatehouse_leases.expires_at <= ? OR gatehouse_leases.owner = excluded.owner`,
    )
    this.#releaseLease = this.#db.prepare('DELETE FROM gatehouse_leases WHERE name = ? AND owner = ?')
    this.#listBySub = this.#db.prepare(
      'SELECT * FROM gatehouse_sessions WHERE sub = ? AND expires_at > ? ORDER BY created_at LIMIT ?',
    )
    this.#listBySid = this.#db.prepare(
      'SELECT * FROM gatehouse_sessions WHERE sid = ? AND expires_at > ? ORDER BY created_at LIMIT ?',
    )
    this.#listBySidAndSub = this.#db.prepare(
      'SELECT * FROM gatehouse_sessions WHERE sid = ? AND sub = ? AND expires_at > ? ORDER BY created_at LIMIT ?',
    )
    this.#dataVersion = this.#db.prepare('PRAGMA data_version')
  }

  async get(idHash: string, now: number): Promise<SessionRecord | undefined> {
    this.#forgetIfChangedElsewhere()
    const known = this.#recent.get(idHash)
    if (known !== undefined) return known.expiresAt > now ? known : undefined
    const row = this.#get.get(idHash, now) as SessionRow | undefined
    if (!row) return undefined
    const record = rowToRecord(row)
    this.#remember(record)
    return record
  }

  async set(r: SessionRecord, expectedVersion?: number): Promise<boolean> {
    this.#forgetIfChangedElsewhere()
    this.#recent.delete(r.idHash)
    const result =
      expectedVersion === undefined
        ? this.#insert.run(
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
        : this.#update.run(
            r.sub,
            r.sid ?? null,
            r.partition,
            r.createdAt,
            r.renewedAt,
            r.expiresAt,
            r.version,
            r.sealed,
            r.idHash,
            expectedVersion,
          )
    const written = Number(result.changes) === 1
    if (written) this.#remember({ ...r })
    return written
  }

  async delete(idHash: string): Promise<boolean> {
    this.#recent.delete(idHash)
    return Number(this.#delete.run(idHash).changes) === 1
  }

  #forgetIfChangedElsewhere(): void {
    const version = (this.#dataVersion.get() as { data_version: number | bigint }).data_version
    if (version !== this.#seenVersion) {
      this.#recent.clear()
      this.#seenVersion = version
    }
  }

  #remember(record: SessionRecord): void {
    this.#recent.set(record.idHash, record)
    if (this.#recent.size > RECENT_LIMIT) this.#recent.delete(this.#recent.keys().next().value!)
  }

  async deleteWhere(filter: SessionFilter): Promise<number> {
    const where: string[] = []
    const params: string[] = []
    for (const column of ['sub', 'sid', 'partition'] as const) {
      if (filter[column] === undefined) continue
      where.push(`${column} = ?`)
      params.push(filter[column])
    }
    if (!where.some((w) => w.startsWith('sub') || w.startsWith('sid')))
      throw new TypeError('deleteWhere needs a sub or a sid')
    this.#recent.clear()
    return Number(
      this.#db.prepare(`DELETE FROM gatehouse_sessions WHERE ${where.join(' AND ')}`).run(...params).changes,
    )
  }

  async list(filter: { sub?: string; sid?: string; limit: number }, now: number): Promise<SessionRecord[]> {
    const { sub, sid, limit } = filter
    let rows
    if (sid !== undefined)
      rows = sub === undefined ? this.#listBySid.all(sid, now, limit) : this.#listBySidAndSub.all(sid, sub, now, limit)
    else rows = sub === undefined ? this.#listAll.all(now, limit) : this.#listBySub.all(sub, now, limit)
    return (rows as unknown as SessionRow[]).map(rowToRecord)
  }

  async count(now: number): Promise<number> {
    // Counted on the expires_at index, without reading a row.
    return Number(
      (
        this.#db.prepare('SELECT count(*) AS live FROM gatehouse_sessions WHERE expires_at > ?').get(now) as {
          live: number | bigint
        }
      ).live,
    )
  }

  async deleteExpired(now: number, limit: number): Promise<number> {
    this.#db.prepare('DELETE FROM gatehouse_leases WHERE expires_at <= ?').run(now)
    const removed = Number(this.#deleteExpired.run(now, limit).changes)
    if (removed > 0)
      for (const [idHash, record] of this.#recent) if (record.expiresAt <= now) this.#recent.delete(idHash)
    return removed
  }

  async acquireLease(name: string, owner: string, ttlMs: number, now: number): Promise<boolean> {
    return Number(this.#acquireLease.run(name, owner, now + ttlMs, now).changes) === 1
  }

  async releaseLease(name: string, owner: string): Promise<void> {
    this.#releaseLease.run(name, owner)
  }

  async ping(): Promise<void> {
    this.#db.prepare('SELECT 1').get()
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#db.close()
  }
}
