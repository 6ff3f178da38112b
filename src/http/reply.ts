import { GatehouseError, toProblem } from '../errors.ts'

/** What a handler returns: data; only src/http/render.ts writes it to the socket. */
export interface Reply {
  status: number
  headers: Record<string, string>
  cookies?: string[]
  body?: string
}

export const NO_STORE = { 'cache-control': 'no-store' } as const

/** Every response gatehouse writes itself carries these (a page may relax framing for itself). */
export const BASE_HEADERS: Readonly<Record<string, string>> = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
}

export function json(status: number, value: unknown, headers: Record<string, string> = {}): Reply {
  return {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', ...NO_STORE, ...headers },
    body: JSON.stringify(value),
  }
}

export function redirect(location: string, cookies: string[] = []): Reply {
  return { status: 302, headers: { location, ...NO_STORE }, cookies }
}

const PAGE_CSP =
  "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

export function html(status: number, body: string, headers: Record<string, string> = {}): Reply {
  return {
    status,
    headers: {
      'content-type': 'text/html; charset=utf-8',
      'content-security-policy': PAGE_CSP,
      ...NO_STORE,
      ...headers,
    },
    body,
  }
}

export function problemJson(err: unknown, requestId: string): Reply {
  const problem = toProblem(err, requestId)
  const headers: Record<string, string> = { 'content-type': 'application/problem+json; charset=utf-8', ...NO_STORE }
  if (err instanceof GatehouseError && err.retryAfterSec !== undefined)
    headers['retry-after'] = String(err.retryAfterSec)
  return { status: problem.status, headers, body: JSON.stringify(problem) }
}

/** The same problem as a tiny page, for endpoints a browser navigates to (login, callback, logout). */
export function problemPage(err: unknown, requestId: string): Reply {
  const p = toProblem(err, requestId)
  const detail = p.detail ? `<p>${escapeHtml(p.detail)}</p>` : ''
  const body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${p.status} ${escapeHtml(p.title)}</title></head><body style="font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto"><h1>${escapeHtml(p.title)}</h1>${detail}<p><a href="/">Back to the application</a></p><p style="color:#666">Error <code>${p.code}</code>, request <code>${escapeHtml(p.requestId)}</code></p></body></html>`
  return html(p.status, body)
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}
