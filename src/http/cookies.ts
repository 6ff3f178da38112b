/** "none" only with `cors.allowedOrigins` (an SPA on another site; config validation enforces it). */
export type SameSite = 'strict' | 'lax' | 'none'

const MAX_COOKIES = 200

/** Parses a Cookie header. Malformed pairs are skipped, never thrown on; the first of duplicate names wins. */
export function parseCookies(header: string | undefined): Map<string, string> {
  const cookies = new Map<string, string>()
  if (!header) return cookies
  let count = 0
  for (const pair of header.split(';')) {
    if (++count > MAX_COOKIES) break
    const eq = pair.indexOf('=')
    if (eq <= 0) continue
    const name = pair.slice(0, eq).trim()
    let value = pair.slice(eq + 1).trim()
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1)
    if (name && !cookies.has(name)) cookies.set(name, value)
  }
  return cookies
}

const SAME_SITE: Readonly<Record<SameSite, string>> = { strict: 'Strict', lax: 'Lax', none: 'None' }

export interface CookieOptions {
  sameSite: SameSite
  /** Seconds; 0 deletes the cookie. Omitted: a browser-session cookie. */
  maxAgeSec?: number
}

/**
 * `__Host-` cookies must be Secure, Path=/ and carry no Domain (RFC 6265bis §4.1.3.2);
 * every gatehouse cookie uses exactly these attributes so that deleting one always matches.
 */
export function serializeCookie(name: string, value: string, options: CookieOptions): string {
  let cookie = `${name}=${value}; Path=/; Secure; HttpOnly; SameSite=${SAME_SITE[options.sameSite]}`
  if (options.maxAgeSec !== undefined) cookie += `; Max-Age=${Math.max(0, Math.floor(options.maxAgeSec))}`
  return cookie
}

export function deleteCookie(name: string, sameSite: SameSite): string {
  return serializeCookie(name, '', { sameSite, maxAgeSec: 0 })
}
