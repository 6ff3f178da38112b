import type { IncomingMessage, ServerResponse } from 'node:http'
import { randomBytes } from 'node:crypto'
import { exportJWK, generateKeyPair } from 'jose'
import type { GatehouseOptions } from '../../src/index.ts'
import { startIdp, type IdpClient, type IdpOptions, type IdpSigningAlg, type RunningIdp } from '../../src/demo/idp.ts'
import type { FlowOptions } from './flow.ts'

/**
 * The embedded IdP in the shapes of real identity providers, for interop tests: where the issuer
 * lives, which endpoints exist, how clients authenticate, what it signs with, and what its
 * discovery document says. Each shape is the IdP's options, what the test client's registration
 * needs, and what gatehouse's `oidc` block would say for it (some depend on the IdP's port).
 */

/** gatehouse's `oidc` options, including keys a newer gatehouse reads (allowedTenants, endSessionEndpoint…). */
export type OidcOptions = Partial<GatehouseOptions['oidc']> & Record<string, unknown>

export interface IdpShape {
  name: string
  idp: Partial<IdpOptions>
  /** Merged into the registered test client. */
  client?: Partial<IdpClient>
  /** gatehouse's `oidc` options for this IdP (authority by default its issuer); called once the IdP runs. */
  oidc?: (idp: RunningIdp) => OidcOptions
  /** What the IdP offers, for the rows that depend on it. */
  offers: { endSession: boolean; revocation: boolean; refreshTokens: boolean; userinfo: boolean }
}

/** An Entra ID tenant id (a made-up GUID, as Entra's are). */
export const TENANT_A = '3f2a1c9e-7b4d-4e21-9a8c-5d6e7f809a1b'

const ALL = { endSession: true, revocation: true, refreshTokens: true, userinfo: true }

/** Keycloak: the issuer is a realm under the server, `http://host:port/realms/demo`. */
export function keycloak(): IdpShape {
  return { name: 'Keycloak (realm issuer /realms/demo)', idp: { issuerPath: '/realms/demo' }, offers: ALL }
}

/** Entra ID, one tenant: issuer `/<tenant>/v2.0`, a `tid` claim in the id_token, no revocation endpoint. */
export function entraSingleTenant(): IdpShape {
  return {
    name: 'Entra ID single-tenant (issuer /<tenant>/v2.0, no revocation)',
    idp: { issuerPath: `/${TENANT_A}/v2.0`, extraClaims: { tid: TENANT_A }, revocation: false, endSession: true },
    oidc: (idp) => ({ authority: `${idp.origin}/${TENANT_A}/v2.0` }),
    offers: { ...ALL, revocation: false },
  }
}

/**
 * Entra ID's multi-tenant authority: `/common/v2.0/.well-known/openid-configuration` is the tenant's
 * document with the issuer as a template, `http://host:port/{tenantid}/v2.0`, exactly as
 * Microsoft's /common document publishes it. gatehouse's authority is `${origin}/common/v2.0`.
 */
export function entraMultiTenant(): IdpShape {
  const single = entraSingleTenant()
  return {
    ...single,
    name: 'Entra ID multi-tenant (/common authority, templated issuer)',
    idp: { ...single.idp, intercept: commonDiscovery },
    oidc: (idp) => ({ authority: `${idp.origin}/common/v2.0` }),
  }
}

function commonDiscovery(req: IncomingMessage, res: ServerResponse, path: string): boolean {
  if (req.method !== 'GET' || path !== '/common/v2.0/.well-known/openid-configuration') return false
  const origin = `http://${req.headers.host}`
  void fetch(`${origin}/${TENANT_A}/v2.0/.well-known/openid-configuration`)
    .then((r) => r.json() as Promise<Record<string, unknown>>)
    .then(
      (tenant) => sendJson(res, 200, { ...tenant, issuer: `${origin}/{tenantid}/v2.0` }),
      () => sendJson(res, 502, { error: 'tenant discovery failed' }),
    )
  return true
}

/**
 * Auth0: the issuer has a trailing slash (`http://host:port/`) and there is no RP-initiated logout in
 * discovery; its own `/v2/logout?returnTo=…&client_id=…` redirects to returnTo.
 */
