import assert from 'node:assert/strict'
import { posix } from 'node:path'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import type { RemoteApiConfig } from '../../../src/config/types.ts'
import { isPlainSubpath, RemoteApiRoutes, type ApiMatch } from '../../../src/proxy/routes.ts'
import { anyString, decodings, encodeAll, HOSTILE_ATOMS, SEED, STRUCTURAL_ATOMS } from './arbitraries.ts'

// Properties of remote-API routing (SPEC §5): a path gatehouse forwards never resolves outside its
// prefix on the way in, nor outside the target's base path on the way out — not by WHATWG URL
// resolution, not by path.posix.normalize, and not after a later hop percent-decodes it once or
// twice (strict or lenient decoder). For plain segments the prefix is replaced by the base path.

const RUNS = 3_000

function api(path: string, target: string): RemoteApiConfig {
  return {
    path,
    target,
    token: 'none',
    antiForgery: true,
    timeoutMs: 30_000,
    websockets: false,
    methods: undefined,
    maxBodyBytes: undefined,
    resource: undefined,
    scopes: [],
    connections: 128,
    queue: 256,
  }
}

/** Configurations: a root target, a base path, a base path with a trailing slash, nested prefixes. */
const CONFIGS: RemoteApiConfig[][] = [
  [api('/api', 'http://up.example')],
  [api('/api', 'http://up.example/v2')],
  [api('/orders', 'http://up.example:8080/tenant/42/v2/')],
  [api('/api', 'http://short.example'), api('/api/orders', 'http://long.example/base')],
  [api('/a.b-c_d', 'https://up.example/x')],
]

/** One character percent-encoded 0–2 times, hex digits in either case. */
const encodedChar = (char: string): fc.Arbitrary<string> =>
  fc.tuple(fc.integer({ min: 0, max: 2 }), fc.boolean()).map(([times, lower]) => {
    const text = encodeAll(char, times)
    return lower ? text.toLowerCase() : text
  })

/** Dot segments and separators spelled out character by character, each encoded 0–2 times, with an optional `;param`. */
const dotty: fc.Arbitrary<string> = fc
  .tuple(fc.constantFrom('.', '..', '/', '\\', './', '../', '..\\', '?', '#'), fc.constantFrom('', ';', ';x', '%3b'))
  .chain(([word, param]) => fc.tuple(...[...word].map(encodedChar)).map((chars) => `${chars.join('')}${param}`))

const segment: fc.Arbitrary<string> = fc.oneof(
  { weight: 2, arbitrary: dotty },
  {
    weight: 3,
    arbitrary: fc
      .array(fc.constantFrom(...HOSTILE_ATOMS.filter((a) => !a.includes('/'))), { minLength: 0, maxLength: 3 })
      .map((parts) => parts.join('')),
  },
  { weight: 1, arbitrary: anyString(6) },
  { weight: 1, arbitrary: fc.webSegment() },
)
const query = fc.oneof(
  fc.constant(''),
  fc.webQueryParameters().map((q) => `?${q}`),
  anyString(10).map((q) => `?${q}`),
)

/** `prefix` + arbitrary segments (+ query), or a raw arbitrary string after the prefix. */
function targets(prefixes: string[]): fc.Arbitrary<string> {
  return fc.oneof(
    fc
      .tuple(fc.constantFrom(...prefixes), fc.array(segment, { maxLength: 6 }), query)
      .map(([prefix, segments, q]) => `${prefix}${segments.map((s) => `/${s}`).join('')}${q}`),
    fc
      .tuple(fc.constantFrom(...prefixes), fc.oneof(anyString(30), fc.webPath()))
      .map(([prefix, rest]) => `${prefix}${rest}`),
  )
}

const under = (path: string, base: string): boolean =>
  base === '' ? path.startsWith('/') : path === base || path.startsWith(`${base}/`)

/**
 * Every way a later hop could read `path`, resolved: normalised as a POSIX path and as a URL path,
 * also with `;params` cut off each segment first (servlet containers do that before resolving dots).
 */
function resolvedForms(path: string, origin: string): string[] {
  const out: string[] = []
  for (const form of decodings(path)) {
    out.push(posix.normalize(form), posix.normalize(form.replace(/;[^/]*/g, '')))
    try {
      out.push(new URL(form, origin).pathname)
    } catch {
      // not a URL any hop could request
    }
  }
  return out
}

function checkMatch(target: string, match: ApiMatch): void {
  const q = target.indexOf('?')
  const path = q === -1 ? target : target.slice(0, q)
  const { api: matched, upstreamPath } = match
  assert.ok(under(path, matched.path), `${target} routed to ${matched.path} although it is not under it`)
  for (const form of resolvedForms(path, 'http://gatehouse.example')) {
    assert.ok(
      under(form, matched.path),
      `${JSON.stringify(target)} resolves to ${JSON.stringify(form)}, outside ${matched.path}`,
    )
  }
  assert.ok(
    upstreamPath.startsWith('/') && !upstreamPath.startsWith('//'),
    `upstream path ${JSON.stringify(upstreamPath)}`,
  )
  assert.equal(
    new URL(upstreamPath, matched.origin).origin,
    matched.origin,
    'the upstream host never comes from the request',
  )
  const uq = upstreamPath.indexOf('?')
  const upPath = uq === -1 ? upstreamPath : upstreamPath.slice(0, uq)
  for (const form of resolvedForms(upPath, matched.origin)) {
    assert.ok(
      under(form, matched.basePath),
      `${JSON.stringify(target)} → upstream ${JSON.stringify(upPath)} resolves to ${JSON.stringify(form)}, outside base path ${JSON.stringify(matched.basePath)}`,
    )
  }
  assert.equal(
    q === -1 ? '' : target.slice(q),
    uq === -1 ? '' : upstreamPath.slice(uq),
    'the query is passed on verbatim',
  )
}

