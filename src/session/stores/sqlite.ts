import type { DatabaseSync, StatementSync } from 'node:sqlite'
import type { Countable, LeaseCapable, SessionFilter, SessionRecord, SessionStore } from '../store.ts'
import type { MigrationResult } from './migration.ts'
import { BackgroundCheckpoints, CHECKPOINT_INTERVAL_MS } from './sqlite-checkpoint.ts'
import { openSqliteFile } from './sqlite-open.ts'
import { migrateSqlite } from './sqlite-schema.ts'
import { rowToRecord, type SessionRow } from './sql-row.ts'

const RECENT_LIMIT = 10_000
const BUSY_TIMEOUT_MS = 5_000
const COLUMNS = 'id_hash, sub, sid, partition, created_at, renewed_at, expires_at, version, sealed'

/** A row of the read that also returns `PRAGMA data_version`; the session's columns are null when none matched. */
type VersionedRow = SessionRow & { data_version: number | bigint }

/**
 * The embedded default store on the built-in node:sqlite. WAL mode lets several gatehouse processes
 * on one host share the file; every statement is prepared once. The write-ahead log is checkpointed
 * in a thread of its own (sqlite-checkpoint.ts), not by the commit of a request.
 */
export class SqliteStore implements SessionStore, LeaseCapable, Countable {
  readonly #db: DatabaseSync
  readonly #get: StatementSync
  readonly #insert: StatementSync
  readonly #renew: StatementSync
  readonly #update: StatementSync
  readonly #delete: StatementSync
  readonly #deleteWhere = new Map<string, StatementSync>()
  readonly #deleteExpired: StatementSync
  readonly #deleteExpiredLeases: StatementSync
  readonly #count: StatementSync
  readonly #listAll: StatementSync
  readonly #listBySub: StatementSync
  readonly #listBySid: StatementSync
  readonly #listBySidAndSub: StatementSync
  readonly #acquireLease: StatementSync
  readonly #releaseLease: StatementSync
  readonly #dataVersion: StatementSync
  readonly #dataVersionAsArray: boolean
  readonly #ping: StatementSync
  readonly #checkpoints: BackgroundCheckpoints | undefined
  /**
   * Records this connection read or wrote, reused while no other connection (another gatehouse
   * process on the file, the CLI) has committed anything: `PRAGMA data_version` changes exactly
   * then, and costs less than reading the row. Writes through this store keep it current.
   */
  readonly #recent = new Map<string, SessionRecord>()
  #seenVersion: number | bigint | undefined
  #closed = false

  /** What opening the file created or upgraded (the file, tables, indexes, triggers); `created` empty when all was in place. */
  readonly migration: MigrationResult

