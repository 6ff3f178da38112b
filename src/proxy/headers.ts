import type { IncomingHttpHeaders } from 'node:http'

/** RFC 9110 §7.6.1 connection-specific fields, plus the legacy ones proxies must not forward. */
export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
])

const NONE_LISTED: ReadonlySet<string> = new Set()
const CLOSE_LISTED: ReadonlySet<string> = new Set(['close'])
// Also what a `keep_alive` header is read as (normalHeaderName), which the raw-name hop-by-hop check misses.
const KEEP_ALIVE_LISTED: ReadonlySet<string> = new Set(['keep-alive'])

/** Names listed in the Connection header are hop-by-hop too (RFC 9110 §7.6.1); compared in their normal spelling. */
function connectionListed(
  headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>,
): ReadonlySet<string> {
  const value = headers.connection
  // The two usual values, without a Set per message.
  if (value === undefined) return NONE_LISTED
  if (value === 'keep-alive') return KEEP_ALIVE_LISTED
  if (value === 'close') return CLOSE_LISTED
  const text = Array.isArray(value) ? value.join(',') : (value ?? '')
  return new Set(
    text
      .split(',')
      .map((name) => normalHeaderName(name.trim()))
      .filter(Boolean),
  )
}

/**
 * A header name as the strip lists spell it: lower case, `_` read as `-`. Node's parser accepts `_`
 * in names, and a server that maps headers to CGI-style variables (`HTTP_X_FORWARDED_FOR`: CGI,
 * FastCGI/PHP, WSGI, Rack) may read `X_Forwarded_For` or `X-Forwarded_For` as the dashed header — some
 * drop such names, not all; so every underscore/dash mix of a name gatehouse strips or sets is stripped too.
 */
export function normalHeaderName(name: string): string {
  // node:http hands header names over in lower case already: no copy for them.
  const lower = /[A-Z]/.test(name) ? name.toLowerCase() : name
  return lower.includes('_') ? lower.replaceAll('_', '-') : lower
}

/**
 * Method overrides some frameworks honour (ASP.NET Core, Express method-override): the method the
 * upstream acts on must be the one gatehouse checked (`remoteApis[].methods`), so these never pass.
 */
export const METHOD_OVERRIDES: ReadonlySet<string> = new Set([
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
])

/** Client-address headers some upstreams trust; only X-Forwarded-For, set by gatehouse, may say who the client is. */
export const CLIENT_IP_HEADERS: ReadonlySet<string> = new Set([
  'x-real-ip',
  'true-client-ip',
  'x-client-ip',
  'client-ip',
  'cf-connecting-ip',
  'fastly-client-ip',
  'x-cluster-client-ip',
])

/**
 * URL-rewrite headers: IIS, Symfony, Zend/Laminas and Envoy-fronted apps route on these instead of the
 * request line, so a client could reach a path other than the one gatehouse matched and forwarded.
 */
export const URL_REWRITE_HEADERS: ReadonlySet<string> = new Set([
  'x-original-url',
  'x-rewrite-url',
  'x-original-uri',
  'x-envoy-original-path',
])

/**
 * Headers some upstreams take for their own host or outbound proxy: `Proxy` becomes HTTP_PROXY in CGI,
 * PHP-FPM and WSGI apps (httpoxy), which then send their outgoing calls — with tokens — through it.
 */
export const HOST_OVERRIDE_HEADERS: ReadonlySet<string> = new Set([
  'proxy',
  'x-host',
  'x-original-host',
  'x-http-host-override',
  'x-forwarded-server',
])

export interface UpstreamHeaderOptions {
  /** Lower-case anti-forgery header name: never forwarded. */
  antiForgeryHeader: string
  /** The access token; sent as `Bearer`, or as `DPoP` with `dpopProof`. */
  bearer: string | undefined
  /** A DPoP proof (RFC 9449) for this very request, when the token is DPoP-bound. */
  dpopProof?: string | undefined
  clientIp: string | undefined
  /** The browser-facing origin, for X-Forwarded-Proto/Host. */
  origin: string
  trustProxy: boolean
  /** Keep the WebSocket handshake fields (the upgrade itself is added by the HTTP client). */
  websocket?: boolean
}

