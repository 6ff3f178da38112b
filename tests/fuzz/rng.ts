/**
 * A small seeded PRNG (sfc32, seeded through splitmix32) and the mutators the fuzz targets share.
 * Everything a fuzz iteration does is drawn from one Rng, so `--seed S` and the iteration number
 * reproduce a failure exactly.
 */
export class Rng {
  #a: number
  #b: number
  #c: number
  #d: number

  constructor(seed: number) {
    let s = seed >>> 0
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0
      let z = s
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
      return (z ^ (z >>> 16)) >>> 0
    }
    this.#a = next()
    this.#b = next()
    this.#c = next()
    this.#d = next()
    for (let i = 0; i < 12; i++) this.uint32()
  }

  /** A seed for iteration `i` of a run seeded with `seed`: iterations reproduce on their own. */
  static forIteration(seed: number, i: number): Rng {
    return new Rng((Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(i + 1, 0x85ebca77)) >>> 0)
  }

  uint32(): number {
    const t = (((this.#a + this.#b) >>> 0) + this.#d) >>> 0
    this.#d = (this.#d + 1) >>> 0
    this.#a = this.#b ^ (this.#b >>> 9)
    this.#b = (this.#c + (this.#c << 3)) >>> 0
    this.#c = ((this.#c << 21) | (this.#c >>> 11)) >>> 0
    this.#c = (this.#c + t) >>> 0
    return t
  }

  /** 0 ≤ n < max */
  int(max: number): number {
    return max <= 0 ? 0 : this.uint32() % max
  }

  /** min ≤ n ≤ max */
  range(min: number, max: number): number {
    return min + this.int(max - min + 1)
  }

  chance(p: number): boolean {
    return this.uint32() / 0x1_0000_0000 < p
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!
  }

  bytes(n: number): Buffer {
    const out = Buffer.alloc(n)
    for (let i = 0; i < n; i++) out[i] = this.int(256)
    return out
  }

  /** A short string from `alphabet`, or of arbitrary UTF-16 code units. */
  string(maxLength: number, alphabet?: string): string {
    const length = this.int(maxLength + 1)
    let out = ''
    for (let i = 0; i < length; i++)
      out += alphabet
        ? alphabet[this.int(alphabet.length)]!
        : String.fromCharCode(this.chance(0.7) ? this.range(0x20, 0x7e) : this.int(0x10000))
    return out
  }

  /** An arbitrary JSON value, edge cases over-represented. */
  json(depth = 2): unknown {
    const kind = this.int(depth > 0 ? 9 : 6)
    switch (kind) {
      case 0:
        return null
      case 1:
        return this.chance(0.5)
      case 2:
        return this.pick([
          0,
          -1,
          1,
          1.5,
          -0,
          2 ** 31,
          2 ** 53,
          -(2 ** 53),
          1e308,
          -1e308,
          5e-324,
          Number.MAX_SAFE_INTEGER,
        ])
      case 3:
        return this.range(-1_000_000, 1_000_000)
      case 4:
        return this.string(12)
      case 5:
        return this.pick([
          '',
          ' ',
          '0',
          'null',
          'true',
          '[]',
          '{}',
          '__proto__',
          'constructor',
          'a'.repeat(300),
          '\u0000',
          '\ud800',
          '💥',
        ])
      case 6:
      case 7: {
        const out: Record<string, unknown> = {}
        const n = this.int(4)
        for (let i = 0; i < n; i++)
          Object.defineProperty(
            out,
            this.chance(0.2) ? this.pick(['__proto__', 'constructor', 'toString']) : this.string(6),
            { value: this.json(depth - 1), enumerable: true, writable: true, configurable: true },
          )
        return out
      }
      default:
        return Array.from({ length: this.int(4) }, () => this.json(depth - 1))
    }
  }
}

export const BASE64URL_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

/**
 * One random change to `text`: a bit flip, a changed, inserted or deleted character, a truncation, a
 * splice with `other`, a duplicated or swapped range. Returns a (usually) different string.
 */
export function mutateString(rng: Rng, text: string, other = ''): string {
  const at = rng.int(text.length + 1)
  switch (rng.int(10)) {
    case 0: {
      // flip one bit of one character (in its 8-bit range, so mostly staying ASCII)
      if (!text) return 'A'
      const i = rng.int(text.length)
      return `${text.slice(0, i)}${String.fromCharCode(text.charCodeAt(i) ^ (1 << rng.int(8)))}${text.slice(i + 1)}`
    }
    case 1: {
      if (!text) return 'A'
      const i = rng.int(text.length)
      return `${text.slice(0, i)}${rng.chance(0.8) ? rng.pick([...BASE64URL_ALPHABET]) : rng.pick(['.', '=', '+', '/', ' ', '%', ';', ',', '"', '\u0000', 'é'])}${text.slice(i + 1)}`
    }
    case 2:
      return `${text.slice(0, at)}${rng.string(3, `${BASE64URL_ALPHABET}.=`)}${text.slice(at)}`
    case 3:
      return `${text.slice(0, at)}${text.slice(Math.min(text.length, at + rng.range(1, 8)))}`
    case 4:
      return rng.chance(0.5) ? text.slice(0, at) : text.slice(at)
    case 5: {
      // splice: a piece of `other` replaces a piece of `text`
      const from = rng.int(other.length + 1)
      const piece = other.slice(from, from + rng.range(1, 64))
      return `${text.slice(0, at)}${piece}${text.slice(Math.min(text.length, at + rng.int(64)))}`
    }
    case 6: {
      const end = Math.min(text.length, at + rng.range(1, 32))
      return `${text.slice(0, end)}${text.slice(at, end)}${text.slice(end)}`
    }
    case 7: {
      // swap two ranges of equal length
      const len = rng.range(1, 16)
      const a = rng.int(Math.max(1, text.length - len))
      const b = rng.int(Math.max(1, text.length - len))
      if (a === b) return mutateString(rng, text, other)
      const chars = [...text]
      for (let i = 0; i < len && a + i < chars.length && b + i < chars.length; i++)
        [chars[a + i], chars[b + i]] = [chars[b + i]!, chars[a + i]!]
      return chars.join('')
    }
    case 8:
      // change the last character (base64url: possibly only unused bits)
      return text ? `${text.slice(0, -1)}${rng.pick([...BASE64URL_ALPHABET])}` : 'A'
    default:
      return rng.chance(0.5) ? text.toUpperCase() : `${text}${rng.pick(['', '.', '..', '=', 'A', 'AA', 'AAA', 'AAAA'])}`
  }
}

/** A failure of a fuzz property: names the iteration and input so that a run can be reproduced. */
export class FuzzFailure extends Error {
  override name = 'FuzzFailure'
}

export interface FuzzStats {
  iterations: number
  /** Counts by outcome (e.g. "accepted", "refused", "session", "no session"), to see the fuzzer is not vacuous. */
  outcomes: Record<string, number>
  /** Counts by mutation strategy. */
  strategies: Record<string, number>
}

export function count(record: Record<string, number>, key: string): void {
  record[key] = (record[key] ?? 0) + 1
}

/** Truncates long inputs for failure messages. */
export function show(value: unknown, max = 600): string {
  const text =
    typeof value === 'string'
      ? value
      : JSON.stringify(value, (_k, v: unknown) => (v instanceof Map ? Object.fromEntries(v) : v))
  return text === undefined ? String(value) : text.length > max ? `${text.slice(0, max)}… (${text.length} chars)` : text
}
