import { describeError, GatehouseError } from '../errors.ts'
import { readForm } from '../http/body.ts'
import type { Frontend } from '../frontends/frontends.ts'
import type { Handler, RequestContext } from '../http/context.ts'
import type { Session } from '../session/session.ts'
import type { SessionFilter } from '../session/store.ts'
import { json } from '../http/reply.ts'
import {
  CLOCK_TOLERANCE_SEC,
  createLogoutTokenVerifier,
  LOGOUT_TOKEN_MAX_AGE_SEC,
  LogoutTokenError,
  type LogoutClaims,
} from '../oidc/logout-token.ts'

const MAX_BODY_BYTES = 64 * 1024

/**
 * POST /bff/backchannel — OIDC Back-Channel Logout 1.0. The IdP posts a signed logout token; a valid,
 * fresh one ends the matching sessions: by sid, or every session of the sub when the token has no
 * sid or `backchannelLogout.allUserSessions` is on. 200 on success, 400 otherwise (§2.8).
 */
export const backchannel: Handler = async (ctx) => {
  const { sessions, config, log, now } = ctx.services
  const form = await readForm(ctx.req, MAX_BODY_BYTES)
  const tokens = form.getAll('logout_token')
  if (tokens.length !== 1) throw new GatehouseError('logout_token_invalid', 'exactly one logout_token is required')
  let claims: LogoutClaims
  try {
    claims = await (await verifierFor(ctx.frontend, ctx.services.now))(tokens[0]!)
  } catch (err) {
    if (err instanceof LogoutTokenError) {
      log.warn({ event: 'backchannel_refused', requestId: ctx.requestId, reason: err.message }, 'logout token refused')
      throw new GatehouseError('logout_token_invalid', err.message)
    }
    throw new GatehouseError('idp_unavailable', "the identity provider's keys could not be fetched", { cause: err })
  }
  // Replay: a jti is accepted once while the token could still be accepted at all.
  const keepMs = (claims.iat + LOGOUT_TOKEN_MAX_AGE_SEC + 2 * CLOCK_TOLERANCE_SEC) * 1000 - now()
  const claim = await sessions.claimOnce(`jti:${claims.iss}:${claims.jti}`, Math.max(keepMs, 1_000))
  if (!claim) throw new GatehouseError('logout_token_invalid', 'this logout token (jti) was already used')

  const { sub, sid } = claims
  const bySub = sub !== undefined && (sid === undefined || config.backchannelLogout.allUserSessions)
  let ended: number
  let toRevoke: { tokens: string[]; checked: number } = { tokens: [], checked: 0 }
  try {
    // Only this frontend's sessions: its client is the logout token's audience.
    const partition = ctx.partition
    const filter = bySub ? { sub: sub!, partition } : { sid: sid!, sub, partition }
    if (await ctx.frontend.oidc.acceptsSeveralIssuers()) {
      // One read: this issuer's sessions are both the ones to end and those whose refresh tokens go.
      const mine = await issuersSessions(ctx, filter, claims.iss, ISSUER_MATCH_MAX_SESSIONS)
      toRevoke = sessionBoundRefreshTokens(ctx, mine.slice(0, REVOKE_MAX_SESSIONS))
      ended = await endSessions(ctx, mine)
    } else {
      if (config.revokeRefreshTokenOnLogout)
        toRevoke = sessionBoundRefreshTokens(ctx, await issuersSessions(ctx, filter, claims.iss, REVOKE_MAX_SESSIONS))
      ended = await sessions.endWhere(filter, 'backchannel')
    }
  } catch (err) {
    // Not done: the IdP's retry of this same token must be accepted, not refused as a replay.
    await claim.release()
    throw err
  }
  log.info(
    { event: 'backchannel_logout', requestId: ctx.requestId, sessions: ended, by: bySub ? 'sub' : 'sid' },
    'back-channel logout',
  )
  ctx.services.telemetry.backchannelLogout('ok')
  if (toRevoke.tokens.length) await revokeAll(ctx, toRevoke.tokens)
  if (ended > toRevoke.checked && toRevoke.checked === REVOKE_MAX_SESSIONS)
    log.warn(
      { event: 'backchannel_revocation_capped', requestId: ctx.requestId, unchecked: ended - toRevoke.checked },
      `refresh tokens of at most ${REVOKE_MAX_SESSIONS} sessions are revoked per logout token`,
    )
  return json(200, { sessionsEnded: ended })
}

/** Sessions of one sub or sid looked at when several issuers share the sub/sid space (multi-tenant IdPs). */
const ISSUER_MATCH_MAX_SESSIONS = 1_000

/**
 * Up to `limit` sessions the filter names whose login recorded this issuer. With several issuers (a
 * multi-tenant IdP) a sub or sid is only unique within its issuer: one tenant's logout token must not
 * reach another tenant's sessions. Sessions from before gatehouse recorded the issuer came from the
 * published one.
 */
