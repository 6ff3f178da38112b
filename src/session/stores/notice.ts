import type { SessionEndNotice } from '../store.ts'

/** A notice as another instance sent it, or undefined for anything malformed (never trusted further). */
export function parseNotice(text: string): SessionEndNotice | undefined {
  try {
    const value = JSON.parse(text) as Partial<SessionEndNotice>
    if (typeof value.reason !== 'string' || typeof value.origin !== 'string') return undefined
    if (value.idHash !== undefined && typeof value.idHash !== 'string') return undefined
    const filter = value.filter
    if (
      filter !== undefined &&
      (typeof filter !== 'object' ||
        filter === null ||
        (typeof filter.sub !== 'string' && typeof filter.sid !== 'string'))
    )
      return undefined
    if (value.idHash === undefined && filter === undefined) return undefined
    return value as SessionEndNotice
  } catch {
    return undefined
  }
}
