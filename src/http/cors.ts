import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import { GatehouseError } from '../errors.ts'
import { CLIENT_IP_HEADERS, HOP_BY_HOP, METHOD_OVERRIDES, varyWithOrigin } from '../proxy/headers.ts'
import { problemJson, type Reply } from './reply.ts'

/**
 * Opt-in CORS for an SPA served from another origin (`cors.allowedOrigins`, docs/frontends.md
 * "Cross-origin SPAs"). Only the endpoints an SPA fetch()es get it: `/bff/user`, `/bff/session-events`,
 * `/bff/diagnostics`, local API routes behind `protect()` and remote APIs. Navigations (login, logout,
 * the OIDC callbacks) need none. Without `cors` configured none of this runs.
 */

/** How long a browser may reuse a granted preflight, in seconds. */
export const PREFLIGHT_MAX_AGE = 600

/** Requested headers a preflight may list at most; more is no honest client. */
const MAX_REQUEST_HEADERS = 64

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/** Methods never granted, whatever a route accepts (RFC 9110 §9.3.6–8; TRACK is IIS's TRACE). */
const NEVER_METHODS: ReadonlySet<string> = new Set(['CONNECT', 'TRACE', 'TRACK'])

/**
 * Request headers a cross-origin page may never be allowed to send: credentials (the BFF's point is
 * that the browser holds none), forwarding and client-address claims, method overrides and
 * connection fields. The proxy strips them anyway; refusing them in the preflight says so at once
 * instead of letting them vanish on the way.
 */
const DENIED_HEADERS: ReadonlySet<string> = new Set([
  'authorization',
  'proxy-authorization',
  'dpop',
  'cookie',
  'cookie2',
  'host',
  'origin',
  'forwarded',
  'expect',
  ...HOP_BY_HOP,
  ...METHOD_OVERRIDES,
  ...CLIENT_IP_HEADERS,
])

export interface CorsPolicy {
  /** The allowed origins as browsers serialise them: `https://spa.example.com`, lower case, no default port. */
  readonly origins: ReadonlySet<string>
  /** The anti-forgery header, lower case: always allowed. */
  readonly antiForgeryHeader: string
  /** Per allowed origin, the headers of every answer to it, built once. */
  readonly grants: ReadonlyMap<string, ReadonlyArray<readonly [string, string]>>
}

/** What a route accepts, for its preflights. */
export interface CorsRule {
  /** The methods a preflight may ask for; undefined: every method but CONNECT, TRACE and TRACK. */
  methods: readonly string[] | undefined
  /**
   * Whether requested headers beyond the anti-forgery header and Content-Type are allowed (local and
   * remote APIs, whose headers gatehouse does not know), except the denied ones. gatehouse's own
   * endpoints allow only those two.
   */
  otherHeaders: boolean
}

/** The app's own API routes behind protect(): gatehouse knows neither their methods nor their headers. */
export const LOCAL_ROUTE_CORS: CorsRule = { methods: undefined, otherHeaders: true }

/** gatehouse's own fetch()ed endpoints (`/bff/user`, `/bff/diagnostics`; `/bff/session-events` is GET only). */
export const READ_ROUTE_CORS: CorsRule = { methods: ['GET', 'HEAD'], otherHeaders: false }
export const GET_ROUTE_CORS: CorsRule = { methods: ['GET'], otherHeaders: false }

/** `origins` are already normalised by config validation. undefined (nothing configured): CORS off. */
export function createCorsPolicy(
  origins: readonly string[] | undefined,
  antiForgeryHeader: string,
): CorsPolicy | undefined {
  if (!origins || origins.length === 0) return undefined
  const grants = new Map<string, ReadonlyArray<readonly [string, string]>>()
  for (const origin of origins) {
    grants.set(origin, [
      ['access-control-allow-origin', origin],
      ['access-control-allow-credentials', 'true'],
    ])
  }
  return { origins: new Set(origins), antiForgeryHeader: antiForgeryHeader.toLowerCase(), grants }
}

/**
 * The allowed origin an `Origin` header names, else undefined. Exact comparison with the normalised
 * list: browsers always send the serialised origin, and anything else (a second Origin line, `null`,
 * different case) is not a browser on an allowed origin.
 */
