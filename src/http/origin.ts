import type { IncomingMessage } from 'node:http'

export function isLoopbackHost(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || hostname === '::1' || /^127(\.\d{1,3}){3}$/.test(hostname)
}

/** Characters of uri-host [":" port] (RFC 3986): no userinfo, path, query, fragment, space or backslash. */
const HOST_FIELD = /^[A-Za-z0-9\-._~!$&'()*+,;=:[\]]+$/

/**
 * RFC 9112 §3.2: a request with more than one Host line or an invalid Host value gets 400, also when
 * publicOrigin makes the Host header otherwise unused. An absent Host (HTTP/1.0, HTTP/2 compat) is
 * left to requestOrigin: fine with publicOrigin, refused without it.
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
function isHostValue(host: string): boolean {
  return hostValues.get(host, (value) => {
    if (!HOST_FIELD.test(value) || !URL.canParse(`http://${value}/`)) return false
    return new URL(`http://${value}/`).pathname === '/'
  })
}

/** `proto://host` normalised by the URL parser (lower-case, default port dropped), and its host. */
function parsedOrigin(proto: string, host: string): { origin: string; host: string } | undefined {
  return origins.get(`${proto}://${host}`, () => {
    if (!isHostValue(host)) return undefined
    const url = new URL(`${proto}://${host}/`)
    return { origin: url.origin, host: url.host }
  })
}

const originParts = new Memo<{ protocol: string; host: string }>(256)

/** Scheme (without ":") and host of an origin gatehouse computed or was configured with. */
export function partsOfOrigin(origin: string): { protocol: string; host: string } {
  return originParts.get(origin, () => {
    const url = new URL(origin)
    return { protocol: url.protocol.slice(0, -1), host: url.host }
  })
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
export function requestOrigin(req: IncomingMessage, publicOrigin: string | undefined, trustProxy: boolean): string | undefined {
  if (publicOrigin) return publicOrigin
  return browserOrigin(req, trustProxy)?.origin
}

function browserOrigin(req: IncomingMessage, trustProxy: boolean): { origin: string; host: string } | undefined {
  let host = req.headers.host
  let proto = (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http'
  if (trustProxy) {
    const fwdHost = nearestListValue(req.headers['x-forwarded-host'])
    const fwdProto = nearestListValue(req.headers['x-forwarded-proto'])
    if (fwdHost) host = fwdHost
    if (fwdProto === 'http' || fwdProto === 'https') proto = fwdProto
  }
  if (!host) return undefined
  return parsedOrigin(proto, host)
}

/**
 * The value the trusted proxy in front added: the last one. Earlier values came from further away,
 * possibly from the client itself (a proxy that appends keeps what the client sent).
 */
function nearestListValue(value: string | string[] | undefined): string | undefined {
  const text = Array.isArray(value) ? value.join(',') : value
  return text?.split(',').at(-1)?.trim() || undefined
}
