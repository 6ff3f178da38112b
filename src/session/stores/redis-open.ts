import type { GatehouseError } from '../../errors.ts'
import { networkCause, oneLine, publicLocation, startupError, tcpOpens } from './startup-error.ts'

/** How long the Redis store waits for a connection, and for a command (the handshake's included). */
export const CONNECT_TIMEOUT_MS = 2_000
export const COMMAND_TIMEOUT_MS = 3_000

/** The database a `redis://host/N` URL names: 0 without a path; whatever else than a number is refused. */
export function databaseOf(url: URL): number {
  const path = url.pathname
  if (path === '' || path === '/') return 0
  if (!/^\/\d+$/.test(path))
    throw startupError(
      publicLocation(url),
      `the path must be a database number such as /0 or /3${path.includes('@') ? '' : `, not "${path.slice(1)}"`}`,
    )
  const db = Number(path.slice(1))
  if (!Number.isSafeInteger(db))
    throw startupError(publicLocation(url), `database index ${path.slice(1)} is out of range`)
  return db
}

/** A SELECT of the database (sent by ioredis while connecting) that the server refused. */
export function isSelectError(err: unknown): boolean {
  return (
    (err as { command?: { name?: string } } | undefined)?.command?.name === 'select' ||
    (err instanceof Error && /DB index is out of range/i.test(err.message))
  )
}

/** The line for a refused SELECT: out of range, with how many databases the server has when it says. */
export function selectError(url: URL, db: number, err: unknown, databases: number): GatehouseError {
  const location = publicLocation(url, `/${db}`)
  const message = oneLine((err as Error).message)
  if (/out of range/i.test(message)) {
    return startupError(
      location,
      `database index ${db} is out of range (${Number.isFinite(databases) ? `this server has ${databases} databases: 0 to ${databases - 1}` : 'the server refused it'})`,
      copyOf(err),
    )
  }
  return startupError(location, `database ${db} cannot be selected (${message})`, copyOf(err))
}

/**
 * The open failed: the cause, from every error ioredis reported while connecting (the last is
 * connect()'s own, mostly "Connection is closed."). Authentication first: it explains the rest.
 */
export async function redisStartupError(url: URL, db: number, errors: unknown[]): Promise<GatehouseError> {
  const location = publicLocation(url, `/${db}`)
  const messages = errors.map((e) => oneLine(e instanceof Error ? e.message : String(e)))
  const first = (pattern: RegExp) => errors[messages.findIndex((m) => pattern.test(m))]
  const fail = (cause: string, err: unknown) => startupError(location, cause, copyOf(err))

  const wrongPassword = first(/^WRONGPASS/)
  if (wrongPassword) return fail('authentication failed (check the user and password in session.store)', wrongPassword)
  const noAuth = first(/^NOAUTH/)
  if (noAuth)
    return fail(
      'authentication required: the server needs a password and session.store gives none (redis://:PASSWORD@host:port)',
      noAuth,
    )
  const noPermission = first(/^NOPERM/)
  if (noPermission)
    return fail(`the user may not connect as configured (${oneLine((noPermission as Error).message)})`, noPermission)
  const select = errors.find(isSelectError)
  if (select) return selectError(url, db, select, NaN)

  const tls = url.protocol === 'rediss:'
  for (const err of errors) {
    const code = (err as NodeJS.ErrnoException).code
    // A TLS client that reached a plain port waits for a handshake that never comes.
    if (code === 'ETIMEDOUT' && tls && (await tcpOpens(url, 6379, CONNECT_TIMEOUT_MS))) {
      return fail(
        `TLS handshake failed (no TLS answer within ${CONNECT_TIMEOUT_MS / 1000} s: if ${url.host} is a plain port, use redis://)`,
        err,
      )
    }
    const cause = networkCause(err, 'Redis', url, CONNECT_TIMEOUT_MS)
    if (cause) return fail(cause, err)
  }
  const timedOut = first(/Command timed out/i)
  if (timedOut)
    return fail(
      `connected, but no answer within ${COMMAND_TIMEOUT_MS / 1000} s (is ${url.host} a Redis server?)`,
      timedOut,
    )
  const reset = first(/ECONNRESET|Connection is closed/)
  if (reset)
    return fail(
      `the server closed the connection while connecting${tls ? '' : ` (if ${url.host} serves TLS, use rediss://)`}`,
      reset,
    )
  const protocol = first(/Unknown RESP type|Protocol error/i)
  if (protocol) return fail(`the server at ${url.host} does not answer in the Redis protocol`, protocol)
  return fail(`cannot connect (${messages[0] ?? 'unknown error'})`, errors[0])
}

/**
 * The driver's error without what it carries besides name, code and message: a failed AUTH or HELLO
 * holds the password in its `command.args`.
 */
function copyOf(err: unknown): Error {
  const source = err instanceof Error ? err : new Error(String(err))
  const copy = new Error(oneLine(source.message))
  copy.name = source.name
  const code = (source as NodeJS.ErrnoException).code
  if (code !== undefined) Object.assign(copy, { code })
  return copy
}
