import { randomUUID } from 'node:crypto'
import { storeCall } from './store-call.ts'
import type { LeaseCapable } from './store.ts'

/** A lease (or a claimed marker) this process holds. */
export interface HeldLease {
  /** Gives it up; never rejects (an unreleased lease runs out by its time-to-live). */
  release(): Promise<void>
}

/** Named leases over a store's leases (or this process's own), each taken under an owner of its own. */
export class Leases {
  readonly #source: LeaseCapable
  readonly #now: () => number

  constructor(source: LeaseCapable, now: () => number) {
    this.#source = source
    this.#now = now
  }

  /** The lease, or undefined while another owner holds it; a store failure is store_unavailable. */
  async take(name: string, ttlMs: number): Promise<HeldLease | undefined> {
    const owner = randomUUID()
    if (!(await storeCall(() => this.#source.acquireLease(name, owner, ttlMs, this.#now())))) return undefined
    return {
      release: async () => {
        await this.#source.releaseLease(name, owner).catch(() => undefined)
      },
    }
  }
}
