import type { Pool, PoolClient } from 'pg'
import { DEFAULTS } from '../../config/defaults.ts'
import { GatehouseError } from '../../errors.ts'
import type {
  Countable,
  LeaseCapable,
  NoticeCapable,
  SessionEndNotice,
  SessionFilter,
  SessionRecord,
  SessionStore,
} from '../store.ts'
import { missingObjects, SCHEMA_OBJECTS, type MigrationResult } from './migration.ts'
import { parseNotice } from './notice.ts'
import { CONNECT_TIMEOUT_MS, postgresStartupError, withoutSslModeWarning } from './postgres-open.ts'
import { rowToRecord, type SessionRow } from './sql-row.ts'
import { decodeCredential, storeUrl } from './startup-error.ts'

/**
 * The tables and indexes, idempotent, with unqualified names: migratePostgres() runs it with the
 * search_path set to the target schema (and it is what a `gatehouse migrate` verb would print).
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
`

const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/
const COLUMNS = 'id_hash, sub, sid, partition, created_at, renewed_at, expires_at, version, sealed'

/**
 * Applies POSTGRES_SCHEMA to `schema` (created when missing) and says what it created. Safe to run
 * again, and from several instances starting at once: CREATE … IF NOT EXISTS alone races on the
 * catalog, so the whole migration holds a transaction-scoped advisory lock per schema.
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
    const missing = missingObjects(await presentObjects(client, schema))
    if (missing.length > 0) {
      await client.query(`SET LOCAL search_path TO ${quote(schema)}`)
      await client.query(POSTGRES_SCHEMA)
    }
    await client.query('COMMIT')
    return { created: [...created, ...missing] }
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {})
    throw err
  } finally {
    client.release()
  }
}

/** True when every table and index of the shipped schema exists (a read-only catalog query). */
export async function isMigrated(pool: Pool, schema: string = DEFAULTS.storeUrl.postgresSchema): Promise<boolean> {
  return missingObjects(await presentObjects(pool, schema)).length === 0
}

/** The shipped schema's tables and indexes that exist in `schema`. */
async function presentObjects(db: Pool | PoolClient, schema: string): Promise<string[]> {
  const { rows } = await db.query<{ relname: string }>(
    'SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = ANY($2)',
    [schema, SCHEMA_OBJECTS.map((o) => o.name)],
  )
  return rows.map((r) => r.relname)
}

/** Sessions in PostgreSQL, shared by several gatehouse instances; every write is one statement. */
export class PostgresStore implements SessionStore, LeaseCapable, NoticeCapable, Countable {
  readonly #pool: Pool
  readonly #sessions: string
  readonly #leases: string
  /** NOTIFY channel: one per schema, so two deployments in one database do not hear each other. */
  readonly #channel: string
  readonly #listeners = new Set<() => Promise<void>>()
  #closed = false
  /** What opening the store created (openPostgresStore); undefined when it was handed a migrated pool. */
  readonly migration: MigrationResult | undefined

  /** Takes over `pool` (ends it on close()); the schema must already be migrated. */
  constructor(pool: Pool, options: { schema?: string; migration?: MigrationResult } = {}) {
    const schema = options.schema ?? DEFAULTS.storeUrl.postgresSchema
    checkSchemaName(schema)
    this.#pool = pool
    this.migration = options.migration
    this.#sessions = `${quote(schema)}.gatehouse_sessions`
    this.#leases = `${quote(schema)}.gatehouse_leases`
    this.#channel = `gatehouse_ended_${schema}`.slice(0, 63)
  }

