import type { KeyRing } from '../session/seal.ts'

/** The `state` gatehouse sends with an end-session request: sealed, so only gatehouse can say where to go after. */
export interface LogoutState {
  returnUrl: string
  createdAt: number
}

const PURPOSE = 'logout-state'
const MAX_AGE_MS = 60 * 60_000

export function sealLogoutState(keyRing: KeyRing, value: LogoutState): string {
  return keyRing.seal(JSON.stringify(value), PURPOSE)
}

export function openLogoutState(keyRing: KeyRing, sealed: string | undefined, now: number): LogoutState | undefined {
  if (!sealed) return undefined
  const plain = keyRing.unseal(sealed, PURPOSE)
  if (plain === undefined) return undefined
  try {
    const value = JSON.parse(plain) as LogoutState
    if (
      typeof value.returnUrl !== 'string' ||
      typeof value.createdAt !== 'number' ||
      now - value.createdAt > MAX_AGE_MS
    )
      return undefined
    return value
  } catch {
    return undefined
  }
}
