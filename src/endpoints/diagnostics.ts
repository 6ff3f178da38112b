import { GatehouseError } from '../errors.ts'
import type { Handler } from '../http/context.ts'
import { json } from '../http/reply.ts'
import { credentialsFor } from '../tokens/credentials.ts'

const USER_TOKEN = { token: 'user' } as const

/**
 * GET /bff/diagnostics — only when `diagnostics: true` (a warning is logged at start): the current
 * user's and the client's access tokens, for debugging an API integration. Never enable in production.
 * Its route checks the anti-forgery header and requires a session, like an API call.
 */
export const diagnostics: Handler = async (ctx) => {
  const { tokens } = ctx.services
  let clientAccessToken: string | null = null
  try {
    clientAccessToken = (await tokens.clientToken(ctx.partition)).value
  } catch (err) {
    if (!(err instanceof GatehouseError)) throw err
  }
  const { token } = await credentialsFor(ctx, USER_TOKEN)
  return json(200, { userAccessToken: token.kind === 'token' ? token.value : null, clientAccessToken })
}
