import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import { toLocalPath } from '../../../src/http/return-url.ts'
import {
  anyString,
  CONTROL,
  controlChar,
  decodings,
  encodeAll,
  hostileString,
  SEED,
  strictDecodings,
  STRUCTURAL_ATOMS,
  structuralString,
} from './arbitraries.ts'

// Properties of the returnUrl rule (SPEC §3): whatever gatehouse accepts stays on the app's origin,
// in a browser and after a later hop percent-decodes it once or twice; the output is ASCII and
// idempotent; schemes, `//`, backslashes and control characters are refused.

const BASES = ['https://app.example', 'https://app.example:8443/deep/path/page?q=1#frag', 'http://127.0.0.1:8080/x/']
const RUNS = 3_000

/** Raw strings, URL-shaped strings from hostile atoms, and both behind a leading slash (most honest values start with one). */
const candidate: fc.Arbitrary<string> = fc.oneof(
  anyString(60),
  hostileString(),
  hostileString().map((s) => `/${s}`),
  structuralString().map((s) => `/${s}`),
  structuralString().map((s) => `/${s}`),
  fc.webPath().map((p) => (p.startsWith('/') ? p : `/${p}`)),
  fc
    .tuple(fc.webPath(), fc.webQueryParameters(), fc.webFragments())
    .map(([p, q, f]) => `/${p.replace(/^\/+/, '')}?${q}#${f}`),
)

function assertStaysHome(form: string, what: string): void {
  for (const base of BASES) {
    let url: URL
    try {
      url = new URL(form, base)
    } catch {
      continue // a form no URL parser accepts cannot be navigated to
    }
    assert.equal(
      url.origin,
      new URL(base).origin,
      `${what} ${JSON.stringify(form)} resolves to ${url.origin} from ${base}`,
    )
  }
}

