import { randomBytes } from 'node:crypto'
import type { Handler } from '../http/context.ts'
import { html } from '../http/reply.ts'

/**
 * GET /bff/silent-login-callback — where an iframe's silent login ends (SPEC §3): a page that tells
 * the app, and only the app's own origin, whether there is a session now. A nonce-based CSP allows
 * exactly this one inline script. Its route reads the session (if there is one).
 */
export const silentLoginCallback: Handler = async (ctx) => {
  const { session } = ctx
  const nonce = randomBytes(16).toString('base64')
  const message = JSON.stringify({ source: 'bff-silent-login', isLoggedIn: session !== undefined })
  // JSON.stringify of an origin cannot close the script element: origins hold no "<".
  const body = `<!doctype html><html><head><meta charset="utf-8"><title>silent login</title></head><body><script nonce="${nonce}">window.parent.postMessage(${message}, ${JSON.stringify(ctx.origin)});</script></body></html>`
  return html(200, body, {
    'content-security-policy': `default-src 'none'; script-src 'nonce-${nonce}'; frame-ancestors 'self'; base-uri 'none'`,
    // Framed by the app itself; BASE_HEADERS' DENY would forbid that.
    'x-frame-options': 'SAMEORIGIN',
  })
}
