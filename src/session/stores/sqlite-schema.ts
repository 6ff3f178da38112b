import type { DatabaseSync } from 'node:sqlite'
import { COUNTER_OBJECTS, missingObjects, olderVersion, type MigrationResult } from './migration.ts'

/**
 * Every object of the shipped schema (migration.ts), idempotent. The counter holds the number of
 * rows in gatehouse_sessions, kept by the triggers inside the statement that inserts or deletes
 * them, whichever process or tool runs it. The store writes with INSERT OR IGNORE, UPDATE and
 * DELETE only: a REPLACE (whose implicit delete fires no trigger unless recursive_triggers is on)
 * would miscount.
 */
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
CREATE TABLE IF NOT EXISTS gatehouse_session_count (
  id INTEGER PRIMARY KEY CHECK (id = 0),
  n  INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS gatehouse_sessions_count_insert AFTER INSERT ON gatehouse_sessions
BEGIN UPDATE gatehouse_session_count SET n = n + 1 WHERE id = 0; END;
CREATE TRIGGER IF NOT EXISTS gatehouse_sessions_count_delete AFTER DELETE ON gatehouse_sessions
BEGIN UPDATE gatehouse_session_count SET n = n - 1 WHERE id = 0; END;
`

/** The names of gatehouse's tables, indexes and triggers in the file (and SQLite's own). */
export function presentSqliteObjects(db: DatabaseSync): string[] {
  return (
    db.prepare("SELECT name FROM sqlite_master WHERE type IN ('table', 'index', 'trigger')").all() as Array<{
      name: string
    }>
  ).map((r) => r.name)
}

/**
 * Creates what is missing of the shipped schema, or upgrades an older one in place, and says what
 * it did. Under the write lock (BEGIN IMMEDIATE): another process opening the file at the same time
 * waits, then finds everything in place; writers wait too, so the counter set from a count of the
 * rows misses no insert or delete.
 */
export function migrateSqlite(db: DatabaseSync): MigrationResult {
  if (missingObjects(presentSqliteObjects(db)).length === 0) return { created: [] }
  db.exec('BEGIN IMMEDIATE')
  try {
    const present = presentSqliteObjects(db)
    const created = missingObjects(present)
    const result: MigrationResult = { created }
    if (created.length > 0) {
      const upgradedFrom = olderVersion(present)
      if (upgradedFrom !== undefined) result.upgradedFrom = upgradedFrom
      db.exec(SCHEMA)
      if (COUNTER_OBJECTS.some((name) => !present.includes(name))) {
        const rows = Number(
          (db.prepare('SELECT count(*) AS n FROM gatehouse_sessions').get() as { n: number | bigint }).n,
        )
        db.prepare('INSERT OR REPLACE INTO gatehouse_session_count (id, n) VALUES (0, ?)').run(rows)
        if (present.includes('gatehouse_sessions')) result.counted = rows
      }
    }
    db.exec('COMMIT')
    return result
  } catch (err) {
    try {
      db.exec('ROLLBACK')
    } catch {
      // Nothing to roll back: SQLite ended the transaction with the error.
    }
    throw err
  }
}
