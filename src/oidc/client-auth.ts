import { importJWK } from 'jose'
import * as oidc from 'openid-client'
import type { ClientAuthMethod, OidcConfig } from '../config/types.ts'
import { GatehouseError } from '../errors.ts'

export interface ClientAuthChoice {
  method: ClientAuthMethod
  /** Chosen from discovery (no oidc.clientAuth): logged at start with what the IdP lists. */
  fromDiscovery: boolean
  /** The IdP lists none of the methods gatehouse could use with the configured credentials. */
  unlisted: boolean
}

/**
 * The token endpoint authentication method: oidc.clientAuth when set; otherwise the first method the
 * IdP's `token_endpoint_auth_methods_supported` lists that the configured credentials allow —
 * private_key_jwt (with a key), then client_secret_basic, then client_secret_post. Without the list,
 * RFC 8414 §2's default, client_secret_basic (or private_key_jwt with a key and no secret).
 */
export function chooseClientAuth(
  o: Pick<OidcConfig, 'clientAuth' | 'clientSecret' | 'privateKeyJwk'>,
  supported: unknown,
): ClientAuthChoice {
  if (o.clientAuth) return { method: o.clientAuth, fromDiscovery: false, unlisted: false }
  const possible: ClientAuthMethod[] = [
    ...(o.privateKeyJwk ? ['private_key_jwt' as const] : []),
    ...(o.clientSecret ? ['client_secret_basic' as const, 'client_secret_post' as const] : []),
  ]
  if (possible.length === 0) return { method: 'none', fromDiscovery: false, unlisted: false }
  if (!Array.isArray(supported))
    return { method: o.privateKeyJwk ? 'private_key_jwt' : 'client_secret_basic', fromDiscovery: true, unlisted: false }
  const listed = possible.find((method) => supported.includes(method))
  return listed
    ? { method: listed, fromDiscovery: true, unlisted: false }
    : { method: possible[0]!, fromDiscovery: true, unlisted: true }
}

export async function createClientAuth(
  method: ClientAuthMethod,
  o: Pick<OidcConfig, 'clientSecret' | 'privateKeyJwk'>,
): Promise<oidc.ClientAuth> {
  switch (method) {
    case 'client_secret_basic':
      return oidc.ClientSecretBasic(o.clientSecret)
    case 'client_secret_post':
      return oidc.ClientSecretPost(o.clientSecret)
    case 'private_key_jwt': {
      const jwk = o.privateKeyJwk!
      const alg = typeof jwk.alg === 'string' ? jwk.alg : 'RS256'
      const key = await importJWK(jwk, alg)
      if (key instanceof Uint8Array)
        throw new GatehouseError('config_invalid', 'oidc.privateKeyJwk must be an asymmetric private key')
      return oidc.PrivateKeyJwt({ key, kid: typeof jwk.kid === 'string' ? jwk.kid : undefined } as oidc.PrivateKey)
    }
    case 'none':
      return oidc.None()
  }
}
