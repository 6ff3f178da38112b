import fc from 'fast-check'

/**
 * Shared generators and decoders for the property tests. Every property file runs with a fixed seed
 * (`SEED`) so that a failure reproduces; fast-check prints the counterexample and its path.
 */
export const SEED = 42

/** Any UTF-16 code unit, lone surrogates included (what a JavaScript string may hold after a bad decoder). */
export const utf16Unit = fc.integer({ min: 0, max: 0xffff }).map((code) => String.fromCharCode(code))

/** Arbitrary strings in three flavours: printable ASCII, any code point, any code unit. */
export const anyString = (maxLength = 40): fc.Arbitrary<string> =>
  fc.oneof(
    fc.string({ unit: 'grapheme-ascii', maxLength }),
    fc.string({ unit: 'binary', maxLength }),
    fc.string({ unit: utf16Unit, maxLength }),
  )

/** C0 controls, DEL and C1 controls: Unicode's "control characters" (general category Cc). */
export const CONTROL = /[\u0000-\u001F\u007F-\u009F]/
export const controlChar = fc
  .oneof(fc.integer({ min: 0, max: 0x1f }), fc.integer({ min: 0x7f, max: 0x9f }))
  .map((c) => String.fromCharCode(c))

/** Pieces that open redirects and path escapes are made of: separators, dot segments, their encodings, schemes, hosts. */
export const HOSTILE_ATOMS = [
  '/',
  '//',
  '\\',
  '.',
  '..',
  '...',
  ';',
  '?',
  '#',
  '&',
  '=',
  ':',
  '@',
  '%',
  '+',
  ' ',
  '~',
  '%2e',
  '%2E',
  '%2f',
  '%2F',
  '%5c',
  '%5C',
  '%3f',
  '%3F',
  '%23',
  '%3b',
  '%25',
  '%20',
  '%40',
  '%3a',
  '%252e',
  '%252f',
  '%255c',
  '%25252f',
  '%2525252f',
  '%25%32%66',
  '%00',
  '%0a',
  '%0d',
  '%09',
  '%1f',
  '%7f',
  '%C2%85',
  '%c2%9f',
  '%E2%80%AE',
  '%EF%BC%8F',
  '%e3%80%82',
  '%zz',
  '%c0%af',
  '%c0%ae',
  '%e0%80%ae',
  '%ff',
  '%C0%2F',
  'http:',
  'https:',
  'javascript:',
  'data:',
  'HTTP:',
  'evil.example',
  'localhost',
  '127.0.0.1',
  '[::1]',
  'a@b',
  'a',
  'b',
  'x',
  'é',
  '\u3002',
  '\uFF0F',
  '\uFF3C',
  '\u2215',
  '\u2028',
  '\uFEFF',
  '\t',
  '\n',
  '\r',
  '\u0000',
  '\u007F',
  '\u0085',
]

/** Strings assembled from HOSTILE_ATOMS and short arbitrary runs. */
export const hostileString = (maxParts = 12): fc.Arbitrary<string> =>
  fc
    .array(
      fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...HOSTILE_ATOMS) }, { weight: 1, arbitrary: anyString(4) }),
      { maxLength: maxParts },
    )
    .map((parts) => parts.join(''))

/**
 * Strings over a small alphabet of separators and dot segments (raw, encoded, double-encoded): a small
 * alphabet makes the dangerous combinations (`/.//x`, `/%2e/%2fx`, `/..%5cx`) likely, not lucky.
 */
export const STRUCTURAL_ATOMS = [
  '/',
  '\\',
  '.',
  '..',
  '%2e',
  '%2E',
  '%2f',
  '%2F',
  '%5c',
  '%252e',
  '%252f',
  '%255c',
  ';',
  '?',
  '#',
  '@',
  ':',
  'evil.example',
  'x',
]
export const structuralString = (maxParts = 7): fc.Arbitrary<string> =>
  fc.array(fc.constantFrom(...STRUCTURAL_ATOMS), { minLength: 1, maxLength: maxParts }).map((parts) => parts.join(''))

/** decodeURIComponent, undefined when it throws (invalid escapes or UTF-8): a strict later hop. */
export function strictDecode(text: string): string | undefined {
  try {
    return decodeURIComponent(text)
  } catch {
    return undefined
  }
}

/** Byte-wise %XX decoding that never fails and leaves invalid escapes alone: a lenient later hop. */
export function lenientDecode(text: string): string {
  return text.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)))
}

/** The value after 0, 1 and 2 decodings by a strict and by a lenient decoder (duplicates removed). */
export function decodings(value: string, rounds = 2): string[] {
  const forms = new Set<string>([value])
  let strict: string | undefined = value
  let lenient = value
  for (let i = 0; i < rounds; i++) {
    strict = strict === undefined ? undefined : strictDecode(strict)
    if (strict !== undefined) forms.add(strict)
    lenient = lenientDecode(lenient)
    forms.add(lenient)
  }
  return [...forms]
}

/** The forms a strict decoder yields after 1..rounds decodings. */
export function strictDecodings(value: string, rounds = 2): string[] {
  const out: string[] = []
  let current: string | undefined = value
  for (let i = 0; i < rounds && current !== undefined; i++) {
    current = strictDecode(current)
    if (current !== undefined) out.push(current)
  }
  return out
}

/** Percent-encodes every character of `text` (UTF-8), `times` times over. */
export function encodeAll(text: string, times: number): string {
  let out = text
  for (let i = 0; i < times; i++) {
    out = [...Buffer.from(out, 'utf8')].map((byte) => `%${byte.toString(16).toUpperCase().padStart(2, '0')}`).join('')
  }
  return out
}
