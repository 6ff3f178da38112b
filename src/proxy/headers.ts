import type { IncomingHttpHeaders } from 'node:http'
import { partsOfOrigin } from '../http/origin.ts'

/** RFC 9110 §7.6.1 connection-specific fields, plus the legacy ones proxies must not forward. */
export const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings'])

const NONE_LISTED: ReadonlySet<string> = new Set()

/** Names listed in the Connection header are hop-by-hop too (RFC 9110 §7.6.1). */
function connectionListed(headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>): ReadonlySet<string> {
  const value = headers.connection
  if (value === undefined) return NONE_LISTED
  const text = Array.isArray(value) ? value.join(',') : (value ?? '')
  return new Set(text.split(',').map((name) => name.trim().toLowerCase()).filter(Boolean))
}

/**
 * Method overrides some frameworks honour (ASP.NET Core, Express method-override): the method the
 * upstream acts on must be the one gatehouse checked (`remoteApis[].methods`), so these never pass.
 */
export const METHOD_OVERRIDES: ReadonlySet<string> = new Set(['x-http-method-override', 'x-http-method', 'x-method-override'])

/** Client-address headers some upstreams trust; only X-Forwarded-For, set by gatehouse, may say who the client is. */
export const CLIENT_IP_HEADERS: ReadonlySet<string> = new Set(['x-real-ip', 'true-client-ip', 'x-client-ip', 'cf-connecting-ip', 'fastly-client-ip', 'x-cluster-client-ip'])

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
 * fields, Host and client-supplied forwarding headers — plus the token (and its proof) and X-Forwarded-*.
 */
export function upstreamRequestHeaders(incoming: IncomingHttpHeaders, o: UpstreamHeaderOptions): Record<string, string | string[]> {
  const listed = connectionListed(incoming)
  const out: Record<string, string | string[]> = {}
  for (const name in incoming) {
    const value = incoming[name]
    if (value === undefined || HOP_BY_HOP.has(name) || listed.has(name)) continue
    // A browser's DPoP header is dropped with its Authorization: only gatehouse's own proofs go upstream.
    if (name === 'host' || name === 'cookie' || name === 'authorization' || name === 'dpop' || name === o.antiForgeryHeader) continue
    // undici does not implement 100-continue; the body is streamed anyway.
    if (name === 'expect' || METHOD_OVERRIDES.has(name)) continue
    if (name === 'forwarded' || name.startsWith('x-forwarded-') || CLIENT_IP_HEADERS.has(name)) continue
    if (!o.websocket && name.startsWith('sec-websocket-')) continue
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

/**
 * What the browser receives from the upstream: hop-by-hop fields dropped, no Set-Cookie that could
 * overwrite gatehouse's own cookies (an upstream must not be able to plant a session), and no CORS
 * grant (`Access-Control-*`): the upstream's answer goes out under gatehouse's origin, and only
 * gatehouse decides which other origin may read it or pass a preflight there — none, unless
 * `cors.allowedOrigins` lists it (src/http/cors.ts; RFC 10017 §6.1.3.3.2).
 */
export function downstreamResponseHeaders(upstream: Record<string, string | string[] | undefined>, gatehouseCookiePrefix: string): Record<string, string | string[]> {
  const listed = connectionListed(upstream)
  const out: Record<string, string | string[]> = {}
  for (const name in upstream) {
    const value = upstream[name]
    if (value === undefined || HOP_BY_HOP.has(name) || listed.has(name)) continue
    if (name.startsWith('access-control-')) continue
    if (name === 'set-cookie') {
      const kept = (Array.isArray(value) ? value : [value]).filter((line) => !line.trimStart().startsWith(gatehouseCookiePrefix))
      if (kept.length) out[name] = kept
      continue
    }
    out[name] = value
  }
  return out
}
