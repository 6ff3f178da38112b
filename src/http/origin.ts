import type { IncomingMessage } from 'node:http'
import { nearestListValue } from '../proxy/headers.ts'

export function isLoopbackHost(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || hostname === '::1' || /^127(\.\d{1,3}){3}$/.test(hostname)
}

/** Characters of uri-host [":" port] (RFC 3986): no userinfo, path, query, fragment, space or backslash. */
const HOST_FIELD = /^[A-Za-z0-9\-._~!$&'()*+,;=:[\]]+$/

/**
 * RFC 9112 §3.2: a request with more than one Host line or an invalid Host value gets 400, whatever
 * the configuration. An absent Host (HTTP/1.0, HTTP/2 compat) is left to the caller: with gatehouse's
 * own origins configured it names none of them (421, see OwnOrigins), without them it gives no origin (400).
 */
export function hasUsableHostHeader(req: IncomingMessage): boolean {
  const host = req.headers.host
  if (host === undefined) return true
  // Node keeps the first of several Host lines in `headers`; the raw lines show the others.
  // (Not `headersDistinct`: it builds a copy of every header.)
  let lines = 0
  const raw = req.rawHeaders
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!
    if (name.length === 4 && name.toLowerCase() === 'host') lines++
  }
  if (lines > 1) return false
  return isHostValue(host)
}

/**
 * A deployment sees a handful of Host values, and parsing one costs more than the rest of a proxied
 * request's routing: results are memoised. Bounded, because the values come from clients: a flood of
 * distinct hosts only empties the memo.
 */
class Memo<V> {
  readonly #entries = new Map<string, V>()
  readonly #limit: number

  constructor(limit: number) {
    this.#limit = limit
  }

