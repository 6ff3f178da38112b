import type { GatehouseError } from '../../errors.ts'
import { SCHEMA_VERSION } from './migration.ts'
import { networkCause, oneLine, publicLocation, startupError } from './startup-error.ts'

/** How long the PostgreSQL store waits for a connection. */
export const CONNECT_TIMEOUT_MS = 2_000

/**
 * pg 8 treats sslmode prefer, require and verify-ca as verify-full, and says so in a warning of ten
 * lines at every start. Spelling out verify-full is the same connection without the warning (unless
 * `uselibpqcompat=true` asks for libpq's meaning of the modes).
 */
export function withoutSslModeWarning(url: URL): void {
  const mode = url.searchParams.get('sslmode')
  if (
    (mode === 'prefer' || mode === 'require' || mode === 'verify-ca') &&
    url.searchParams.get('uselibpqcompat') !== 'true'
  )
    url.searchParams.set('sslmode', 'verify-full')
}

/**
 * The open failed: one line naming the cause, from pg's error (a server's error code, a socket's, or
 * its own message). `olderVersion`: the schema found was a complete older version, to be upgraded.
 */
export function postgresStartupError(url: URL, schema: string, err: unknown, olderVersion?: number): GatehouseError {
  const location = publicLocation(url)
  const fail = (cause: string) => startupError(location, cause, err)
  const message = oneLine(err instanceof Error ? err.message : String(err))
  switch ((err as { code?: string }).code) {
    case '3D000': // invalid_catalog_name: database "x" does not exist
    case '28000': // invalid_authorization_specification: role "x" does not exist, no pg_hba.conf entry…
      return fail(message)
    case '28P01': // invalid_password
      return fail(`${message} (check the user and password in session.store)`)
    case '42501': // insufficient_privilege, while creating the schema or its tables
      if (olderVersion !== undefined)
        return fail(
          `schema ${schema} holds version ${olderVersion} of the session schema and this user may not upgrade it to version ${SCHEMA_VERSION} (${message}): run gatehouse migrate as a user that may, such as the schema's owner`,
        )
      return fail(
        `schema ${schema} lacks the session tables and this user may not create them (${message}): run gatehouse migrate as a user that may, such as the schema's owner`,
      )
  }
  if (/does not support SSL/i.test(message))
    return fail(`TLS failed: the server does not support SSL connections (sslmode in session.store asks for TLS)`)
  const network = networkCause(err, 'PostgreSQL', url, CONNECT_TIMEOUT_MS)
  if (network) return fail(network)
  if (/connection timeout|timeout expired/i.test(message))
    return fail(`no answer from ${url.host} within ${CONNECT_TIMEOUT_MS / 1000} s (is it a PostgreSQL server?)`)
  if (/password must be a string/i.test(message))
    return fail('authentication failed: the server asks for a password and session.store gives none')
  if (/terminated unexpectedly|ECONNRESET/i.test(message))
    return fail('the server closed the connection while connecting')
  return fail(message)
}
