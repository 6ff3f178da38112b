import { randomBytes } from 'node:crypto'
import { compactDecrypt, CompactEncrypt } from 'jose'
import { GatehouseError } from '../errors.ts'
import { deleteCookie, repeatedCookieNames, serializeCookie } from '../http/cookies.ts'
import type { NewSession, ReadOptions, SessionBackend } from './backend.ts'
import { Leases, type HeldLease } from './leases.ts'
import { ProcessLeases } from './process-leases.ts'
import type { KeyRing } from './seal.ts'
import { initialExpiry, renewedExpiry, type ExpiryPolicy, type Session, type SessionData } from './session.ts'
import { SessionEvents, type EndReason } from './session-events.ts'
import type { SessionCookie } from './sessions.ts'
import type { SessionFilter } from './store.ts'

/** Browsers keep ~4096 bytes per cookie (name, value and attributes); stay well below. */
export const CHUNK_SIZE = 3_800
/** More chunks than this is not a session gatehouse wrote. */
/** 3 × 3.8 KB: with the rest of a request's headers this stays inside Node's 16 KB header limit. */
const MAX_CHUNKS = 3
const CHUNKS = /^chunks-([1-9]\d?)$/
/** Sessions remembered in-process (refreshed ones, ended ones); the oldest are forgotten beyond this. */
const MAX_REMEMBERED = 50_000

/** What the cookie carries: the session with its id, versioned for future format changes. */
type CookiePayload = Omit<Session, 'idHash'> & { v: 1; id: string }

/**
 * Cookie-mode sessions (`session.mode: "cookie"`): no store; the whole session is a JWE
 * (`dir` + A256GCM under the key ring, `kid` naming the key) in the cookie, split into chunks
 * (`name=chunks-N`, `nameC1…nameCN`) above ~4 KB, as ASP.NET's chunking cookie manager does.
 * Trade-offs (docs/sessions.md): no back-channel logout, no server-side revocation, and
 * refresh coordination only within one process.
 */
export class CookieSessions implements SessionBackend {
  readonly shared = false
  /** No store: refreshes are coordinated within the process (src/tokens/tokens.ts). */
  readonly leases = undefined
  readonly #keyRing: KeyRing
  readonly #policy: ExpiryPolicy
  readonly #cookie: SessionCookie
  readonly #now: () => number
  /**
   * Sessions this process changed (refreshed tokens), by id, until they expire: a request still
   * carrying the older cookie (sent before the new one arrived) must not refresh with a rotated token.
   */
  readonly #recent = new Map<string, { session: Session; until: number }>()
  /**
   * Sessions ended here (logout), by id, until they would have expired. A request that was in flight
   * at logout must not write the session back into the browser (SPEC §4); a copy of the cookie
   * replayed elsewhere is the documented limit of cookie mode.
   */
  readonly #ended = new Map<string, number>()
  readonly #events: SessionEvents
  readonly #claims: Leases

  /** `events`: where endings are told (this instance's streams and the audit hook). */
  constructor(options: {
    keyRing: KeyRing
    policy: ExpiryPolicy
    cookie: SessionCookie
    now?: () => number
    events?: SessionEvents
  }) {
    this.#keyRing = options.keyRing
    this.#policy = options.policy
    this.#cookie = options.cookie
    this.#now = options.now ?? Date.now
    this.#events = options.events ?? new SessionEvents()
    this.#claims = new Leases(new ProcessLeases(), this.#now)
  }