/**
 * What the upstream receives: the browser's headers minus everything that is gatehouse's or the
 * connection's — cookies, the browser's Authorization and DPoP, the anti-forgery header, hop-by-hop
 * fields, Host, client-supplied forwarding, client-address, method-override and URL-rewrite headers,
 * each in every underscore/dash spelling (`normalHeaderName`) — plus the token (and its proof) and X-Forwarded-*.
 */
export function upstreamRequestHeaders(
  incoming: IncomingHttpHeaders,
  o: UpstreamHeaderOptions,
): Record<string, string | string[]> {
  const listed = connectionListed(incoming)
  const antiForgery = verdictOf(o.antiForgeryHeader).normal
  const out: Record<string, string | string[]> = {}
  for (const name in incoming) {
    const value = incoming[name]
    if (value === undefined) continue
    const verdict = verdictOf(name)
    if (verdict.drop) continue
    // Every check is on the normal spelling: `X_Forwarded_For` goes where `X-Forwarded-For` goes.
    if (listed.has(verdict.normal) || verdict.normal === antiForgery) continue
    // The handshake fields pass for a WebSocket upgrade only, and only as themselves (never `Sec_WebSocket_Key`).
    if (verdict.websocket && (!o.websocket || name.includes('_'))) continue
    out[name] = value
  }
  const previousFor = o.trustProxy ? incoming['x-forwarded-for'] : undefined
  const previous = Array.isArray(previousFor) ? previousFor.join(', ') : previousFor
  const chain = previous ? (o.clientIp ? `${previous}, ${o.clientIp}` : previous) : o.clientIp
  if (chain) out['x-forwarded-for'] = chain
  const origin = partsOfOrigin(o.origin)
  out['x-forwarded-proto'] = origin.protocol
  out['x-forwarded-host'] = origin.host
  if (o.bearer !== undefined && o.dpopProof !== undefined) {
    out.authorization = `DPoP ${o.bearer}`
    out.dpop = o.dpopProof
  } else if (o.bearer !== undefined) out.authorization = `Bearer ${o.bearer}`
  return out
}

/** What the request-header filter decides from a header's name alone. */
interface NameVerdict {
  /** `normalHeaderName(name)`. */
  normal: string
  /** Never forwarded, whatever the request. */
  drop: boolean
  /** A WebSocket handshake field (`sec-websocket-*`). */
  websocket: boolean
}

/** Browsers send the same dozen names on every request; the verdict is made once per name. */
const NAME_VERDICTS_LIMIT = 4096
/** Longer names (up to the 16 KiB header limit) are judged every time: a client must not pin memory with them. */
const MEMO_NAME_CHARS = 64
const nameVerdicts = new Map<string, NameVerdict>()

function verdictOf(name: string): NameVerdict {
  let verdict = nameVerdicts.get(name)
  if (verdict === undefined) {
    const normal = normalHeaderName(name)
    verdict = { normal, drop: alwaysDropped(normal), websocket: normal.startsWith('sec-websocket-') }
    if (name.length > MEMO_NAME_CHARS) return verdict
    // Made-up names (up to ~100 a request) can only fill it: then it starts over.
    if (nameVerdicts.size >= NAME_VERDICTS_LIMIT) nameVerdicts.clear()
    nameVerdicts.set(name, verdict)
  }
  return verdict
}

