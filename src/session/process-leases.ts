import type { LeaseCapable } from './store.ts'

/** Beyond this many leases, expired ones are swept at the next acquisition. */
const SWEEP_ABOVE = 10_000

/**
 * Leases held in this process only: what cookie mode, and a store without leases, coordinate with
 * (a logout token's jti claimed once here; another instance does not see the claim).
 */
export class ProcessLeases implements LeaseCapable {
  readonly #leases = new Map<string, { owner: string; expiresAt: number }>()

  async acquireLease(name: string, owner: string, ttlMs: number, now: number): Promise<boolean> {
    if (this.#leases.size > SWEEP_ABOVE)
      for (const [key, lease] of this.#leases) if (lease.expiresAt <= now) this.#leases.delete(key)
    const held = this.#leases.get(name)
    if (held && held.owner !== owner && held.expiresAt > now) return false
    this.#leases.set(name, { owner, expiresAt: now + ttlMs })
    return true
  }

  async releaseLease(name: string, owner: string): Promise<void> {
    if (this.#leases.get(name)?.owner === owner) this.#leases.delete(name)
  }
}
