import type { RequestContext } from './context.ts'
const BASE = 'http://gatehouse.invalid'
const MAX_LENGTH = 2048
const MAX_DECODINGS = 3

/**
 * A returnUrl must stay on this origin. Returns the normalised path+query+fragment (safe to put in
 * a Location header), or undefined for anything that a browser could resolve to another origin:
 * absolute and protocol-relative URLs, backslashes (browsers read `\` as `/`), control characters,
 * and their percent-encoded forms (in case a later hop decodes them).
 */
export function toLocalPath(value: string): string | undefined {
  return localPath(value, false)
}

function localPath(value: string, recheck: boolean): string | undefined {
  if (value.length === 0 || value.length > MAX_LENGTH) return undefined
  if (value[0] !== '/' || value.startsWith('//')) return undefined
  // Control characters are C0, DEL and C1 (Unicode Cc): U+0085 (NEL) is a line break to some consumers.
  if (/[\u0000-\u001F\u007F-\u009F\\]/.test(value)) return undefined
  let decoded = value
  for (let round = 0; ; round++) {
    let next: string
    try {
      next = decodeURIComponent(decoded)
    } catch {
      return undefined
    }
    if (next === decoded) break
    // Still changing after MAX_DECODINGS rounds: no honest returnUrl is encoded that deep.
    if (round === MAX_DECODINGS) return undefined
    decoded = next
  }
  if (/[\u0000-\u001F\u007F-\u009F]/.test(decoded) || /^\/[/\\]/.test(decoded) || decoded.includes('\\'))
    return undefined
  // The decoded form must not become protocol-relative once its dot segments are resolved either
  // (`/%2E/%2Fevil` → `/.//evil` → `//evil`), else the normalised output would decode to `//evil`.
  if (decoded !== value && !isLocalResolution(decoded)) return undefined
  const url = resolve(value)
  if (!url) return undefined
  const path = url.pathname + url.search + url.hash
  // Percent-encoding can grow a value ninefold; the limit holds for what gets sealed into cookies too.
  if (path.startsWith('//') || path.length > MAX_LENGTH) return undefined
  // Later hops decode the output, not the input: it must pass these checks itself and be stable
  // (`/./%2f..` normalises to `/%2f..`, which decodes to the protocol-relative `//..`).
  return path === value || (!recheck && localPath(path, true) === path) ? path : undefined
}

function resolve(value: string): URL | undefined {
  let url: URL
  try {
    url = new URL(value, BASE)
  } catch {
    return undefined
  }
  return url.origin === BASE ? url : undefined
}

function isLocalResolution(value: string): boolean {
  const url = resolve(value)
  return url !== undefined && !url.pathname.startsWith('//')
}

/**
 * scheme "://" host [":" port] of an absolute returnUrl, in plain ASCII: a DNS name, IPv4 or [IPv6].
 * No userinfo (`@`), percent-encoding, backslash, whitespace or non-ASCII (IDN homographs, full-width
 * dots): what browsers serialise (`location.href`) never has them, so nothing honest is lost.
 */
const ABSOLUTE = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?(?=[/?#]|$)/

/**
 * A returnUrl for /bff/login and /bff/logout: a local path (toLocalPath), or — for an SPA on another
 * origin — an absolute URL whose origin is in `allowedOrigins` (cors.allowedOrigins, normalised), its
 * path held to the local-path rules. Returns the normalised URL to redirect to, or undefined.
 * `https://SPA.example.com:443/x` is `https://spa.example.com/x`: the same origin, the same place.
 */
export function toReturnUrl(value: string, allowedOrigins?: ReadonlySet<string>): string | undefined {
  if (allowedOrigins === undefined || allowedOrigins.size === 0 || value.startsWith('/')) return toLocalPath(value)
  if (value.length > MAX_LENGTH) return undefined
  const authority = ABSOLUTE.exec(value)
  if (!authority) return undefined
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return undefined
  }
  if (url.username !== '' || url.password !== '' || !allowedOrigins.has(url.origin)) return undefined
  const rest = value.slice(authority[0].length)
  const path = toLocalPath(rest.startsWith('/') ? rest : `/${rest}`)
  if (path === undefined) return undefined
  const target = `${url.origin}${path}`
  return target.length > MAX_LENGTH ? undefined : target
}

/**
 * The request's `returnUrl` parameter: "/" when absent, undefined when invalid or repeated. With
 * `allowedOrigins` (cors.allowedOrigins) an absolute URL on one of them is accepted too.
 */
export function returnUrlParam(url: URL, allowedOrigins?: ReadonlySet<string>, fallback = '/'): string | undefined {
  const all = url.searchParams.getAll('returnUrl')
  if (all.length === 0) return fallback
  return all.length === 1 ? toReturnUrl(all[0]!, allowedOrigins) : undefined
}

export const RETURN_URL_RULE =
  'must be a single local path such as "/orders" (no scheme, host, "//", "\\" or control characters)'

/** RETURN_URL_RULE, saying that cors.allowedOrigins are possible too when set (without listing them to anyone who asks). */
export function returnUrlRule(allowedOrigins?: ReadonlySet<string>): string {
  return allowedOrigins === undefined || allowedOrigins.size === 0
    ? RETURN_URL_RULE
    : `${RETURN_URL_RULE}, or a URL on one of cors.allowedOrigins`
}

/** The app's own returnUrl rule (hooks.validateReturnUrl), after the built-in one: it can only narrow. */
export async function isReturnUrlAccepted(ctx: RequestContext, returnUrl: string): Promise<boolean> {
  const validate = ctx.services.hooks.validateReturnUrl
  return validate === undefined || (await validate(returnUrl, ctx.req)) === true
}
