import { resolve } from 'node:path'
import { DEFAULTS } from '../../config/defaults.ts'
import { describeMigration } from './migration.ts'
import { openStore } from './open-store.ts'
import type { PostgresStore } from './postgres.ts'
import { databaseOf } from './redis-open.ts'
import { isSqliteInMemory, isSqliteUri } from './sqlite-open.ts'
import type { SqliteStore } from './sqlite.ts'
import { publicLocation, storeUrl } from './startup-error.ts'

/**
 * `gatehouse migrate` for a `session.store` location: opens the store (which applies the schema
 * PostgreSQL and SQLite need, as at start) and says what was created, or why nothing was needed.
 * A store that cannot be opened throws the same one-line error as at start.
 */
export async function migrateStore(location: string): Promise<string> {
  if (location === 'memory')
    return 'nothing to do: session.store is "memory": sessions live in the process\'s memory, which has no schema\n'
  if (location.startsWith('sqlite:') && isSqliteInMemory(location.slice('sqlite:'.length))) {
    return `nothing to do: session.store "${location}" is an in-memory SQLite database: every process that opens it gets new, empty tables, and nothing of it outlives the process\n`
  }
  const store = await openStore(location)
  try {
    if (location.startsWith('sqlite:')) {
      const path = location.slice('sqlite:'.length)
      return describeMigration((store as SqliteStore).migration, `sqlite:${isSqliteUri(path) ? path : resolve(path)}`)
    }
    const url = storeUrl(location)
    if (/^postgres(ql)?:/.test(location)) {
      return describeMigration(
        (store as PostgresStore).migration ?? { created: [] },
        `${publicLocation(url)}, schema ${url.searchParams.get('schema') ?? DEFAULTS.storeUrl.postgresSchema}`,
      )
    }
    const prefix = url.searchParams.get('prefix') ?? DEFAULTS.storeUrl.redisPrefix
    const db = databaseOf(url)
    return `nothing to do: Redis needs no schema: keys under the prefix "${prefix}" in database ${db} are created as sessions are written (${publicLocation(url, `/${db}`)} answered)\n`
  } finally {
    await store.close()
  }
}
