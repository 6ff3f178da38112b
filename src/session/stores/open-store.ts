import type { SessionStore } from '../store.ts'
import { MemoryStore } from './memory.ts'
import { SqliteStore } from './sqlite.ts'
import { maskCredentials } from '../../config/mask.ts'

/**
 * `"memory"` | `"sqlite:PATH"` | `"redis://…"` / `"rediss://…"` | `"redis-cluster://…"` | `"redis-sentinel://…"` |
 * `"postgres://…"` / `"postgresql://…"`
 * → a store. The Redis and Postgres stores, and their drivers (optional peers), load only when named.
 */
export async function openStore(location: string): Promise<SessionStore> {
  if (location === 'memory') return new MemoryStore()
  if (location.startsWith('sqlite:')) return new SqliteStore(location.slice('sqlite:'.length))
  if (/^rediss?-cluster:\/\//.test(location)) {
    const { openRedisClusterStore } = await import('./redis-cluster.ts')
    return openRedisClusterStore(location)
  }
  if (/^rediss?-sentinel:\/\//.test(location)) {
    const { openRedisSentinelStore } = await import('./redis-sentinel.ts')
    return openRedisSentinelStore(location)
  }
  if (/^rediss?:\/\//.test(location)) {
    const { openRedisStore } = await import('./redis.ts')
    return openRedisStore(location)
  }
  if (/^postgres(ql)?:\/\//.test(location)) {
    const { openPostgresStore } = await import('./postgres.ts')
    return openPostgresStore(location)
  }
  throw new TypeError(`unsupported session store "${maskCredentials(location)}"`)
}
