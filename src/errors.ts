/**
 * Every error gatehouse raises on purpose has a code from this table; status and title derive from it.
 * `meaning` says when the code is answered; docs/errors.md is generated from this table (npm run docs:update).
 */
export const ERRORS = {
  config_invalid: {
    status: 500,
    title: 'Configuration is invalid',
    meaning:
      'The configuration failed validation. `createGatehouse()` throws it listing every problem (one `key: message` line each, also in `errors`); so does opening a session store whose `session.store` URL cannot be used or whose driver package (`ioredis`, `pg`) is not installed, and an `oidc.privateKeyJwk` that is no asymmetric private key. `gatehouse serve` and `check-config` print it and exit 1; it never reaches a browser.',
  },
  bad_request: {
    status: 400,
    title: 'Bad request',
    meaning:
      "The request is malformed: a missing, repeated or malformed `Host` header, a request target that is not a path or not a valid URL, a path that would leave a frontend's folder; on the admin API a missing, repeated, empty or out-of-range query parameter (`errors` names it).",
  },
  return_url_invalid: {
    status: 400,
    title: 'returnUrl must be a local path',
    meaning:
      'The `returnUrl` of `/bff/login` or `/bff/logout` is not a local path (nor an absolute URL on one of `cors.allowedOrigins`), or the `validateReturnUrl` hook refused it; `errors.returnUrl` says what is accepted.',
  },
  prompt_invalid: {
    status: 400,
    title: 'prompt is not supported by the identity provider',
    meaning:
      "The `prompt` of `/bff/login` is given twice, or is not one of the identity provider's `prompt_values_supported`; `errors.prompt` says which.",
  },
  login_state_invalid: {
    status: 400,
    title: 'Login state is missing, expired or does not match',
    meaning:
      'The login callback (`oidc.redirectPath`) carries no single `state`, or no pending login in this browser matches it: expired, replayed, forged, or started in another browser or at another frontend. Logged as `login_failed` with cause `state_missing`.',
  },
  idp_error: {
    status: 400,
    title: 'The identity provider refused the login',
    meaning:
      "The identity provider refused the login or its answer failed validation: an error in the authorization response (`access_denied`…), the client's authentication refused, an id_token that fails a check (signature, `iss`, `aud`, `nonce`, `exp`…), an issuer or tenant that is not accepted, a token that is not DPoP-bound although `oidc.dpop` is on. Logged as `login_failed` with its cause (docs/idp-guides.md#reading-the-log-when-a-login-fails).",
  },
  sid_mismatch: {
    status: 400,
    title: 'Logout sid does not match the session',
    meaning:
      "`/bff/logout` was called for a session without that session's `sid` (as in its `bff:logout_url` claim): a cross-site link cannot log the user out.",
  },
  logout_token_invalid: {
    status: 400,
    title: 'Logout token rejected',
    meaning:
      'A back-channel logout (`POST /bff/backchannel`) was refused: not exactly one `logout_token`, a token that fails validation (signature, issuer, audience, events claim, `sid`/`sub`…), or one whose `jti` was already used. The IdP should not retry it.',
  },
  antiforgery_failed: {
    status: 401,
    title: 'Anti-forgery header missing or wrong',
    meaning:
      'The anti-forgery header (`antiForgery.header`, `X-CSRF: 1` by default) is missing or wrong on a request that needs it: `/bff/user`, a remote API with `antiForgery: true`, a `protect()`ed route. Checked before the session is read and before the upstream is called.',
  },
  session_required: {
    status: 401,
    title: 'Login required',
    meaning:
      'The request needs a logged-in session and has none: a remote API with `token: "user"`, a `protect()`ed route, an endpoint that needs a session; also a session that holds no access token.',
  },
  session_ended: {
    status: 401,
    title: 'Session ended; log in again',
    meaning:
      'The session is over: the identity provider refused its refresh token, its access token expired without a refresh token, its issuer is no longer accepted, or it ended (logout, revocation) while the request waited for a refresh. The session cookie is cleared; log in again.',
  },
  admin_unauthorized: {
    status: 401,
    title: 'Admin bearer token missing or wrong',
    meaning:
      'An admin listener request without `Authorization: Bearer <admin.token>`, or with another token; answered with `WWW-Authenticate`.',
  },
  path_escape: {
    status: 400,
    title: 'Path leaves its API prefix',
    meaning:
      "A path under a remote API's prefix would leave it: dot segments (raw or percent-encoded), encoded slashes or backslashes, empty segments or control characters. It is never forwarded (docs/remote-apis.md#paths-that-leave-their-prefix).",
  },
  forbidden: {
    status: 403,
    title: 'Forbidden',
    meaning:
      "Refused on purpose: a CORS preflight from an origin not in `cors.allowedOrigins`, a WebSocket handshake whose `Origin` is not the application's, a logout or an endpoint meant for the application itself requested from another site, the admin session API while `admin.token` is not set.",
  },
  resource_refused: {
    status: 403,
    title: 'No token for this API: the identity provider grants none for its resource',
    meaning:
      'A remote API with `resource` cannot have its token: the session holds no refresh token, its login did not ask for that resource (log in again), or the identity provider refused a token for it. The session is kept (docs/remote-apis.md#audience-restricted-tokens-resource).',
  },
  not_found: {
    status: 404,
    title: 'Not found',
    meaning:
      'Nothing answers this path: no endpoint, remote API or frontend file, and not a browser navigation a frontend answers with its `index.html` (an API call or a missing asset); an unknown admin route, or the admin session API in `session.mode` `"cookie"`.',
  },
  payload_too_large: {
    status: 413,
    title: 'Request body too large for this API',
    meaning:
      "The request body is over the remote API's `maxBodySize`: refused before the upstream is called when its length is declared, else cut off when it passes the limit.",
  },
  body_idle: {
    status: 408,
    title: 'The request body stopped arriving',
    meaning:
      'A proxied request body sent nothing for `limits.bodyIdleTimeout`: the request ends (with `Connection: close`) and its upstream connection is freed.',
  },
  too_many_requests: {
    status: 429,
    title: 'Too many requests in flight from this client',
    meaning:
      'The client (its session, else its address) already has `limits.perClient` proxied requests, or `limits.perClientStreams` long-lived streams, in flight; answered with `Retry-After`.',
  },
  method_not_allowed: {
    status: 405,
    title: 'Method not allowed',
    meaning:
      "The method is not answered here: not one of the remote API's `methods` (with an `Allow` header), not one the endpoint takes, a WebSocket handshake that is not a `GET`; and `TRACE` or `TRACK` on every path (the echo would carry credentials).",
  },
  misdirected_request: {
    status: 421,
    title: 'Misdirected request: this host is not served here',
    meaning:
      "The request names a host gatehouse does not serve: neither publicOrigin's nor a host-based frontend's origin. A browser navigation to a gatehouse path gets a 308 to publicOrigin instead (docs/deployment.md#which-hosts-gatehouse-answers).",
  },
  idp_unavailable: {
    status: 502,
    title: 'Identity provider unavailable',
    meaning:
      'The identity provider could not be used: discovery failed or published another issuer than the one configured, its keys (JWKS) could not be fetched, DPoP or PAR is asked for but not offered, the token endpoint could not be reached, a client-credentials grant failed. Logged as `discovery_failed` or `login_failed` with its cause.',
  },
  upstream_unavailable: {
    status: 502,
    title: 'API unavailable',
    meaning:
      "A remote API refused or reset the connection or could not be reached; also a frontend's `indexHtmlUrl` that could not be fetched while no earlier copy is at hand.",
  },
  upstream_timeout: {
    status: 504,
    title: 'API did not answer in time',
    meaning: 'A remote API sent no response headers within its `timeout`.',
  },
  upstream_busy: {
    status: 503,
    title: 'API busy: no connection to it became free in time',
    meaning:
      "None of the remote API's `connections` became free within its `timeout`, or its `queue` was full; answered with `Retry-After` (docs/remote-apis.md#capacity-held-requests-and-slow-clients).",
  },
  store_unavailable: {
    status: 503,
    title: 'Session store unavailable',
    meaning:
      'The session store could not be read or written (Redis, PostgreSQL or SQLite failing or out of reach), or could not be opened at start; also a session that kept changing during an update. Requests that need no session still work.',
  },
  internal: {
    status: 500,
    title: 'Internal error',
    meaning:
      "A fault of gatehouse's own or of how it is set up: a request body consumed by a body parser mounted before gatehouse, a session too large for cookie mode, a session id collision, a bug. The details are logged, never sent.",
  },
} as const satisfies Record<string, { status: number; title: string; meaning: string }>

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
  /** Logged (at warn, or error for 5xx) where the request's failure is rendered: src/http/render.ts. */
  readonly report: FailureReport | undefined
  /** Sent as `Retry-After` (RFC 9110 §10.2.3) with 429 and 503 answers: when trying again makes sense. */
  readonly retryAfterSec: number | undefined

  constructor(
    code: ErrorCode,
    detail?: string,
    options?: { cause?: unknown; errors?: Record<string, string[]>; report?: FailureReport; retryAfterSec?: number },
  ) {
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
    out[key] =
      `${current.name}${'code' in current && current.code !== undefined ? `(${String(current.code)})` : ''}: ${current.message}`
    current = current.cause
  }
  return out
}
