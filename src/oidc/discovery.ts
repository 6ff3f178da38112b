import { GatehouseError } from '../errors.ts'

/** The discovery document's URL: the authority with or without its trailing slash gives the same one (OIDC Discovery §4). */
export function discoveryUrl(authority: string): URL {
  const url = new URL(authority)
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/.well-known/openid-configuration`
  return url
}

/**
 * Fetches and reads the IdP's discovery document. Every failure is a GatehouseError idp_unavailable
 * whose report names the cause (`unreachable`, `bad_status`, `not_json`, `invalid_document`) and the URL.
 */
export async function fetchDiscovery(
  authority: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<Record<string, unknown>> {
  const url = discoveryUrl(authority)
  const fail = (cause: string, detail: string, fields: Record<string, unknown> = {}, err?: unknown): GatehouseError =>
    new GatehouseError('idp_unavailable', `identity provider discovery failed: ${detail}`, {
      cause: err,
      report: { event: 'discovery_failed', cause, url: url.href, ...fields },
    })
  let res: Response
  try {
    const timeout = AbortSignal.timeout(timeoutMs)
    // Redirects are not followed: the document must come from the authority itself.
    res = await fetch(url, {
      headers: { accept: 'application/json' },
      redirect: 'manual',
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
    })
  } catch (err) {
    throw fail(
      'unreachable',
      `${url.href} could not be fetched`,
      { error: err instanceof Error ? `${err.name}: ${err.message}` : 'unknown' },
      err,
    )
  }
  if (res.status !== 200) {
    await res.body?.cancel()
    throw fail('bad_status', `${url.href} answered ${res.status}`, { answered: res.status })
  }
  let document: unknown
  try {
    document = await res.json()
  } catch (err) {
    throw fail('not_json', `${url.href} did not answer JSON`, {}, err)
  }
  if (document === null || typeof document !== 'object' || Array.isArray(document))
    throw fail('invalid_document', 'the document is not a JSON object')
  const doc = document as Record<string, unknown>
  const missing = ['issuer', 'authorization_endpoint', 'token_endpoint', 'jwks_uri'].filter(
    (key) => typeof doc[key] !== 'string' || !URL.canParse(doc[key] as string),
  )
  if (missing.length) throw fail('invalid_document', `the document lacks ${missing.join(', ')}`, { missing })
  return doc
}
