/**
 * The version of the session schema gatehouse ships (the same for PostgreSQL and SQLite). It is not
 * stored: a schema holding every object of the shipped set is this version, and one holding every
 * object of an older version (`since` at most that version) but not the newer ones is that version.
 */
export const SCHEMA_VERSION = 2

/**
 * The tables, indexes and triggers of the shipped schema, in the order they are created, with the
 * version that added them. Version 2 added the session counter, kept by the triggers in the same
 * transaction as every insert and delete, so that count() reads it instead of scanning the sessions.
 */
export const SCHEMA_OBJECTS = [
  { kind: 'table', name: 'gatehouse_sessions', since: 1 },
  { kind: 'index', name: 'gatehouse_sessions_sub', since: 1 },
  { kind: 'index', name: 'gatehouse_sessions_sid', since: 1 },
  { kind: 'index', name: 'gatehouse_sessions_expires', since: 1 },
  { kind: 'table', name: 'gatehouse_leases', since: 1 },
  { kind: 'table', name: 'gatehouse_session_count', since: 2 },
  { kind: 'trigger', name: 'gatehouse_sessions_count_insert', since: 2 },
  { kind: 'trigger', name: 'gatehouse_sessions_count_delete', since: 2 },
] as const

/** The objects that keep the session counter: when one is missing, the counter is set again from a count. */
export const COUNTER_OBJECTS: readonly string[] = SCHEMA_OBJECTS.filter((o) => o.since === 2).map((o) => o.name)

/** What applying the schema did; `created` empty when all was in place. */
export interface MigrationResult {
  /** What was created, as `kind name` ("schema gh", "table gatehouse_sessions"…). */
  created: string[]
  /** The version found, when the schema was a complete older one (an upgrade). */
  upgradedFrom?: number
  /**
   * The rows gatehouse_sessions held when the counter was set from a count of them (an upgrade, or
   * a counter object put back); absent when the table was created empty.
   */
  counted?: number
}

/** The shipped objects missing from `present` (names found in the catalog), as MigrationResult lists them. */
export function missingObjects(present: Iterable<string>): string[] {
  const found = new Set(present)
  return SCHEMA_OBJECTS.filter((o) => !found.has(o.name)).map((o) => `${o.kind} ${o.name}`)
}

/** The version `present` is a complete schema of, when it is older than SCHEMA_VERSION; undefined otherwise. */
export function olderVersion(present: Iterable<string>): number | undefined {
  const found = new Set(present)
  for (let version = SCHEMA_VERSION - 1; version >= 1; version--) {
    const complete = SCHEMA_OBJECTS.every((o) => o.since <= version === found.has(o.name))
    if (complete) return version
  }
  return undefined
}

/** `gatehouse migrate`'s report: what was created or upgraded, or that nothing was needed. */
export function describeMigration(result: MigrationResult, where: string): string {
  if (result.created.length === 0)
    return `nothing to do: schema version ${SCHEMA_VERSION} is already in place (${where})\n`
  const head =
    result.upgradedFrom === undefined
      ? `created schema version ${SCHEMA_VERSION}`
      : `upgraded schema version ${result.upgradedFrom} to ${SCHEMA_VERSION}`
  const lines = [...result.created]
  if (result.counted !== undefined)
    lines.push(
      `gatehouse_session_count set from a count of gatehouse_sessions: ${result.counted} row${result.counted === 1 ? '' : 's'}`,
    )
  return `${head} (${where}):\n${lines.map((c) => `  ${c}\n`).join('')}`
}
