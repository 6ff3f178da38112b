import type { Logger } from 'pino'
import type { TokenRequirement } from '../config/types.ts'
import { GatehouseError } from '../errors.ts'
import type { OidcClient, RefreshedTokens, RefreshOutcome } from '../oidc/client.ts'
import type { Session, SessionData, TokenSet } from '../session/session.ts'
import type { SessionBackend } from '../session/backend.ts'
import type { ClientCredentials, ClientToken } from './client-credentials.ts'
import type { DpopKey, DpopKeys } from './dpop.ts'
import { resourceKey, type ResourceRequest } from './resource.ts'
import type { RefreshResult, Telemetry } from '../ops/metrics.ts'
import { span } from '../ops/tracing.ts'

/**
 * What to put in the upstream request's Authorization header. `proofKey`: the token is DPoP-bound to
 * this key, so each request needs a proof signed with it. `refreshed` is the session after a
 * refresh this call made or picked up: cookie-mode sessions must then be written to the response.
 */
export type TokenOutcome = AccessToken | { kind: 'none' }
type AccessToken = { kind: 'token'; value: string; proofKey?: DpopKey | undefined; refreshed?: Session }

/** Time for the store calls around a refresh grant, on top of the IdP's own timeout. */
const STORE_BUDGET_MS = 5_000
const WAIT_STEP_MS = 50
/**
 * After a refresh failed transiently, calls within this long use the still-valid token at once instead
 * of each waiting out the IdP's timeout again (and each hammering an IdP that is down).
 */
const RETRY_PAUSE_MS = 5_000
const PAUSES_MAX = 10_000

/**
 * A renewal that did not happen for a reason that may pass (SPEC §5): the IdP unreachable, failing
 * (5xx) or too slow, or another instance's refresh not finishing in time. The session is unchanged;
 * `error` is the call's answer when the token to renew has already expired.
 */
interface Unavailable {
  unavailable: 'idp_unavailable' | 'refresh_elsewhere_unfinished'
  error: GatehouseError
}

/**
 * One use of the session's refresh token: `due` tells whether the session (as re-read) still needs
 * it; `grant` makes the grant, `report` counting and tracing its result.
 */
interface Renewal {
  due(session: Session): boolean
  grant(session: Session, report: (result: RefreshResult) => void): Promise<Session | Unavailable>
}

export interface TokenServiceOptions {
  /** The sessions, their leases, and where a refused refresh ends one (told to open tabs at once). */
  sessions: SessionBackend
  /** The IdP client of a session partition (frontend): refresh tokens are bound to the client that got them. */
  clients: (partition: string) => { oidc: OidcClient; clientCredentials: ClientCredentials }
  /** Sessions' DPoP keys, imported once. */
  dpopKeys: DpopKeys
  /** Counts refresh grants by result (gatehouse_token_refreshes_total). */
  telemetry?: Telemetry
  skewMs: number
  /** The IdP call timeout (oidc.timeout): the refresh lease outlasts it. */
  idpTimeoutMs: number
  now: () => number
  log: Logger
}

/**
 * Access tokens for upstream calls (SPEC §5): the session's user token, refreshed shortly before it
 * expires — once per session, also across instances sharing the store — or the client's own token;
 * for an API with a `resource`, the session's (or client's) token for that resource (RFC 8707).
 */
export class TokenService {
  readonly #o: TokenServiceOptions
  /** A refresh holds the session's lease this long at most: longer than the grant itself may take. */
  readonly #leaseMs: number
  /** In-process single flight: concurrent requests of one session wait for one refresh (per token: the general one, each resource's). */
  readonly #refreshing = new Map<string, Promise<Session | Unavailable>>()
  /** Without store leases (cookie mode): the grants of one session, whichever token they renew, run one after another. */
  readonly #queues = new Map<string, Promise<unknown>>()
  /** Flights (a session's general token, or one resource's) whose refresh failed transiently: no retry before the time. */
  readonly #paused = new Map<string, number>()

  constructor(options: TokenServiceOptions) {
    this.#o = options
    this.#leaseMs = options.idpTimeoutMs + STORE_BUDGET_MS
  }

