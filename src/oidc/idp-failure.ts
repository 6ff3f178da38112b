import * as oauth from 'oauth4webapi'
import * as oidc from 'openid-client'
import { GatehouseError, type FailureReport } from '../errors.ts'

const UNREACHABLE = new Set([
  'OAUTH_TIMEOUT',
  'OAUTH_ABORT',
  oauth.RESPONSE_IS_NOT_CONFORM,
  oauth.RESPONSE_IS_NOT_JSON,
  'undefined',
])
const ID_TOKEN_CHECKS = new Set<string>([
  oauth.JWT_CLAIM_COMPARISON,
  oauth.JWT_TIMESTAMP_CHECK,
  oauth.KEY_SELECTION,
  oauth.UNSUPPORTED_OPERATION,
])

/** An openid-client failure that means no usable answer came (timeout, abort, a non-OAuth status or body, a network error). */
function isUnreachable(err: Error & { code?: unknown }): boolean {
  return UNREACHABLE.has(String(err.code))
}

/** Which step failed (the log line's `event`) and how the client authenticated, to name the key to change. */
export interface FailureContext {
  event: 'login_failed' | 'refresh_failed' | 'logout_failed' | 'client_token_failed'
  clientAuth?: { method: string; configKey: string }
}

/**
 * Turns what openid-client, oauth4webapi or fetch threw into the answer and its log line: the IdP
 * said no, or its answer failed validation → 400 with the IdP's error (and for `invalid_client`,
 * the authentication method used and the key to change); it could not be reached → 502.
 */
export function classifyIdpFailure(err: unknown, context: FailureContext): GatehouseError {
  const { event } = context
  if (err instanceof GatehouseError)
    return err.report
      ? err
      : new GatehouseError(err.code, err.message, {
          cause: err.cause,
          errors: err.errors,
          report: { event, cause: err.code },
        })
  const answer = oauthError(err)
  if (answer) {
    const error = errorCode(answer.error)
    const description = errorDescription(answer.error_description)
    if (error === 'invalid_client' && context.clientAuth) {
      const { method, configKey } = context.clientAuth
      return new GatehouseError(
        'idp_error',
        `the identity provider refused the client's authentication (${method}); check ${configKey}`,
        {
          cause: err,
          report: {
            event,
            cause: 'client_auth_refused',
            method,
            configKey,
            error,
            ...(description ? { error_description: description } : {}),
            hint: `the identity provider did not accept ${method}: set ${configKey} to the method the client is registered with`,
          },
        },
      )
    }
    return idpAnswered(event, error, description, err)
  }
  const code = err instanceof Error && 'code' in err ? String(err.code) : 'undefined'
  if (
    (err instanceof oidc.ClientError ||
      err instanceof oauth.OperationProcessingError ||
      err instanceof oauth.UnsupportedOperationError) &&
    !isUnreachable(err)
  ) {
    const check = failedCheck(err)
    if (check !== undefined) {
      return new GatehouseError('idp_error', `the id_token failed validation (${check})`, {
        cause: err,
        report: { event, cause: 'id_token_invalid', check },
      })
    }
    return new GatehouseError('idp_error', "the identity provider's response failed validation", {
      cause: err,
      report: { event, cause: 'response_invalid', problem: err.message },
    })
  }
  return new GatehouseError('idp_unavailable', undefined, {
    cause: err,
    report: {
      event,
      cause: 'idp_unavailable',
      error: err instanceof Error ? `${err.name}(${code}): ${err.message}` : 'unknown',
    },
  })
}

/**
 * The OAuth error the IdP answered with: in the body (RFC 6749 §5.2), in the authorization response,
 * or — for a refused client authentication by HTTP Basic — in a WWW-Authenticate challenge (§5.2's 401).
 */
function oauthError(err: unknown): { error: string; error_description?: unknown } | undefined {
  if (err instanceof oidc.ResponseBodyError || err instanceof oidc.AuthorizationResponseError) return err
  if (err instanceof oidc.WWWAuthenticateChallengeError) {
    const challenge = err.cause.find((c) => typeof c.parameters.error === 'string')
    if (challenge)
      return { error: challenge.parameters.error!, error_description: challenge.parameters.error_description }
    if (err.status === 401) return { error: 'invalid_client', error_description: undefined }
  }
  return undefined
}

/** Which id_token check failed (`iss`, `aud`, `nonce`, `exp`, `alg`, `signature`…), when the error is about the id_token. */
function failedCheck(err: Error & { code?: string }): string | undefined {
  const claim = claimOf(err.cause)
  if (claim !== undefined) return claim
  const header = /JWT "(\w+)" header/.exec(err.message)
  if (header) return header[1]
  if (err.code !== undefined && ID_TOKEN_CHECKS.has(err.code))
    return err.code === oauth.KEY_SELECTION ? 'key' : err.message
  if (/ID Token|JWT/.test(err.message)) return err.message
  if (err.cause instanceof Error) return failedCheck(err.cause)
  return undefined
}

function claimOf(cause: unknown): string | undefined {
  if (cause === null || typeof cause !== 'object' || !('claim' in cause)) return undefined
  const claim = (cause as { claim: unknown }).claim
  return typeof claim === 'string' ? claim : undefined
}