  get(key: string, compute: (key: string) => V): V {
    const known = this.#entries.get(key)
    if (known !== undefined || this.#entries.has(key)) return known as V
    const value = compute(key)
    if (this.#entries.size >= this.#limit) this.#entries.clear()
    this.#entries.set(key, value)
    return value
  }
}

const hostValues = new Memo<boolean>(256)
const origins = new Memo<{ origin: string; host: string } | undefined>(256)

/** uri-host [":" port] (RFC 3986 characters, no userinfo), and a host and port the URL parser accepts. */
export function isHostValue(host: string): boolean {
  return hostValues.get(host, checkHostValue)
}

// The memos' compute functions live at module level: a closure made per call would cost an allocation per request.
function checkHostValue(value: string): boolean {
  if (!HOST_FIELD.test(value) || !URL.canParse(`http://${value}/`)) return false
  return new URL(`http://${value}/`).pathname === '/'
}

/** `proto://host` normalised by the URL parser (lower-case, default port dropped), and its host. */
function parsedOrigin(proto: string, host: string): { origin: string; host: string } | undefined {
  return origins.get(`${proto}://${host}`, parseOrigin)
}

function parseOrigin(origin: string): { origin: string; host: string } | undefined {
  if (!isHostValue(origin.slice(origin.indexOf('://') + 3))) return undefined
  const url = new URL(`${origin}/`)
  return { origin: url.origin, host: url.host }
}

/** The host the browser asked for (lower-case, with port), for host-bound frontends; undefined if unusable. */
export function requestHost(req: IncomingMessage, trustProxy: boolean): string | undefined {
  const browser = browserOrigin(req, trustProxy)
  return browser === undefined ? undefined : browser.host
}

/**
 * The origin the browser used. A configured publicOrigin always wins; without it the Host header
 * is used, and X-Forwarded-Proto/Host only when the operator said a proxy in front is trusted.
 */
export function requestOrigin(
  req: IncomingMessage,
  publicOrigin: string | undefined,
  trustProxy: boolean,
): string | undefined {
  if (publicOrigin) return publicOrigin
  return browserOrigin(req, trustProxy)?.origin
}

function browserOrigin(req: IncomingMessage, trustProxy: boolean): { origin: string; host: string } | undefined {
  const host = requestedHost(req, trustProxy)
  let proto = (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http'
  if (trustProxy) {
    const fwdProto = nearestListValue(req.headers['x-forwarded-proto'])
    if (fwdProto === 'http' || fwdProto === 'https') proto = fwdProto
  }
  if (!host) return undefined
  return parsedOrigin(proto, host)
}

/**
 * The host value the browser asked for, as received: the `Host` header (HTTP/2: `:authority`, which
 * clients send instead), or with `trustProxy` the nearest `X-Forwarded-Host` when there is one.
 * Unvalidated (isHostValue); undefined when absent.
 */
export function requestedHost(req: IncomingMessage, trustProxy: boolean): string | undefined {
  if (trustProxy) {
    const forwarded = nearestListValue(req.headers['x-forwarded-host'])
    if (forwarded) return forwarded
  }
  if (req.headers.host) return req.headers.host
  const authority = (req.headers as Record<string, string | string[] | undefined>)[':authority']
  return typeof authority === 'string' && authority !== '' ? authority : undefined
}

/** A host value's lookup key: lower-case host name (IP literals in canonical form) and the port if one is given. */
const hostKeys = new Memo<string | undefined>(256)

function hostKey(host: string): string | undefined {
  return hostKeys.get(host, computeHostKey)
}

function computeHostKey(value: string): string | undefined {
  if (!isHostValue(value)) return undefined
  // The port, if any, is split off by hand: the URL parser would drop one that is the default of the
  // scheme it is given, and "app.example.com:80" must not pass for an https origin's host.
  let name = value
  let port: string | undefined
  const colon = value.lastIndexOf(':')
  if (colon !== -1 && colon > value.lastIndexOf(']')) {
    name = value.slice(0, colon)
    port = value.slice(colon + 1) || undefined
  }
  const hostname = new URL(`http://${name}/`).hostname
  return port === undefined ? hostname : `${hostname}:${Number(port)}`
}

/**
 * The origins gatehouse answers for: publicOrigin and each host-based frontend's origin. A request
 * whose host (Host, or the trusted X-Forwarded-Host) names none of them is misdirected — a DNS
 * rebinding page, a scanner, a client that reached gatehouse by its address — and is refused before
 * anything else (src/http/context.ts originOf, src/http/dispatch.ts).
 *
 * Hosts are compared as browsers send them: case-insensitively, IP literals in canonical form, and a
 * port equal to the origin's (its explicit port, or the scheme's default: "app.example.com:443" is
 * "https://app.example.com"); a host without a port matches an origin without one, whatever the
 * scheme the request came in with (behind a TLS-terminating proxy it is http). A trailing dot is
 * another host ("app.example.com." is another origin to a browser, with other cookies).
 */
export class OwnOrigins {
  readonly all: readonly string[]
  readonly #byHost = new Map<string, string>()

  constructor(origins: Iterable<string>) {
    this.all = [...new Set(origins)]
    for (const origin of this.all) {
      for (const key of originKeys(origin)) if (!this.#byHost.has(key)) this.#byHost.set(key, origin)
    }
  }

  /** The configured origin a host value (as received) names; undefined for any other, a malformed or no host. */
  match(host: string | undefined): string | undefined {
    if (host === undefined) return undefined
    const key = hostKey(host)
    return key === undefined ? undefined : this.#byHost.get(key)
  }
}

/** The host values that name an origin: "host:port" with its effective port, and "host" alone for a default port. */
export function originKeys(origin: string): string[] {
  const url = new URL(origin)
  const port = url.port || (url.protocol === 'https:' ? '443' : '80')
  return url.port === '' ? [`${url.hostname}:${port}`, url.hostname] : [`${url.hostname}:${port}`]
}

/**
 * A host-based frontend's origin when the config gives none: publicOrigin's scheme with the frontend's
 * host, and publicOrigin's port when the host names none (the same listener serves both names).
 */
export function derivedFrontendOrigin(publicOrigin: string, host: string): string {
  const base = new URL(publicOrigin)
  const port = /:\d+$/.test(host) || base.port === '' ? '' : `:${base.port}`
  return new URL(`${base.protocol}//${host}${port}/`).origin
}

/** Whether an origin is one of a host value ("name" or "name:port"): the same name, and the same port if the host gives one. */
export function isOriginOfHost(origin: string, host: string): boolean {
  const key = hostKey(host)
  if (key === undefined) return false
  const name = key.replace(/:\d+$/, '')
  return name === new URL(origin).hostname && (name === key || originKeys(origin)[0] === key)
}
