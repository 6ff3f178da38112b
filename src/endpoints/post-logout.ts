import type { Handler } from '../http/context.ts'
import { redirect } from '../http/reply.ts'
import { toReturnUrl } from '../http/return-url.ts'
import { openLogoutState } from '../oidc/logout-state.ts'

/** GET /signout-callback-oidc — back from the IdP's end-session: on to the returnUrl sealed in `state`, else "/". */
export const postLogout: Handler = async (ctx) => {
  const { keyRing, now } = ctx.services
  const state = openLogoutState(keyRing, ctx.url.searchParams.get('state') ?? undefined, now())
  // Checked again: an origin taken out of cors.allowedOrigins since the logout began is no place to go.
  return redirect((state && toReturnUrl(state.returnUrl, ctx.services.cors?.origins)) ?? '/')
}
