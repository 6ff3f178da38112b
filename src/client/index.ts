/**
 * gatehouse/client — the browser side of gatehouse. No dependencies, no tokens: the SPA only ever
 * holds an HttpOnly session cookie it cannot read, and this module adds the anti-forgery header.
 */

export interface Claim {
  type: string
  value: string | number | boolean
  valueType?: 'json'
}

export interface ClientOptions {
  /** gatehouse's managementBasePath. Default "/bff". */
  basePath: string
  /** Anti-forgery header name and value. Default "X-CSRF: 1". */
  antiForgeryHeader: string
  antiForgeryValue: string
}

const options: ClientOptions = { basePath: '/bff', antiForgeryHeader: 'X-CSRF', antiForgeryValue: '1' }

/** Changes the defaults (only needed when gatehouse's managementBasePath or antiForgery differ). */
export function configure(changes: Partial<ClientOptions>): void {
  Object.assign(options, changes)
}

/** fetch() for the app's own origin with the anti-forgery header and the session cookie. */
export function bffFetch(input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers)
  headers.set(options.antiForgeryHeader, options.antiForgeryValue)
  return fetch(input, { ...init, headers, credentials: 'same-origin' })
}

/**
 * The logged-in user's claims, or null when there is no session.
 * `slide: false` reads without extending a sliding session (use it for polling).
 */
export async function getUser(read: { slide?: boolean } = {}): Promise<Claim[] | null> {
  const res = await bffFetch(`${options.basePath}/user${read.slide === false ? '?slide=false' : ''}`, { cache: 'no-store' })
  if (res.status === 401) return null
  if (!res.ok) throw new Error(`gatehouse: ${options.basePath}/user answered ${res.status}`)
  return (await res.json()) as Claim[] | null
}

/** The first value of a claim type, e.g. `claimValue(user, 'name')`. */
export function claimValue(claims: readonly Claim[] | null, type: string): Claim['value'] | undefined {
  return claims?.find((c) => c.type === type)?.value
}

/** Navigates to the login; comes back to `returnUrl` (a local path; default: the current page). */
export function login(returnUrl: string = currentPath()): void {
  location.assign(`${options.basePath}/login?returnUrl=${encodeURIComponent(returnUrl)}`)
}

/** Logs out at gatehouse and the IdP; comes back to `returnUrl` (a local path; default "/"). */
export async function logout(returnUrl = '/'): Promise<void> {
  const user = await getUser({ slide: false })
  const logoutUrl = claimValue(user, 'bff:logout_url')
  // Only ever navigate to gatehouse's own logout endpoint, whatever the claims say.
  const base = typeof logoutUrl === 'string' && logoutUrl.startsWith(`${options.basePath}/logout?`) ? logoutUrl : `${options.basePath}/logout`
  location.assign(`${base}${base.includes('?') ? '&' : '?'}returnUrl=${encodeURIComponent(returnUrl)}`)
}

function currentPath(): string {
  return `${location.pathname}${location.search}${location.hash}`
}
