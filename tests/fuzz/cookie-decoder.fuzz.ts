import { createHash, randomBytes } from 'node:crypto'
import { isDeepStrictEqual } from 'node:util'
import { CompactEncrypt } from 'jose'
import { parseCookies, repeatedCookieNames } from '../../src/http/cookies.ts'
import { CookieSessions } from '../../src/session/cookie-sessions.ts'
import { KeyRing } from '../../src/session/seal.ts'
import type { Session, SessionData } from '../../src/session/session.ts'
import { count, FuzzFailure, mutateString, Rng, show, type FuzzStats } from './rng.ts'
import type { FuzzRunOptions } from './logout-token.fuzz.ts'

/**
 * Fuzz target: the cookie decoder — the Cookie header through parseCookies, cookie-mode chunk
 * reassembly and JWE decryption (CookieSessions.read), and the key ring's unseal (login/logout state).
 *
 * Each iteration takes a genuine session cookie (single or chunked) and damages it: bit flips,
 * truncations, splices with another session's cookie, chunk shuffles, a mangled Cookie header, or a
 * JWE made with the wrong key, the wrong algorithms, or the right key around a payload that is not a
 * session. The oracle:
 *   - read() and unseal() never throw;
 *   - a cookie whose reassembled value differs from what gatehouse wrote is no session;
 *   - an unchanged cookie is the same session;
 *   - a JWE gatehouse did not write with its own key and algorithms is no session, and one made with
 *     its key around a foreign payload is a session only if that payload has a session's shape;
 *   - unseal opens only values whose bytes are exactly what was sealed, for the same purpose.
 */

const COOKIE = '__Host-gatehouse'
const NOW = 1_800_000_000_000
const HOUR = 3_600_000
const policy = { lifetimeMs: 8 * HOUR, sliding: true, absoluteLifetimeMs: 24 * HOUR }

function sessionData(rng: Rng, size: number): SessionData {
  return {
    claims: [
      { type: 'sub', value: rng.string(20) },
      { type: 'name', value: rng.string(30) },
      ...(size ? [{ type: 'filler', value: rng.string(size, 'abcdefghijklmnopqrstuvwxyz') }] : []),
    ],
    tokens: {
      accessToken: `AT-${rng.string(20, 'abc')}`,
      refreshToken: `RT-${rng.string(20, 'abc')}`,
      idToken: 'IT',
      accessTokenExpiresAt: NOW + HOUR,
      scope: 'openid',
    },
    logoutSid: rng.string(22, 'abcdefghij0123456789'),
    sessionState: undefined,
  }
}

/** Set-Cookie lines → what the browser sends back, as a Cookie header. */
function headerAfter(writes: string[]): string {
  const jar = new Map<string, string>()
  for (const line of writes) {
    const pair = line.split(';', 1)[0]!
    const eq = pair.indexOf('=')
    if (/Max-Age=0\b/.test(line)) jar.delete(pair.slice(0, eq))
    else jar.set(pair.slice(0, eq), pair.slice(eq + 1))
  }
  return [...jar].map(([k, v]) => `${k}=${v}`).join('; ')
}

/** The cookie value gatehouse would reassemble from these cookies (SPEC §4 chunk format), or undefined. */
function reassembled(cookies: ReadonlyMap<string, string>): string | undefined {
  const head = cookies.get(COOKIE)
  if (head === undefined) return undefined
  const chunked = /^chunks-([1-9]\d?)$/.exec(head)
  if (!chunked) return head
  let value = ''
  for (let i = 1; i <= Number(chunked[1]); i++) {
    const part = cookies.get(`${COOKIE}C${i}`)
    if (part === undefined) return undefined
    value += part
  }
  return value
}

/** Equal as JSON (what the cookie carries), whatever the key order. */
const sameSession = (a: unknown, b: unknown): boolean =>
  a !== undefined && b !== undefined && isDeepStrictEqual(JSON.parse(JSON.stringify(a)), JSON.parse(JSON.stringify(b)))

