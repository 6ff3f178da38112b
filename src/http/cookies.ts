/** "none" only with `cors.allowedOrigins` (an SPA on another site; config validation enforces it). */
export type SameSite = 'strict' | 'lax' | 'none'

const MAX_COOKIES = 200

/** Names that came more than once in the Cookie header a map was parsed from (only maps with repeats are listed). */
const REPEATED = new WeakMap<ReadonlyMap<string, string>, ReadonlySet<string>>()
const NONE_REPEATED: ReadonlySet<string> = new Set()

/**
 * Parses a Cookie header. Malformed pairs are skipped, never thrown on. The map keeps the first value
 * of a repeated name; `repeatedCookieNames` tells which names repeated, so that a reader for whom a
 * repeat is ambiguous (the session cookie) can refuse to pick one.
 */
export function parseCookies(header: string | undefined): Map<string, string> {
  const cookies = new Map<string, string>()
  if (!header) return cookies
  let repeated: Set<string> | undefined
  let count = 0
  for (const pair of header.split(';')) {
    // Past the cap no new cookie is kept, but repeats are still seen: 199 pads cannot hide a second session cookie.
    const full = ++count > MAX_COOKIES
    const eq = pair.indexOf('=')
    if (eq <= 0) continue
    const name = pair.slice(0, eq).trim()
    if (!name) continue
    if (cookies.has(name)) {
      ;(repeated ??= new Set()).add(name)
      continue
    }
    if (full) continue
    let value = pair.slice(eq + 1).trim()
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1)
    cookies.set(name, value)
  }
  if (repeated) REPEATED.set(cookies, repeated)
  return cookies
}

/**
 * The names a parsed Cookie header carried more than once (case-sensitive, after trimming, as
 * `parseCookies` reads names). A browser sends a name twice when a second cookie of that name exists
 * for another path or domain, or a nameless one whose value is `name=…` (cookie tossing): which one is
 * the real one cannot be told. Empty for a map `parseCookies` did not make.
 */
export function repeatedCookieNames(cookies: ReadonlyMap<string, string>): ReadonlySet<string> {
  return REPEATED.get(cookies) ?? NONE_REPEATED
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
