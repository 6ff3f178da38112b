import type { Config } from '../config/types.ts'
import { GatehouseError } from '../errors.ts'
import { KeyRing } from '../session/seal.ts'
import { Sessions } from '../session/sessions.ts'
import type { SessionStore } from '../session/store.ts'
import { migrateStore } from '../session/stores/migrate-store.ts'
import { openStore } from '../session/stores/open-store.ts'

/**
 * `gatehouse sessions list [--sub S] [--limit N]` — one line per live session: id hash (not the
 * cookie), sub, sid, partition and times. Tokens stay sealed.
 */
export async function sessionsList(config: Config, filter: { sub?: string; limit: number }): Promise<number> {
  const store = await openStore(config.session.store)
  try {
    const records = await storeErrors(sessionsOver(store, config).list(filter))
    for (const r of records) {
      process.stdout.write(
        `${r.idHash}  sub=${r.sub}  sid=${r.sid ?? '-'}  partition=${r.partition}  created=${new Date(r.createdAt).toISOString()}  expires=${new Date(r.expiresAt).toISOString()}\n`,
      )
    }
    process.stderr.write(
      `${records.length} session${records.length === 1 ? '' : 's'}${records.length === filter.limit ? ` (limit ${filter.limit} reached)` : ''}\n`,
    )
    return 0
  } finally {
    await store.close()
  }
}

/** `gatehouse sessions revoke (--sub S | --sid S)` — ends the sessions; every instance refuses them at the next request. */
export async function sessionsRevoke(config: Config, filter: { sub: string } | { sid: string }): Promise<number> {
  const store = await openStore(config.session.store)
  try {
    // Open tabs on every instance learn of it at once where the store can carry the notice.
    const count = await storeErrors(sessionsOver(store, config).endWhere(filter, 'revoked'))
    process.stdout.write(`revoked ${count} session${count === 1 ? '' : 's'}\n`)
    return 0
  } finally {
    await store.close()
  }
}

/** The session layer over the store the CLI opened: no listeners, no hooks, only the store's notices. */
function sessionsOver(store: SessionStore, config: Config): Sessions {
  return new Sessions({ store, keyRing: new KeyRing(config.keys), policy: config.session })
}

/** A store failure as the store reported it (the session layer wraps it as store_unavailable for HTTP answers). */
async function storeErrors<T>(operation: Promise<T>): Promise<T> {
  try {
    return await operation
  } catch (err) {
    throw err instanceof GatehouseError && err.code === 'store_unavailable' && err.cause !== undefined ? err.cause : err
  }
}

/**
 * `gatehouse migrate` — applies the store's shipped schema (idempotent; PostgreSQL and SQLite do it
 * on start as well, this lets a deploy step do it with a more privileged user first) and says what
 * it created, or why nothing was needed.
 */
export async function migrate(config: Config): Promise<number> {
  if (config.session.mode === 'cookie') {
    process.stdout.write(
      'nothing to do: session.mode is "cookie": sessions live in the browser\'s cookie, no store holds them\n',
    )
    return 0
  }
  process.stdout.write(await migrateStore(config.session.store))
  return 0
}
