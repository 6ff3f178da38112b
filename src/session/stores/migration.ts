/**
 * The version of the session tables and indexes gatehouse ships (the same for PostgreSQL and
 * SQLite). It is not stored: a schema holding every object of the shipped set is this version.
 */
export const SCHEMA_VERSION = 1

/** The tables and indexes of the shipped schema, in the order they are created. */
export const SCHEMA_OBJECTS = [
  { kind: 'table', name: 'gatehouse_sessions' },
  { kind: 'index', name: 'gatehouse_sessions_sub' },
  { kind: 'index', name: 'gatehouse_sessions_sid' },
  { kind: 'index', name: 'gatehouse_sessions_expires' },
  { kind: 'table', name: 'gatehouse_leases' },
] as const

/** What applying the schema created, as `kind name` ("schema gh", "table gatehouse_sessions"…); empty when all was in place. */
export interface MigrationResult {
  created: string[]
}

/** The shipped objects missing from `present` (names found in the catalog), as MigrationResult lists them. */
export function missingObjects(present: Iterable<string>): string[] {
  const found = new Set(present)
  return SCHEMA_OBJECTS.filter((o) => !found.has(o.name)).map((o) => `${o.kind} ${o.name}`)
}

/** `gatehouse migrate`'s report: what was created, or that nothing was needed. */
export function describeMigration(result: MigrationResult, where: string): string {
  if (result.created.length === 0)
    return `nothing to do: schema version ${SCHEMA_VERSION} is already in place (${where})\n`
  return `created schema version ${SCHEMA_VERSION} (${where}):\n${result.created.map((c) => `  ${c}\n`).join('')}`
}