  async read(
    cookies: ReadonlyMap<string, string>,
    partition: string,
    options: ReadOptions,
    writes: string[],
  ): Promise<Session | undefined> {
    const base = this.#name(partition)
    if (!cookies.has(base)) return undefined
    // The head or a chunk twice: which one is the browser's own cannot be told. No session, nothing cleared.
    for (const name of repeatedCookieNames(cookies)) {
      if (name === base || isChunkName(name, base)) {
        options.onAmbiguous?.()
        return undefined
      }
    }
    const session = await this.#open(cookies, partition)
    if (!session || this.#ended.has(session.idHash)) {
      this.clearCookies(cookies, partition, writes)
      return undefined
    }
    const now = this.#now()
    const newer = this.#recent.get(session.idHash)
    let current = newer && newer.until > now && newer.session.version > session.version ? newer.session : session
    let rewrite = current !== session
    if (options.slide) {
      const expiresAt = renewedExpiry(this.#policy, current, now)
      if (expiresAt !== undefined) {
        current = { ...current, renewedAt: now, expiresAt, version: current.version + 1 }
        rewrite = true
      }
    }
    if (rewrite) await this.#write(current, cookies, writes)
    return current
  }

  async start(input: NewSession, writes: string[]): Promise<{ session: Session; replaced: number }> {
    const now = this.#now()
    const session: Session = {
      // No store to dump: the id never leaves the encrypted cookie, so it needs no hashing.
      idHash: randomBytes(32).toString('base64url'),
      sub: input.sub,
      sid: input.sid,
      partition: input.partition,
      createdAt: now,
      renewedAt: now,
      expiresAt: initialExpiry(this.#policy, now),
      version: 1,
      data: input.data,
    }
    await this.#write(session, new Map(), writes)
    // Cookie mode keeps no other sessions to replace.
    return { session, replaced: 0 }
  }

  async end(session: Session, reason: EndReason): Promise<void> {
    this.#recent.delete(session.idHash)
    remember(this.#ended, session.idHash, session.expiresAt)
    await this.#events.ended(session, reason)
  }

  /** The sessions live in browsers: none can be ended here, only this instance's listeners told. */
  async endWhere(filter: SessionFilter, reason: EndReason): Promise<number> {
    await this.#events.endedWhere(filter, reason)
    return 0
  }

  claimOnce(marker: string, ttlMs: number): Promise<HeldLease | undefined> {
    return this.#claims.take(marker, ttlMs)
  }

  /** No store to reach. */
  async ping(): Promise<void> {}

  clearCookies(cookies: ReadonlyMap<string, string>, partition: string, writes: string[]): void {
    const base = this.#name(partition)
    for (const name of cookies.keys()) {
      if (name === base || isChunkName(name, base)) writes.push(deleteCookie(name, this.#cookie.sameSite))
    }
  }

  #name(partition: string): string {
    return this.#cookie.nameFor?.(partition) ?? this.#cookie.name
  }

  async persist(session: Session, cookies: ReadonlyMap<string, string>, writes: string[]): Promise<void> {
    if (this.#ended.has(session.idHash)) return
    await this.#write(session, cookies, writes)
  }

  hasEnded(session: Session): boolean {
    return this.#ended.has(session.idHash)
  }

  async current(session: Session): Promise<Session | undefined> {
    if (this.#ended.has(session.idHash)) return undefined
    const newer = this.#recent.get(session.idHash)
    return newer && newer.session.version > session.version ? newer.session : session
  }

  async modify(session: Session, change: (data: SessionData) => SessionData | undefined): Promise<Session | undefined> {
    if (this.#ended.has(session.idHash)) return undefined
    const current = (await this.current(session)) ?? session
    const data = change(current.data)
    if (data === undefined) return current
    const changed: Session = { ...current, version: current.version + 1, data }
    remember(this.#recent, session.idHash, { session: changed, until: changed.expiresAt })
    return changed
  }

  async removeExpired(): Promise<number> {
    const now = this.#now()
    let removed = 0
    for (const [idHash, entry] of this.#recent) {
      if (entry.until <= now) {
        this.#recent.delete(idHash)
        removed++
      }
    }
    for (const [idHash, until] of this.#ended) if (until <= now) this.#ended.delete(idHash)
    return removed
  }

  /** The whole cookie value: the single cookie, or its chunks joined. Undefined when malformed or incomplete. */
  #assemble(cookies: ReadonlyMap<string, string>, base: string): string | undefined {
    const head = cookies.get(base)!
    const chunked = CHUNKS.exec(head)
    if (!chunked) return head
    const count = Number(chunked[1])
    if (count > MAX_CHUNKS) return undefined
    let value = ''
    for (let i = 1; i <= count; i++) {
      const part = cookies.get(`${base}C${i}`)
      if (part === undefined) return undefined
      value += part
    }
    return value
  }

  async #open(cookies: ReadonlyMap<string, string>, partition: string): Promise<Session | undefined> {
    const jwe = this.#assemble(cookies, this.#name(partition))
    if (!jwe || jwe.length > CHUNK_SIZE * MAX_CHUNKS || !/^[A-Za-z0-9_-]*(\.[A-Za-z0-9_-]*){4}$/.test(jwe))
      return undefined
    // One spelling per cookie: unused bits in a part's last character would otherwise decode to the
    // same bytes, and a changed cookie would open as the same session (RFC 4648 §3.5 allows refusing).
    if (jwe.split('.').some((part) => Buffer.from(part, 'base64url').toString('base64url') !== part)) return undefined
    let payload: CookiePayload
    try {
      const { plaintext } = await compactDecrypt(
        jwe,
        (header) => {
          const key = typeof header.kid === 'string' ? this.#keyRing.find(header.kid) : undefined
          if (!key) throw new Error('unknown key')
          return key.secret
        },
        { keyManagementAlgorithms: ['dir'], contentEncryptionAlgorithms: ['A256GCM'] },
      )
      payload = JSON.parse(new TextDecoder().decode(plaintext)) as CookiePayload
    } catch {
      return undefined // tampered, truncated, foreign or under a retired key: no session, never an error
    }
    // Decrypts under our key yet is not a session (another format or version): no session, not a 500.
    if (
      payload === null ||
      typeof payload !== 'object' ||
      payload.v !== 1 ||
      typeof payload.id !== 'string' ||
      payload.partition !== partition ||
      !(payload.expiresAt > this.#now())
    )
      return undefined
    const { v: _v, id, ...session } = payload
    return { ...session, idHash: id }
  }

  async #write(session: Session, cookies: ReadonlyMap<string, string>, writes: string[]): Promise<void> {
    const { idHash: id, ...rest } = session
    const payload: CookiePayload = { v: 1, id, ...rest }
    const key = this.#keyRing.current()
    const jwe = await new CompactEncrypt(new TextEncoder().encode(JSON.stringify(payload)))
      .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', kid: key.id })
      .encrypt(key.secret)
    const attributes = { sameSite: this.#cookie.sameSite, maxAgeSec: this.#cookie.maxAgeSec }
    const base = this.#name(session.partition)
    const chunks = jwe.length <= CHUNK_SIZE ? [] : (jwe.match(new RegExp(`.{1,${CHUNK_SIZE}}`, 'g')) ?? [])
    if (chunks.length > MAX_CHUNKS) {
      throw new GatehouseError(
        'internal',
        `the session (${jwe.length} bytes encrypted) is too large for cookie mode; use session.mode "server" or ask the IdP for fewer claims`,
      )
    }
    writes.push(serializeCookie(base, chunks.length ? `chunks-${chunks.length}` : jwe, attributes))
    chunks.forEach((chunk, i) => writes.push(serializeCookie(`${base}C${i + 1}`, chunk, attributes)))
    // Chunks the browser holds beyond the new count would otherwise linger.
    for (const name of cookies.keys()) {
      if (isChunkName(name, base) && Number(name.slice(base.length + 1)) > chunks.length)
        writes.push(deleteCookie(name, this.#cookie.sameSite))
    }
  }
}

/** Map.set with a size cap: the oldest entries go first (Maps iterate in insertion order). */
function remember<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key)
  map.set(key, value)
  if (map.size > MAX_REMEMBERED) map.delete(map.keys().next().value!)
}

function isChunkName(name: string, base: string): boolean {
  return name.startsWith(`${base}C`) && /^\d+$/.test(name.slice(base.length + 1))
}
