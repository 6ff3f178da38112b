import type { IncomingMessage } from 'node:http'
import type { Logger } from 'pino'
import type { Claim, Session } from './session/session.ts'
import type { SessionEndEvent } from './session/session-events.ts'

/** What local API handlers and hooks may know about the user: never the tokens themselves. */
export interface SessionInfo {
  sub: string
  sid: string | undefined
  claims: Claim[]
  /** epoch ms */
  expiresAt: number
  /** The frontend (session partition) the session belongs to. */
  frontend: string
  /** The issuer of the login's id_token, when gatehouse recorded it. */
  issuer: string | undefined
}

/**
 * Extension points for library mode (Duende.BFF's IUserEndpointClaimsEnricher, ILoginEndpoint and
 * ILogoutEndpoint customisation, IReturnUrlValidator, session events). Each is optional; a hook
 * that throws fails only its own request (login, logout, /bff/user) — audit hooks never fail one.
 */
export type { SessionEndEvent }

export interface Hooks {
  /** The claims /bff/user returns for a session, before gatehouse's own `bff:` claims are added (any `bff:` claim returned is dropped). */
  enrichUser?(session: SessionInfo, claims: Claim[]): Claim[] | Promise<Claim[]>
  /** Extra authorize parameters for this login (`acr_values`, `login_hint`, `ui_locales`…); protocol parameters gatehouse sets are not replaced. */
  loginParams?(req: IncomingMessage): Record<string, string> | undefined | Promise<Record<string, string> | undefined>
  /** Extra end-session parameters for this logout; `id_token_hint`, `post_logout_redirect_uri`, `state` and `client_id` are not replaced. */
  logoutParams?(
    req: IncomingMessage,
    session: SessionInfo | undefined,
  ): Record<string, string> | undefined | Promise<Record<string, string> | undefined>
  /** Called after the built-in returnUrl check passed; false refuses the returnUrl (400). It can only narrow what is accepted. */
  validateReturnUrl?(url: string, req: IncomingMessage): boolean | Promise<boolean>
  /** A session started (after a successful login). For audit; its result is not awaited by the login. */
  onSessionCreated?(session: SessionInfo): void | Promise<void>
  /** Sessions ended on this instance (logout, back-channel logout, revocation, refresh refused, replaced by a new login). For audit. */
  onSessionEnded?(event: SessionEndEvent): void | Promise<void>
}

/** The public view of a session (no tokens). */
export function sessionInfo(session: Session): SessionInfo {
  // A copy: the session's own claims are shared with later requests (the read cache) and the store.
  return {
    sub: session.sub,
    sid: session.sid,
    claims: structuredClone(session.data.claims),
    expiresAt: session.expiresAt,
    frontend: session.partition,
    issuer: session.data.issuer,
  }
}

/** Runs an audit hook without letting it fail or delay the request: errors and rejections are logged. */
export function notify<T>(
  hook: ((event: T) => void | Promise<void>) | undefined,
  event: T,
  log: Logger,
  name: string,
): void {
  if (!hook) return
  try {
    Promise.resolve(hook(event)).catch((err: unknown) =>
      log.warn(
        { event: 'hook_failed', hook: name, error: err instanceof Error ? err.name : typeof err },
        `the ${name} hook failed`,
      ),
    )
  } catch (err) {
    log.warn(
      { event: 'hook_failed', hook: name, error: err instanceof Error ? err.name : typeof err },
      `the ${name} hook failed`,
    )
  }
}

/** Extra parameters from a hook, without any of the names gatehouse sets itself. */
export function withoutReserved(
  extra: Record<string, string> | undefined,
  reserved: ReadonlySet<string>,
): Record<string, string> {
  const out: Record<string, string> = {}
  // Compared as IdPs may read them: case-insensitively, without surrounding spaces.
  for (const [name, value] of Object.entries(extra ?? {}))
    if (!reserved.has(name.trim().toLowerCase()) && typeof value === 'string') out[name] = value
  return out
}
