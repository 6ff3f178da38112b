import type { RemoteApiConfig } from '../config/types.ts'

/** An RFC 8707 resource indicator and the scopes to ask for in tokens restricted to it. */
export interface ResourceRequest {
  resource: string
  scopes: readonly string[]
}

/** The resource an API's tokens must be restricted to; undefined: the API takes the general token. */
export function resourceOf(api: Pick<RemoteApiConfig, 'resource' | 'scopes'>): ResourceRequest | undefined {
  return api.resource === undefined ? undefined : { resource: api.resource, scopes: api.scopes }
}

/**
 * Where a session keeps the token for a request. APIs naming the same resource with other scopes
 * get tokens of their own. Resource indicators hold no whitespace (validated), so a space separates.
 */
export function resourceKey(request: ResourceRequest): string {
  return [request.resource, ...[...request.scopes].sort()].join(' ')
}

/** The token-request parameters (RFC 8707 §2.2): `resource`, and `scope` when the API names scopes. */
export function resourceParameters(request: ResourceRequest): Record<string, string> {
  return request.scopes.length
    ? { resource: request.resource, scope: request.scopes.join(' ') }
    : { resource: request.resource }
}

/**
 * What a login must ask for so that the refresh token may later be exchanged for each API's resource
 * token (RFC 8707 §2.1: several `resource` parameters; the IdP ties them to the grant): every
 * configured resource, and every scope one of them needs.
 */
export function loginResources(apis: readonly Pick<RemoteApiConfig, 'resource' | 'scopes' | 'token'>[]): {
  resources: string[]
  scopes: string[]
} {
  const withResource = apis.filter(
    (api) => api.resource !== undefined && api.token !== 'none' && api.token !== 'client',
  )
  return {
    resources: [...new Set(withResource.map((api) => api.resource!))],
    scopes: [...new Set(withResource.flatMap((api) => api.scopes))],
  }
}