export async function fuzzCookieDecoder(options: FuzzRunOptions): Promise<FuzzStats> {
  const setup = new Rng(options.seed)
  const keyText = randomBytes(32).toString('base64url')
  const keyRing = new KeyRing([keyText])
  const key = keyRing.current()
  const sessions = new CookieSessions({
    keyRing,
    policy,
    now: () => NOW,
    cookie: { name: COOKIE, sameSite: 'lax', maxAgeSec: 86_400 },
  })

  // A pool of genuine sessions (single-cookie and chunked), to damage and to splice with each other.
  const pool: Array<{ session: Session; header: string; jwe: string }> = []
  for (const size of [0, 50, 1_000, 3_000, 4_500, 6_000, 8_000]) {
    const writes: string[] = []
    // start() takes "now" from the sessions object: sessions expire 8 h after NOW.
    const { session } = await sessions.start(
      { sub: `sub-${size}`, sid: `sid-${size}`, partition: 'default', data: sessionData(setup, size) },
      writes,
    )
    const header = headerAfter(writes)
    pool.push({ session, header, jwe: reassembled(parseCookies(header))! })
  }
  const sealed = Array.from({ length: 4 }, (_, i) => ({
    plain: `${setup.string(40 * i, 'abcdefghij {}":,')}é💥`,
    purpose: `purpose-${i}`,
  })).map((s) => ({ ...s, value: keyRing.seal(s.plain, s.purpose) }))

  const stats: FuzzStats = { iterations: 0, outcomes: {}, strategies: {} }
  const started = Date.now()
  for (let i = 0; i < options.iterations; i++) {
    if (options.timeLimitMs !== undefined && Date.now() - started > options.timeLimitMs) break
    const rng = Rng.forIteration(options.seed, i)
    const context = (what: string, input: unknown) => `seed ${options.seed}, iteration ${i}, ${what}: ${show(input)}`

    if (rng.chance(0.15)) {
      // --- the key ring's sealed values (login state, logout state, stored sessions) ---
      const s = rng.pick(sealed)
      const mutated = rng.chance(0.1) ? s.value : mutateString(rng, s.value, rng.pick(sealed).value)
      const purpose = rng.chance(0.9) ? s.purpose : rng.pick(['', 'other', `${s.purpose} `])
      let opened: string | undefined
      try {
        opened = keyRing.unseal(mutated, purpose)
      } catch (err) {
        throw new FuzzFailure(`unseal threw ${String(err)} — ${context('sealed value', mutated)}`)
      }
      count(stats.strategies, 'unseal')
      // Same bytes in every part (a base64url spelling with other unused bits decodes to the same bytes) and same purpose.
      const parts = mutated.split('.')
      const sameBytes =
        parts.length === 4 &&
        parts[0] === s.value.split('.')[0] &&
        parts
          .slice(1)
          .every((part, j) =>
            Buffer.from(part, 'base64url').equals(Buffer.from(s.value.split('.')[j + 1]!, 'base64url')),
          )
      if (opened !== undefined && !(sameBytes && purpose === s.purpose && opened === s.plain)) {
        throw new FuzzFailure(
          `unseal opened a changed value or under another purpose (${show({ purpose, sealedFor: s.purpose, original: s.value })}) — ${context('sealed value', mutated)}`,
        )
      }
      if (mutated === s.value && purpose === s.purpose && opened !== s.plain)
        throw new FuzzFailure(`unseal refused its own value — ${context('sealed value', mutated)}`)
      count(stats.outcomes, opened === undefined ? 'unseal refused' : 'unseal opened')
      stats.iterations++
      continue
    }

    const original = rng.pick(pool)
    const other = rng.pick(pool)
    let header = original.header
    let strategy: string
    let foreign: { payload: unknown } | undefined
    const roll = rng.int(100)
    const cookies = parseCookies(original.header)
    const names = [...cookies.keys()]
    const rebuild = (map: Map<string, string>) => [...map].map(([k, v]) => `${k}=${v}`).join('; ')
    if (roll < 8) {
      strategy = 'unchanged'
    } else if (roll < 40) {
      strategy = 'value mutation'
      const name = rng.pick(names)
      for (let n = rng.range(1, 3); n > 0; n--) cookies.set(name, mutateString(rng, cookies.get(name)!, other.jwe))
      header = rebuild(cookies)
    } else if (roll < 55) {
      strategy = 'chunk shuffle'
      const chunkNames = names.filter((n) => n !== COOKIE)
      const otherCookies = parseCookies(other.header)
      switch (rng.int(5)) {
        case 0:
          if (chunkNames.length) cookies.delete(rng.pick(chunkNames))
          else cookies.set(COOKIE, `chunks-${rng.range(1, 3)}`)
          break
        case 1: {
          const [a, b] = [
            rng.pick(chunkNames.length ? chunkNames : names),
            rng.pick(chunkNames.length ? chunkNames : names),
          ]
          const va = cookies.get(a)!
          cookies.set(a, cookies.get(b)!).set(b, va)
          break
        }
        case 2:
          cookies.set(
            COOKIE,
            rng.pick([
              'chunks-0',
              'chunks-1',
              'chunks-2',
              'chunks-3',
              'chunks-4',
              'chunks-99',
              'chunks-100',
              'chunks-01',
              'chunks-',
              `chunks-${rng.int(10)}`,
            ]),
          )
          break
        case 3:
          // chunks of another session in place of this one's
          for (const [name, value] of otherCookies) if (name !== COOKIE && rng.chance(0.5)) cookies.set(name, value)
          break
        default:
          cookies.set(`${COOKIE}C${rng.range(1, 4)}`, other.jwe.slice(0, rng.int(3_800)))
      }
      header = rebuild(cookies)
    } else if (roll < 70) {
      strategy = 'header mutation'
      for (let n = rng.range(1, 3); n > 0; n--) header = mutateString(rng, header, other.header)
      if (rng.chance(0.3))
        header = rng.pick([
          `${header}; ${COOKIE}=x`,
          `${COOKIE}=x; ${header}`,
          `${header};;; =; ${COOKIE}C1=`,
          header.replace(/; /g, ';'),
        ])
    } else {
      // --- JWEs gatehouse did not write ---
      const payload: Record<string, unknown> = {
        v: 1,
        ...structuredClone({ ...original.session, idHash: undefined }),
        id: original.session.idHash,
      }
      delete payload.idHash
      let alg = 'dir'
      let enc = 'A256GCM'
      let kid: unknown = key.id
      let secret: Uint8Array = key.secret
      let body: unknown = payload
      const kind = rng.int(6)
      if (kind === 0) {
        strategy = "JWE under a wrong key with the ring's kid"
        secret = randomBytes(32)
      } else if (kind === 1) {
        strategy = 'JWE with other algorithms'
        ;[alg, enc, secret] = rng.pick<[string, string, Uint8Array]>([
          ['dir', 'A128GCM', randomBytes(16)],
          ['dir', 'A128GCM', key.secret.subarray(0, 16)],
          ['dir', 'A256CBC-HS512', randomBytes(64)],
          ['A256KW', 'A256GCM', key.secret],
          ['A256GCMKW', 'A256GCM', key.secret],
        ])
      } else if (kind === 2) {
        strategy = 'JWE with an unknown or odd kid'
        kid = rng.pick<unknown>([
          '',
          'unknown',
          createHash('sha256').update('x').digest('base64url').slice(0, 8),
          5,
          null,
          [key.id],
        ])
      } else {
        strategy = 'JWE under the right key around a foreign payload'
        const variants: Array<() => unknown> = [
          () => null,
          () => rng.json(),
          () => [payload],
          () => 'a string',
          () => ({ ...payload, v: rng.pick<unknown>([0, 2, '1', null]) }),
          () => ({ ...payload, id: rng.pick<unknown>([5, null, ['x']]) }),
          () => ({ ...payload, partition: rng.pick(['admin', '', 'Default']) }),
          () => ({ ...payload, expiresAt: rng.pick<unknown>([NOW, NOW - 1, '9999999999999', null, undefined]) }),
          () => {
            const copy: Record<string, unknown> = { ...payload }
            delete copy[rng.pick(Object.keys(copy))]
            return copy
          },
        ]
        body = rng.pick(variants)()
        foreign = { payload: body }
      }
      const protectedHeader: Record<string, unknown> = { alg, enc }
      if (kid !== undefined) protectedHeader.kid = kid
      let jwe: string
      try {
        const plaintext = rng.chance(0.05)
          ? Buffer.from([0xff, 0xfe, 0x00])
          : new TextEncoder().encode(JSON.stringify(body) ?? 'undefined')
        jwe = await new CompactEncrypt(plaintext)
          .setProtectedHeader(protectedHeader as { alg: string; enc: string })
          .encrypt(secret)
      } catch {
        stats.iterations++
        continue // jose would not build it: nothing to feed
      }
      header =
        jwe.length <= 3_800
          ? `${COOKIE}=${jwe}`
          : `${COOKIE}=chunks-${Math.ceil(jwe.length / 3_800)}; ${jwe
              .match(/.{1,3800}/g)!
              .map((c, n) => `${COOKIE}C${n + 1}=${c}`)
              .join('; ')}`
    }
    count(stats.strategies, strategy)

    const parsed = parseCookies(header)
    let read: Session | undefined
    const clear: string[] = []
    try {
      read = await sessions.read(parsed, 'default', { slide: false }, clear)
    } catch (err) {
      throw new FuzzFailure(
        `read threw ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)} — ${context(strategy, header)}`,
        { cause: err },
      )
    }
    const value = reassembled(parsed)
    // A cookie name sent twice is ambiguous (one may be tossed by another site): no session, nothing cleared.
    const ambiguous = [...repeatedCookieNames(parsed)].some((name) => name.startsWith(COOKIE))
    if (ambiguous) {
      if (read || clear.length)
        throw new FuzzFailure(
          `an ambiguous cookie header read as a session or cleared cookies — ${context(strategy, header)}`,
        )
    } else if (foreign) {
      const p = foreign.payload as Record<string, unknown> | null
      // Only gatehouse holds the key, so an authentic payload's shape is trusted beyond these checks
      // (a payload from another version or format must not be a session, nor an error).
      const shaped =
        p !== null &&
        typeof p === 'object' &&
        !Array.isArray(p) &&
        p.v === 1 &&
        typeof p.id === 'string' &&
        p.partition === 'default' &&
        Number(p.expiresAt) > NOW
      if (read && !shaped)
        throw new FuzzFailure(
          `a JWE with a payload that is not a session opened as one — ${context(strategy, foreign.payload)}`,
        )
    } else if (strategy.startsWith('JWE')) {
      if (read)
        throw new FuzzFailure(`a JWE gatehouse did not write opened as a session — ${context(strategy, header)}`)
    } else if (pool.some((p) => p.jwe === value)) {
      // Unchanged, or exactly another genuine session's cookie (all of its chunks spliced in): that session.
      const genuine = pool.find((p) => p.jwe === value)!
      if (!sameSession(read, genuine.session))
        throw new FuzzFailure(`an unchanged cookie did not read as its session — ${context(strategy, header)}`)
    } else if (read) {
      throw new FuzzFailure(
        `a changed cookie read as a session (${show({ cookies: [...parsed].map(([k, v]) => `${k}: ${v.length} chars, ${v.slice(0, 12)}…${v.slice(-12)}`), original: original.jwe.length, other: other.jwe.length, value: value?.length })}) — ${context(strategy, header)}`,
      )
    }
    if (!read && parsed.has(COOKIE) && !ambiguous && !clear.some((line) => line.startsWith(`${COOKIE}=;`))) {
      throw new FuzzFailure(`a cookie that is no session was not cleared — ${context(strategy, header)}`)
    }
    count(stats.outcomes, read ? 'session' : 'no session')
    stats.iterations++
  }
  return stats
}