async function issuersSessions(
  ctx: RequestContext,
  filter: SessionFilter,
  issuer: string,
  limit: number,
): Promise<Session[]> {
  const { sessions, log } = ctx.services
  if (!sessions.findWhere) return []
  const found = await sessions.findWhere(filter, limit)
  if (limit === ISSUER_MATCH_MAX_SESSIONS && found.length === limit)
    log.warn(
      { event: 'backchannel_match_capped', requestId: ctx.requestId },
      `at most ${ISSUER_MATCH_MAX_SESSIONS} sessions are matched per logout token when the identity provider has several issuers`,
    )
  const published = (await ctx.frontend.oidc.metadata()).issuer
  return found.filter((s) => (s.data.issuer ?? published) === issuer)
}

/** Ends these sessions one by one, each told to the other instances. */
async function endSessions(ctx: RequestContext, mine: Session[]): Promise<number> {
  for (const session of mine) await ctx.services.sessions.end(session, 'backchannel')
  return mine.length
}

/** At most this many sessions' refresh tokens are revoked per logout token; the rest only end. */
const REVOKE_MAX_SESSIONS = 100
const REVOKE_CONCURRENCY = 4
/** The back-channel answer waits at most this long for revocations; later ones finish (or time out) unobserved. */
const REVOKE_DEADLINE_MS = 3_000

/**
 * Back-Channel Logout §2.7: refresh tokens issued without `offline_access` are bound to the IdP
 * session that just ended and SHOULD be revoked; offline ones SHOULD NOT be. Which it is comes from
 * the scope the IdP granted (stored with the tokens), or the configured scopes when it sent none.
 * Off with `revokeRefreshTokenOnLogout: false`, like the revocation at /bff/logout.
 */
function sessionBoundRefreshTokens(ctx: RequestContext, found: Session[]): { tokens: string[]; checked: number } {
  if (!ctx.services.config.revokeRefreshTokenOnLogout) return { tokens: [], checked: 0 }
  const configured = ctx.frontend.oidcConfig.scopes
  const tokens = found.flatMap(({ data: { tokens } }) => {
    const scopes = typeof tokens.scope === 'string' ? tokens.scope.split(' ') : configured
    return tokens.refreshToken && !scopes.includes('offline_access') ? [tokens.refreshToken] : []
  })
  return { tokens, checked: found.length }
}

/**
 * Revokes (RFC 7009) best effort: the sessions are gone already, so a failure is logged (never the
 * token) and the IdP still gets its 200. Bounded: a few calls at a time, and the answer waits at
 * most REVOKE_DEADLINE_MS, each call being bounded by `oidc.timeout` as well.
 */
async function revokeAll(ctx: RequestContext, tokens: string[]): Promise<void> {
  const { log } = ctx.services
  const outcome = { revoked: 0, failed: 0, unsupported: false, late: false }
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < tokens.length && !outcome.late && !outcome.unsupported) {
      const token = tokens[next++]!
      try {
        if (await ctx.frontend.oidc.revoke(token, 'refresh_token')) outcome.revoked++
        else outcome.unsupported = true
      } catch (err) {
        outcome.failed++
        if (outcome.failed === 1)
          log.warn(
            { event: 'revocation_failed', requestId: ctx.requestId, err: describeError(err) },
            'refresh token revocation after back-channel logout failed',
          )
      }
    }
  }
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      outcome.late = true
      resolve()
    }, REVOKE_DEADLINE_MS)
  })
  await Promise.race([
    Promise.all(Array.from({ length: Math.min(REVOKE_CONCURRENCY, tokens.length) }, worker)),
    deadline,
  ])
  clearTimeout(timer)
  log.info(
    {
      event: 'backchannel_revocation',
      requestId: ctx.requestId,
      tokens: tokens.length,
      revoked: outcome.revoked,
      failed: outcome.failed,
      unsupported: outcome.unsupported,
      late: outcome.late,
    },
    'session-bound refresh tokens revoked after back-channel logout',
  )
}

const verifiers = new WeakMap<Frontend, Promise<(token: string) => Promise<LogoutClaims>>>()

/**
 * Built once per frontend from the IdP's discovery document; a failed discovery is retried next time.
 * The token's issuer is the published one — or, for a multi-tenant IdP, its tenant's if allowed —
 * and it is signed with a key of the JWKS that id_tokens are checked with.
 */
function verifierFor(frontend: Frontend, now: () => number): Promise<(token: string) => Promise<LogoutClaims>> {
  let verifier = verifiers.get(frontend)
  if (!verifier) {
    const client = frontend.oidc
    verifier = Promise.all([client.signingAlgorithms(), client.jwks()]).then(([algorithms, jwks]) =>
      createLogoutTokenVerifier({
        issuer: async (claims) => {
          try {
            return await client.expectedIssuer(claims)
          } catch (err) {
            if (err instanceof GatehouseError && err.code === 'idp_error')
              throw new LogoutTokenError(`iss is not an issuer this client accepts (${String(err.report?.cause)})`)
            throw err
          }
        },
        clientId: frontend.oidcConfig.clientId,
        jwks,
        algorithms,
        now,
      }),
    )
    verifier.catch(() => verifiers.delete(frontend))
    verifiers.set(frontend, verifier)
  }
  return verifier
}
