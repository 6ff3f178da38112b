import type { Handler } from '../http/context.ts'
import { redirect } from '../http/reply.ts'
import { toLocalPath } from '../http/return-url.ts'
import { openLogoutState } from '../oidc/logout-state.ts'

/** GET /signout-callback-oidc — back from the IdP's end-session: on to the returnUrl sealed in `state`, else "/". */
export const postLogout: Handler = async (ctx) => {
  const { keyRing, now } = ctx.services
  const state = openLogoutState(keyRing, ctx.url.searchParams.get('state') ?? undefined, now())
  return redirect((state && toLocalPath(state.returnUrl)) ?? '/')
}