export function auth0(): IdpShape {
  return {
    name: 'Auth0 (issuer with trailing slash, no end_session_endpoint)',
    idp: { issuerPath: '/', endSession: false, intercept: auth0Logout },
    oidc: (idp) => ({ authority: idp.origin }),
    offers: { ...ALL, endSession: false },
  }
}

function auth0Logout(req: IncomingMessage, res: ServerResponse, path: string): boolean {
  if (path !== '/v2/logout') return false
  const returnTo = new URL(req.url ?? '/', 'http://idp.invalid').searchParams.get('returnTo')
  if (returnTo) res.writeHead(302, { location: returnTo }).end()
  else res.writeHead(200, { 'content-type': 'text/plain' }).end('signed out')
  return true
}

/** An IdP that accepts (and publishes) client_secret_post only. */
export function strictClientAuth(): IdpShape {
  return {
    name: 'strict IdP (client_secret_post only)',
    idp: { clientAuthMethods: ['client_secret_post'] },
    client: { token_endpoint_auth_method: 'client_secret_post' },
    offers: ALL,
  }
}

export function signedWith(alg: IdpSigningAlg): IdpShape {
  return { name: `${alg}-signing IdP`, idp: { signingAlg: alg }, offers: ALL }
}

export function noUserinfo(): IdpShape {
  return { name: 'IdP without a UserInfo endpoint', idp: { userinfo: false }, offers: { ...ALL, userinfo: false } }
}

export function noRefreshToken(): IdpShape {
  return {
    name: 'IdP that issues no refresh token',
    idp: { refreshTokens: false },
    offers: { ...ALL, refreshTokens: false },
  }
}

/** Signs with ES256 while its discovery still lists only RS256 in id_token_signing_alg_values_supported. */
export function staleAlgorithmList(): IdpShape {
  return {
    name: 'IdP with a stale id_token_signing_alg_values_supported',
    idp: { signingAlg: 'ES256', discovery: (doc) => ({ ...doc, id_token_signing_alg_values_supported: ['RS256'] }) },
    offers: ALL,
  }
}

/**
 * Its JWKS holds another freshly generated key of the same type, under the signing key's kid: the
 * id_token's signature does not verify with anything the JWKS publishes.
 */
export async function foreignJwks(): Promise<IdpShape> {
  const { publicKey } = await generateKeyPair('RS256', { extractable: true })
  const foreign = await exportJWK(publicKey)
  let kid: unknown = randomBytes(8).toString('hex')
  return {
    name: 'IdP whose JWKS does not hold its signing key',
    idp: {
      intercept: (req, res, path) => {
        if (req.method !== 'GET' || path !== '/jwks') return false
        sendJson(res, 200, { keys: [{ ...foreign, kid, alg: 'RS256', use: 'sig' }] })
        return true
      },
    },
    oidc: (idp) => {
      kid = idp.signingKey.kid
      return {}
    },
    offers: ALL,
  }
}

/** The client is registered for HS256 id_tokens, which the IdP signs with the client secret. */
export function hs256IdToken(): IdpShape {
  return {
    name: 'IdP signing id_tokens with HS256 (the client secret)',
    idp: {},
    client: { id_token_signed_response_alg: 'HS256' },
    offers: ALL,
  }
}

/** Its discovery document names another issuer than the URL it is served under. */
export function issuerMismatch(published = 'http://127.0.0.1:1/other'): IdpShape {
  return {
    name: 'IdP whose discovery names another issuer',
    idp: { discovery: (doc) => ({ ...doc, issuer: published }) },
    offers: ALL,
  }
}

/** FlowOptions for a shape, with more options merged in (`oidc` on top of the shape's own). */
export function shapeFlow(
  shape: IdpShape,
  more: Omit<FlowOptions, 'oidc'> & { oidc?: (idp: RunningIdp) => OidcOptions } = {},
): FlowOptions {
  return {
    ...more,
    idp: { ...shape.idp, ...more.idp },
    client: { ...shape.client, ...more.client },
    oidc: (idp) => ({ ...shape.oidc?.(idp), ...more.oidc?.(idp) }),
  }
}

/** Starts an IdP of this shape on its own (clients as given, the shape's client settings merged into each). */
export function startShapeIdp(
  shape: IdpShape,
  clients: IdpClient[],
  more: Partial<IdpOptions> = {},
): Promise<RunningIdp> {
  return startIdp({ ...shape.idp, ...more, clients: clients.map((c) => ({ ...c, ...shape.client })) })
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body))
}