  /**
   * The token a requirement asks for. Throws session_required for "user" without a session. With
   * `resource`, a token restricted to that resource (RFC 8707) — never the session's general token.
   */
  async tokenFor(
    session: Session | undefined,
    requirement: TokenRequirement,
    partition: string,
    resource?: ResourceRequest,
  ): Promise<TokenOutcome> {
    switch (requirement) {
      case 'none':
        return { kind: 'none' }
      case 'user':
        if (!session) throw new GatehouseError('session_required')
        return this.#userToken(session, resource)
      case 'userOrNone':
        return session ? this.#userToken(session, resource) : { kind: 'none' }
      case 'userOrClient':
        return session ? this.#userToken(session, resource) : this.#clientOutcome(partition, resource)
      case 'client':
        return this.#clientOutcome(partition, resource)
    }
  }

  async #clientOutcome(partition: string, resource: ResourceRequest | undefined): Promise<TokenOutcome> {
    const { value, proofKey } = await this.clientToken(partition, resource)
    return { kind: 'token', value, proofKey }
  }

  /** Throws resource_refused (the IdP grants no token for the resource) or idp_unavailable. */
  clientToken(partition: string, resource?: ResourceRequest): Promise<ClientToken> {
    return this.#o.clients(partition).clientCredentials.token(resource)
  }

  /** The session's DPoP key, when its tokens are bound to one. */
  proofKeyOf(session: Session): Promise<DpopKey> | undefined {
    return session.data.dpopKey && this.#o.dpopKeys.get(session.data.dpopKey)
  }

  #userToken(session: Session, resource: ResourceRequest | undefined): Promise<TokenOutcome> {
    return resource ? this.#resourceToken(session, resource) : this.#sessionToken(session)
  }

  /**
   * The session's access token, refreshed first when it is within the skew of expiry — or, when
   * that refresh fails for a reason that may pass, as it is while it has not expired.
   */
  async #sessionToken(session: Session): Promise<TokenOutcome> {
    const tokens = session.data.tokens
    if (!tokens.accessToken) throw new GatehouseError('session_required', 'the session holds no access token')
    if (!this.#needsRefresh(tokens)) return this.#withProofKey(session, tokens.accessToken)
    if (!tokens.refreshToken) {
      // Still valid, only inside the skew: use it. Expired and not refreshable: the session is over.
      if (tokens.accessTokenExpiresAt! > this.#o.now()) return this.#withProofKey(session, tokens.accessToken)
      await this.#o.sessions.end(session, 'expired')
      throw new GatehouseError('session_ended', 'the access token expired and there is no refresh token')
    }
    if (this.#isPaused(session.idHash, tokens.accessTokenExpiresAt))
      return this.#withProofKey(session, tokens.accessToken)
    const refreshed = await this.#singleFlight(session.idHash, session, {
      due: (current) => this.#needsRefresh(current.data.tokens),
      grant: (current, report) =>
        this.#grant(
          current,
          undefined,
          (data, response) => ({ ...data, tokens: this.#refreshedTokens(data.tokens, response) }),
          report,
        ),
    })
    if ('unavailable' in refreshed)
      return this.#deferred(session.idHash, session, tokens.accessToken, tokens.accessTokenExpiresAt, refreshed)
    return { ...(await this.#withProofKey(refreshed, refreshed.data.tokens.accessToken!)), refreshed }
  }

  /**
   * The session's token for one resource: got with the refresh token (RFC 8707 §2.2), kept in the
   * session and reused until it is within the skew of expiry, like the general token.
   */
  async #resourceToken(session: Session, resource: ResourceRequest): Promise<TokenOutcome> {
    const key = resourceKey(resource)
    const held = session.data.resourceTokens?.[key]
    if (held && !this.#expiring(held.expiresAt)) return this.#withProofKey(session, held.accessToken)
    if (!session.data.tokens.refreshToken) {
      // Still valid, only inside the skew: use it, as the general token is.
      if (held && held.expiresAt! > this.#o.now()) return this.#withProofKey(session, held.accessToken)
      throw new GatehouseError(
        'resource_refused',
        "the session holds no refresh token to get a token for this API's resource with",
      )
    }
    // Not named at login (the API was configured later): the IdP would refuse it, and some
    // (oidc-provider) spend the rotated refresh token while refusing. A new login covers it.
    if (!(session.data.resources ?? []).includes(resource.resource)) {
      throw new GatehouseError(
        'resource_refused',
        "this session's login did not ask for this API's resource; log in again",
      )
    }
    const flight = `${session.idHash} ${key}`
    if (held && this.#isPaused(flight, held.expiresAt)) return this.#withProofKey(session, held.accessToken)
    const refreshed = await this.#singleFlight(flight, session, {
      due: (current) => {
        const token = current.data.resourceTokens?.[key]
        return !token || this.#expiring(token.expiresAt)
      },
      grant: (current, report) =>
        this.#grant(current, resource, (data, response) => this.#withResourceToken(data, key, response), report),
    })
    if ('unavailable' in refreshed)
      return this.#deferred(flight, session, held?.accessToken, held?.expiresAt, refreshed, resource)
    const token = refreshed.data.resourceTokens?.[key]
    if (!token) throw new GatehouseError('idp_unavailable', "no token for this API's resource was obtained")
    return { ...(await this.#withProofKey(refreshed, token.accessToken)), refreshed }
  }

  /**
   * The token whose renewal just failed for a reason that may pass: used as it is while it has not
   * expired — the session keeps it, and the next request inside the skew tries the renewal again.
   * Expired (or none held yet), the call fails with the renewal's error.
   */
  #deferred(
    flight: string,
    session: Session,
    value: string | undefined,
    expiresAt: number | undefined,
    failure: Unavailable,
    resource?: ResourceRequest,
  ): AccessToken | Promise<AccessToken> {
    const left = expiresAt === undefined ? 0 : expiresAt - this.#o.now()
    if (value === undefined || left <= 0) throw failure.error
    if (this.#paused.size >= PAUSES_MAX) this.#paused.clear()
    this.#paused.set(flight, this.#o.now() + RETRY_PAUSE_MS)
    this.#o.log.warn(
      {
        event: 'refresh_deferred',
        cause: failure.unavailable,
        expiresInSec: Math.floor(left / 1000),
        ...(resource ? { resource: resource.resource } : {}),
      },
      'token refresh failed; the current access token is still valid and is used',
    )
    return this.#withProofKey(session, value)
  }

  /** A transient failure of this flight's refresh is recent and its token still valid: use the token, do not retry yet. */
  #isPaused(flight: string, expiresAt: number | undefined): boolean {
    const until = this.#paused.get(flight)
    if (until === undefined) return false
    const now = this.#o.now()
    if (until > now && expiresAt !== undefined && expiresAt > now) return true
    this.#paused.delete(flight)
    return false
  }

  /** Without a DPoP key (the hot path when oidc.dpop is off) no promise is awaited. */
  #withProofKey(session: Session, value: string): AccessToken | Promise<AccessToken> {
    const proofKey = this.proofKeyOf(session)
    return proofKey
      ? proofKey.then((key): AccessToken => ({ kind: 'token', value, proofKey: key }))
      : { kind: 'token', value }
  }

  #needsRefresh(tokens: TokenSet): boolean {
    return this.#expiring(tokens.accessTokenExpiresAt)
  }

  #expiring(expiresAt: number | undefined): boolean {
    return expiresAt !== undefined && expiresAt - this.#o.skewMs <= this.#o.now()
  }

  #expiresAt(response: RefreshedTokens): number | undefined {
    const expiresIn = response.expiresInSec
    // An expires_in beyond a year is an IdP's mistake (or 1e308): held as a year, so it stays a number.
    return expiresIn === undefined ? undefined : this.#o.now() + Math.min(expiresIn, 365 * 24 * 3600) * 1000
  }

  #refreshedTokens(tokens: TokenSet, response: RefreshedTokens): TokenSet {
    return {
      accessToken: response.accessToken,
      refreshToken: response.refreshToken ?? tokens.refreshToken,
      idToken: response.idToken ?? tokens.idToken,
      accessTokenExpiresAt: this.#expiresAt(response),
      scope: response.scope ?? tokens.scope,
    }
  }

  /**
   * The session with a resource's new token, and the rotated refresh token when the IdP sent one (the
   * old one is spent). Tokens of resources that have expired go (an API removed from the config).
   */
  #withResourceToken(data: SessionData, key: string, response: RefreshedTokens): SessionData {
    const now = this.#o.now()
    const kept = Object.entries(data.resourceTokens ?? {}).filter(
      ([, token]) => token.expiresAt === undefined || token.expiresAt > now,
    )
    return {
      ...data,
      tokens: { ...data.tokens, refreshToken: response.refreshToken ?? data.tokens.refreshToken },
      resourceTokens: {
        ...Object.fromEntries(kept),
        [key]: { accessToken: response.accessToken, expiresAt: this.#expiresAt(response) },
      },
    }
  }

  /** One renewal per flight (a session's general token, or one of its resource tokens) in this process. */
  #singleFlight(flight: string, session: Session, renewal: Renewal): Promise<Session | Unavailable> {
    let pending = this.#refreshing.get(flight)
    if (!pending) {
      pending = this.#refresh(session, renewal).finally(() => this.#refreshing.delete(flight))
      this.#refreshing.set(flight, pending)
    }
    return pending
  }

  /**
   * One refresh per session across instances: take the store lease, re-read (another instance may
   * have refreshed already), refresh, write back with compare-and-set. Without the lease, wait for
   * the holder's result. Refresh-token rotation therefore never sees two grants with one token —
   * also not a general refresh and a resource's: they take the same lease.
   */
  async #refresh(session: Session, renewal: Renewal): Promise<Session | Unavailable> {
    const { sessions, now } = this.#o
    const { leases } = sessions
    // Cookie mode (or a store without leases): the in-process queue is all the coordination there is.
    if (!leases) return this.#queued(session.idHash, () => this.#refreshHoldingLease(session, renewal))
    const lease = `refresh:${session.idHash}`
    const deadline = now() + this.#leaseMs
    for (;;) {
      const held = await leases.take(lease, this.#leaseMs)
      if (held) {
        try {
          return await this.#refreshHoldingLease(session, renewal)
        } finally {
          await held.release()
        }
      }
      await new Promise((resolve) => setTimeout(resolve, WAIT_STEP_MS))
      const current = await sessions.current(session)
      if (!current) throw new GatehouseError('session_ended')
      if (!renewal.due(current)) return current
      if (now() > deadline)
        return {
          unavailable: 'refresh_elsewhere_unfinished',
          error: new GatehouseError('idp_unavailable', 'a token refresh by another instance did not finish'),
        }
    }
  }

  /** Runs `operation` after every earlier one queued for the session has settled. */
  async #queued<T>(idHash: string, operation: () => Promise<T>): Promise<T> {
    const result = (this.#queues.get(idHash) ?? Promise.resolve()).then(operation)
    const tail = result.catch(() => undefined)
    this.#queues.set(idHash, tail)
    try {
      return await result
    } finally {
      if (this.#queues.get(idHash) === tail) this.#queues.delete(idHash)
    }
  }

  async #refreshHoldingLease(stale: Session, renewal: Renewal): Promise<Session | Unavailable> {
    const session = await this.#o.sessions.current(stale)
    if (!session) throw new GatehouseError('session_ended')
    if (!renewal.due(session)) return session
    return span('gatehouse.refresh', {}, (current) =>
      renewal.grant(session, (result) => {
        current.setAttribute('gatehouse.result', result)
        this.#o.telemetry?.refresh(result, session.partition)
      }),
    )
  }

  /**
   * The refresh grant for a session that needs one — for its general token, or with `resource` for
   * that resource's. `apply` puts the response into the session's data; it is written only over the
   * refresh token this grant used (compare-and-set), never over a newer set from elsewhere. A failure
   * that may pass is a value: the caller may still use the token it meant to renew.
   */
  async #grant(
    session: Session,
    resource: ResourceRequest | undefined,
    apply: (data: SessionData, response: RefreshedTokens) => SessionData,
    report: (result: RefreshResult) => void,
  ): Promise<Session | Unavailable> {
    const { sessions, log } = this.#o
    const client = this.#o.clients(session.partition).oidc
    const refreshToken = session.data.tokens.refreshToken!
    if (!(await client.acceptsSessionIssuer(session.data.issuer))) {
      await sessions.end(session, 'refresh_refused')
      log.warn(
        { event: 'refresh_failed', cause: 'issuer_not_allowed', issuer: session.data.issuer },
        "the session's issuer is no longer accepted (oidc.allowedTenants / allowedIssuers); session ended",
      )
      report('invalid_grant')
      throw new GatehouseError('session_ended', "the session's issuer is no longer accepted")
    }
    // The refreshed token is bound to the same key: the session keeps its key for its whole life. The
    // key's import is awaited inside the grant, so a key that fails to import is a failed refresh.
    const outcome = await client.refresh(refreshToken, this.proofKeyOf(session), resource, session.data.issuer)
    if (outcome.kind !== 'ok') return this.#failed(session, refreshToken, resource, outcome, report)
    const response = outcome.tokens
    const saved = await sessions.modify(session, (data) =>
      data.tokens.refreshToken === refreshToken ? apply(data, response) : undefined,
    )
    if (!saved) {
      // Logged out while the refresh was in flight: the session stays ended, and the tokens just
      // issued must not outlive it.
      if (response.refreshToken) await client.revoke(response.refreshToken, 'refresh_token').catch(() => undefined)
      log.info({ event: 'refresh', result: 'session_ended' }, 'session ended during refresh; new refresh token revoked')
      report('session_ended')
      throw new GatehouseError('session_ended')
    }
    if (response.refreshToken && saved.data.tokens.refreshToken !== response.refreshToken) {
      // Another refresh was stored first (a lease outlived): the token this one got is not used by anyone.
      await client.revoke(response.refreshToken, 'refresh_token').catch(() => undefined)
    }
    log.info(
      { event: 'refresh', result: 'ok', ...(resource ? { resource: resource.resource } : {}) },
      resource ? 'resource token obtained' : 'access token refreshed',
    )
    report('ok')
    return saved
  }

  /** A refresh grant that gave no tokens: the session ended, the resource refused, or (a value) a failure that may pass. */
  async #failed(
    session: Session,
    refreshToken: string,
    resource: ResourceRequest | undefined,
    failure: Exclude<RefreshOutcome, { kind: 'ok' }>,
    report: (result: RefreshResult) => void,
  ): Promise<Session | Unavailable> {
    const { sessions, log } = this.#o
    switch (failure.kind) {
      case 'resource_refused':
        // The refresh token is fine; this resource is not granted (not asked for at login, or refused
        // by the IdP's policy). The general token is no substitute: it is not restricted to the API.
        log.warn(
          { event: 'refresh', result: 'resource_refused', resource: resource?.resource, error: failure.error },
          'the identity provider refused a token for a resource; session kept',
        )
        report('resource_refused')
        throw new GatehouseError(
          'resource_refused',
          `the identity provider refused a token for this API's resource (${failure.error})`,
          { cause: failure.cause },
        )
      case 'invalid_grant': {
        // RFC 6749 §5.2: the refresh token is no longer valid. End the session — unless it already
        // holds other tokens (refreshed elsewhere meanwhile): then the refusal is about an old token.
        const now = await sessions.current(session)
        if (now && now.data.tokens.refreshToken !== refreshToken) return now
        if (now) {
          await sessions.end(now, 'refresh_refused')
        }
        log.warn({ event: 'refresh_failed', cause: 'invalid_grant' }, 'refresh refused; session ended')
        report('invalid_grant')
        throw new GatehouseError('session_ended', 'the identity provider refused the refresh token', {
          cause: failure.cause,
        })
      }
      case 'unavailable': {
        const where = resource ? { resource: resource.resource } : {}
        // Not transient: the report names the IdP's error (or the client authentication it refused, with the key to change).
        log.warn(
          { cause: 'idp_unavailable', ...failure.report, event: 'refresh_failed', ...where, err: failure.chain },
          'token refresh failed; session kept',
        )
        report('unavailable')
        const error = new GatehouseError('idp_unavailable', 'the token refresh failed', { cause: failure.cause })
        if (failure.transient) return { unavailable: 'idp_unavailable', error }
        throw error
      }
    }
  }
}
