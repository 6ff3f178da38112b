import type { IncomingHttpHeaders } from 'node:http'
import { matchOrigin, type CorsPolicy } from './cors.ts'

/**
 * A custom request header cannot be sent cross-site without a CORS preflight, which gatehouse grants
 * only to `cors.allowedOrigins` (none by default); its presence proves the request came from the app's
 * own JavaScript (Duende's X-CSRF: 1).
 */
export function isAntiForgeryValid(headers: IncomingHttpHeaders, rule: { header: string; value: string }): boolean {
  const sent = headers[rule.header.toLowerCase()]
  return typeof sent === 'string' && sent === rule.value
}

/**
 * For requests that cannot carry the header (EventSource): Fetch Metadata. A request the browser
 * marks as coming from another site or origin passes only with an Origin of cors.allowedOrigins (an
 * EventSource({ withCredentials: true }) of the SPA there sends it); same-origin and typed (`none`)
 * requests pass, as do browsers that send no Sec-Fetch-Site.
 */
export function isFromOwnPage(headers: IncomingHttpHeaders, cors: CorsPolicy | undefined): boolean {
  const site = headers['sec-fetch-site']
  return (
    site === undefined ||
    site === 'same-origin' ||
    site === 'none' ||
    (cors !== undefined && matchOrigin(cors, headers.origin) !== undefined)
  )
}
