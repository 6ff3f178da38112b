import { GatehouseError } from '../errors.ts'
import { resolveSession, type Handler } from '../http/context.ts'
import { json } from '../http/reply.ts'

/**
 * GET /bff/diagnostics — only when `diagnostics: true` (a warning is logged at start): the current
 * user's and the client's access tokens, for debugging an API integration. Never enable in production.
 */
export const diagnostics: Handler = async (ctx) => {
  const { tokens } = ctx.services
  const session = await resolveSession(ctx, false)
  let clientAccessToken: string | null = null
  try {
    clientAccessToken = await tokens.clientToken()
  } catch (err) {
    if (!(err instanceof GatehouseError)) throw err
  }
  const user = session ? await tokens.tokenFor(session, 'user') : undefined
  if (user?.kind === 'bearer' && user.refreshed) await ctx.services.sessions.persist(user.refreshed, ctx.cookies, ctx.setCookies)
  return json(200, { userAccessToken: user?.kind === 'bearer' ? user.value : null, clientAccessToken })
}
