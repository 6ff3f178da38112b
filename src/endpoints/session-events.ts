import type { ServerResponse } from 'node:http'
import { requiredSession, type RequestContext } from '../http/context.ts'
import { BASE_HEADERS } from '../http/reply.ts'
import type { EndReason } from '../session/session-events.ts'

/** How often an open stream re-reads its session in the store (endings on other instances, CLI revokes). */
export const SESSION_CHECK_MS = 5_000
const KEEPALIVE_MS = 20_000

/**
 * GET /bff/session-events — Server-Sent Events that tell an open tab the moment its session ends
 * (logout in another tab, back-channel logout, revocation, expiry), so it need not poll (SPEC §8).
 * EventSource cannot send the anti-forgery header: its route refuses a cross-site request by Sec-Fetch-Site
 * (unless its Origin is in cors.allowedOrigins) and requires a session. Nothing secret is ever sent: only
 * the session's state.
 */
export async function sessionEvents(ctx: RequestContext, res: ServerResponse): Promise<void> {
  const session = requiredSession(ctx)
  const { sessionEvents: events, sessions, now, log } = ctx.services

  res.writeHead(200, {
    ...BASE_HEADERS,
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    // Proxies such as nginx must pass events through at once.
    'x-accel-buffering': 'no',
    ...(ctx.setCookies.length ? { 'set-cookie': ctx.setCookies } : {}),
  })
  res.write(
    `retry: 3000\nevent: session\ndata: ${JSON.stringify({ state: 'active', expiresIn: Math.max(0, Math.round((session.expiresAt - now()) / 1000)) })}\n\n`,
  )

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
