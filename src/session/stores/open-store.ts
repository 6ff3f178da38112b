import type { SessionStore } from '../store.ts'
import { MemoryStore } from './memory.ts'
import { SqliteStore } from './sqlite.ts'

/** `"memory"` | `"sqlite:PATH"` → a store. (redis:// and postgres:// arrive in a later version.) */
export async function openStore(location: string): Promise<SessionStore> {
  if (location === 'memory') return new MemoryStore()
  if (location.startsWith('sqlite:')) return new SqliteStore(location.slice('sqlite:'.length))
  throw new TypeError(`unsupported session store "${location.replace(/\/\/.*@/, '//***@')}"`)
}