describe('remote API routing properties', () => {
  CONFIGS.forEach((config, i) => {
    test(`config ${i} (${config.map((a) => `${a.path} → ${a.target}`).join(', ')}): accepted paths never resolve outside the prefix or the base path`, () => {
      const routes = new RemoteApiRoutes(config)
      let routed = 0
      fc.assert(
        fc.property(targets(config.map((a) => a.path)), (target) => {
          const match = routes.match(target)
          if (match === undefined || match === 'escape') return
          routed++
          checkMatch(target, match)
        }),
        { seed: SEED, numRuns: RUNS },
      )
      assert.ok(routed > RUNS / 20, `the generators reach accepted paths too (${routed} of ${RUNS})`)
    })
  })

  test('exhaustively: "/api/" followed by every combination of up to 4 separator and dot atoms (raw, encoded, double-encoded)', () => {
    const routes = new RemoteApiRoutes([api('/api', 'http://up.example/v2')])
    let routed = 0
    const visit = (target: string, depth: number): void => {
      const match = routes.match(target)
      if (match !== undefined && match !== 'escape') {
        routed++
        checkMatch(target, match)
      }
      if (depth < 4) for (const atom of STRUCTURAL_ATOMS) visit(`${target}${atom}`, depth + 1)
    }
    visit('/api/', 0)
    assert.ok(routed > 1_000, `${routed} routed`)
  })

  test('any request target: match never throws, routes only paths under a prefix, refuses only paths under a prefix', () => {
    const routes = new RemoteApiRoutes(CONFIGS[3]!)
    fc.assert(
      fc.property(
        fc.oneof(anyString(40), fc.webPath(), targets(['/api', '/api/orders', '/apiX', '/', '//api', '/./api'])),
        (target) => {
          const match = routes.match(target)
          const path = target.split('?', 1)[0]!
          if (match === undefined) return
          assert.ok(
            under(path, '/api'),
            `${JSON.stringify(target)} → ${match === 'escape' ? 'escape' : match.api.path}`,
          )
          if (match !== 'escape') checkMatch(target, match)
        },
      ),
      { seed: SEED, numRuns: RUNS },
    )
  })

  test('plain segments: the prefix is replaced by the target base path, query kept, longest prefix wins', () => {
    const plain = fc
      .string({ unit: fc.constantFrom(..."abcxyzABCXYZ0189-_.~!$&'()*+,;=:@"), minLength: 1, maxLength: 10 })
      .filter((s) => !/^\.\.?(;|$)/.test(s))
    const plainQuery = fc.oneof(
      fc.constant(''),
      fc.webQueryParameters().map((q) => `?${q.replace(/[#\\]/g, '')}`),
    )
    for (const config of CONFIGS) {
      const routes = new RemoteApiRoutes(config)
      const byLength = [...config].sort((a, b) => b.path.length - a.path.length)
      fc.assert(
        fc.property(
          fc.constantFrom(...config.map((a) => a.path)),
          fc.array(plain, { maxLength: 6 }),
          fc.boolean(),
          plainQuery,
          (prefix, segments, trailing, search) => {
            const rest = `${segments.map((s) => `/${s}`).join('')}${trailing ? '/' : ''}`
            const target = `${prefix}${rest}${search}`
            const match = routes.match(target)
            assert.ok(match !== undefined && match !== 'escape', `${target} should be routed, got ${String(match)}`)
            const path = `${prefix}${rest}`
            const expected = byLength.find((a) => path === a.path || path.startsWith(`${a.path}/`))!
            assert.equal(match.api.path, expected.path)
            const basePath = new URL(expected.target).pathname.replace(/\/+$/, '')
            const stripped = path.slice(expected.path.length)
            assert.equal(
              match.upstreamPath,
              `${basePath}${stripped}` === '' ? `/${search}` : `${basePath}${stripped}${search}`,
            )
            assert.equal(isPlainSubpath(stripped), true)
          },
        ),
        { seed: SEED, numRuns: 300 },
      )
    }
  })

  test('isPlainSubpath never throws, and a rest it accepts stays below any prefix however it is read', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          anyString(40),
          fc.array(segment, { maxLength: 6 }).map((s) => s.map((x) => `/${x}`).join('')),
        ),
        (rest) => {
          if (!isPlainSubpath(rest)) return
          for (const form of resolvedForms(`/p${rest}`, 'http://h.example'))
            assert.ok(under(form, '/p'), `${JSON.stringify(rest)} → ${JSON.stringify(form)}`)
        },
      ),
      { seed: SEED, numRuns: RUNS },
    )
  })
})
