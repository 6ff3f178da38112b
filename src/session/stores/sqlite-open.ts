import { accessSync, constants, existsSync, mkdirSync, statSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { pathToFileURL } from 'node:url'
import { missingObjects, type MigrationResult } from './migration.ts'
import { presentSqliteObjects } from './sqlite-schema.ts'
import { oneLine, startupError } from './startup-error.ts'

/**
 * `:memory:` and `file:` URIs (`file:sessions.db?mode=memory`, `file::memory:`), which node:sqlite
 * opens as SQLite reads them: they are no path to resolve or to create folders for.
 */
export function isSqliteUri(path: string): boolean {
  return path === ':memory:' || path.startsWith('file:')
}

/** A database that lives in the process that opens it: `:memory:`, `file::memory:`, a `file:` URI with `mode=memory`. */
export function isSqliteInMemory(path: string): boolean {
  if (path === ':memory:') return true
  if (!path.startsWith('file:')) return false
  const query = path.indexOf('?')
  const name = query === -1 ? path : path.slice(0, query)
  return (
    name === 'file::memory:' || (query !== -1 && new URLSearchParams(path.slice(query + 1)).get('mode') === 'memory')
  )
}

/**
 * Opens (creating it and its folders when missing) the SQLite file at `path` and runs `prepare` on
 * it, which returns what it created or upgraded; `location` is what was opened (the file's absolute
 * path, or the URI as given). Every failure becomes one line naming the cause: a folder that cannot
 * be created, a folder or file that is not writable, a file that is not a database.
 */
export function openSqliteFile(
  path: string,
  prepare: (db: DatabaseSync) => MigrationResult,
): { db: DatabaseSync; location: string; migration: MigrationResult } {
  if (isSqliteUri(path)) {
    let db: DatabaseSync | undefined
    try {
      db = new DatabaseSync(path)
      return { db, location: path, migration: prepare(db) }
    } catch (err) {
      db?.close()
      throw startupError(
        `sqlite:${path}`,
        `cannot open the database (${oneLine((err as Error).message ?? String(err))})`,
        err,
      )
    }
  }
  const file = resolve(path)
  const location = `sqlite:${file}`
  const folder = dirname(file)
  try {
    mkdirSync(folder, { recursive: true })
  } catch (err) {
    throw startupError(location, folderCause(folder, err), err)
  }
  const fileIsNew = !existsSync(file)
  let db: DatabaseSync | undefined
  try {
    db = new DatabaseSync(file)
    const migration = prepare(db)
    if (fileIsNew) migration.created.unshift(`file ${file}`)
    return { db, location: file, migration }
  } catch (err) {
    db?.close()
    throw startupError(location, fileCause(file, err), err)
  }
}

/** What `check-config --connect` found at a SQLite location; nothing is created to find it. */
export type SqliteInspection =
  | { state: 'memory' }
  /** `folder`: the folder serve would create too, when it is missing. */
  | { state: 'absent'; file: string; folder: string | undefined }
  /** The shipped tables, indexes and triggers missing from the file (empty: all in place). */
  | { state: 'present'; file: string; missing: string[] }

/**
 * Reads, without creating or changing whatever, what openSqliteFile would find: the file, whether
 * it is a SQLite database and which of gatehouse's tables it lacks, or, when it is missing, that its
 * folder lets serve create it. What would fail serve's open throws serve's one-line error.
 */
export function inspectSqliteFile(path: string): SqliteInspection {
  if (isSqliteInMemory(path)) return { state: 'memory' }
  const uri = path.startsWith('file:')
  const file = uri ? path : resolve(path)
  const location = `sqlite:${file}`
  if (!uri) {
    if (!existsSync(file)) {
      const folder = dirname(file)
      const existing = nearestExisting(folder)
      if (!isFolder(existing))
        throw startupError(
          location,
          existing === folder
            ? `${folder} is a file, not a folder`
            : `folder ${folder} cannot be created: ${existing} is a file, not a folder`,
        )
      if (!writable(existing))
        throw startupError(
          location,
          existing === folder
            ? `folder ${folder} is not writable (the database file cannot be created there)`
            : `folder ${folder} does not exist and cannot be created: ${existing} is not writable`,
        )
      return { state: 'absent', file, folder: existing === folder ? undefined : folder }
    }
    if (isFolder(file)) throw startupError(location, `${file} is a folder, not a database file`)
    if (!writable(file)) throw startupError(location, `file ${file} is not writable`)
  }
  // Read-only, and immutable while no process has a write-ahead log open: a read-only connection to a
  // WAL database otherwise leaves -wal and -shm files behind.
  const target = uri || existsSync(`${file}-wal`) ? file : `${pathToFileURL(file).href}?immutable=1`
  let db: DatabaseSync | undefined
  try {
    db = new DatabaseSync(target, { readOnly: true })
    return { state: 'present', file, missing: missingObjects(presentSqliteObjects(db)) }
  } catch (err) {
    const message = oneLine((err as Error).message ?? String(err))
    if (uri && /unable to open/i.test(message)) return { state: 'absent', file, folder: undefined }
    if (/file is not a database/i.test(message)) throw startupError(location, `${file} is not a SQLite database`, err)
    throw startupError(location, `cannot open the database (${message})`, err)
  } finally {
    db?.close()
  }
}

/** Why mkdir failed, naming the part of the path at fault. */
function folderCause(folder: string, err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code
  const existing = nearestExisting(folder)
  if (code === 'ENOTDIR' || code === 'EEXIST')
    return existing === folder
      ? `${folder} is a file, not a folder`
      : `folder ${folder} cannot be created: ${existing} is a file, not a folder`
  if (code === 'EACCES' || code === 'EPERM')
    return `folder ${folder} does not exist and cannot be created: ${existing} is not writable`
  if (code === 'EROFS')
    return `folder ${folder} does not exist and cannot be created: ${existing} is on a read-only file system`
  if (code === 'ENOENT') return `folder ${folder} does not exist`
  return `folder ${folder} cannot be created (${oneLine((err as Error).message)})`
}

/** Why SQLite could not open or prepare the file. */
function fileCause(file: string, err: unknown): string {
  const message = oneLine((err as Error).message ?? String(err))
  if (isFolder(file)) return `${file} is a folder, not a database file`
  if (/file is not a database/i.test(message)) return `${file} is not a SQLite database`
  if (existsSync(file)) {
    if (!writable(file)) return `file ${file} is not writable`
  } else if (!writable(dirname(file))) {
    return `folder ${dirname(file)} is not writable (the database file cannot be created there)`
  }
  if (/readonly|read-only/i.test(message)) return `file ${file} or its folder is read-only (${message})`
  if (/locked/i.test(message)) return `the database is locked by another process (${message})`
  return `cannot open the database (${message})`
}

function nearestExisting(path: string): string {
  let current = path
  while (!existsSync(current) && dirname(current) !== current) current = dirname(current)
  return current
}

function isFolder(path: string): boolean {
  try {
    return statSync(path).isDirectory()
  } catch {
    return false
  }
}

function writable(path: string): boolean {
  try {
    accessSync(path, constants.W_OK)
    return true
  } catch {
    return false
  }
}
