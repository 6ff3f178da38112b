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
import { missingObjects, olderVersion, type MigrationResult } from './migration.ts'
import { parseNotice } from './notice.ts'
import { CONNECT_TIMEOUT_MS, postgresStartupError, withoutSslModeWarning } from './postgres-open.ts'
import { checkSchemaName, migratePostgres, presentObjects, quote } from './postgres-schema.ts'
import { rowToRecord, type SessionRow } from './sql-row.ts'
import { decodeCredential, storeUrl } from './startup-error.ts'

const COLUMNS = 'id_hash, sub, sid, partition, created_at, renewed_at, expires_at, version, sealed'

/** The statements of one schema, built once. */
function statementsFor(schema: string) {
  const sessions = `${quote(schema)}.gatehouse_sessions`
  const leases = `${quote(schema)}.gatehouse_leases`
  return {
    get: `SELECT ${COLUMNS} FROM ${sessions} WHERE id_hash = $1 AND expires_at > $2`,
    insert: `INSERT INTO ${sessions} (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id_hash) DO NOTHING`,
    update: `UPDATE ${sessions} SET sub = $2, sid = $3, partition = $4, created_at = $5, renewed_at = $6, expires_at = $7, version = $8, sealed = $9
             WHERE id_hash = $1 AND version = $10`,
    delete: `DELETE FROM ${sessions} WHERE id_hash = $1`,
    deleteWhere: (columns: readonly string[]) =>
      `DELETE FROM ${sessions} WHERE ${columns.map((c, i) => `${c} = $${i + 1}`).join(' AND ')}`,
    listBySid: `SELECT ${COLUMNS} FROM ${sessions} WHERE sid = $1 AND expires_at > $2 ORDER BY created_at LIMIT $3`,
    listBySidAndSub: `SELECT ${COLUMNS} FROM ${sessions} WHERE sid = $1 AND sub = $4 AND expires_at > $2 ORDER BY created_at LIMIT $3`,
    listAll: `SELECT ${COLUMNS} FROM ${sessions} WHERE expires_at > $1 ORDER BY created_at LIMIT $2`,
    listBySub: `SELECT ${COLUMNS} FROM ${sessions} WHERE sub = $1 AND expires_at > $2 ORDER BY created_at LIMIT $3`,
    // Every row, kept by the triggers (postgres-schema.ts), less the expired rows cleanup has not
    // removed yet (a range of gatehouse_sessions_expires, which cleanup keeps short); one statement,
    // so one snapshot. The sum is numeric and count(*) a bigint: pg hands both over as strings.
    count: `SELECT (SELECT coalesce(sum(n), 0)::bigint FROM ${quote(schema)}.gatehouse_session_count)
                 - (SELECT count(*) FROM ${sessions} WHERE expires_at <= $1) AS live`,
    deleteExpiredLeases: `DELETE FROM ${leases} WHERE expires_at <= $1`,
    // SKIP LOCKED: instances cleaning up at the same moment take disjoint batches instead of queueing.
    deleteExpired: `DELETE FROM ${sessions} WHERE id_hash IN (SELECT id_hash FROM ${sessions} WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
    // One statement: of two instances racing for the lease, exactly one inserts or takes over.
    acquireLease: `INSERT INTO ${leases} AS held (name, owner, expires_at) VALUES ($1, $2, $3)
       ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
       WHERE held.expires_at <= $4 OR held.owner = excluded.owner`,
    releaseLease: `DELETE FROM ${leases} WHERE name = $1 AND owner = $2`,
  }
}

/** Sessions in PostgreSQL, shared by several gatehouse instances; every write is one statement. */
export class PostgresStore implements SessionStore, LeaseCapable, NoticeCapable, Countable {
  readonly #pool: Pool
  readonly #sql: ReturnType<typeof statementsFor>
  readonly #deleteWhere = new Map<string, string>()
  /** NOTIFY channel: one per schema, so two deployments in one database do not hear each other. */
  readonly #channel: string
  readonly #listeners = new Set<() => Promise<void>>()
  #closed = false
  /** What opening the store created or upgraded (openPostgresStore); undefined when it was handed a migrated pool. */
  readonly migration: MigrationResult | undefined

  /** Takes over `pool` (ends it on close()); the schema must already be migrated. */
  constructor(pool: Pool, options: { schema?: string; migration?: MigrationResult } = {}) {
    const schema = options.schema ?? DEFAULTS.storeUrl.postgresSchema
    checkSchemaName(schema)
    this.#pool = pool
    this.migration = options.migration
    this.#sql = statementsFor(schema)
    this.#channel = `gatehouse_ended_${schema}`.slice(0, 63)
  }

  async get(idHash: string, now: number): Promise<SessionRecord | undefined> {
    const { rows } = await this.#pool.query<SessionRow>(this.#sql.get, [idHash, now])
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
    if (expectedVersion !== undefined) values.push(expectedVersion)
    const result = await this.#pool.query(expectedVersion === undefined ? this.#sql.insert : this.#sql.update, values)
    return result.rowCount === 1
  }

  async delete(idHash: string): Promise<boolean> {
    return (await this.#pool.query(this.#sql.delete, [idHash])).rowCount === 1
  }

  async deleteWhere(filter: SessionFilter): Promise<number> {
    if (filter.sub === undefined && filter.sid === undefined) throw new TypeError('deleteWhere needs a sub or a sid')
    const columns: string[] = []
    const values: string[] = []
    for (const column of ['sub', 'sid', 'partition'] as const) {
      const value = filter[column]
      if (value === undefined) continue
      columns.push(column)
      values.push(value)
    }
    const shape = columns.join(',')
    let sql = this.#deleteWhere.get(shape)
    if (sql === undefined) {
      sql = this.#sql.deleteWhere(columns)
      this.#deleteWhere.set(shape, sql)
    }
    return (await this.#pool.query(sql, values)).rowCount ?? 0
  }

  async list(filter: { sub?: string; sid?: string; limit: number }, now: number): Promise<SessionRecord[]> {
    let result
    if (filter.sid !== undefined)
      result =
        filter.sub === undefined
          ? await this.#pool.query<SessionRow>(this.#sql.listBySid, [filter.sid, now, filter.limit])
          : await this.#pool.query<SessionRow>(this.#sql.listBySidAndSub, [filter.sid, now, filter.limit, filter.sub])
    else
      result =
        filter.sub === undefined
          ? await this.#pool.query<SessionRow>(this.#sql.listAll, [now, filter.limit])
          : await this.#pool.query<SessionRow>(this.#sql.listBySub, [filter.sub, now, filter.limit])
    return result.rows.map(rowToRecord)
  }

  async count(now: number): Promise<number> {
    const { rows } = await this.#pool.query<{ live: string }>(this.#sql.count, [now])
    return Number(rows[0]!.live)
  }

  async deleteExpired(now: number, limit: number): Promise<number> {
    await this.#pool.query(this.#sql.deleteExpiredLeases, [now])
    return (await this.#pool.query(this.#sql.deleteExpired, [now, limit])).rowCount ?? 0
  }

  async acquireLease(name: string, owner: string, ttlMs: number, now: number): Promise<boolean> {
    return (await this.#pool.query(this.#sql.acquireLease, [name, owner, now + ttlMs, now])).rowCount === 1
  }

  async releaseLease(name: string, owner: string): Promise<void> {
    await this.#pool.query(this.#sql.releaseLease, [name, owner])
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
  let older: number | undefined
  try {
    // A runtime role that may use but not alter the tables (migrated by `gatehouse migrate` as their owner) must still start.
    const present = await presentObjects(pool, schema)
    if (missingObjects(present).length > 0) {
      older = olderVersion(present)
      migration = await migratePostgres(pool, schema)
    }
  } catch (err) {
    await pool.end().catch(() => {})
    throw postgresStartupError(url, schema, err, older)
  }
  return new PostgresStore(pool, { schema, migration })
}

/**
 * `check-config --connect`: connects as openPostgresStore does and reads the catalog, creating
 * nothing. The shipped tables, indexes and triggers missing from the schema (empty: all in place); a
 * server that cannot be used throws openPostgresStore's one-line error, and so do missing objects
 * this user may not create (serve would fail on them).
 */
export async function inspectPostgresStore(location: string): Promise<{ missing: string[] }> {
  const { pool, url, schema } = await connect(location)
  let older: number | undefined
  try {
    const present = await presentObjects(pool, schema)
    const missing = missingObjects(present)
    if (missing.length > 0) {
      older = olderVersion(present)
      // Creating the tables needs CREATE on the schema, or on the database while the schema is missing;
      // the counter's triggers need TRIGGER on a sessions table that exists already.
      const { rows } = await pool.query<{ may: boolean; trigger: boolean }>(
        `SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1) THEN has_schema_privilege($1, 'CREATE') ELSE has_database_privilege(current_database(), 'CREATE') END AS may,
                coalesce((SELECT has_table_privilege(c.oid, 'TRIGGER') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                          WHERE n.nspname = $1 AND c.relname = 'gatehouse_sessions'), true) AS trigger`,
        [schema],
      )
      if (!rows[0]?.may) throw Object.assign(new Error('no CREATE privilege'), { code: '42501' })
      if (!rows[0].trigger) throw Object.assign(new Error('no TRIGGER privilege'), { code: '42501' })
    }
    return { missing }
  } catch (err) {
    throw postgresStartupError(url, schema, err, older)
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
    // pg leaves TCP keep-alive off: a LISTEN connection to a server that vanished would never learn of it.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
  })
  // An idle connection that breaks emits 'error' on the pool (fatal if unheard); the next query reconnects.
  pool.on('error', () => {})
  return { pool, url, schema }
}
