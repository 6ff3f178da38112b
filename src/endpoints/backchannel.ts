import { randomUUID } from 'node:crypto'
import { GatehouseError } from '../errors.ts'
import { readForm } from '../http/body.ts'
import type { Frontend } from '../frontends/frontends.ts'
import type { Handler } from '../http/context.ts'
import { json } from '../http/reply.ts'
import { CLOCK_TOLERANCE_SEC, createLogoutTokenVerifier, LOGOUT_TOKEN_MAX_AGE_SEC, LogoutTokenError, type LogoutClaims } from '../oidc/logout-token.ts'

const MAX_BODY_BYTES = 64 * 1024

/**
 * POST /bff/backchannel — OIDC Back-Channel Logout 1.0. The IdP posts a signed logout token; a valid,
 * fresh one ends the matching sessions: by sid, or every session of the sub when the token has no
 * sid or `backchannelLogout.allUserSessions` is on. 200 on success, 400 otherwise (§2.8).
 */
export const backchannel: Handler = async (ctx) => {
  const { store, config, log, now } = ctx.services
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
    throw new GatehouseError('idp_unavailable', 'the identity provider\'s keys could not be fetched', { cause: err })
  }
  // Replay: a jti is accepted once while the token could still be accepted at all.
  const keepMs = (claims.iat + LOGOUT_TOKEN_MAX_AGE_SEC + 2 * CLOCK_TOLERANCE_SEC) * 1000 - now()
  const marker = `jti:${claims.iss}:${claims.jti}`
  const owner = randomUUID()
  const fresh = await call(() => store.acquireLease(marker, owner, Math.max(keepMs, 1_000), now()))
  if (!fresh) throw new GatehouseError('logout_token_invalid', 'this logout token (jti) was already used')

  const { sub, sid } = claims
  const bySub = sub !== undefined && (sid === undefined || config.backchannelLogout.allUserSessions)
  let ended: number
  try {
    // Only this frontend's sessions: its client is the logout token's audience.
    const partition = ctx.partition
    const filter = bySub ? { sub: sub!, partition } : { sid: sid!, sub, partition }
    ended = await call(() => store.deleteWhere(filter))
    await ctx.services.sessionEvents.endedWhere(filter, 'backchannel')
  } catch (err) {
    // Not done: the IdP's retry of this same token must be accepted, not refused as a replay.
    await store.releaseLease(marker, owner).catch(() => undefined)
    throw err
  }
  log.info({ event: 'backchannel_logout', requestId: ctx.requestId, sessions: ended, by: bySub ? 'sub' : 'sid' }, 'back-channel logout')
  ctx.services.telemetry.backchannelLogout('ok')
  return json(200, { sessionsEnded: ended })
}

const verifiers = new WeakMap<Frontend, Promise<(token: string) => Promise<LogoutClaims>>>()

/** Built once per frontend from the IdP's discovery document; a failed discovery is retried next time. */
function verifierFor(frontend: Frontend, now: () => number): Promise<(token: string) => Promise<LogoutClaims>> {
  let verifier = verifiers.get(frontend)
  if (!verifier) {
    verifier = frontend.oidc.metadata().then((meta) => {
      if (!meta.jwks_uri) throw new GatehouseError('idp_unavailable', 'the identity provider publishes no jwks_uri')
      return createLogoutTokenVerifier({
        issuer: meta.issuer,
        clientId: frontend.oidcConfig.clientId,
        jwksUri: meta.jwks_uri,
        algorithms: meta.id_token_signing_alg_values_supported ?? ['RS256'],
        now,
      })
    })
    verifier.catch(() => verifiers.delete(frontend))
    verifiers.set(frontend, verifier)
  }
  return verifier
}

async function call<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation()
  } catch (err) {
    throw new GatehouseError('store_unavailable', undefined, { cause: err })
  }
}