  async get(idHash: string, now: number): Promise<SessionRecord | undefined> {
    const { rows } = await this.#pool.query<SessionRow>(
      `SELECT ${COLUMNS} FROM ${this.#sessions} WHERE id_hash = $1 AND expires_at > $2`,
      [idHash, now],
    )
    return rows[0] && rowToRecord(rows[0])
  }

  async set(r: SessionRecord, expectedVersion?: number): Promise<boolean> {
    const values = [
      r.idHash,
      r.sub,
      r.sid ?? null,
      r.partition,
      r.createdAt,
      r.renewedAt,
      r.expiresAt,
      r.version,
      r.sealed,
    ]
    const result =
      expectedVersion === undefined
        ? await this.#pool.query(
            `INSERT INTO ${this.#sessions} (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id_hash) DO NOTHING`,
            values,
          )
        : await this.#pool.query(
            `UPDATE ${this.#sessions} SET sub = $2, sid = $3, partition = $4, created_at = $5, renewed_at = $6, expires_at = $7, version = $8, sealed = $9
             WHERE id_hash = $1 AND version = $10`,
            [...values, expectedVersion],
          )
    return result.rowCount === 1
  }

  async delete(idHash: string): Promise<boolean> {
    return (await this.#pool.query(`DELETE FROM ${this.#sessions} WHERE id_hash = $1`, [idHash])).rowCount === 1
  }

  async deleteWhere(filter: SessionFilter): Promise<number> {
    if (filter.sub === undefined && filter.sid === undefined) throw new TypeError('deleteWhere needs a sub or a sid')
    const where: string[] = []
    const values: string[] = []
    for (const column of ['sub', 'sid', 'partition'] as const) {
      const value = filter[column]
      if (value === undefined) continue
      values.push(value)
      where.push(`${column} = $${values.length}`)
    }
    return (await this.#pool.query(`DELETE FROM ${this.#sessions} WHERE ${where.join(' AND ')}`, values)).rowCount ?? 0
  }

  async list(filter: { sub?: string; sid?: string; limit: number }, now: number): Promise<SessionRecord[]> {
    if (filter.sid !== undefined) {
      const values: Array<string | number> = [filter.sid, now, filter.limit]
      if (filter.sub !== undefined) values.push(filter.sub)
      const bySub = filter.sub === undefined ? '' : ' AND sub = $4'
      const { rows } = await this.#pool.query<SessionRow>(
        `SELECT ${COLUMNS} FROM ${this.#sessions} WHERE sid = $1${bySub} AND expires_at > $2 ORDER BY created_at LIMIT $3`,
        values,
      )
      return rows.map(rowToRecord)
    }
    const { rows } =
      filter.sub === undefined
        ? await this.#pool.query<SessionRow>(
            `SELECT ${COLUMNS} FROM ${this.#sessions} WHERE expires_at > $1 ORDER BY created_at LIMIT $2`,
            [now, filter.limit],
          )
        : await this.#pool.query<SessionRow>(
            `SELECT ${COLUMNS} FROM ${this.#sessions} WHERE sub = $1 AND expires_at > $2 ORDER BY created_at LIMIT $3`,
            [filter.sub, now, filter.limit],
          )
    return rows.map(rowToRecord)
  }

  async count(now: number): Promise<number> {
    // An index-only count on gatehouse_sessions_expires; count(*) is a bigint, which pg hands over as a string.
    const { rows } = await this.#pool.query<{ live: string }>(
      `SELECT count(*) AS live FROM ${this.#sessions} WHERE expires_at > $1`,
      [now],
    )
    return Number(rows[0]!.live)
  }

  async deleteExpired(now: number, limit: number): Promise<number> {
    await this.#pool.query(`DELETE FROM ${this.#leases} WHERE expires_at <= $1`, [now])
    // SKIP LOCKED: instances cleaning up at the same moment take disjoint batches instead of queueing.
    const result = await this.#pool.query(
      `DELETE FROM ${this.#sessions} WHERE id_hash IN (SELECT id_hash FROM ${this.#sessions} WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
      [now, limit],
    )
    return result.rowCount ?? 0
  }

  async acquireLease(name: string, owner: string, ttlMs: number, now: number): Promise<boolean> {
    // One statement: of two instances racing for the lease, exactly one inserts or takes over.
    const result = await this.#pool.query(
      `INSERT INTO ${this.#leases} AS held (name, owner, expires_at) VALUES ($1, $2, $3)
       ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
       WHERE held.expires_at <= $4 OR held.owner = excluded.owner`,
      [name, owner, now + ttlMs, now],
    )
    return result.rowCount === 1
  }

  async releaseLease(name: string, owner: string): Promise<void> {
    await this.#pool.query(`DELETE FROM ${this.#leases} WHERE name = $1 AND owner = $2`, [name, owner])
  }

  async ping(): Promise<void> {
    await this.#pool.query('SELECT 1')
  }

  async publishEnded(notice: SessionEndNotice): Promise<void> {
    await this.#pool.query('SELECT pg_notify($1, $2)', [this.#channel, JSON.stringify(notice)])
  }

  /** LISTEN on a connection of its own, reconnecting after it breaks (notices sent meanwhile are missed). */
  async subscribeEnded(
    listener: (notice: SessionEndNotice) => void,
    onLink?: (listening: boolean) => void,
  ): Promise<() => Promise<void>> {
    let stopped = false
    let current: PoolClient | undefined
    const retryLater = (): void => {
      if (!stopped) setTimeout(reconnect, 1_000).unref()
    }
    const reconnect = (): void => {
      if (stopped) return
      listen(true).then(
        (listening) => {
          if (listening && !stopped) onLink?.(true)
        },
        () => {},
      )
    }
    /** One connection, one LISTEN; a failure after the first schedules the next attempt exactly once. */
    const listen = async (retrying: boolean): Promise<boolean> => {
      let client: PoolClient
      try {
        client = await this.#pool.connect()
      } catch (err) {
        if (retrying) retryLater()
        throw err
      }
      // Stopped while a reconnect was under way: this client would never be released, and the pool
      // (and the process) would wait for it forever.
      if (stopped) {
        client.release()
        return false
      }
      let lost = false
      const onLost = (): void => {
        if (lost) return
        lost = true
        client.release(true)
        if (current === client) current = undefined
        if (stopped) return
        onLink?.(false)
        retryLater()
      }
      current = client
      client.on('error', onLost)
      client.on('notification', (message) => {
        if (message.channel !== this.#channel || !message.payload) return
        const notice = parseNotice(message.payload)
        if (notice) listener(notice)
      })
      try {
        await client.query(`LISTEN "${this.#channel}"`)
      } catch (err) {
        if (retrying) onLost()
        else if (!lost) {
          lost = true
          client.release(true)
          current = undefined
        }
        // A first LISTEN that failed ends the subscription: no reconnect may bring it back, since
        // whoever asked never got a function to stop it.
        if (!retrying) stopped = true
        throw err
      }
      return true
    }
    await listen(false)
    const stop = async () => {
      stopped = true
      this.#listeners.delete(stop)
      const client = current
      current = undefined
      if (client) {
        await client.query(`UNLISTEN "${this.#channel}"`).catch(() => {})
        client.release()
      }
    }
    this.#listeners.add(stop)
    return stop
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    for (const stop of [...this.#listeners]) await stop()
    await this.#pool.end()
  }
}

/**
 * Opens a store on a `postgres://` or `postgresql://` URL (libpq-style parameters such as `sslmode`
 * pass through); `?schema=` picks the schema (default public). Migrates on open. The optional peer
 * `pg` is imported only here. A server that cannot be used fails the open, within seconds, with one
 * line naming the cause (postgres-open.ts).
 */
export async function openPostgresStore(location: string): Promise<PostgresStore> {
  const { pool, url, schema } = await connect(location)
  let migration: MigrationResult = { created: [] }
  try {
    // A runtime role that may use but not alter the tables (migrated by `gatehouse migrate` as their owner) must still start.
    if (!(await isMigrated(pool, schema))) migration = await migratePostgres(pool, schema)
  } catch (err) {
    await pool.end().catch(() => {})
    throw postgresStartupError(url, schema, err)
  }
  return new PostgresStore(pool, { schema, migration })
}

/**
 * `check-config --connect`: connects as openPostgresStore does and reads the catalog, creating
 * nothing. The shipped tables and indexes missing from the schema (empty: all in place); a server
 * that cannot be used throws openPostgresStore's one-line error, and so do missing tables this user
 * may not create (serve would fail on them).
 */
export async function inspectPostgresStore(location: string): Promise<{ missing: string[] }> {
  const { pool, url, schema } = await connect(location)
  try {
    const missing = missingObjects(await presentObjects(pool, schema))
    if (missing.length > 0) {
      // Creating the tables needs CREATE on the schema, or on the database while the schema is missing.
      const { rows } = await pool.query<{ may: boolean }>(
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) THEN has_schema_privilege($1, 'CREATE') ELSE has_database_privilege(current_database(), 'CREATE') END AS may",
        [schema],
      )
      if (!rows[0]?.may) throw Object.assign(new Error('no CREATE privilege'), { code: '42501' })
    }
    return { missing }
  } catch (err) {
    throw postgresStartupError(url, schema, err)
  } finally {
    await pool.end().catch(() => {})
  }
}

/** A pool on the location (which connects lazily), with the URL as messages may show it and the schema. */
async function connect(location: string): Promise<{ pool: Pool; url: URL; schema: string }> {
  const url = storeUrl(location)
  // pg decodes them while connecting and fails with "URI malformed", which names nothing.
  decodeCredential(url.username)
  decodeCredential(url.password)
  const schema = url.searchParams.get('schema') ?? DEFAULTS.storeUrl.postgresSchema
  checkSchemaName(schema)
  url.searchParams.delete('schema')
  withoutSslModeWarning(url)
  let driver: typeof import('pg')
  try {
    driver = await import('pg')
  } catch (err) {
    throw new GatehouseError(
      'config_invalid',
      `session.store is a ${url.protocol}// URL, which needs the optional package "pg": npm install pg`,
      { cause: err },
    )
  }
  // pg before 8.15 is CommonJS only, without named exports.
  const { Pool } = driver.Pool ? driver : (driver as unknown as { default: typeof import('pg') }).default
  // Fail fast while PostgreSQL is away (requests answer 503 within seconds); the pool reconnects by itself.
  const pool = new Pool({
    connectionString: url.toString(),
    max: 20,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    query_timeout: 5_000,
  })
  // An idle connection that breaks emits 'error' on the pool (fatal if unheard); the next query reconnects.
  pool.on('error', () => {})
  return { pool, url, schema }
}

function checkSchemaName(schema: string): void {
  if (!SCHEMA_NAME.test(schema))
    throw new TypeError(
      `PostgreSQL schema "${schema}" must be letters, digits and _ (at most 63), not starting with a digit`,
    )
}

function quote(identifier: string): string {
  return `"${identifier}"`
}
