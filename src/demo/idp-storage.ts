/**
 * In-memory storage for the embedded IdP (oidc-provider's adapter interface). The package ships
 * the same thing as a fallback but warns on every start; the demo and tests want a quiet console.
 */
type Payload = Record<string, unknown> & { grantId?: string; userCode?: string; uid?: string; consumed?: number }

export function createIdpStorage(): new (model: string) => object {
  const entries = new Map<string, { payload: Payload; expiresAt: number | undefined }>()
  const grants = new Map<string, Set<string>>()
  const live = (key: string): Payload | undefined => {
    const entry = entries.get(key)
    if (!entry) return undefined
    if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
      entries.delete(key)
      return undefined
    }
    return entry.payload
  }

  return class IdpStorage {
    readonly #model: string
    constructor(model: string) {
      this.#model = model
    }
    #key(id: string): string {
      return `${this.#model}:${id}`
    }
    async upsert(id: string, payload: Payload, expiresIn?: number): Promise<void> {
      const key = this.#key(id)
      entries.set(key, { payload, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : undefined })
      if (payload.grantId) {
        let keys = grants.get(payload.grantId)
        if (!keys) grants.set(payload.grantId, (keys = new Set()))
        keys.add(key)
      }
    }
    async find(id: string): Promise<Payload | undefined> {
      return live(this.#key(id))
    }
    async findByUid(uid: string): Promise<Payload | undefined> {
      for (const [key] of entries) if (key.startsWith(`${this.#model}:`) && live(key)?.uid === uid) return live(key)
      return undefined
    }
    async findByUserCode(userCode: string): Promise<Payload | undefined> {
      for (const [key] of entries)
        if (key.startsWith(`${this.#model}:`) && live(key)?.userCode === userCode) return live(key)
      return undefined
    }
    async consume(id: string): Promise<void> {
      const payload = live(this.#key(id))
      if (payload) payload.consumed = Math.floor(Date.now() / 1000)
    }
    async destroy(id: string): Promise<void> {
      entries.delete(this.#key(id))
    }
    async revokeByGrantId(grantId: string): Promise<void> {
      for (const key of grants.get(grantId) ?? []) entries.delete(key)
      grants.delete(grantId)
    }
  }
}