  /**
   * Throws a one-line start-up error naming the cause (src/session/stores/sqlite-open.ts).
   * `checkpointIntervalMs`: how often the write-ahead log is checkpointed.
   */
  constructor(path: string, options: { checkpointIntervalMs?: number } = {}) {
    let wal = false
    const opened = openSqliteFile(path, (db) => {
      db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}; PRAGMA synchronous = NORMAL;`)
      // An in-memory database stays in its own journal mode ("memory"): nothing to checkpoint.
      wal = (db.prepare('PRAGMA journal_mode = WAL').get() as { journal_mode: string }).journal_mode === 'wal'
      return migrateSqlite(db)
    })
    this.#db = opened.db
    this.migration = opened.migration
    // One statement, so one read transaction: the row, and whether another connection committed meanwhile.
    this.#get = this.#db.prepare(
      `SELECT v.data_version, s.* FROM pragma_data_version AS v LEFT JOIN gatehouse_sessions AS s ON s.id_hash = ? AND s.expires_at > ?`,
    )
    this.#insert = this.#db.prepare(
      `INSERT OR IGNORE INTO gatehouse_sessions (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    // A renewal or refresh keeps the session's identity: leaving those columns out of the SET spares
    // SQLite rewriting their index entries (a third fewer pages written). #update covers the rest.
    this.#renew = this.#db.prepare(
      `UPDATE gatehouse_sessions SET renewed_at = ?, expires_at = ?, version = ?, sealed = ?
       WHERE id_hash = ? AND version = ? AND sub = ? AND sid IS ? AND partition = ? AND created_at = ?`,
    )
    this.#update = this.#db.prepare(
      'UPDATE gatehouse_sessions SET sub = ?, sid = ?, partition = ?, created_at = ?, renewed_at = ?, expires_at = ?, version = ?, sealed = ? WHERE id_hash = ? AND version = ?',
    )
    this.#delete = this.#db.prepare('DELETE FROM gatehouse_sessions WHERE id_hash = ?')
    this.#deleteExpired = this.#db.prepare(
      'DELETE FROM gatehouse_sessions WHERE id_hash IN (SELECT id_hash FROM gatehouse_sessions WHERE expires_at <= ? LIMIT ?)',
    )
    this.#deleteExpiredLeases = this.#db.prepare('DELETE FROM gatehouse_leases WHERE expires_at <= ?')
    // Every row, kept by the triggers, less the expired rows cleanup has not removed yet (a range of
    // the expires_at index, which cleanup keeps short): one statement, so one consistent snapshot.
    this.#count = this.#db.prepare(
      `SELECT (SELECT n FROM gatehouse_session_count WHERE id = 0)
            - (SELECT count(*) FROM gatehouse_sessions WHERE expires_at <= ?) AS live`,
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
    // Node 24 hands the row over as an array, cheaper than an object (this runs on every read); Node 22.13 has no such option.
    this.#dataVersionAsArray = typeof this.#dataVersion.setReturnArrays === 'function'
    if (this.#dataVersionAsArray) this.#dataVersion.setReturnArrays(true)
    this.#ping = this.#db.prepare('SELECT 1')
    this.#checkpoints = wal
      ? new BackgroundCheckpoints(this.#db, opened.location, {
          intervalMs: options.checkpointIntervalMs ?? CHECKPOINT_INTERVAL_MS,
          busyTimeoutMs: BUSY_TIMEOUT_MS,
        })
      : undefined
  }

  async get(idHash: string, now: number): Promise<SessionRecord | undefined> {
    if (this.#recent.has(idHash)) {
      const row = this.#dataVersion.get() as unknown
      this.#forgetIfChangedElsewhere(
        this.#dataVersionAsArray
          ? (row as [number | bigint])[0]
          : (row as { data_version: number | bigint }).data_version,
      )
      const known = this.#recent.get(idHash)
      if (known !== undefined) return known.expiresAt > now ? known : undefined
    }
    const row = this.#get.get(idHash, now) as unknown as VersionedRow
    this.#forgetIfChangedElsewhere(row.data_version)
    if (row.id_hash === null) return undefined
    const record = rowToRecord(row)
    this.#remember(record)
    return record
  }

  // Writes need no data_version check: a copy another connection's commit made stale is never
  // served, since the next get finds data_version moved and drops every copy first.
  async set(r: SessionRecord, expectedVersion?: number): Promise<boolean> {
    this.#recent.delete(r.idHash)
    const sid = r.sid ?? null
    let changes: number | bigint
    if (expectedVersion === undefined) {
      changes = this.#insert.run(
        r.idHash,
        r.sub,
        sid,
        r.partition,
        r.createdAt,
        r.renewedAt,
        r.expiresAt,
        r.version,
        r.sealed,
      ).changes
    } else {
      changes = this.#renew.run(
        r.renewedAt,
        r.expiresAt,
        r.version,
        r.sealed,
        r.idHash,
        expectedVersion,
        r.sub,
        sid,
        r.partition,
        r.createdAt,
      ).changes
      // Nothing renewed: a stale version, a session gone, or (never from gatehouse itself) a new identity.
      if (Number(changes) === 0)
        changes = this.#update.run(
          r.sub,
          sid,
          r.partition,
          r.createdAt,
          r.renewedAt,
          r.expiresAt,
          r.version,
          r.sealed,
          r.idHash,
          expectedVersion,
        ).changes
    }
    const written = Number(changes) === 1
    if (written) this.#remember({ ...r })
    return written
  }

  async delete(idHash: string): Promise<boolean> {
    this.#recent.delete(idHash)
    return Number(this.#delete.run(idHash).changes) === 1
  }

  #forgetIfChangedElsewhere(version: number | bigint): void {
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
    const columns: Array<'sub' | 'sid' | 'partition'> = []
    const params: string[] = []
    for (const column of ['sub', 'sid', 'partition'] as const) {
      const value = filter[column]
      if (value === undefined) continue
      columns.push(column)
      params.push(value)
    }
    if (filter.sub === undefined && filter.sid === undefined) throw new TypeError('deleteWhere needs a sub or a sid')
    const shape = columns.join(',')
    let statement = this.#deleteWhere.get(shape)
    if (statement === undefined) {
      statement = this.#db.prepare(
        `DELETE FROM gatehouse_sessions WHERE ${columns.map((c) => `${c} = ?`).join(' AND ')}`,
      )
      this.#deleteWhere.set(shape, statement)
    }
    this.#recent.clear()
    return Number(statement.run(...params).changes)
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
    return Number((this.#count.get(now) as { live: number | bigint }).live)
  }

  async deleteExpired(now: number, limit: number): Promise<number> {
    this.#deleteExpiredLeases.run(now)
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
    this.#ping.get()
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#checkpoints?.stop()
    this.#db.close()
  }
}
