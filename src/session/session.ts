import type { JWK } from 'jose'
import type { SessionRecord } from './store.ts'

/** One `{ type, value }` claim as /bff/user returns it (Duende's shape). */
export interface Claim {
  type: string
  value: string | number | boolean
  valueType?: 'json'
}

/** Tokens as held at rest (sealed) — never handed to the browser. */
export interface TokenSet {
  accessToken: string | undefined
  refreshToken: string | undefined
  idToken: string | undefined
  /** epoch ms */
  accessTokenExpiresAt: number | undefined
  scope: string | undefined
}

/** An access token restricted to one resource (RFC 8707), got with the session's refresh token. */
export interface ResourceToken {
  accessToken: string
  /** epoch ms */
  expiresAt: number | undefined
}

/** The part of a session that is sealed with the key ring. */
export interface SessionData {
  claims: Claim[]
  tokens: TokenSet
  /** Random value the logout URL must carry: the logout CSRF defence. */
  logoutSid: string
  sessionState: string | undefined
  /**
   * The issuer of the login's id_token: the published one, or a tenant's for a multi-tenant IdP.
   * Refreshed id_tokens and back-channel logout tokens must come from it. Absent (sessions started
   * before gatehouse recorded it): the published issuer.
   */
  issuer?: string
  /**
   * Private JWK of the session's own DPoP key (oidc.dpop): its tokens are bound to it. Absent when
   * the session's tokens are Bearer tokens.
   */
  dpopKey?: JWK
  /**
   * The resource indicators the login asked for (RFC 8707 §2.1): the refresh token is good for
   * these only. Absent (sessions started before gatehouse recorded them): none.
   */
  resources?: string[]
  /** Tokens of APIs with a `resource`, by `resourceKey` (src/tokens/resource.ts). */
  resourceTokens?: Record<string, ResourceToken>
}

/** A resolved, decrypted session: the record's metadata with its sealed part opened. */
export type Session = Omit<SessionRecord, 'sealed'> & { data: SessionData }

export interface ExpiryPolicy {
  lifetimeMs: number
  sliding: boolean
  absoluteLifetimeMs: number
}

export function initialExpiry(policy: ExpiryPolicy, now: number): number {
  return policy.sliding ? Math.min(now + policy.lifetimeMs, now + policy.absoluteLifetimeMs) : now + policy.lifetimeMs
}

/**
 * Sliding sessions are renewed once half the lifetime has passed since the last renewal (as ASP.NET's
 * cookie handler does), so a busy session costs one store write per half-lifetime, not one per request.
 * Returns the new expiry, or undefined when no renewal is due. Never extends past the absolute cap.
 */
export function renewedExpiry(
  policy: ExpiryPolicy,
  session: { createdAt: number; renewedAt: number; expiresAt: number },
  now: number,
): number | undefined {
  if (!policy.sliding) return undefined
  if (now - session.renewedAt < policy.lifetimeMs / 2) return undefined
  const next = Math.min(now + policy.lifetimeMs, session.createdAt + policy.absoluteLifetimeMs)
  return next > session.expiresAt ? next : undefined
}
