import { createHash, timingSafeEqual } from 'node:crypto'
import type { KeyRing } from '../session/seal.ts'

/** What the browser carries between /bff/login and /signin-oidc, sealed in a short-lived cookie. */
export interface LoginState {
  state: string
  nonce: string
  codeVerifier: string
  returnUrl: string
  /** The frontend the login started at: its callback alone may finish it. */
  frontend: string
  /** prompt=none (iframe): every outcome goes back to returnUrl, the silent-login callback page. */
  silent: boolean
  /** The resource indicators (RFC 8707) the authorization request named: the session's grant covers only these. */
  resources?: string[]
  createdAt: number
}

export const LOGIN_STATE_MAX_AGE_MS = 10 * 60_000
const PURPOSE = 'login-state'

/**
 * One cookie per pending login, named after a hash of its state, so two tabs logging in at once do
 * not overwrite each other's state and the callback finds its own cookie by the `state` it receives.
 */
export function loginCookieName(sessionCookieName: string, state: string): string {
  return `${loginCookiePrefix(sessionCookieName)}${createHash('sha256').update(state).digest('base64url').slice(0, 16)}`
}

export function loginCookiePrefix(sessionCookieName: string): string {
  return `${sessionCookieName}.login.`
}

/** Pending logins kept per browser; older ones are dropped so repeated logins cannot bloat the Cookie header. */
export const MAX_PENDING_LOGINS = 3

/**
 * Names of this browser's pending-login cookies that a new login should delete: every unreadable
 * one, and all but the newest MAX_PENDING_LOGINS - 1 readable ones (the new login makes it MAX).
 */
export function staleLoginCookies(keyRing: KeyRing, cookies: Map<string, string>, sessionCookieName: string): string[] {
  const prefix = loginCookiePrefix(sessionCookieName)
  const readable: Array<{ name: string; createdAt: number }> = []
  const stale: string[] = []
  for (const [name, value] of cookies) {
    if (!name.startsWith(prefix)) continue
    const plain = keyRing.unseal(value, PURPOSE)
    const createdAt = plain === undefined ? undefined : (safeParse(plain)?.createdAt as unknown)
    if (typeof createdAt === 'number') readable.push({ name, createdAt })
    else stale.push(name)
  }
  readable.sort((a, b) => b.createdAt - a.createdAt)
  return [...stale, ...readable.slice(MAX_PENDING_LOGINS - 1).map((c) => c.name)]
}

function safeParse(text: string): Partial<LoginState> | undefined {
  try {
    return JSON.parse(text) as Partial<LoginState>
  } catch {
    return undefined
  }
}

export function sealLoginState(keyRing: KeyRing, value: LoginState): string {
  return keyRing.seal(JSON.stringify(value), PURPOSE)
}

/** The pending login for `state`, or undefined when missing, forged, expired or not matching. */
export function openLoginState(
  keyRing: KeyRing,
  sealed: string | undefined,
  state: string,
  now: number,
): LoginState | undefined {
  if (!sealed) return undefined
  const plain = keyRing.unseal(sealed, PURPOSE)
  if (plain === undefined) return undefined
  const value = safeParse(plain) as LoginState | undefined
  if (!value) return undefined
  if (typeof value.state !== 'string' || !safeEqual(value.state, state)) return undefined
  if (
    typeof value.createdAt !== 'number' ||
    now - value.createdAt > LOGIN_STATE_MAX_AGE_MS ||
    value.createdAt > now + 60_000
  )
    return undefined
  return value
}

export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}
