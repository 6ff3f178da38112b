import type { ServerResponse } from 'node:http'
import { GatehouseError } from '../errors.ts'
import { resolveSession, type RequestContext } from '../http/context.ts'
import { matchOrigin } from '../http/cors.ts'
import { BASE_HEADERS } from '../http/reply.ts'
import type { EndReason } from '../session/session-events.ts'

/** How often an open stream re-reads its session in the store (endings on other instances, CLI revokes). */
export const SESSION_CHECK_MS = 5_000
const KEEPALIVE_MS = 20_000

/**
 * GET /bff/session-events — Server-Sent Events that tell an open tab the moment its session ends
 * (logout in another tab, back-channel logout, revocation, expiry), so it need not poll (SPEC §8).
 * EventSource cannot send the anti-forgery header; a cross-site request is refused by Sec-Fetch-Site
 * (unless its Origin is in cors.allowedOrigins), and nothing secret is ever sent: only the session's state.
 */
export async function sessionEvents(ctx: RequestContext, res: ServerResponse): Promise<void> {
  const site = ctx.req.headers['sec-fetch-site']
  if (site !== undefined && site !== 'same-origin' && site !== 'none' && !fromAllowedOrigin(ctx)) throw new GatehouseError('forbidden', 'session events are for the application itself')
  const session = await resolveSession(ctx, false)
  if (!session) throw new GatehouseError('session_required')
  const { sessionEvents: events, sessions, now, log } = ctx.services

  res.writeHead(200, {
    ...BASE_HEADERS,
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    // Proxies such as nginx must pass events through at once.
    'x-accel-buffering': 'no',
    ...(ctx.setCookies.length ? { 'set-cookie': ctx.setCookies } : {}),
  })
  res.write(`retry: 3000\nevent: session\ndata: ${JSON.stringify({ state: 'active', expiresIn: Math.max(0, Math.round((session.expiresAt - now()) / 1000)) })}\n\n`)

  await new Promise<void>((resolve) => {
    let done = false
    const timers: NodeJS.Timeout[] = []
    const finish = (reason?: EndReason) => {
      if (done) return
      done = true
      unsubscribe()
      for (const timer of timers) clearInterval(timer)
      if (reason && !res.destroyed) res.end(`event: session-end\ndata: ${JSON.stringify({ reason })}\n\n`)
      else res.end()
      resolve()
    }
    const unsubscribe = events.subscribe(session, (reason) => finish(reason))
    res.on('close', () => finish())
    // Endings this instance did not see: re-read the session now and then; expiry is one of them.
    timers.push(
      setInterval(() => {
        sessions.current(session).then(
          (current) => {
            if (!current) finish(session.expiresAt <= now() ? 'expired' : 'revoked')
            else if (current.expiresAt <= now()) finish('expired')
          },
          () => log.warn({ event: 'session_events_check_failed' }, 'session store check failed; retrying'),
        )
      }, ctx.services.sessionCheckMs),
      setInterval(() => res.write(': keep-alive\n\n'), KEEPALIVE_MS),
    )
  })
}

/** An EventSource({ withCredentials: true }) of the SPA on one of cors.allowedOrigins (it sends Origin). */
function fromAllowedOrigin(ctx: RequestContext): boolean {
  return ctx.services.cors !== undefined && matchOrigin(ctx.services.cors, ctx.req.headers.origin) !== undefined
}
