import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import { parseCookies, serializeCookie } from '../../../src/http/cookies.ts'
import { CookieSessions } from '../../../src/session/cookie-sessions.ts'
import { generateKey, KeyRing } from '../../../src/session/seal.ts'
import type { SessionData } from '../../../src/session/session.ts'
import { anyString, SEED } from './arbitraries.ts'

// Properties of cookie parsing (parseCookies) and of cookie-mode sessions' chunking (SPEC §4: an
// encrypted payload, chunked above ~4 KB; a tampered cookie is no session, never an error page).

/** RFC 7230 tchar: what a cookie name is made of. */
const TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
/** RFC 6265 cookie-octet: what a cookie value is made of (no space, quote, comma, semicolon, backslash). */
const COOKIE_OCTET = [...Array(0x7f - 0x21).keys()]
  .map((i) => String.fromCharCode(0x21 + i))
  .filter((c) => !'",;\\'.includes(c))

const cookieName = fc.string({ unit: fc.constantFrom(...TCHAR), minLength: 1, maxLength: 20 })
const cookieValue = fc.string({ unit: fc.constantFrom(...COOKIE_OCTET), maxLength: 40 })
const pairs = fc.uniqueArray(fc.tuple(cookieName, cookieValue), { selector: ([name]) => name, maxLength: 30 })
/** Segments parseCookies must skip: no "=", or nothing but whitespace before the first "=". */
const garbage = fc
  .oneof(
    fc.string({ unit: fc.constantFrom(' ', '\t', 'a', 'Z', '"', ',', '\\', '%', '\u00e9', '\u0000'), maxLength: 10 }),
    fc
      .tuple(fc.constantFrom('', ' ', '\t ', '  '), anyString(10))
      .map(([space, rest]) => `${space}=${rest.replace(/;/g, '')}`),
  )
  .map((text) => text.replace(/;/g, ''))
const separator = fc.constantFrom('; ', ';', ' ; ', ';  ', ';\t')

const HOUR = 3_600_000
const COOKIE = '__Host-gatehouse'
const policy = { lifetimeMs: 8 * HOUR, sliding: true, absoluteLifetimeMs: 24 * HOUR }
const BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

describe('parseCookies properties', () => {
  test('never throws on any header; names are non-empty, trimmed and free of "=" and ";"; at most 200 cookies', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          anyString(200),
          fc
            .array(fc.oneof(garbage, cookieName, fc.constantFrom(';', '=', '"', ' ')), { maxLength: 400 })
            .map((p) => p.join('')),
        ),
        (header) => {
          const cookies = parseCookies(header)
          assert.ok(cookies.size <= 200)
          for (const [name, value] of cookies) {
            assert.ok(name.length > 0 && name === name.trim() && !/[=;]/.test(name), JSON.stringify(name))
            assert.ok(!value.includes(';'))
          }
        },
      ),
      { seed: SEED, numRuns: 2_000 },
    )
  })

  test('round-trips the name=value part of serializeCookie lines, whatever the separators', () => {
    fc.assert(
      fc.property(
        pairs,
        separator,
        fc.constantFrom('strict' as const, 'lax' as const),
        fc.option(fc.nat(10 ** 7), { nil: undefined }),
        (list, sep, sameSite, maxAgeSec) => {
          const lines = list.map(([name, value]) => serializeCookie(name, value, { sameSite, maxAgeSec }))
          for (const line of lines)
            assert.match(line, /; Path=\/; Secure; HttpOnly; SameSite=(Strict|Lax)(; Max-Age=\d+)?$/)
          const header = lines.map((line) => line.split(';', 1)[0]).join(sep)
          assert.deepEqual([...parseCookies(header)], list)
        },
      ),
      { seed: SEED, numRuns: 1_000 },
    )
  })

  test('garbage segments between real pairs are ignored; the first of duplicate names wins', () => {
    fc.assert(
      fc.property(
        pairs,
        fc.array(garbage, { maxLength: 20 }),
        fc.nat(),
        separator,
        cookieValue,
        (list, junk, seed, sep, later) => {
          const segments = list.map(([name, value]) => `${name}=${value}`)
          junk.forEach((g, i) => segments.splice((seed + i * 7) % (segments.length + 1), 0, g))
          if (list.length) segments.push(`${list[0]![0]}=${later}`) // a duplicate after the first
          assert.deepEqual([...parseCookies(segments.join(sep))], list)
        },
      ),
      { seed: SEED, numRuns: 1_000 },
    )
  })
})

