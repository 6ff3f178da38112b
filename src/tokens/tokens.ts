import { randomUUID } from 'node:crypto'
import * as oidc from 'openid-client'
import type { Logger } from 'pino'
import type { TokenRequirement } from '../config/types.ts'
import { GatehouseError } from '../errors.ts'
import type { OidcClient } from '../oidc/client.ts'
import type { Session, TokenSet } from '../session/session.ts'
import type { SessionBackend } from '../session/backend.ts'
import type { SessionEvents } from '../session/session-events.ts'
import type { SessionStore } from '../session/store.ts'
import type { ClientCredentials, ClientToken } from './client-credentials.ts'
import type { DpopKey, DpopKeys } from './dpop.ts'
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

export interface TokenServiceOptions {
  sessions: SessionBackend
  store: SessionStore
  /** The IdP client of a session partition (frontend): refresh tokens are bound to the client that got them. */
  clients: (partition: string) => { oidc: OidcClient; clientCredentials: ClientCredentials }
  /** Sessions' DPoP keys, imported once. */
  dpopKeys: DpopKeys
  /** Told when a refused refresh ends a session, so open tabs learn at once. */
  events?: SessionEvents
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
 * expires — once per session, also across instances sharing the store — or the client's own token.
 */
export class TokenService {
  readonly #o: TokenServiceOptions
  /** A refresh holds the session's lease this long at most: longer than the grant itself may take. */
  readonly #leaseMs: number
  /** In-process single flight: concurrent requests of one session wait for one refresh. */
  readonly #refreshing = new Map<string, Promise<Session>>()

  constructor(options: TokenServiceOptions) {
    this.#o = options
    this.#leaseMs = options.idpTimeoutMs + STORE_BUDGET_MS
  }

  /** The token a requirement asks for. Throws session_required for "user" without a session. */
  async tokenFor(session: Session | undefined, requirement: TokenRequirement, partition: string): Promise<TokenOutcome> {
    switch (requirement) {
      case 'none':
        return { kind: 'none' }
      case 'user':
        if (!session) throw new GatehouseError('session_required')
        return this.#userToken(session)
      case 'userOrNone':
        return session ? this.#userToken(session) : { kind: 'none' }
      case 'userOrClient':
        return session ? this.#userToken(session) : this.#clientOutcome(partition)
      case 'client':
        return this.#clientOutcome(partition)
    }
  }

  async #clientOutcome(partition: string): Promise<TokenOutcome> {
    const { value, proofKey } = await this.clientToken(partition)
    return { kind: 'token', value, proofKey }
  }

  async clientToken(partition: string): Promise<ClientToken> {
    try {
      return await this.#o.clients(partition).clientCredentials.token()
    } catch (err) {
      throw new GatehouseError('idp_unavailable', 'the client-credentials grant failed', { cause: err })
    }
  }

  /** The session's DPoP key, when its tokens are bound to one. */
  proofKeyOf(session: Session): Promise<DpopKey> | undefined {
    return session.data.dpopKey && this.#o.dpopKeys.get(session.data.dpopKey)
  }

