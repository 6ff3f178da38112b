import { connect } from 'node:net'
import { hasAtAfterHost } from '../../config/store-url.ts'
import { GatehouseError } from '../../errors.ts'

/**
 * A store URL as messages show it: scheme, host, port and path. Never the user or the password, and
 * never the query, which may carry a password too (PostgreSQL's `?password=`). A path holding "@" is
 * left out: it is most likely the tail of a password with a "/" in it.
 */
export function publicLocation(url: URL, path = url.pathname): string {
  return `${url.protocol}//${url.host}${path.includes('@') ? '' : path}`
}

/**
 * `new URL(location)` for a store, whose failure names session.store and never the location: the
 * TypeError's `input` would carry the password into logs (validation refuses such a location first).
 */
export function storeUrl(location: string): URL {
  const hint = 'percent-encode the user name and password (encodeURIComponent)'
  if (!URL.canParse(location)) throw new GatehouseError('config_invalid', `session.store is not a valid URL: ${hint}`)
  const url = new URL(location)
  if (hasAtAfterHost(url)) throw new GatehouseError('config_invalid', `session.store has "@" after the host: ${hint}`)
  return url
}

/** A percent-encoded user name or password as the server must get it; a malformed escape fails naming session.store. */
export function decodeCredential(text: string): string {
  try {
    return decodeURIComponent(text)
  } catch {
    throw new GatehouseError(
      'config_invalid',
      'session.store has a "%" that starts no percent-escape in its user name or password (write % as %25)',
    )
  }
}

/**
 * The error a store that cannot start throws: one line, `session store LOCATION: CAUSE`, which the
 * CLI prints as it is. `original` stays attached for logs (describeError), so it must hold no secret.
 */
export function startupError(location: string, cause: string, original?: unknown): GatehouseError {
  return new GatehouseError(
    'store_unavailable',
    `session store ${location}: ${oneLine(cause)}`,
    original === undefined ? undefined : { cause: original },
  )
}

/** The first line of a driver's message (a few span several, with hints meant for other tools). */
export function oneLine(text: string): string {
  return text.split('\n')[0]!.trim()
}

/**
 * What a failed connection means, for the errors sockets and TLS raise (the same for every driver);
 * undefined for the others. `server` names the kind of server in hints ("is Redis running at…").
 */
export function networkCause(err: unknown, server: string, url: URL, timeoutMs: number): string | undefined {
  if (!(err instanceof Error)) return undefined
  const code = (err as NodeJS.ErrnoException).code
  switch (code) {
    case 'ECONNREFUSED':
      return `connection refused (is ${server} running at ${url.host}?)`
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_NONAME':
      return `host ${url.hostname} not found`
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `host ${url.hostname} is unreachable`
    case 'ETIMEDOUT':
      return `no answer from ${url.host} within ${timeoutMs / 1000} s`
  }
  if (isTlsError(err)) return `TLS handshake failed (${oneLine(err.message)})`
  return undefined
}

/** Node's TLS and certificate errors: codes ERR_TLS_*, ERR_SSL_*, and OpenSSL's verification codes. */
function isTlsError(err: Error): boolean {
  const code = String((err as NodeJS.ErrnoException).code ?? '')
  return (
    /^ERR_(TLS|SSL)_|CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)/.test(code) ||
    'library' in err ||
    /\bSSL routines\b|\bTLS\b/.test(err.message)
  )
}

/**
 * Whether a TCP connection to the URL's host and port opens within `timeoutMs`. A TLS connection that
 * timed out then stalled in the handshake: the port is most likely a plain one.
 */
export function tcpOpens(url: URL, defaultPort: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || defaultPort) })
    const done = (opened: boolean) => {
      socket.destroy()
      resolve(opened)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
  })
}
