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
  const values = req.headersDistinct?.host ?? (req.headers.host === undefined ? undefined : [req.headers.host])
  if (values === undefined) return true
  if (values.length !== 1) return false
  return isHostValue(values[0]!)
}

/** uri-host [":" port] (RFC 3986 characters, no userinfo), and a host and port the URL parser accepts. */
function isHostValue(host: string): boolean {
  if (!HOST_FIELD.test(host) || !URL.canParse(`http://${host}/`)) return false
  return new URL(`http://${host}/`).pathname === '/'
}

/** The host the browser asked for (lower-case, with port), for host-bound frontends; undefined if unusable. */
export function requestHost(req: IncomingMessage, trustProxy: boolean): string | undefined {
  const origin = requestOrigin(req, undefined, trustProxy)
  return origin === undefined ? undefined : new URL(origin).host
}

/**
 * The origin the browser used. A configured publicOrigin always wins; without it the Host header
 * is used, and X-Forwarded-Proto/Host only when the operator said a proxy in front is trusted.
 */
export function requestOrigin(req: IncomingMessage, publicOrigin: string | undefined, trustProxy: boolean): string | undefined {
  if (publicOrigin) return publicOrigin
  let host = req.headers.host
  let proto = (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http'
  if (trustProxy) {
    const fwdHost = nearestListValue(req.headers['x-forwarded-host'])
    const fwdProto = nearestListValue(req.headers['x-forwarded-proto'])
    if (fwdHost) host = fwdHost
    if (fwdProto === 'http' || fwdProto === 'https') proto = fwdProto
  }
  if (!host || !isHostValue(host)) return undefined
  return new URL(`${proto}://${host}/`).origin
}

/**
 * The value the trusted proxy in front added: the last one. Earlier values came from further away,
 * possibly from the client itself (a proxy that appends keeps what the client sent).
 */
function nearestListValue(value: string | string[] | undefined): string | undefined {
  const text = Array.isArray(value) ? value.join(',') : value
  return text?.split(',').at(-1)?.trim() || undefined
}