/** Names (in their normal spelling) that never go upstream: gatehouse's, the connection's, and those an upstream could be misled by. */
function alwaysDropped(normal: string): boolean {
  return (
    HOP_BY_HOP.has(normal) ||
    // A browser's DPoP header is dropped with its Authorization: only gatehouse's own proofs go upstream.
    normal === 'host' ||
    normal === 'cookie' ||
    normal === 'authorization' ||
    normal === 'dpop' ||
    // undici does not implement 100-continue; the body is streamed anyway.
    normal === 'expect' ||
    METHOD_OVERRIDES.has(normal) ||
    URL_REWRITE_HEADERS.has(normal) ||
    HOST_OVERRIDE_HEADERS.has(normal) ||
    normal === 'forwarded' ||
    normal.startsWith('x-forwarded-') ||
    CLIENT_IP_HEADERS.has(normal)
  )
}

/** A handful of origins at most (publicOrigin, the frontends', the Host-derived ones): bounded all the same. */
const ORIGIN_PARTS_LIMIT = 256
const originParts = new Map<string, { protocol: string; host: string }>()

/** Scheme (without ":") and host of an origin gatehouse computed or was configured with; parsed once per origin. */
function partsOfOrigin(origin: string): { protocol: string; host: string } {
  let parts = originParts.get(origin)
  if (parts === undefined) {
    const url = new URL(origin)
    parts = { protocol: url.protocol.slice(0, -1), host: url.host }
    if (originParts.size >= ORIGIN_PARTS_LIMIT) originParts.clear()
    originParts.set(origin, parts)
  }
  return parts
}

/**
 * The value the trusted proxy in front added to a list header (X-Forwarded-For, -Host, -Proto): the
 * last one. Earlier values came from further away, possibly from the client itself (a proxy that
 * appends keeps what the client sent).
 */
export function nearestListValue(value: string | string[] | undefined): string | undefined {
  const text = Array.isArray(value) ? value.join(',') : value
  return text?.split(',').at(-1)?.trim() || undefined
}

/**
 * Whether an upstream Set-Cookie line must not reach the browser: one that names no cookie, or whose
 * name or value starts with `protectedPrefix` (the session cookie's name, which every gatehouse cookie
 * name starts with: partitions' `<name>-<frontend>`, chunks' `<name>C1`, pending logins' `<name>.login.`).
 *
 * The line is read as a browser reads it (RFC 6265bis §5.6): the name-value pair ends at the first
 * `;`; without `=` it is all value and the name is empty; name and value are trimmed of whitespace.
 * - A nameless cookie (`=__Host-gatehouse=x`, ` =x`, `x`) is sent back as its value alone, so a browser
 *   would present `__Host-gatehouse=x` as gatehouse's own cookie: every nameless line is dropped.
 * - "Starts with" compares case-insensitively. Browsers keep `__HOST-GATEHOUSE` apart from
 *   `__Host-gatehouse`, and gatehouse reads only the exact name; but a case-insensitive cookie reader
 *   in front of or behind gatehouse (ASP.NET Core's is one) would not, and the `__Host-` prefix itself
 *   is matched case-insensitively by browsers. No API needs such a name.
 * - The value is compared with one leading `"` removed (`x="__Host-gatehouse=y"`), as it would be read.
 *   A value that starts with gatehouse's cookie name has no use but to look like its cookie to a
 *   parser that splits differently; a value that merely contains the name elsewhere is kept.
 */
export function isGatehouseCookieLine(line: string, protectedPrefix: string): boolean {
  const semicolon = line.indexOf(';')
  const pair = semicolon === -1 ? line : line.slice(0, semicolon)
  const eq = pair.indexOf('=')
  const name = eq === -1 ? '' : pair.slice(0, eq).trim()
  const value = (eq === -1 ? pair : pair.slice(eq + 1)).trim()
  if (name === '') return true
  const prefix = protectedPrefix.toLowerCase()
  return (
    name.toLowerCase().startsWith(prefix) ||
    (value.startsWith('"') ? value.slice(1) : value).toLowerCase().startsWith(prefix)
  )
}

export interface DownstreamHeaderOptions {
  /**
   * The request carried a user's token from a session (`user`, `userOrClient`, `userOrNone` with a
   * session; not a client-credentials token, whose answer is the same for every user): an answer the
   * upstream gave no Cache-Control gets `private`, so no shared cache keeps one user's data for another.
   */
  userToken?: boolean
}

