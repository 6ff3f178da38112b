import type { Handler } from '../http/context.ts'
import { json } from '../http/reply.ts'
import { sessionInfo } from '../hooks.ts'
import { toClaimRecords } from '../oidc/claims.ts'
import type { Claim, Session } from '../session/session.ts'

/**
 * GET /bff/user — the session's claims plus the bff: management claims, in Duende's shape: IdP claim
 * values as strings with their `valueType` (`user.claimValues: "json"`: as the IdP sent them), only
 * `bff:session_expires_in` a number. `?slide=false` reads without extending a sliding session (for polling).
 * Its route checks the anti-forgery header and reads the session; without one it answers 401, or
 * `null` with `anonymousSessionResponse: 200`.
 */
export const user: Handler = async (ctx) => {
  const { config, now } = ctx.services
  const { session } = ctx
  if (!session) return json(200, null)
  const management: Claim[] = [
    {
      type: 'bff:logout_url',
      value: `${ctx.frontend.prefix}${config.managementBasePath}/logout?sid=${encodeURIComponent(logoutSidOf(session))}`,
    },
  ]
  if (session.data.sessionState !== undefined)
    management.push({ type: 'bff:session_state', value: session.data.sessionState })
  const expiresIn = {
    type: 'bff:session_expires_in',
    value: Math.max(0, Math.round((session.expiresAt - now()) / 1000)),
  }
  const { enrichUser } = ctx.services.hooks
  // The app's own claims (Duende's IUserEndpointClaimsEnricher); gatehouse's bff: claims stay its own.
  const claims = enrichUser
    ? (await enrichUser(sessionInfo(session), structuredClone(session.data.claims))).filter(
        (c) => !c.type.startsWith('bff:'),
      )
    : session.data.claims
  if (config.user.claimValues === 'json') return json(200, [...claims, ...management, expiresIn])
  return json(200, [...toClaimRecords([...claims, ...management]), { ...expiresIn, valueType: null }])
}

/**
 * The value /bff/logout's `sid` must carry: the IdP's `sid` claim, as Duende.BFF's documentation
 * tells front-ends to pass; gatehouse's own random value only for a session whose IdP issued none.
 */
export function logoutSidOf(session: Session): string {
  return session.sid || session.data.logoutSid
}
