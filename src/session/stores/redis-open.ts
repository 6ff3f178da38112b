import type { Cluster, Redis, RedisOptions } from 'ioredis'
import { GatehouseError } from '../../errors.ts'
import { hostPort } from '../../config/store-url.ts'
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
  const select = errors.find(isSelectError)
  if (select) return selectError(url, db, select, NaN)
  const { cause, err } = await redisFailure(url, db, errors)
  return startupError(publicLocation(url, `/${db}`), cause, copyOf(err))
}

/** What redisStartupError says, without the location: the cause, and the error it was read from. */
export async function redisFailure(url: URL, db: number, errors: unknown[]): Promise<{ cause: string; err: unknown }> {
  const messages = errors.map((e) => oneLine(e instanceof Error ? e.message : String(e)))
  const first = (pattern: RegExp) => errors[messages.findIndex((m) => pattern.test(m))]
  const fail = (cause: string, err: unknown) => ({ cause, err })

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
  if (select) return fail(`database ${db} cannot be selected (${oneLine((select as Error).message)})`, select)

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
export function copyOf(err: unknown): Error {
  const source = err instanceof Error ? err : new Error(String(err))
  const copy = new Error(oneLine(source.message))
  copy.name = source.name
  const code = (source as NodeJS.ErrnoException).code
  if (code !== undefined) Object.assign(copy, { code })
  return copy
}

/** The optional peer `ioredis`, or an error naming session.store and how to install it. */
export async function loadRedisDriver(scheme: string): Promise<{ Redis: typeof Redis; Cluster: typeof Cluster }> {
  try {
    const { Redis, Cluster } = await import('ioredis')
    return { Redis, Cluster }
  } catch (err) {
    throw new GatehouseError(
      'config_invalid',
      `session.store is a ${scheme}// URL, which needs the optional package "ioredis": npm install ioredis`,
      { cause: err },
    )
  }
}

/** A connection's options for one server: fail fast while it is away, reconnect in the background. */
export function serverOptions(credentials: { username?: string; password?: string; tls: boolean }): RedisOptions {
  return {
    ...(credentials.username ? { username: credentials.username } : {}),
    ...(credentials.password ? { password: credentials.password } : {}),
    ...(credentials.tls ? { tls: {} } : {}),
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: CONNECT_TIMEOUT_MS,
    commandTimeout: COMMAND_TIMEOUT_MS,
  }
}

/** A node of a deployment as a `redis://` (or `rediss://`) URL, for the causes redisFailure reads. */
export function nodeUrl(node: { host: string; port: number }, tls: boolean): URL {
  return new URL(`${tls ? 'rediss' : 'redis'}://${hostPort(node)}`)
}

/**
 * One connection for a start-up check of a node of a deployment (a cluster's seed, a sentinel): the
 * connected client, or why it could not connect (redisFailure's cause), with no reconnect attempt.
 */
export async function probeNode(
  Driver: typeof Redis,
  node: { host: string; port: number },
  options: RedisOptions & { tls?: object },
): Promise<{ client: Redis } | { cause: string }> {
  const client = new Driver({
    ...options,
    host: node.host,
    port: node.port,
    lazyConnect: true,
    retryStrategy: () => null,
  })
  const errors: unknown[] = []
  client.on('error', (err) => errors.push(err))
  try {
    await client.connect()
    return { client }
  } catch (err) {
    client.disconnect()
    return { cause: (await redisFailure(nodeUrl(node, Boolean(options.tls)), 0, [...errors, err])).cause }
  }
}

/**
 * connect() with every error ioredis reports meanwhile collected (for the start-up error), and a
 * silent error listener after: failures then reach callers as rejected commands. On failure the
 * client is disconnected and `errors` ends with connect()'s own.
 */
export async function connectCollecting(client: Redis): Promise<{ ok: boolean; errors: unknown[] }> {
  const errors: unknown[] = []
  const collect = (err: unknown) => errors.push(err)
  client.on('error', collect)
  try {
    await client.connect()
  } catch (err) {
    client.disconnect()
    return { ok: false, errors: [...errors, err] }
  } finally {
    client.off('error', collect)
    client.on('error', () => {})
  }
  return { ok: true, errors }
}