  /** The session's access token, refreshed first when it is within the skew of expiry. */
  async #userToken(session: Session): Promise<TokenOutcome> {
    const tokens = session.data.tokens
    if (!tokens.accessToken) throw new GatehouseError('session_required', 'the session holds no access token')
    if (!this.#needsRefresh(tokens)) return this.#sessionToken(session, tokens.accessToken)
    if (!tokens.refreshToken) {
      // Still valid, only inside the skew: use it. Expired and not refreshable: the session is over.
      if (tokens.accessTokenExpiresAt! > this.#o.now()) return this.#sessionToken(session, tokens.accessToken)
      await this.#o.sessions.end(session)
      throw new GatehouseError('session_ended', 'the access token expired and there is no refresh token')
    }
    let pending = this.#refreshing.get(session.idHash)
    if (!pending) {
      pending = this.#refresh(session).finally(() => this.#refreshing.delete(session.idHash))
      this.#refreshing.set(session.idHash, pending)
    }
    const refreshed = await pending
    return { ...(await this.#sessionToken(refreshed, refreshed.data.tokens.accessToken!)), refreshed }
  }

  /** Without a DPoP key (the hot path when oidc.dpop is off) no promise is awaited. */
  #sessionToken(session: Session, value: string): AccessToken | Promise<AccessToken> {
    const proofKey = this.proofKeyOf(session)
    return proofKey ? proofKey.then((key): AccessToken => ({ kind: 'token', value, proofKey: key })) : { kind: 'token', value }
  }

  #needsRefresh(tokens: TokenSet): boolean {
    return tokens.accessTokenExpiresAt !== undefined && tokens.accessTokenExpiresAt - this.#o.skewMs <= this.#o.now()
  }

  /**
   * One refresh per session across instances: take the store lease, re-read (another instance may
   * have refreshed already), refresh, write back with compare-and-set. Without the lease, wait for
   * the holder's result. Refresh-token rotation therefore never sees two grants with one token.
   */
  async #refresh(session: Session): Promise<Session> {
    const { store, sessions, now } = this.#o
    // Cookie mode has no shared store: the in-process single flight is all the coordination there is.
    if (!sessions.shared) return this.#refreshHoldingLease(session)
    const lease = `refresh:${session.idHash}`
    const owner = randomUUID()
    const deadline = now() + this.#leaseMs
    for (;;) {
      if (await this.#call(() => store.acquireLease(lease, owner, this.#leaseMs, now()))) {
        try {
          return await this.#refreshHoldingLease(session)
        } finally {
          await store.releaseLease(lease, owner).catch(() => undefined)
        }
      }
      await new Promise((resolve) => setTimeout(resolve, WAIT_STEP_MS))
      const current = await sessions.current(session)
      if (!current) throw new GatehouseError('session_ended')
      if (!this.#needsRefresh(current.data.tokens)) return current
      if (now() > deadline) throw new GatehouseError('idp_unavailable', 'a token refresh by another instance did not finish')
    }
  }

  async #refreshHoldingLease(stale: Session): Promise<Session> {
    const session = await this.#o.sessions.current(stale)
    if (!session) throw new GatehouseError('session_ended')
    if (!this.#needsRefresh(session.data.tokens)) return session
    return span('gatehouse.refresh', {}, (current) =>
      this.#grant(session, (result) => {
        current.setAttribute('gatehouse.result', result)
        this.#o.telemetry?.refresh(result)
      }),
    )
  }

  /** The refresh grant for a session that needs one; `report` counts and traces its result. */
  async #grant(session: Session, report: (result: RefreshResult) => void): Promise<Session> {
    const { sessions, log } = this.#o
    const client = this.#o.clients(session.partition).oidc
    const refreshToken = session.data.tokens.refreshToken!
    let response: Awaited<ReturnType<OidcClient['refresh']>>
    try {
      // The refreshed token is bound to the same key: the session keeps its key for its whole life.
      response = await client.refresh(refreshToken, await this.proofKeyOf(session))
    } catch (err) {
      if (err instanceof oidc.ResponseBodyError && err.error === 'invalid_grant') {
        // RFC 6749 §5.2: the refresh token is no longer valid. End the session — unless it already
        // holds other tokens (refreshed elsewhere meanwhile): then the refusal is about an old token.
        const now = await sessions.current(session)
        if (now && now.data.tokens.refreshToken !== refreshToken) return now
        if (now) {
          await sessions.end(now)
          await this.#o.events?.ended(now.idHash, 'refresh_refused')
        }
        log.info({ event: 'refresh', result: 'invalid_grant' }, 'refresh refused; session ended')
        report('invalid_grant')
        throw new GatehouseError('session_ended', 'the identity provider refused the refresh token', { cause: err })
      }
      log.warn({ event: 'refresh', result: 'unavailable' }, 'token refresh failed; session kept')
      report('unavailable')
      throw new GatehouseError('idp_unavailable', 'the token refresh failed', { cause: err })
    }
    const expiresIn = response.expiresIn()
    const tokens: TokenSet = {
      accessToken: response.access_token,
      refreshToken: response.refresh_token ?? refreshToken,
      idToken: response.id_token ?? session.data.tokens.idToken,
      accessTokenExpiresAt: expiresIn === undefined ? undefined : this.#o.now() + expiresIn * 1000,
      scope: response.scope ?? session.data.tokens.scope,
    }
    // Written only over the tokens this refresh replaced: never over a newer set from elsewhere.
    const saved = await sessions.modify(session, (data) => (data.tokens.refreshToken === refreshToken ? { ...data, tokens } : undefined))
    if (!saved) {
      // Logged out while the refresh was in flight: the session stays ended, and the tokens just
      // issued must not outlive it.
      if (response.refresh_token) await client.revoke(response.refresh_token, 'refresh_token').catch(() => undefined)
      log.info({ event: 'refresh', result: 'session_ended' }, 'session ended during refresh; new refresh token revoked')
      report('session_ended')
      throw new GatehouseError('session_ended')
    }
    if (response.refresh_token && saved.data.tokens.refreshToken !== response.refresh_token) {
      // Another refresh was stored first (a lease outlived): the token this one got is not used by anyone.
      await client.revoke(response.refresh_token, 'refresh_token').catch(() => undefined)
    }
    log.info({ event: 'refresh', result: 'ok' }, 'access token refreshed')
    report('ok')
    return saved
  }

  async #call<T>(operation: () => Promise<T>): Promise<T> {
    try {
      return await operation()
    } catch (err) {
      throw new GatehouseError('store_unavailable', undefined, { cause: err })
    }
  }
}