/** An OAuth error code as the IdP sent it (RFC 6749 §5.2 charset), or "invalid" for anything else. */
export function errorCode(value: string): string {
  return /^[\x20-\x21\x23-\x5B\x5D-\x7E]{1,64}$/.test(value) ? value : 'invalid'
}

/** The IdP's error_description for the log: its charset only (RFC 6749 §5.2), at most 300 characters. */
export function errorDescription(value: unknown): string | undefined {
  if (typeof value !== 'string' || value === '') return undefined
  return value.replace(/[^\x20-\x21\x23-\x5B\x5D-\x7E]/g, '?').slice(0, 300)
}

/** An OAuth error in the authorization response (`?error=…` at the callback), as the login's answer and its log line. */
export function authorizationError(params: URLSearchParams): GatehouseError {
  return idpAnswered(
    'login_failed',
    errorCode(params.get('error') ?? ''),
    errorDescription(params.get('error_description')),
    undefined,
  )
}

function idpAnswered(
  event: FailureContext['event'],
  error: string,
  description: string | undefined,
  cause: unknown,
): GatehouseError {
  return new GatehouseError('idp_error', `the identity provider answered "${error}"`, {
    cause,
    report: { event, cause: 'idp_error', error, ...(description ? { error_description: description } : {}) },
  })
}

/** Why a refresh grant gave no tokens, as the token service acts on it. */
export type RefreshFailure =
  /** RFC 6749 §5.2: the refresh token is no longer valid. */
  | { kind: 'invalid_grant'; cause: unknown }
  /** The IdP will not issue a token for the requested resource or its scopes (RFC 8707 §2); `error` is its code. */
  | { kind: 'resource_refused'; error: string; cause: unknown }
  /**
   * Every other failure. `transient`: it may pass (no answer, a 5xx). `report`: for one that will come
   * again on retry, the IdP's error (or the refused client authentication, with the key to change).
   * `chain`: the error chain for the log line, never a body.
   */
  | { kind: 'unavailable'; transient: boolean; report: FailureReport | undefined; chain: string; cause: unknown }

/** A failed refresh grant; `resourceRequested`: it asked for a token for one resource (RFC 8707 §2.2). */
export function classifyRefreshFailure(
  err: unknown,
  resourceRequested: boolean,
  context: FailureContext,
): RefreshFailure {
  const refused = resourceRequested ? resourceRefusal(err) : undefined
  if (refused !== undefined) return { kind: 'resource_refused', error: refused, cause: err }
  if (err instanceof oidc.ResponseBodyError && err.error === 'invalid_grant')
    return { kind: 'invalid_grant', cause: err }
  const transient = isTransient(err)
  return {
    kind: 'unavailable',
    transient,
    report: transient ? undefined : classifyIdpFailure(err, context).report,
    chain: errorChain(err),
    cause: err,
  }
}

/** A failed client-credentials grant: the resource refused (403), else the IdP unavailable (502). */
export function classifyClientTokenFailure(err: unknown): GatehouseError {
  const refused = resourceRefusal(err)
  if (refused !== undefined)
    return new GatehouseError(
      'resource_refused',
      `the identity provider refused a client token for this API (${refused})`,
      { cause: err },
    )
  return new GatehouseError('idp_unavailable', 'the client-credentials grant failed', { cause: err })
}

/** The IdP's error when it will not issue a token for the requested resource or its scopes (RFC 8707 §2, RFC 6749 §5.2). */
function resourceRefusal(err: unknown): string | undefined {
  return err instanceof oidc.ResponseBodyError && (err.error === 'invalid_target' || err.error === 'invalid_scope')
    ? err.error
    : undefined
}

/**
 * A refresh failure that may pass: no answer (unreachable, timed out), an answer that is no OAuth
 * error (a proxy's HTML page, a wrong status), or a 5xx. An OAuth error answer below 500
 * (invalid_client, …) or an answer that fails validation (an id_token with a bad signature or
 * issuer) will come again on retry.
 */
function isTransient(err: unknown): boolean {
  if (err instanceof oidc.ResponseBodyError || err instanceof oidc.WWWAuthenticateChallengeError)
    return err.status >= 500
  if (err instanceof GatehouseError) return err.code === 'idp_unavailable'
  if (err instanceof oidc.ClientError) return isUnreachable(err)
  return true
}

/** Name, code and message down the cause chain, and the IdP's HTTP status; never a body, so never a token. */
function errorChain(err: unknown): string {
  const links: string[] = []
  for (let current = err, depth = 0; current instanceof Error && depth < 4; current = current.cause, depth++) {
    const code = 'code' in current ? `(${String(current.code)})` : ''
    const answer =
      current instanceof oidc.ResponseBodyError
        ? ` [HTTP ${current.status} ${current.error}]`
        : current.cause instanceof Response
          ? ` [HTTP ${current.cause.status}]`
          : ''
    links.push(`${current.name}${code}: ${current.message}${answer}`)
  }
  return links.length ? links.join(' <- ') : typeof err
}
