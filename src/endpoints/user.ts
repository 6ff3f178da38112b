import { GatehouseError } from '../errors.ts'
import { isAntiForgeryValid } from '../http/antiforgery.ts'
import { resolveSession, type Handler } from '../http/context.ts'
import { json } from '../http/reply.ts'
import type { Claim } from '../session/session.ts'

/**
 * GET /bff/user — the session's claims plus the bff: management claims (Duende's shape).
 * `?slide=false` reads without extending a sliding session (for polling).
 */
export const user: Handler = async (ctx) => {
  const { config, now } = ctx.services
  if (!isAntiForgeryValid(ctx.req.headers, config.antiForgery)) throw new GatehouseError('antiforgery_failed')
  const session = await resolveSession(ctx, ctx.url.searchParams.get('slide') !== 'false')
  if (!session) {
    if (config.anonymousSessionResponse === 200) return json(200, null)
    throw new GatehouseError('session_required')
  }
  const claims: Claim[] = [
    ...session.data.claims,
    { type: 'bff:logout_url', value: `${ctx.frontend.prefix}${config.managementBasePath}/logout?sid=${encodeURIComponent(session.data.logoutSid)}` },
    { type: 'bff:session_expires_in', value: Math.max(0, Math.round((session.expiresAt - now()) / 1000)) },
  ]
  if (session.data.sessionState !== undefined) claims.push({ type: 'bff:session_state', value: session.data.sessionState })
  return json(200, claims)
}
