import type { TokenRequirement } from '../config/types.ts'
import type { SessionBackend } from '../session/backend.ts'
import type { Session } from '../session/session.ts'
import type { ResourceRequest } from './resource.ts'
import type { TokenOutcome, TokenService } from './tokens.ts'

/** What a call needs a token for: a remote API's `token` and `resource`, or a library or diagnostics call's. */
export interface TokenNeed {
  readonly token: TokenRequirement
  readonly resource?: ResourceRequest | undefined
}

/** What credentialsFor reads of a request: the session its route read, and where its cookie changes go. */
export interface CredentialsContext {
  readonly session: Session | undefined
  readonly partition: string
  readonly cookies: ReadonlyMap<string, string>
  readonly setCookies: string[]
  readonly services: { readonly tokens: TokenService; readonly sessions: SessionBackend }
}

const NO_COOKIES: readonly string[] = []

/** A request's credentials for one upstream call: the session, its token, and the cookie lines the answer carries. */
export class Credentials {
  readonly session: Session | undefined
  readonly token: TokenOutcome
  readonly #setCookies: readonly string[]
  readonly #sessions: SessionBackend

  constructor(
    session: Session | undefined,
    token: TokenOutcome,
    setCookies: readonly string[],
    sessions: SessionBackend,
  ) {
    this.session = session
    this.token = token
    this.#setCookies = setCookies
    this.#sessions = sessions
  }

  /**
   * The Set-Cookie lines the answer must carry, read when its head is written: none once the session
   * has ended meanwhile — a logout while the upstream was answering wins over a cookie rewrite queued
   * before it (cookie mode; a server-side session cannot be revived by a cookie).
   */
  get setCookies(): readonly string[] {
    return this.session !== undefined && this.#sessions.hasEnded(this.session) ? NO_COOKIES : this.#setCookies
  }
}

/**
 * The one step that yields a call's credentials: the token the need asks for, from the session the
 * route read (usually no I/O; a refresh when it is due), and — when that refreshed the session — the
 * session written back (cookie mode rewrites its cookie into `ctx.setCookies`). Throws what tokenFor
 * throws: session_required, session_ended, idp_unavailable, resource_refused.
 */
export async function credentialsFor(ctx: CredentialsContext, need: TokenNeed): Promise<Credentials> {
  const { tokens, sessions } = ctx.services
  const token = await tokens.tokenFor(ctx.session, need.token, ctx.partition, need.resource)
  if (token.kind === 'token' && token.refreshed) await sessions.persist(token.refreshed, ctx.cookies, ctx.setCookies)
  return new Credentials(ctx.session, token, ctx.setCookies, sessions)
}
