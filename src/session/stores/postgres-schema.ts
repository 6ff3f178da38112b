import type { Pool, PoolClient } from 'pg'
import { DEFAULTS } from '../../config/defaults.ts'
import { COUNTER_OBJECTS, missingObjects, olderVersion, SCHEMA_OBJECTS, type MigrationResult } from './migration.ts'

/**
 * The tables and indexes, idempotent, with unqualified names: migratePostgres() runs it with the
 * search_path set to the target schema.
 */
export const POSTGRES_SCHEMA = `
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
CREATE TABLE IF NOT EXISTS gatehouse_session_count (
  slot smallint PRIMARY KEY,
  n    bigint NOT NULL
) WITH (fillfactor = 50);
`

/** Slots of the session counter: concurrent writers add to different rows instead of queueing on one. */
export const COUNTER_SLOTS = 32

/**
 * The triggers that keep gatehouse_session_count: one statement-level trigger per INSERT or DELETE
 * statement (a cleanup batch of thousands of rows adds one number, not one per row), in the same
 * transaction. Each adds to the slot of its server process (pg_backend_pid): connections write to
 * different rows, and one transaction always to the same row, so two can never deadlock on them.
 * SECURITY DEFINER: a runtime role that may only write the sessions (granted before this table
 * existed) still counts them. So that no other role can call it from a trigger of its own (and
 * move the counter, or hold its rows' locks), EXECUTE is revoked from PUBLIC — firing a trigger
 * needs none — and it refuses any table but the sessions. (Re)created as a whole, with the table locked.
 */
const COUNTER_TRIGGERS = `
CREATE OR REPLACE FUNCTION gatehouse_sessions_counted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
  delta bigint;
BEGIN
  IF TG_RELID <> 'gatehouse_sessions'::regclass THEN
    RAISE EXCEPTION 'gatehouse_sessions_counted() counts gatehouse_sessions only';
  END IF;
  IF TG_OP = 'TRUNCATE' THEN
    DELETE FROM gatehouse_session_count;
    RETURN NULL;
  END IF;
  SELECT count(*) INTO delta FROM changed;
  IF delta = 0 THEN
    RETURN NULL;
  END IF;
  IF TG_OP = 'DELETE' THEN
    delta := -delta;
  END IF;
  INSERT INTO gatehouse_session_count AS c (slot, n) VALUES (pg_backend_pid() % ${COUNTER_SLOTS}, delta)
    ON CONFLICT (slot) DO UPDATE SET n = c.n + excluded.n;
  RETURN NULL;
END
$$;
REVOKE EXECUTE ON FUNCTION gatehouse_sessions_counted() FROM PUBLIC;
DROP TRIGGER IF EXISTS gatehouse_sessions_count_insert ON gatehouse_sessions;
CREATE TRIGGER gatehouse_sessions_count_insert AFTER INSERT ON gatehouse_sessions
  REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_sessions_counted();
DROP TRIGGER IF EXISTS gatehouse_sessions_count_delete ON gatehouse_sessions;
CREATE TRIGGER gatehouse_sessions_count_delete AFTER DELETE ON gatehouse_sessions
  REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_sessions_counted();
DROP TRIGGER IF EXISTS gatehouse_sessions_count_truncate ON gatehouse_sessions;
CREATE TRIGGER gatehouse_sessions_count_truncate AFTER TRUNCATE ON gatehouse_sessions
  FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_sessions_counted();
`

const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/

export function checkSchemaName(schema: string): void {
  if (!SCHEMA_NAME.test(schema))
    throw new TypeError(
      `PostgreSQL schema "${schema}" must be letters, digits and _ (at most 63), not starting with a digit`,
    )
}

export function quote(identifier: string): string {
  return `"${identifier}"`
}

/**
 * Applies the schema to `schema` (created when missing), or upgrades an older one in place, and
 * says what it did. Safe to run again, and from several instances starting at once: CREATE … IF NOT
 * EXISTS alone races on the catalog, so the whole migration holds a transaction-scoped advisory lock
 * per schema. While the counter is set from a count of the sessions, their table is locked against
 * writes (SHARE ROW EXCLUSIVE), so no insert or delete of another instance is missed.
 */
export async function migratePostgres(
  pool: Pool,
  schema: string = DEFAULTS.storeUrl.postgresSchema,
): Promise<MigrationResult> {
  checkSchemaName(schema)
  const client = await pool.connect()
  try {
    await client.query('BEGIN')
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`gatehouse_migrate:${schema}`])
    const created: string[] = []
    // Only create a missing schema: CREATE SCHEMA IF NOT EXISTS still needs the CREATE privilege on the database.
    const found = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])
    if (found.rowCount === 0) {
      await client.query(`CREATE SCHEMA ${quote(schema)}`)
      created.push(`schema ${schema}`)
    }
    const present = await presentObjects(client, schema)
    const missing = missingObjects(present)
    const result: MigrationResult = { created: [...created, ...missing] }
    if (missing.length > 0) {
      const upgradedFrom = olderVersion(present)
      if (upgradedFrom !== undefined) result.upgradedFrom = upgradedFrom
      // pg_temp last: the SECURITY DEFINER function keeps this path, and no temporary table may shadow its table.
      await client.query(`SET LOCAL search_path TO ${quote(schema)}, pg_temp`)
      await client.query(POSTGRES_SCHEMA)
      if (COUNTER_OBJECTS.some((name) => !present.includes(name))) {
        await client.query('LOCK TABLE gatehouse_sessions IN SHARE ROW EXCLUSIVE MODE')
        await client.query(COUNTER_TRIGGERS)
        const { rows } = await client.query<{ n: string }>('SELECT count(*) AS n FROM gatehouse_sessions')
        const counted = Number(rows[0]!.n)
        await client.query('DELETE FROM gatehouse_session_count')
        await client.query('INSERT INTO gatehouse_session_count (slot, n) VALUES (0, $1)', [counted])
        if (present.includes('gatehouse_sessions')) result.counted = counted
        if (!present.includes('gatehouse_session_count')) await grantCountToReaders(client, schema)
      }
    }
    await client.query('COMMIT')
    return result
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {})
    throw err
  } finally {
    client.release()
  }
}

/**
 * Roles granted SELECT on gatehouse_sessions before the counter existed (a runtime role set up for
 * version 1) get it on the counter too: count() reads both.
 */
async function grantCountToReaders(client: PoolClient, schema: string): Promise<void> {
  const { rows } = await client.query<{ grantee: string }>(
    `SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END AS grantee
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     CROSS JOIN LATERAL aclexplode(c.relacl) AS a
     LEFT JOIN pg_roles r ON r.oid = a.grantee
     WHERE n.nspname = $1 AND c.relname = 'gatehouse_sessions' AND a.privilege_type = 'SELECT' AND a.grantee <> c.relowner`,
    [schema],
  )
  if (rows.length > 0)
    await client.query(`GRANT SELECT ON gatehouse_session_count TO ${rows.map((r) => r.grantee).join(', ')}`)
}

/** The shipped schema's tables, indexes and triggers that exist in `schema`. */
export async function presentObjects(db: Pool | PoolClient, schema: string): Promise<string[]> {
  const names = SCHEMA_OBJECTS.map((o) => o.name)
  const { rows } = await db.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relname = ANY($2)
     UNION ALL
     SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relname = 'gatehouse_sessions' AND NOT t.tgisinternal AND t.tgname = ANY($2)`,
    [schema, names],
  )
  return rows.map((r) => r.name)
}