/** What a browser sends back after these Set-Cookie lines (later lines win, Max-Age=0 deletes). */
function jarAfter(writes: string[]): Map<string, string> {
  const jar = new Map<string, string>()
  for (const line of writes) {
    const pair = line.split(';', 1)[0]!
    const eq = pair.indexOf('=')
    if (/Max-Age=0\b/.test(line)) jar.delete(pair.slice(0, eq))
    else jar.set(pair.slice(0, eq), pair.slice(eq + 1))
  }
  return parseCookies([...jar].map(([k, v]) => `${k}=${v}`).join('; '))
}

const asJson = (value: unknown): unknown => JSON.parse(JSON.stringify(value))

interface SessionInput {
  sub: string
  sid: string | undefined
  partition: string
  claims: Array<{ type: string; value: string | number | boolean }>
  filler: number
  refreshToken: string | undefined
}

/** Session contents: arbitrary strings in sub/sid/claims (any code point), and a filler that makes 0–3 chunks. */
const sessionInput: fc.Arbitrary<SessionInput> = fc.record({
  sub: anyString(40).filter((s) => s.length > 0),
  sid: fc.option(anyString(40), { nil: undefined }),
  partition: fc.constantFrom('default', 'admin', 'app-2'),
  claims: fc.array(fc.record({ type: anyString(12), value: fc.oneof(anyString(60), fc.integer(), fc.boolean()) }), {
    maxLength: 8,
  }),
  filler: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 7_000 })),
  refreshToken: fc.option(fc.string({ maxLength: 60 }), { nil: undefined }),
})

function dataOf(input: SessionInput): SessionData {
  return {
    claims: [...input.claims, ...(input.filler ? [{ type: 'filler', value: 'f'.repeat(input.filler) }] : [])],
    tokens: {
      accessToken: 'AT',
      refreshToken: input.refreshToken,
      idToken: 'IT',
      accessTokenExpiresAt: Date.now() + HOUR,
      scope: 'openid',
    },
    logoutSid: 'logout-sid',
    sessionState: undefined,
  }
}

/** A started cookie-mode session: the sessions object, what it returned, and the browser's cookies. */
async function started(input: SessionInput) {
  const sessions = new CookieSessions({
    keyRing: new KeyRing([generateKey()]),
    policy,
    cookie: { name: COOKIE, sameSite: 'lax', maxAgeSec: 86_400 },
  })
  const writes: string[] = []
  const { session } = await sessions.start(
    { sub: input.sub, sid: input.sid, partition: input.partition, data: dataOf(input) },
    writes,
  )
  return { sessions, session, jar: jarAfter(writes), partition: input.partition }
}

const chunkNames = (jar: Map<string, string>): string[] => [...jar.keys()].filter((name) => name !== COOKIE)

