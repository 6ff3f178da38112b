import type { SessionRecord } from '../store.ts'

/** A gatehouse_sessions row as SQL drivers return it (PostgreSQL hands bigints back as strings). */
export interface SessionRow {
  id_hash: string
  sub: string
  sid: string | null
  partition: string
  created_at: number | string
  renewed_at: number | string
  expires_at: number | string
  version: number | string
  sealed: string
}

export function rowToRecord(row: SessionRow): SessionRecord {
  return {
    idHash: row.id_hash,
    sub: row.sub,
    sid: row.sid ?? undefined,
    partition: row.partition,
    createdAt: Number(row.created_at),
    renewedAt: Number(row.renewed_at),
    expiresAt: Number(row.expires_at),
    version: Number(row.version),
    sealed: row.sealed,
  }
}