describe('toLocalPath properties', () => {
  test('every accepted value stays on the origin, also after 1–2 percent-decodings (strict and lenient decoders)', () => {
    fc.assert(
      fc.property(candidate, (value) => {
        const out = toLocalPath(value)
        if (out === undefined) return
        assertStaysHome(value, 'the accepted input')
        for (const form of decodings(out)) {
          assertStaysHome(form, 'the output (decoded)')
          assert.doesNotMatch(form, /^[/\\][/\\]/, `a decoded form of ${JSON.stringify(out)} is protocol-relative`)
          assert.equal(form.includes('\\'), false, `a decoded form of ${JSON.stringify(out)} holds a backslash`)
          assert.doesNotMatch(
            form,
            /[\u0000-\u001F\u007F]/,
            `a decoded form of ${JSON.stringify(out)} holds a C0 control`,
          )
        }
        for (const form of strictDecodings(out))
          assert.doesNotMatch(form, CONTROL, `a decoded form of ${JSON.stringify(out)} holds a control character`)
      }),
      { seed: SEED, numRuns: RUNS },
    )
  })

  test('exhaustively: "/" followed by every combination of up to 4 separator and dot atoms (raw, encoded, double-encoded)', () => {
    let accepted = 0
    const visit = (value: string, depth: number): void => {
      const out = toLocalPath(value)
      if (out !== undefined) {
        accepted++
        assert.equal(toLocalPath(out), out)
        for (const form of decodings(out)) {
          assertStaysHome(form, `${JSON.stringify(value)} → the output (decoded)`)
          assert.doesNotMatch(
            form,
            /^[/\\][/\\]/,
            `${JSON.stringify(value)} → ${JSON.stringify(out)} decodes to a protocol-relative ${JSON.stringify(form)}`,
          )
        }
      }
      if (depth < 4) for (const atom of STRUCTURAL_ATOMS) visit(`${value}${atom}`, depth + 1)
    }
    visit('/', 0)
    assert.ok(accepted > 1_000, `${accepted} accepted`)
  })

  test('found by the properties: a value whose normal form decodes to a protocol-relative path, and C1 controls, are refused', () => {
    // `/./%2f..` normalises to `/%2f..`, which one decoding turns into `//..` (host "..").
    for (const value of ['/./%2f..', '/%2e/%2F..', '/../%252f..', '/./%2f../x'])
      assert.equal(toLocalPath(value), undefined, value)
    // U+0085 (NEL) and the other C1 controls are control characters too (SPEC §3).
    for (const value of ['/a\u0085b', '/a%C2%85b', '/%c2%80', '/x?q=\u009f'])
      assert.equal(toLocalPath(value), undefined, JSON.stringify(value))
    assert.equal(toLocalPath('/caf%C3%A9'), '/caf%C3%A9', 'U+00E9 (a letter, also in the Latin-1 block) is fine')
  })

  test('every accepted value comes out as a printable-ASCII path of at most 2048 characters, and toLocalPath is idempotent', () => {
    fc.assert(
      fc.property(candidate, (value) => {
        const out = toLocalPath(value)
        if (out === undefined) return
        assert.match(out, /^\/[\x21-\x7E]*$/, `${JSON.stringify(value)} → ${JSON.stringify(out)}`)
        assert.ok(out.length <= 2048)
        assert.equal(
          toLocalPath(out),
          out,
          `not idempotent: ${JSON.stringify(value)} → ${JSON.stringify(out)} → ${JSON.stringify(toLocalPath(out))}`,
        )
      }),
      { seed: SEED, numRuns: RUNS },
    )
  })

  test('plain local paths (unreserved segments, query, fragment) are accepted unchanged', () => {
    const segment = fc
      .string({ unit: fc.constantFrom(...'abcxyzABCXYZ0189-_~'), minLength: 1, maxLength: 8 })
      .filter((s) => s !== '.' && s !== '..')
    const query = fc
      .array(fc.tuple(segment, segment), { maxLength: 3 })
      .map((pairs) => (pairs.length ? `?${pairs.map(([k, v]) => `${k}=${v}`).join('&')}` : ''))
    fc.assert(
      fc.property(
        fc.array(segment, { maxLength: 6 }),
        fc.boolean(),
        query,
        fc.option(segment, { nil: undefined }),
        (segments, trailing, search, hash) => {
          const value = `/${segments.join('/')}${trailing && segments.length ? '/' : ''}${search}${hash === undefined ? '' : `#${hash}`}`
          assert.equal(toLocalPath(value), value)
        },
      ),
      { seed: SEED, numRuns: 500 },
    )
  })

  test('anything starting with a scheme is refused', () => {
    const scheme = fc
      .tuple(
        fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzHJ'),
        fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789+.-'), maxLength: 10 }),
      )
      .map(([first, rest]) => first + rest)
    fc.assert(
      fc.property(scheme, fc.oneof(anyString(), hostileString()), (s, rest) => {
        assert.equal(toLocalPath(`${s}:${rest}`), undefined)
        assert.equal(toLocalPath(`${s}://${rest}`), undefined)
      }),
      { seed: SEED, numRuns: 1_000 },
    )
  })

  test('"//", "/\\" and their 1–2-fold percent-encoded forms after the leading slash are refused', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('/', '\\'),
        fc.integer({ min: 0, max: 2 }),
        fc.oneof(anyString(), hostileString()),
        (separator, times, rest) => {
          assert.equal(toLocalPath(`//${rest}`), undefined)
          assert.equal(toLocalPath(`/${encodeAll(separator, times)}${rest}`), undefined)
        },
      ),
      { seed: SEED, numRuns: 1_000 },
    )
  })

  test('a backslash or a control character anywhere, raw or percent-encoded once or twice, is refused', () => {
    fc.assert(
      fc.property(
        fc.oneof(anyString(), hostileString()),
        fc.oneof(controlChar, fc.constant('\\')),
        fc.nat(),
        fc.integer({ min: 0, max: 2 }),
        (text, bad, at, times) => {
          const body = `/${text}`
          const i = 1 + (at % body.length)
          assert.equal(
            toLocalPath(`${body.slice(0, i)}${encodeAll(bad, times)}${body.slice(i)}`),
            undefined,
            `${JSON.stringify(bad)} encoded ${times}×`,
          )
        },
      ),
      { seed: SEED, numRuns: 2_000 },
    )
  })
})
