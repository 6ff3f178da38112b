import type { Config } from '../config/types.ts'
import { openStore } from '../session/stores/open-store.ts'

/**
 * `gatehouse sessions list [--sub S] [--limit N]` — one line per live session: id hash (not the
 * cookie), sub, sid, partition and times. Tokens stay sealed.
 */
export async function sessionsList(config: Config, filter: { sub?: string; limit: number }): Promise<number> {
  const store = await openStore(config.session.store)
  try {
    const records = await store.list(filter, Date.now())
    for (const r of records) {
      process.stdout.write(
        `${r.idHash}  sub=${r.sub}  sid=${r.sid ?? '-'}  partition=${r.partition}  created=${new Date(r.createdAt).toISOString()}  expires=${new Date(r.expiresAt).toISOString()}\n`,
      )
    }
    process.stderr.write(`${records.length} session${records.length === 1 ? '' : 's'}${records.length === filter.limit ? ` (limit ${filter.limit} reached)` : ''}\n`)
    return 0
  } finally {
    await store.close()
  }
}

/** `gatehouse sessions revoke (--sub S | --sid S)` — ends the sessions; every instance refuses them at the next request. */
export async function sessionsRevoke(config: Config, filter: { sub: string } | { sid: string }): Promise<number> {
  const store = await openStore(config.session.store)
  try {
    const count = await store.deleteWhere(filter)
    // Open tabs on every instance learn of it at once where the store can carry the notice.
    await store.publishEnded?.({ filter, reason: 'revoked', origin: 'cli' }).catch(() => undefined)
    process.stdout.write(`revoked ${count} session${count === 1 ? '' : 's'}\n`)
    return 0
  } finally {
    await store.close()
  }
}

/**
 * `gatehouse migrate` — applies the store's shipped schema (idempotent; PostgreSQL and SQLite do it
 * on start as well, this lets a deploy step do it with a more privileged user first).
 */
export async function migrate(config: Config): Promise<number> {
  if (config.session.mode === 'cookie' || config.session.store === 'memory' || /^rediss?:/.test(config.session.store)) {
    process.stdout.write('nothing to migrate for this session store\n')
    return 0
  }
  const store = await openStore(config.session.store)
  await store.close()
  process.stdout.write('session store schema is up to date\n')
  return 0
}
