// Version 1 of the session schema, as gatehouse created it before the session counter (schema
// version 2): the tests build a version-1 database with it and check the upgrade in place.
import type { DatabaseSync } from 'node:sqlite'
import type pg from 'pg'

export const SQLITE_SCHEMA_V1 = `
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

export const POSTGRES_SCHEMA_V1 = `
CREATE TABLE IF NOT EXISTS gatehouse_sessions (
  id_hash    text PRIMARY KEY,
  sub        text NOT NULL,
  sid        text,
  partition  text NOT NULL,
  created_at bigint NOT NULL,
  renewed_at bigint NOT NULL,
  expires_at bigint NOT NULL,
  version    integer NOT NULL,
  sealed     text NOT NULL
);
CREATE INDEX IF NOT EXISTS gatehouse_sessions_sub ON gatehouse_sessions (sub);
CREATE INDEX IF NOT EXISTS gatehouse_sessions_sid ON gatehouse_sessions (sid) WHERE sid IS NOT NULL;
CREATE INDEX IF NOT EXISTS gatehouse_sessions_expires ON gatehouse_sessions (expires_at);
CREATE TABLE IF NOT EXISTS gatehouse_leases (
  name       text PRIMARY KEY,
  owner      text NOT NULL,
  expires_at bigint NOT NULL
);
`

/** What a version-1 gatehouse wrote for a session (the insert statement both stores used). */
export interface RawSession {
  idHash: string
  sub: string
  sid: string | null
  expiresAt: number
}

const INSERT =
  'INSERT INTO gatehouse_sessions (id_hash, sub, sid, partition, created_at, renewed_at, expires_at, version, sealed) VALUES '

export function insertSqliteV1(db: DatabaseSync, sessions: RawSession[]): void {
  const insert = db.prepare(`${INSERT} (?, ?, ?, 'app', 1, 1, ?, 1, 'sealed')`)
  for (const s of sessions) insert.run(s.idHash, s.sub, s.sid, s.expiresAt)
}

export async function insertPostgresV1(db: pg.Pool | pg.Client, schema: string, sessions: RawSession[]): Promise<void> {
  for (const s of sessions)
    await db.query(
      `${INSERT.replace('gatehouse_sessions', `"${schema}".gatehouse_sessions`)} ($1, $2, $3, 'app', 1, 1, $4, 1, 'sealed')`,
      [s.idHash, s.sub, s.sid, s.expiresAt],
    )
}