/**
 * What the browser receives from the upstream: hop-by-hop fields dropped, no Set-Cookie that could
 * overwrite or shadow gatehouse's own cookies (`isGatehouseCookieLine`: an upstream must not be able to
 * plant a session), and no CORS grant (`Access-Control-*`): the upstream's answer goes out under
 * gatehouse's origin, and only gatehouse decides which other origin may read it or pass a preflight
 * there — none, unless `cors.allowedOrigins` lists it (src/http/cors.ts; RFC 10017 §6.1.3.3.2).
 * An answer to a user-token call without Cache-Control gets `Cache-Control: private`; an upstream's
 * own Cache-Control, whatever it says, is never changed.
 */
export function downstreamResponseHeaders(
  upstream: Record<string, string | string[] | undefined>,
  gatehouseCookiePrefix: string,
  options: DownstreamHeaderOptions = {},
): Record<string, string | string[]> {
  const listed = connectionListed(upstream)
  const out: Record<string, string | string[]> = {}
  for (const name in upstream) {
    const value = upstream[name]
    if (value === undefined || HOP_BY_HOP.has(name) || listed.has(normalHeaderName(name))) continue
    if (name.startsWith('access-control-')) continue
    if (name === 'set-cookie') {
      const kept = (Array.isArray(value) ? value : [value]).filter(
        (line) => !isGatehouseCookieLine(line, gatehouseCookiePrefix),
      )
      if (kept.length) out[name] = kept
      continue
    }
    out[name] = value
  }
  // A blank Cache-Control says nothing (RFC 9111 §5.2: no directives), so it counts as none.
  if (options.userToken && [out['cache-control'] ?? []].flat().every((v) => v.trim() === ''))
    out['cache-control'] = 'private'
  return out
}

/** Response headers a cross-origin script reads without being told (Fetch §2.2.6, CORS-safelisted response header names). */
const SAFELISTED_RESPONSE: ReadonlySet<string> = new Set([
  'cache-control',
  'content-language',
  'content-length',
  'content-type',
  'expires',
  'last-modified',
  'pragma',
])

/**
 * `Vary` with `Origin` in it. Every answer of a CORS route says so while CORS is on, granted or not,
 * so that a shared cache never hands one origin's answer to another (Fetch §3.2.5).
 */
export function varyWithOrigin(vary: string | string[] | undefined): string {
  if (vary === undefined) return 'Origin'
  const text = Array.isArray(vary) ? vary.join(', ') : vary
  if (text.trim() === '') return 'Origin'
  return text.split(',').some((v) => /^\s*(origin|\*)\s*$/i.test(v)) ? text : `${text}, Origin`
}

/**
 * `Access-Control-Expose-Headers` for a remote API's answer to an allowed origin: its headers beyond
 * the safelisted ones, so the SPA reads what it would read on gatehouse's own origin (Location, ETag,
 * Link…). Never Set-Cookie (browsers hide it from scripts anyway) nor CORS headers. undefined: none.
 */
export function exposedHeaders(names: Iterable<string>): string | undefined {
  const out: string[] = []
  for (const raw of names) {
    const name = raw.toLowerCase()
    if (SAFELISTED_RESPONSE.has(name) || name === 'set-cookie' || name === 'vary' || name.startsWith('access-control-'))
      continue
    out.push(name)
  }
  return out.length ? out.join(', ') : undefined
}

/** A remote API's answer headers (already stripped of the upstream's own CORS headers) while CORS is on. */
export function corsUpstreamHeaders(headers: Record<string, string | string[]>, granted: boolean): void {
  headers.vary = varyWithOrigin(headers.vary)
  if (!granted) return
  const exposed = exposedHeaders(Object.keys(headers))
  if (exposed !== undefined) headers['access-control-expose-headers'] = exposed
}
