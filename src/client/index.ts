/**
 * gatehouse/client — the browser side of gatehouse. No dependencies, no tokens: the SPA only ever
 * holds an HttpOnly session cookie it cannot read, and this module adds the anti-forgery header.
 */

/**
 * A claim from /bff/user. By default (Duende.BFF's shape) every IdP value is a string and `valueType`
 * names its type (null: a plain string; an XML-schema URI for booleans and numbers; "JSON" for objects);
 * with gatehouse's `user.claimValues: "json"` values are as the IdP sent them.
 */
export interface Claim {
  type: string
  value: string | number | boolean
  valueType?: string | null
}

export interface ClientOptions {
  /**
   * gatehouse's origin when the SPA is served from another one (gatehouse's `cors.allowedOrigins`
   * lists the SPA's): requests then go there with credentials, and returnUrls are absolute. Default
   * "" (same origin).
   */
  origin: string
  /** gatehouse's managementBasePath. Default "/bff". */
  basePath: string
  /** Anti-forgery header name and value. Default "X-CSRF: 1". */
  antiForgeryHeader: string
  antiForgeryValue: string
}

const settings: ClientOptions = { origin: '', basePath: '/bff', antiForgeryHeader: 'X-CSRF', antiForgeryValue: '1' }

/** Changes the defaults (only needed when gatehouse's managementBasePath or antiForgery differ). */
export function configure(changes: Partial<ClientOptions>): void {
  Object.assign(settings, changes)
  // "https://bff.example.com/" and "https://BFF.example.com" are the same origin; paths are appended to it.
  if (changes.origin) settings.origin = new URL(changes.origin).origin
}

/**
 * fetch() to gatehouse with the anti-forgery header and the session cookie: the app's own origin,
 * or with `configure({ origin })` gatehouse's (a path such as "/api/x" is sent there).
 */
export function bffFetch(input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers)
  headers.set(settings.antiForgeryHeader, settings.antiForgeryValue)
  const crossOrigin = settings.origin !== ''
  const target =
    crossOrigin && typeof input === 'string' && input.startsWith('/') && !input.startsWith('//')
      ? `${settings.origin}${input}`
      : input
  // The session cookie goes to gatehouse only: another origin given as a full URL gets no credentials.
  const toGatehouse =
    crossOrigin &&
    new URL(target instanceof Request ? target.url : String(target), location.href).origin === settings.origin
  return fetch(target, { ...init, headers, credentials: toGatehouse ? 'include' : 'same-origin' })
}

/**
 * The logged-in user's claims, or null when there is no session.
 * `slide: false` reads without extending a sliding session (use it for polling).
 */
export async function getUser(read: { slide?: boolean } = {}): Promise<Claim[] | null> {
  const res = await bffFetch(`${settings.basePath}/user${read.slide === false ? '?slide=false' : ''}`, {
    cache: 'no-store',
  })
  if (res.status === 401) return null
  if (!res.ok) throw new Error(`gatehouse: ${settings.basePath}/user answered ${res.status}`)
  return (await res.json()) as Claim[] | null
}

/** The first value of a claim type, e.g. `claimValue(user, 'name')`. */
export function claimValue(claims: readonly Claim[] | null, type: string): Claim['value'] | undefined {
  return claims?.find((c) => c.type === type)?.value
}

/** Navigates to the login; comes back to `returnUrl` (a local path of this app; default: the current page). */
export function login(returnUrl: string = currentPath()): void {
  location.assign(`${settings.origin}${settings.basePath}/login?returnUrl=${encodeURIComponent(absolute(returnUrl))}`)
}

/** Logs out at gatehouse and the IdP; comes back to `returnUrl` (a local path; default "/"). */
export async function logout(returnUrl = '/'): Promise<void> {
  const user = await getUser({ slide: false })
  const logoutUrl = claimValue(user, 'bff:logout_url')
  // Only ever navigate to gatehouse's own logout endpoint, whatever the claims say.
  const base =
    typeof logoutUrl === 'string' && logoutUrl.startsWith(`${settings.basePath}/logout?`)
      ? logoutUrl
      : `${settings.basePath}/logout`
  location.assign(
    `${settings.origin}${base}${base.includes('?') ? '&' : '?'}returnUrl=${encodeURIComponent(absolute(returnUrl))}`,
  )
}

function currentPath(): string {
  return `${location.pathname}${location.search}${location.hash}`
}

/** A local path as gatehouse must get it: absolute on this page's origin when gatehouse is on another one. */
function absolute(path: string): string {
  return settings.origin !== '' && path.startsWith('/') ? `${location.origin}${path}` : path
}

export interface SessionEndOptions {
  /** Polling interval when Server-Sent Events are unavailable. Default 30 s. */
  pollIntervalMs?: number
}

/**
 * Calls `callback` once when this tab's session ends — logout in another tab, back-channel logout
 * from the IdP, revocation or expiry — via `GET /bff/session-events` (Server-Sent Events), falling
 * back to polling `/bff/user?slide=false`. Returns a function that stops listening.
 */
export function onSessionEnd(callback: (reason: string) => void, options: SessionEndOptions = {}): () => void {
  const pollIntervalMs = options.pollIntervalMs ?? 30_000
  let stopped = false
  let source: EventSource | undefined
  let timer: ReturnType<typeof setInterval> | undefined

  const stop = () => {
    stopped = true
    source?.close()
    if (timer !== undefined) clearInterval(timer)
  }
  const end = (reason: string) => {
    if (stopped) return
    stop()
    callback(reason)
  }
  /** Asks /bff/user once; true when there is no session any more. */
  const isGone = async () => {
    try {
      return (await getUser({ slide: false })) === null
    } catch {
      return false // gatehouse unreachable: not a verdict on the session
    }
  }
  const poll = () => {
    timer ??= setInterval(() => {
      void isGone().then((gone) => gone && end('ended'))
    }, pollIntervalMs)
  }

  if (typeof EventSource !== 'function') {
    poll()
    return stop
  }
  source = new EventSource(`${settings.origin}${settings.basePath}/session-events`, {
    withCredentials: settings.origin !== '',
  })
  source.addEventListener('session-end', (event) => {
    let reason = 'ended'
    try {
      reason = (JSON.parse((event as MessageEvent<string>).data) as { reason?: string }).reason ?? reason
    } catch {
      // keep the generic reason
    }
    end(reason)
  })
  source.addEventListener('error', () => {
    // EventSource retries network errors by itself; a refused stream (401: no session) stays closed.
    if (source?.readyState !== EventSource.CLOSED || stopped) return
    void isGone().then((gone) => (gone ? end('ended') : poll()))
  })
  return stop
}
