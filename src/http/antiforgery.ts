import type { IncomingHttpHeaders } from 'node:http'

/**
 * A custom request header cannot be sent cross-site without a CORS preflight, which gatehouse grants
 * only to `cors.allowedOrigins` (none by default); its presence proves the request came from the app's
 * own JavaScript (Duende's X-CSRF: 1).
 */
export function isAntiForgeryValid(headers: IncomingHttpHeaders, rule: { header: string; value: string }): boolean {
  const sent = headers[rule.header.toLowerCase()]
  return typeof sent === 'string' && sent === rule.value
}
