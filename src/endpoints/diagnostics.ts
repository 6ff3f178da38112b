import { GatehouseError } from '../errors.ts'
import { isAntiForgeryValid } from '../http/antiforgery.ts'
import { resolveSession, type Handler } from '../http/context.ts'
import { json } from '../http/reply.ts'

/**
 * GET /bff/diagnostics — only when `diagnostics: true` (a warning is logged at start): the current
 * user's and the client's access tokens, for debugging an API integration. Never enable in production.
 */
export const diagnostics: Handler = async (ctx) => {
  const { tokens, config } = ctx.services
  // Like any API call: the app's own script, with a session. Never an anonymous token dispenser.
  if (!isAntiForgeryValid(ctx.req.headers, config.antiForgery)) throw new GatehouseError('antiforgery_failed')
  const session = await resolveSession(ctx, false)
  if (!session) throw new GatehouseError('session_required')
  let clientAccessToken: string | null = null
  try {
    clientAccessToken = (await tokens.clientToken(ctx.partition)).value
  } catch (err) {
    if (!(err instanceof GatehouseError)) throw err
  }
  const user = await tokens.tokenFor(session, 'user', ctx.partition)
  if (user.kind === 'token' && user.refreshed) await ctx.services.sessions.persist(user.refreshed, ctx.cookies, ctx.setCookies)
  return json(200, { userAccessToken: user.kind === 'token' ? user.value : null, clientAccessToken })
}
