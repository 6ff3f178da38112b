import { describeError, GatehouseError } from '../errors.ts'
import { deleteCookie } from '../http/cookies.ts'
import { resolveSession, singleParam, type Handler, type RequestContext } from '../http/context.ts'
import { redirect } from '../http/reply.ts'
import { isReturnUrlAccepted, returnUrlParam, returnUrlRule } from '../http/return-url.ts'
import { sessionInfo, withoutReserved } from '../hooks.ts'
import { loginCookiePrefix, safeEqual } from '../oidc/login-state.ts'
import { sealLogoutState } from '../oidc/logout-state.ts'
import { logoutSidOf } from './user.ts'

/** What a logoutParams hook cannot set: RP-Initiated Logout's own parameters. */
const RESERVED_END_SESSION_PARAMS: ReadonlySet<string> = new Set([
  'id_token_hint',
  'post_logout_redirect_uri',
  'state',
  'client_id',
])

/**
 * GET /bff/logout?sid=…&returnUrl=/x — ends the session, revokes the refresh token (RFC 7009) and sends
 * the browser to the IdP's end-session endpoint. With a session the sid must match: a cross-site link
 * to /bff/logout cannot log the user out (logout CSRF).
 */
export const logout: Handler = async (ctx) => {
  const { config, sessions, keyRing, now, log } = ctx.services
  const { oidc: client, prefix } = ctx.frontend
  const sidParam = singleParam(ctx.url, 'sid')
  const returnUrl = returnUrlParam(ctx.url, ctx.services.cors?.origins, `${prefix}/`)
  if (returnUrl === undefined || !(await isReturnUrlAccepted(ctx, returnUrl)))
    throw new GatehouseError('return_url_invalid', undefined, {
      errors: { returnUrl: [returnUrlRule(ctx.services.cors?.origins)] },
    })
  const session = await resolveSession(ctx, false)
  if (
    session &&
    (sidParam.repeated || sidParam.value === undefined || !safeEqual(sidParam.value, logoutSidOf(session)))
  ) {
    throw new GatehouseError('sid_mismatch', undefined, {
      errors: { sid: ["must be the session's sid claim (as in the bff:logout_url claim)"] },
    })
  }
  if (session?.sid && isFromAnotherSite(ctx)) {
    throw new GatehouseError(
      'forbidden',
      'a logout must be started from the application (this request came from another site)',
    )
  }

  const params: Record<string, string> = {
    ...withoutReserved(
      await ctx.services.hooks.logoutParams?.(ctx.req, session && sessionInfo(session)),
      RESERVED_END_SESSION_PARAMS,
    ),
    post_logout_redirect_uri: new URL(`${prefix}${config.oidc.postLogoutRedirectPath}`, ctx.origin).href,
    state: sealLogoutState(keyRing, { returnUrl, createdAt: now() }),
  }
  if (session) {
    await sessions.end(session, 'logout')
    log.info({ event: 'logout', requestId: ctx.requestId }, 'session ended by logout')
    ctx.services.telemetry.logout()
    const { refreshToken, idToken } = session.data.tokens
    if (config.revokeRefreshTokenOnLogout && refreshToken) {
      try {
        await client.revoke(refreshToken, 'refresh_token')
      } catch (err) {
        // The session is already gone here; a failed revocation must not keep the user logged in.
        log.warn(
          {
            requestId: ctx.requestId,
            ...client.explain(err, 'logout_failed').report,
            event: 'logout_failed',
            stage: 'revocation',
            err: describeError(err),
          },
          'refresh token revocation failed; the session is ended anyway',
        )
      }
    }
    if (idToken) params.id_token_hint = idToken
  }
  // Clear only the cookies this request carried, and only once the session is gone (a store fault
  // above leaves the user logged in and able to retry). A cross-site navigation that carries no
  // Strict session cookie must not be able to delete it: that would be a logout CSRF without the sid.
  if (session) sessions.clearCookies(ctx.cookies, ctx.partition, ctx.setCookies)
  const loginPrefix = loginCookiePrefix(config.session.cookieName)
  for (const name of ctx.cookies.keys())
    if (name.startsWith(loginPrefix)) ctx.setCookies.push(deleteCookie(name, 'lax'))
  let endSession: URL | undefined
  try {
    endSession = await client.endSessionUrl(params)
  } catch (err) {
    log.warn(
      { event: 'logout_failed', cause: 'end_session_unavailable', requestId: ctx.requestId, err: describeError(err) },
      'identity provider unreachable at logout: the session is ended here, the IdP session is not',
    )
  }
  return redirect(endSession ? endSession.href : returnUrl)
}

/**
 * The IdP's sid is known to every relying party of the IdP session, so it does not prove that the
 * app sent the browser here (a Lax cookie rides along on a cross-site navigation). Fetch metadata
 * does: a cross-site request is accepted only from an origin of cors.allowedOrigins (its Referer,
 * which a page can suppress but not forge). Same-origin, same-site and typed navigations (`none`)
 * pass, as do browsers that send no Sec-Fetch-Site.
 */
function isFromAnotherSite(ctx: RequestContext): boolean {
  if (ctx.req.headers['sec-fetch-site'] !== 'cross-site') return false
  const referer = ctx.req.headers.referer
  const origins = ctx.services.cors?.origins
  return !(origins && typeof referer === 'string' && URL.canParse(referer) && origins.has(new URL(referer).origin))
}
