import * as oidc from 'openid-client'
import { GatehouseError } from '../errors.ts'

const UNREACHABLE = new Set(['OAUTH_TIMEOUT', 'OAUTH_ABORT', 'OAUTH_RESPONSE_IS_NOT_CONFORM', 'OAUTH_RESPONSE_IS_NOT_JSON', 'undefined'])

/** The IdP said no, or its answer failed validation → 400; it could not be reached → 502. */
export function classifyIdpFailure(err: unknown): GatehouseError {
  if (err instanceof GatehouseError) return err
  if (err instanceof oidc.ResponseBodyError || err instanceof oidc.AuthorizationResponseError) {
    return new GatehouseError('idp_error', `the identity provider answered "${errorCode(err.error)}"`, { cause: err })
  }
  if (err instanceof oidc.ClientError && !UNREACHABLE.has(String(err.code))) {
    return new GatehouseError('idp_error', 'the identity provider\'s response failed validation', { cause: err })
  }
  return new GatehouseError('idp_unavailable', undefined, { cause: err })
}

/** An OAuth error code as the IdP sent it (RFC 6749 §5.2 charset), or "invalid" for anything else. */
export function errorCode(value: string): string {
  return /^[\x20-\x21\x23-\x5B\x5D-\x7E]{1,64}$/.test(value) ? value : 'invalid'
}