export function matchOrigin(policy: CorsPolicy, header: string | string[] | undefined): string | undefined {
  return typeof header === 'string' && policy.origins.has(header) ? header : undefined
}

/** A CORS preflight (Fetch §3.2.2): OPTIONS with an Origin and Access-Control-Request-Method. */
export function isPreflight(method: string | undefined, headers: IncomingHttpHeaders): boolean {
  return method === 'OPTIONS' && headers.origin !== undefined && headers['access-control-request-method'] !== undefined
}

export type PreflightOutcome = { granted: true; headers: Record<string, string> } | { granted: false; reason: string }

/** The answer to a preflight: the grant's headers, or why it is refused. Pure. */
export function preflight(policy: CorsPolicy, headers: IncomingHttpHeaders, rule: CorsRule): PreflightOutcome {
  const origin = matchOrigin(policy, headers.origin)
  if (origin === undefined) return { granted: false, reason: 'this origin is not in cors.allowedOrigins' }
  const method = headers['access-control-request-method']
  if (typeof method !== 'string' || !TOKEN.test(method) || NEVER_METHODS.has(method.toUpperCase()))
    return { granted: false, reason: 'the requested method is not allowed' }
  if (rule.methods !== undefined && !rule.methods.includes(method))
    return { granted: false, reason: `${method} is not allowed here (allowed: ${rule.methods.join(', ')})` }
  const requested = requestedHeaders(headers['access-control-request-headers'])
  if (requested === undefined)
    return { granted: false, reason: 'Access-Control-Request-Headers is malformed or too long' }
  const allowed = [policy.antiForgeryHeader]
  for (const name of requested) {
    if (name === policy.antiForgeryHeader) continue
    if (!isAllowedHeader(name, rule))
      return { granted: false, reason: `the request header ${name} is not allowed here` }
    allowed.push(name)
  }
  return {
    granted: true,
    headers: {
      'access-control-allow-origin': origin,
      'access-control-allow-credentials': 'true',
      'access-control-allow-methods': rule.methods === undefined ? method : rule.methods.join(', '),
      'access-control-allow-headers': allowed.join(', '),
      'access-control-max-age': String(PREFLIGHT_MAX_AGE),
      vary: 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers',
    },
  }
}

/** The lower-case, de-duplicated names of Access-Control-Request-Headers; undefined when malformed or too many. */
export function requestedHeaders(value: string | string[] | undefined): string[] | undefined {
  if (value === undefined) return []
  const names = new Set<string>()
  for (const part of (Array.isArray(value) ? value.join(',') : value).split(',')) {
    const name = part.trim().toLowerCase()
    if (name === '') continue
    if (!TOKEN.test(name)) return undefined
    names.add(name)
    if (names.size > MAX_REQUEST_HEADERS) return undefined
  }
  return [...names]
}

function isAllowedHeader(name: string, rule: CorsRule): boolean {
  if (name === 'content-type') return true
  if (!rule.otherHeaders) return false
  return (
    !DENIED_HEADERS.has(name) &&
    !name.startsWith('x-forwarded-') &&
    !name.startsWith('sec-') &&
    !name.startsWith('proxy-')
  )
}

/**
 * Runs at the start of a CORS route while CORS is on. A preflight is answered here (204 grant or 403
 * problem+json, never reaching a handler, a session or an upstream): the Reply is returned. Any other
 * request gets `Vary: Origin` and, from an allowed origin, the grant headers on `res` — so they are on
 * every answer, errors (401, 502) included — and undefined is returned.
 */
export function applyCors(
  policy: CorsPolicy,
  req: IncomingMessage,
  res: ServerResponse,
  rule: CorsRule,
  requestId: string,
): Reply | undefined {
  if (isPreflight(req.method, req.headers)) {
    const outcome = preflight(policy, req.headers, rule)
    if (outcome.granted) return { status: 204, headers: outcome.headers }
    const refused = problemJson(new GatehouseError('forbidden', `CORS preflight refused: ${outcome.reason}`), requestId)
    refused.headers.vary = 'Origin'
    return refused
  }
  res.setHeader('vary', varyWithOrigin(res.getHeader('vary') as string | string[] | undefined))
  const origin = matchOrigin(policy, req.headers.origin)
  if (origin !== undefined) for (const [name, value] of policy.grants.get(origin)!) res.setHeader(name, value)
  return undefined
}
