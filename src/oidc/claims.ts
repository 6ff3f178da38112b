import type { Claim } from '../session/session.ts'

/**
 * Protocol claims that describe the token, not the user; ASP.NET's OIDC handler (and so Duende's
 * /bff/user) drops the same ones.
 */
const PROTOCOL_CLAIMS = new Set([
  'nonce',
  'at_hash',
  'c_hash',
  's_hash',
  'aud',
  'azp',
  'iat',
  'nbf',
  'exp',
  'iss',
  'auth_time_max',
  'jti',
  'sid_hash',
])

/**
 * id_token claims in the order received, then userinfo claims whose type the id_token did not carry.
 * Arrays become repeated claims of one type; objects travel as JSON text with `valueType: "json"`.
 */
export function toClaims(idToken: Record<string, unknown>, userInfo: Record<string, unknown> | undefined): Claim[] {
  const claims: Claim[] = []
  const seen = new Set<string>()
  for (const source of [idToken, userInfo ?? {}]) {
    for (const [type, value] of Object.entries(source)) {
      // `bff:` claims are gatehouse's own; an IdP must not be able to supply (and so steer) them.
      if (PROTOCOL_CLAIMS.has(type) || type.startsWith('bff:') || (source !== idToken && seen.has(type))) continue
      seen.add(type)
      for (const item of Array.isArray(value) ? value : [value]) {
        const claim = toClaim(type, item)
        if (claim) claims.push(claim)
      }
    }
  }
  return claims
}

function toClaim(type: string, value: unknown): Claim | undefined {
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return { type, value }
  if (value !== null && typeof value === 'object') return { type, value: JSON.stringify(value), valueType: 'json' }
  return undefined
}

/** XML-schema type URIs of claim values, as ASP.NET's JSON web token handler names them (and Duende's /bff/user shows). */
const XSD = 'http://www.w3.org/2001/XMLSchema#'

/** A claim as /bff/user sends it by default: Duende.BFF's shape, every IdP value a string. */
export interface ClaimRecord {
  type: string
  value: string | number
  valueType: string | null
}

/**
 * Claims as Duende.BFF's /bff/user returns them: values as strings (`true` → "true", `42` → "42"),
 * `valueType` null for strings, the XML-schema type URI for booleans and numbers, "JSON" for objects
 * (whose value is already JSON text). Front-ends written for Duende compare strings.
 */
export function toClaimRecords(claims: readonly Claim[]): ClaimRecord[] {
  return claims.map(({ type, value, valueType }) => {
    if (valueType === 'json') return { type, value: String(value), valueType: 'JSON' }
    if (typeof value === 'boolean') return { type, value: String(value), valueType: `${XSD}boolean` }
    if (typeof value === 'number') return { type, value: String(value), valueType: `${XSD}${numberType(value)}` }
    return { type, value, valueType: null }
  })
}

function numberType(value: number): string {
  if (!Number.isInteger(value)) return 'double'
  return value >= -(2 ** 31) && value < 2 ** 31 ? 'integer32' : 'integer64'
}
