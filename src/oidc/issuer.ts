/**
 * Which issuer an identity provider may speak as. Discovery names one issuer (OIDC Discovery §4.3:
 * it must be the authority, exactly); multi-tenant IdPs such as Entra ID's `/common` publish a
 * template (`https://login.microsoftonline.com/{tenantid}/v2.0`) that each id_token fills in with
 * its own `tid` claim. Pure: the OIDC client asks it, once per discovery and once per token.
 */

export const TENANT_PLACEHOLDER = '{tenantid}'

/** What the configuration says about issuers (oidc.authority, oidc.issuer, oidc.allowedIssuers, oidc.allowedTenants). */
export interface IssuerSettings {
  authority: string
  issuer: string | undefined
  allowedIssuers: readonly string[] | undefined
  allowedTenants: readonly string[] | undefined
}

/** Why an issuer was refused: a stable cause for the log, and what was expected. */
export interface IssuerRefusal {
  cause: 'issuer_mismatch' | 'tenant_not_allowed' | 'issuer_not_allowed' | 'tenant_missing'
  expected: string
  received: string | undefined
}

export type IssuerOutcome = { ok: true; issuer: string } | { ok: false; refusal: IssuerRefusal }

/** A tenant id fills one path segment of the template: never a slash, a dot segment or a query. */
export const TENANT_ID = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/

export function isTemplate(issuer: string): boolean {
  return issuer.includes(TENANT_PLACEHOLDER)
}

export function fillTemplate(template: string, tenant: string): string | undefined {
  return TENANT_ID.test(tenant) && tenant !== '..' ? template.replaceAll(TENANT_PLACEHOLDER, tenant) : undefined
}

/** Whether `value` is `template` with one tenant id in place of each `{tenantid}`. */
export function instantiates(template: string, value: string): boolean {
  const parts = template.split(TENANT_PLACEHOLDER)
  if (parts.length === 1) return template === value
  const pattern = new RegExp(`^${parts.map(escapeRegExp).join(`(${TENANT_ID.source.slice(1, -1)})`)}$`)
  const match = pattern.exec(value)
  if (!match) return false
  const tenants = match.slice(1)
  return tenants.every((t) => t === tenants[0] && t !== '..')
}

/** The authority as written, without and with one trailing slash: ASP.NET accepts either spelling. */
export function authoritySpellings(authority: string): string[] {
  const bare = authority.replace(/\/+$/, '')
  return [bare, `${bare}/`]
}

/**
 * The issuer a discovery document publishes, checked against the configuration. With `oidc.issuer`
 * it must be exactly that (or a template that value fills in); otherwise it must be the authority
 * with or without a trailing slash — or, for a template, the authority's own URL with one tenant
 * segment (`/common/v2.0`, `/organizations/v2.0` or a tenant id) in place of `{tenantid}`.
 */
export function checkPublishedIssuer(settings: IssuerSettings, published: string): IssuerOutcome {
  if (settings.issuer !== undefined) {
    const ok = published === settings.issuer || (isTemplate(published) && instantiates(published, settings.issuer))
    return ok
      ? { ok: true, issuer: published }
      : { ok: false, refusal: { cause: 'issuer_mismatch', expected: settings.issuer, received: published } }
  }
  const spellings = authoritySpellings(settings.authority)
  if (spellings.includes(published)) return { ok: true, issuer: published }
  if (isTemplate(published) && spellings.some((s) => instantiates(published, s))) return { ok: true, issuer: published }
  if (settings.allowedIssuers?.includes(published)) return { ok: true, issuer: published }
  return { ok: false, refusal: { cause: 'issuer_mismatch', expected: settings.authority, received: published } }
}

/**
 * The issuer one token must carry (id_token or logout token), from its own — not yet verified —
 * `iss` and `tid`: the signature and every other claim are checked against the answer afterwards,
 * so a token cannot choose an issuer outside what this returns.
 */
export function expectedTokenIssuer(
  settings: IssuerSettings,
  published: string,
  claims: { iss?: unknown; tid?: unknown },
): IssuerOutcome {
  const iss = typeof claims.iss === 'string' ? claims.iss : undefined
  if (settings.issuer !== undefined) return { ok: true, issuer: settings.issuer }
  if (!isTemplate(published)) {
    // allowedIssuers: more issuers than the published one (an IdP moving host names); exact strings.
    if (iss !== undefined && iss !== published && settings.allowedIssuers?.includes(iss))
      return { ok: true, issuer: iss }
    return { ok: true, issuer: published }
  }
  // Entra's id_tokens carry tid; a token without it (a logout token) names its tenant in iss alone.
  const tenant = typeof claims.tid === 'string' ? claims.tid : iss === undefined ? undefined : tenantOf(published, iss)
  const filled = tenant === undefined ? undefined : fillTemplate(published, tenant)
  if (filled === undefined)
    return { ok: false, refusal: { cause: 'tenant_missing', expected: published, received: iss } }
  if (settings.allowedTenants && !settings.allowedTenants.includes(tenant!))
    return {
      ok: false,
      refusal: { cause: 'tenant_not_allowed', expected: settings.allowedTenants.join(' '), received: tenant },
    }
  if (settings.allowedIssuers && !settings.allowedIssuers.includes(filled))
    return {
      ok: false,
      refusal: { cause: 'issuer_not_allowed', expected: settings.allowedIssuers.join(' '), received: filled },
    }
  return { ok: true, issuer: filled }
}

/** The tenant segment of `issuer` where `template` has `{tenantid}`; undefined when it does not fit. */
export function tenantOf(template: string, issuer: string): string | undefined {
  if (!instantiates(template, issuer)) return undefined
  const before = template.slice(0, template.indexOf(TENANT_PLACEHOLDER))
  const end = issuer.indexOf('/', before.length)
  const tenant = issuer.slice(before.length, end === -1 ? undefined : end)
  return fillTemplate(template, tenant) === issuer ? tenant : undefined
}

/** More than one issuer can sign in: sessions must then be told apart by the issuer they recorded. */
export function acceptsSeveralIssuers(settings: IssuerSettings, published: string): boolean {
  return (
    settings.issuer === undefined &&
    (isTemplate(published) || (settings.allowedIssuers?.some((i) => i !== published) ?? false))
  )
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