describe('cookie-mode chunk reassembly properties', () => {
  test('any session splits into at most 3 chunks of at most 3800 characters and reassembles to the same session', async () => {
    let chunked = 0
    await fc.assert(
      fc.asyncProperty(sessionInput, async (input) => {
        const { sessions, session, jar, partition } = await started(input)
        const head = jar.get(COOKIE)!
        if (/^chunks-\d$/.test(head)) {
          chunked++
          const count = Number(head.slice(7))
          assert.ok(count >= 2 && count <= 3)
          assert.deepEqual(
            chunkNames(jar),
            Array.from({ length: count }, (_, i) => `${COOKIE}C${i + 1}`),
          )
          for (const name of chunkNames(jar)) assert.ok(jar.get(name)!.length <= 3_800)
        } else assert.ok(head.length <= 3_800)
        assert.deepEqual(asJson(await sessions.read(jar, partition, { slide: false }, [])), asJson(session))
      }),
      { seed: SEED, numRuns: 80 },
    )
    assert.ok(chunked > 10, `the generator makes chunked sessions too (${chunked})`)
  })

  test('any single-character change to any cookie (head or chunk) reads as no session, never throws', async () => {
    await fc.assert(
      fc.asyncProperty(
        sessionInput,
        fc.nat(),
        fc.nat(),
        fc.oneof(
          fc.constantFrom(...BASE64URL),
          fc.constantFrom('.', '=', '+', '/', '%', ' '),
          anyString(1).filter((c) => c.length === 1),
        ),
        async (input, which, at, replacement) => {
          const { sessions, jar, partition } = await started(input)
          const names = [...jar.keys()].filter((name) => !/^chunks-/.test(jar.get(name)!))
          const name = names[which % names.length]!
          const value = jar.get(name)!
          const i = at % value.length
          fc.pre(value[i] !== replacement)
          const tampered = new Map(jar).set(name, `${value.slice(0, i)}${replacement}${value.slice(i + 1)}`)
          const clear: string[] = []
          assert.equal(
            await sessions.read(tampered, partition, { slide: true }, clear),
            undefined,
            `${name}[${i}] ${JSON.stringify(value[i])} → ${JSON.stringify(replacement)}`,
          )
          assert.ok(
            clear.some((line) => line.startsWith(`${COOKIE}=;`)),
            'the broken cookie is cleared',
          )
        },
      ),
      { seed: SEED, numRuns: 300 },
    )
  })

  test('every other base64url character in the last place of every JWE part reads as no session (no non-canonical encodings)', async () => {
    // The last character of a base64url part may carry unused bits: a decoder that ignores them would
    // open a changed cookie as the same session.
    await fc.assert(
      fc.asyncProperty(
        sessionInput.map((input) => ({ ...input, filler: 0 })),
        async (input) => {
          const { sessions, jar, partition } = await started(input)
          const parts = jar.get(COOKIE)!.split('.')
          for (let p = 0; p < parts.length; p++) {
            const part = parts[p]!
            if (part === '') continue
            for (const c of BASE64URL) {
              if (c === part.at(-1)) continue
              const changed = parts.with(p, `${part.slice(0, -1)}${c}`).join('.')
              assert.equal(
                await sessions.read(new Map([[COOKIE, changed]]), partition, { slide: false }, []),
                undefined,
                `part ${p} ending ${JSON.stringify(part.at(-1))} → ${JSON.stringify(c)}`,
              )
            }
          }
        },
      ),
      { seed: SEED, numRuns: 5 },
    )
  })

  test('a missing, reordered, duplicated or truncated chunk, or a wrong chunk count, reads as no session', async () => {
    const chunkedInput = sessionInput.map((input) => ({ ...input, filler: Math.max(input.filler, 4_500) }))
    const damage = fc.oneof(
      fc.record({ kind: fc.constant('missing' as const), at: fc.nat() }),
      fc.record({ kind: fc.constant('swap' as const), at: fc.nat(), offset: fc.integer({ min: 1, max: 2 }) }),
      fc.record({ kind: fc.constant('duplicate' as const), at: fc.nat(), offset: fc.integer({ min: 1, max: 2 }) }),
      fc.record({ kind: fc.constant('truncate' as const), at: fc.nat(), cut: fc.integer({ min: 1, max: 4_000 }) }),
      fc.record({ kind: fc.constant('count' as const), count: fc.integer({ min: 0, max: 120 }) }),
      fc.record({
        kind: fc.constant('head' as const),
        head: fc.oneof(
          anyString(12),
          fc.constantFrom('chunks-', 'chunks-0', 'chunks-01', 'chunks-1 ', 'chunks--1', 'chunks-1e1', 'CHUNKS-2'),
        ),
      }),
    )
    await fc.assert(
      fc.asyncProperty(chunkedInput, damage, async (input, d) => {
        const { sessions, jar, partition } = await started(input)
        const names = chunkNames(jar)
        assert.ok(names.length >= 2, 'chunked')
        const broken = new Map(jar)
        const pick = (at: number) => names[at % names.length]!
        switch (d.kind) {
          case 'missing':
            broken.delete(pick(d.at))
            break
          case 'swap': {
            const a = pick(d.at)
            const b = pick(d.at + d.offset)
            fc.pre(a !== b)
            broken.set(a, jar.get(b)!).set(b, jar.get(a)!)
            break
          }
          case 'duplicate': {
            const a = pick(d.at)
            const b = pick(d.at + d.offset)
            fc.pre(a !== b)
            broken.set(b, jar.get(a)!)
            break
          }
          case 'truncate': {
            const a = pick(d.at)
            const value = jar.get(a)!
            broken.set(a, value.slice(0, Math.max(0, value.length - d.cut)))
            break
          }
          case 'count':
            fc.pre(d.count !== names.length)
            broken.set(COOKIE, `chunks-${d.count}`)
            break
          case 'head':
            fc.pre(d.head !== jar.get(COOKIE))
            broken.set(COOKIE, d.head)
            break
        }
        assert.equal(await sessions.read(broken, partition, { slide: true }, []), undefined, JSON.stringify(d))
      }),
      { seed: SEED, numRuns: 200 },
    )
  })
})
