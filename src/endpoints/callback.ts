import { randomBytes } from 'node:crypto'
import { GatehouseError } from '../errors.ts'
import { deleteCookie } from '../http/cookies.ts'
import { resolveSession, singleParam, type Handler } from '../http/context.ts'
import { redirect } from '../http/reply.ts'
import { toReturnUrl } from '../http/return-url.ts'
import { toClaims } from '../oidc/claims.ts'
import { authorizationError } from '../oidc/idp-failure.ts'
import { loginCookieName, loginCookiePrefix, openLoginState } from '../oidc/login-state.ts'
import { span } from '../ops/tracing.ts'
import { notify, sessionInfo } from '../hooks.ts'
import { generateDpopJwk } from '../tokens/dpop.ts'

/** An expires_in beyond a year is an IdP's mistake (or 1e308): held as a year, so it stays a number. */
const MAX_EXPIRES_IN_SEC = 365 * 24 * 3600

/**
 * GET /signin-oidc — the redirect URI. Validates the pending login bound to this browser, exchanges
 * the code (PKCE), validates the id_token, starts the session and sends the browser to returnUrl.
 */
export const callback: Handler = (ctx) =>
  span('gatehouse.login', { 'gatehouse.frontend': ctx.frontend.name }, () => completeLogin(ctx))

const completeLogin: Handler = async (ctx) => {
  const { config, keyRing, sessions, now, log } = ctx.services
  const { oidc: client, prefix } = ctx.frontend
  const state = singleParam(ctx.url, 'state')
  if (state.value === undefined || state.repeated) {
    throw new GatehouseError('login_state_invalid', 'the callback carries no single state parameter', {
      report: {
        event: 'login_failed',
        cause: 'state_missing',
        problem: 'the callback carries no single state parameter',
      },
    })
  }
  const cookieName = loginCookieName(config.session.cookieName, state.value)
  // The pending login is single-use whatever the outcome.
  ctx.setCookies.push(deleteCookie(cookieName, 'lax'))
  const found = openLoginState(keyRing, ctx.cookies.get(cookieName), state.value, now())
  const pending = found?.frontend === ctx.frontend.name ? found : undefined
  if (!pending) {
    throw new GatehouseError(
      'login_state_invalid',
      'no pending login in this browser matches this state (expired, replayed or forged)',
      { report: { event: 'login_failed', cause: 'state_missing', ...stateHint(ctx, cookieName) } },
    )
  }

  const idpError = ctx.url.searchParams.get('error')
  if (idpError !== null) {
    // A silent login that found no IdP session (login_required…) is an answer, not a failure.
    if (pending.silent) return redirect(returnTo(ctx, pending.returnUrl))
    throw authorizationError(ctx.url.searchParams)
  }

  const callbackUrl = new URL(`${prefix}${config.oidc.redirectPath}${ctx.url.search}`, ctx.origin)
  // oidc.dpop: a key of this session's own, so one leaked session key exposes no other session.
  const { dpop } = ctx.frontend.oidcConfig
  const dpopJwk = dpop ? await generateDpopJwk(dpop.signingAlg) : undefined
  const dpopKey = dpopJwk ? await ctx.services.dpopKeys.get(dpopJwk) : undefined
  // Every failure from here on is a GatehouseError with its login_failed report (src/oidc/idp-failure.ts).
  const tokens = await client.exchangeCode(callbackUrl, pending, dpopKey)
  const idClaims = tokens.claims
  let userInfo: Record<string, unknown> | undefined
  if (ctx.frontend.oidcConfig.getClaimsFromUserInfo && (await client.hasUserInfo()))
    userInfo = await client.userInfo(tokens.accessToken, idClaims.sub, dpopKey)

  // A login replaces this browser's previous session, and (in the store, inside sessions.start) an
  // older session of the same IdP session: other instances are told, so none serves either from its
  // session cache.
  const previous = await resolveSession(ctx, false)
  if (previous) await sessions.end(previous, 'replaced')
  sessions.clearCookies(ctx.cookies, ctx.partition, ctx.setCookies)
  // An empty sid is no IdP session id: the session then gets gatehouse's own logout value.
  const sid = typeof idClaims.sid === 'string' && idClaims.sid !== '' ? idClaims.sid : undefined
  const sessionState = ctx.url.searchParams.get('session_state') ?? undefined
  const { session: started } = await sessions.start(
    {
      sub: idClaims.sub,
      sid,
      partition: ctx.partition,
      data: {
        claims: toClaims(idClaims, userInfo),
        tokens: {
          accessToken: tokens.accessToken,
          refreshToken: tokens.refreshToken,
          idToken: tokens.idToken,
          accessTokenExpiresAt:
            tokens.expiresInSec === undefined
              ? undefined
              : now() + Math.min(tokens.expiresInSec, MAX_EXPIRES_IN_SEC) * 1000,
          scope: tokens.scope,
        },
        issuer: tokens.issuer,
        // The logout CSRF value of a session whose IdP issued no sid (else the sid itself: src/endpoints/user.ts).
        logoutSid: randomBytes(16).toString('base64url'),
        sessionState,
        ...(dpopJwk ? { dpopKey: dpopJwk } : {}),
        ...(pending.resources ? { resources: pending.resources } : {}),
      },
    },
    ctx.setCookies,
  )
  log.info({ event: 'login', requestId: ctx.requestId, issuer: tokens.issuer }, 'session started')
  notify(ctx.services.hooks.onSessionCreated, sessionInfo(started), log, 'onSessionCreated')
  ctx.services.telemetry.login('ok')
  return redirect(returnTo(ctx, pending.returnUrl))
}

/**
 * Why no pending login matched, for the operator: most often the browser dropped the cookie, or the
 * login began under another host name than the callback reached (the login cookie is host-bound).
 * With publicOrigin set a callback never reaches a host gatehouse does not serve (421 or 308 first).
 */
function stateHint(ctx: Parameters<Handler>[0], cookieName: string): Record<string, string> {
  const { session } = ctx.services.config
  if (ctx.cookies.has(cookieName))
    return { problem: 'the login cookie for this state is expired or was not sealed by this gatehouse (its keys)' }
  const pending = [...ctx.cookies.keys()].some((name) => name.startsWith(loginCookiePrefix(session.cookieName)))
  return pending
    ? { problem: 'this browser has pending logins, none for this state (an old or replayed callback)' }
    : {
        problem: 'this browser sent no login cookie',
        hint: 'the login was started in another browser or under another host name, or the browser did not keep the cookie (a Secure cookie over http://, or blocked cookies)',
      }
}

/**
 * The sealed returnUrl, checked again against today's rules (cors.allowedOrigins may have changed
 * during the 10 minutes a pending login lives).
 */
function returnTo(ctx: Parameters<Handler>[0], returnUrl: string): string {
  return toReturnUrl(returnUrl, ctx.services.cors?.origins) ?? '/'
}
