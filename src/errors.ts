/** Every error gatehouse raises on purpose has a code from this table; status and title derive from it. */
export const ERRORS = {
  config_invalid: { status: 500, title: 'Configuration is invalid' },
  bad_request: { status: 400, title: 'Bad request' },
  return_url_invalid: { status: 400, title: 'returnUrl must be a local path' },
  prompt_invalid: { status: 400, title: 'prompt is not supported by the identity provider' },
  login_state_invalid: { status: 400, title: 'Login state is missing, expired or does not match' },
  idp_error: { status: 400, title: 'The identity provider refused the login' },
  sid_mismatch: { status: 400, title: 'Logout sid does not match the session' },
  logout_token_invalid: { status: 400, title: 'Logout token rejected' },
  antiforgery_failed: { status: 401, title: 'Anti-forgery header missing or wrong' },
  session_required: { status: 401, title: 'Login required' },
  session_ended: { status: 401, title: 'Session ended; log in again' },
  admin_unauthorized: { status: 401, title: 'Admin bearer token missing or wrong' },
  path_escape: { status: 400, title: 'Path leaves its API prefix' },
  forbidden: { status: 403, title: 'Forbidden' },
  resource_refused: { status: 403, title: 'No token for this API: the identity provider grants none for its resource' },
  not_found: { status: 404, title: 'Not found' },
  payload_too_large: { status: 413, title: 'Request body too large for this API' },
  body_idle: { status: 408, title: 'The request body stopped arriving' },
  too_many_requests: { status: 429, title: 'Too many requests in flight from this client' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  misdirected_request: { status: 421, title: 'Misdirected request: this host is not served here' },
  idp_unavailable: { status: 502, title: 'Identity provider unavailable' },
  upstream_unavailable: { status: 502, title: 'API unavailable' },
  upstream_timeout: { status: 504, title: 'API did not answer in time' },
  upstream_busy: { status: 503, title: 'API busy: no connection to it became free in time' },
  store_unavailable: { status: 503, title: 'Session store unavailable' },
  internal: { status: 500, title: 'Internal error' },
} as const satisfies Record<string, { status: number; title: string }>

export type ErrorCode = keyof typeof ERRORS

/**
 * The one log line that explains a failure to an operator: a stable `event` (login_failed,
 * refresh_failed, logout_failed, discovery_failed) and `cause` (issuer_mismatch, idp_error,
 * client_auth_refused…) with what explains it (expected and published values, the IdP's error).
 * Never a token, a code, a cookie or a secret.
 */
export interface FailureReport {
  event: string
  cause: string
  [field: string]: unknown
}

export class GatehouseError extends Error {
  readonly code: ErrorCode
  /** Per-parameter messages for 400s (SPEC §3: `errors: { "<param>": ["…"] }`). */
  readonly errors: Record<string, string[]> | undefined
  /** Logged (at warn, or error for 5xx) where the request's failure is rendered: src/http/handle.ts. */
  readonly report: FailureReport | undefined
  /** Sent as `Retry-After` (RFC 9110 §10.2.3) with 429 and 503 answers: when trying again makes sense. */
  readonly retryAfterSec: number | undefined

  constructor(code: ErrorCode, detail?: string, options?: { cause?: unknown; errors?: Record<string, string[]>; report?: FailureReport; retryAfterSec?: number }) {
    super(detail ?? ERRORS[code].title, options?.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'GatehouseError'
    this.code = code
    this.errors = options?.errors
    this.report = options?.report
    this.retryAfterSec = options?.retryAfterSec
  }

  get status(): number {
    return ERRORS[this.code].status
  }
}

export interface Problem {
  type: string
  title: string
  status: number
  code: ErrorCode
  detail?: string
  errors?: Record<string, string[]>
  requestId: string
}

/** RFC 9457 problem details. Internals (detail of 5xx, causes, stacks) never leave the process. */
export function toProblem(err: unknown, requestId: string): Problem {
  const known = err instanceof GatehouseError ? err : new GatehouseError('internal')
  const problem: Problem = {
    type: `urn:gatehouse:error:${known.code}`,
    title: ERRORS[known.code].title,
    status: known.status,
    code: known.code,
    requestId,
  }
  if (known.status < 500 && known.message !== problem.title) problem.detail = known.message
  if (known.errors) problem.errors = known.errors
  return problem
}

/** Error names, codes and messages down the cause chain, for logs — never request data, which may hold codes or tokens. */
export function describeError(err: unknown): Record<string, string> {
  const out: Record<string, string> = {}
  let current: unknown = err
  for (let depth = 0; depth < 4 && current !== undefined; depth++) {
    const key = depth === 0 ? 'error' : `cause${depth}`
    if (!(current instanceof Error)) {
      // Only the type: libraries attach what they could not parse (a whole id_token) as the cause.
      out[key] = typeof current
      break
    }
    out[key] = `${current.name}${'code' in current && current.code !== undefined ? `(${String(current.code)})` : ''}: ${current.message}`
    current = current.cause
  }
  return out
}
