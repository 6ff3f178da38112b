import {
  createRemoteJWKSet,
  decodeJwt,
  errors as joseErrors,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose'

/** OIDC Back-Channel Logout 1.0 §2.4: the event member a logout token must carry. */
export const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout'
/** How old (by `iat`) a logout token may be; its jti is remembered for as long as it could be accepted. */
export const LOGOUT_TOKEN_MAX_AGE_SEC = 300
export const CLOCK_TOLERANCE_SEC = 60

export interface LogoutClaims {
  iss: string
  jti: string
  sub: string | undefined
  sid: string | undefined
  /** Seconds since the epoch; with `LOGOUT_TOKEN_MAX_AGE_SEC` it bounds how long the jti must be kept. */
  iat: number
}

export interface LogoutTokenVerifierOptions {
  /**
   * The issuer the token must carry — or, for IdPs with several (a `{tenantid}` template), the one
   * its own unverified claims name, which throws LogoutTokenError when that issuer is not accepted.
   */
  issuer: string | ((claims: JWTPayload) => Promise<string>)
  clientId: string
  /** The IdP's keys: a JWKS shared with id_token checks, or its URL. */
  jwks: JWTVerifyGetKey | string
  /** The IdP's id_token signing algorithms (asymmetric only; never "none"). */
  algorithms: string[]
  now?: () => number
}

/** Why a logout token was refused — for logs and the 400 body; never includes the token. */
export class LogoutTokenError extends Error {
  override name = 'LogoutTokenError'
}

/**
 * Validates a logout token as OIDC Back-Channel Logout 1.0 §2.6 asks, one rule per line. The
 * signature check uses the IdP's JWKS (cached by jose, fetched again once for an unknown `kid`).
 * Replay (jti) is the caller's job: it needs the shared store.
 */
export function createLogoutTokenVerifier(
  options: LogoutTokenVerifierOptions,
): (token: string) => Promise<LogoutClaims> {
  const jwks =
    typeof options.jwks === 'string'
      ? createRemoteJWKSet(new URL(options.jwks), { cooldownDuration: 30_000, cacheMaxAge: 10 * 60_000 })
      : options.jwks
  const algorithms = options.algorithms.filter((alg) => alg !== 'none' && !alg.startsWith('HS'))
  return async (token) => {
    if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token))
      throw new LogoutTokenError('not a signed JWT (JWS compact serialisation)')
    let payload: JWTPayload
    let typ: string | undefined
    const issuer = typeof options.issuer === 'string' ? options.issuer : await options.issuer(unverifiedClaims(token))
    try {
      const verified = await jwtVerify(token, jwks, {
        issuer, // iss must be the IdP (the session's issuer: checked by the caller when there are several)
        audience: options.clientId, // aud must contain our client_id
        algorithms, // no "none", only the IdP's algorithms
        maxTokenAge: LOGOUT_TOKEN_MAX_AGE_SEC, // iat required and recent
        clockTolerance: CLOCK_TOLERANCE_SEC, // exp, if present, is checked too
        requiredClaims: ['iat', 'jti', 'events'],
        ...(options.now ? { currentDate: new Date(options.now()) } : {}),
      })
      payload = verified.payload
      typ = verified.protectedHeader.typ
    } catch (err) {
      // Not a verdict on the token (the JWKS could not be fetched or read): let the caller answer 5xx
      // so the IdP may retry. jose reports a non-200 JWKS answer as a generic JOSEError.
      if (
        !(err instanceof joseErrors.JOSEError) ||
        err instanceof joseErrors.JWKSTimeout ||
        err instanceof joseErrors.JWKSInvalid ||
        err.code === 'ERR_JOSE_GENERIC'
      )
        throw err
      throw new LogoutTokenError(describeJoseError(err))
    }
    // §2.4 recommends explicit typing; a typ naming another kind of JWT (or not a string at all) is refused.
    if (
      typ !== undefined &&
      (typeof typ !== 'string' || !['logout+jwt', 'application/logout+jwt', 'jwt'].includes(typ.toLowerCase()))
    )
      throw new LogoutTokenError(`typ ${JSON.stringify(typ)} is not a logout token`)
    if (typeof payload.jti !== 'string' || payload.jti.length === 0 || payload.jti.length > 256)
      throw new LogoutTokenError('jti must be a non-empty string')
    const events = payload.events
    if (events === null || typeof events !== 'object' || Array.isArray(events))
      throw new LogoutTokenError('events must be a JSON object')
    const member = (events as Record<string, unknown>)[BACKCHANNEL_EVENT]
    if (member === null || typeof member !== 'object' || Array.isArray(member))
      throw new LogoutTokenError('events lacks the back-channel logout member')
    if ('nonce' in payload) throw new LogoutTokenError('a logout token must not contain nonce')
    const sub = payload.sub
    const sid = payload.sid
    if (sub !== undefined && (typeof sub !== 'string' || sub === ''))
      throw new LogoutTokenError('sub must be a non-empty string')
    if (sid !== undefined && (typeof sid !== 'string' || sid === ''))
      throw new LogoutTokenError('sid must be a non-empty string')
    if (sub === undefined && sid === undefined) throw new LogoutTokenError('sub or sid is required')
    return { iss: payload.iss!, jti: payload.jti, sub, sid: sid as string | undefined, iat: payload.iat! }
  }
}

function unverifiedClaims(token: string): JWTPayload {
  try {
    return decodeJwt(token)
  } catch {
    throw new LogoutTokenError('malformed token')
  }
}

function describeJoseError(err: unknown): string {
  if (err instanceof joseErrors.JWTClaimValidationFailed || err instanceof joseErrors.JWTExpired)
    return `claim check failed: ${err.message}`
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'signing algorithm not allowed'
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'signature does not verify'
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'no key of the identity provider matches'
  if (err instanceof joseErrors.JOSEError) return err.message
  return 'malformed token'
}
