import type { IncomingHttpHeaders } from 'node:http'

/**
 * Whether a request is a browser navigation (SPEC §6): the only kind of request that an unknown
 * path under a SPA frontend answers with index.html. Everything else — fetch(), XHR, scripts,
 * images, curl — gets 404 problem+json, so that a call to a missing API never parses a page as JSON.
 * Reads headers only; the caller checks the method (GET or HEAD).
 *
 * 1. The anti-forgery header, with any value → no: only the app's own JavaScript sends it.
 * 2. `Sec-Fetch-Mode: cors | no-cors | same-origin | websocket` → no (what every current browser
 *    sends for fetch(), XHR, subresources and WebSockets).
 * 3. `Sec-Fetch-Mode: navigate` → yes, unless `Accept` refuses text/html (q=0, or it names neither
 *    text/html nor a wildcard) or prefers application/json to it.
 * 4. No `Sec-Fetch-Mode` (older browsers, non-browser clients) or an unknown or repeated value → yes
 *    only if `Accept` names `text/html` itself with q > 0, no lower than application/json. Browsers
 *    send that on navigations; the wildcard `*\/*` alone, or no `Accept` at all, is what fetch(), XHR
 *    and curl send.
 *
 * `Accept` is read as RFC 9110 §12.5.1 says: the most specific range wins (`text/html` over `text/*`
 * over `*\/*`; `application/json` and `application/…+json` over `application/*`), the highest q among
 * ranges naming the same type, a missing q is 1, a range with a malformed q (`q=2`, `q=.5`, `q=x`)
 * or junk after it counts as not sent, and an `Accept` that is missing or has no well-formed range
 * at all is `*\/*`. Header names are case-insensitive (node:http lower-cases them); values are
 * compared case-insensitively. No regular expressions and no splitting: one pass over the header,
 * so it costs next to nothing per request.
 */
export function isNavigation(headers: IncomingHttpHeaders, antiForgeryHeader: string): boolean {
  if (headers[antiForgeryHeader.toLowerCase()] !== undefined) return false
  const mode = fetchMode(headers['sec-fetch-mode'])
  if (mode === 'api') return false
  const accept = readAccept(headers.accept)
  if (mode === 'navigate') return accept.html > 0 && accept.html >= accept.json
  return accept.htmlNamed && accept.html > 0 && accept.html >= accept.json
}

/** `Sec-Fetch-Mode` as one of three answers; anything but one known token is 'unknown'. */
function fetchMode(value: string | string[] | undefined): 'navigate' | 'api' | 'unknown' {
  if (Array.isArray(value)) value = value.length === 1 ? value[0] : undefined
  // Longest known token: "same-origin" (11). A longer value is none of them and is not lower-cased.
  if (typeof value !== 'string' || value.length > 11) return 'unknown'
  switch (value.toLowerCase()) {
    case 'navigate':
      return 'navigate'
    case 'cors':
    case 'no-cors':
    case 'same-origin':
    case 'websocket':
      return 'api'
    default:
      return 'unknown'
  }
}

/** The best q of each kind of range; -1: no range of that kind. */
interface Ranges {
  html: number
  text: number
  any: number
  json: number
  app: number
}

interface AcceptPrefs {
  /** Effective quality of text/html. */
  html: number
  /** Effective quality of application/json. */
  json: number
  /** Whether a range names text/html itself (not through a wildcard). */
  htmlNamed: boolean
}

function readAccept(value: string | string[] | undefined): AcceptPrefs {
  const r: Ranges = { html: -1, text: -1, any: -1, json: -1, app: -1 }
  let ranges = 0
  if (typeof value === 'string') ranges = scanAccept(value, r)
  else if (Array.isArray(value)) for (const line of value) if (typeof line === 'string') ranges += scanAccept(line, r)
  // No well-formed range at all: as if Accept were absent, i.e. */* (RFC 9110 §12.5.1).
  if (ranges === 0) r.any = 1
  const html = r.html >= 0 ? r.html : r.text >= 0 ? r.text : Math.max(r.any, 0)
  const json = r.json >= 0 ? r.json : r.app >= 0 ? r.app : Math.max(r.any, 0)
  return { html, json, htmlNamed: r.html >= 0 }
}

const SP = 0x20
const HTAB = 0x09
const COMMA = 0x2c
const SEMI = 0x3b
const EQUALS = 0x3d
const QUOTE = 0x22
const BACKSLASH = 0x5c

/** One pass over an Accept value: each media range's q, recorded in `r` by kind. Returns how many well-formed ranges it has. */
function scanAccept(s: string, r: Ranges): number {
  const n = s.length
  let i = 0
  let ranges = 0
  while (i < n) {
    // Between ranges: whitespace and empty list elements.
    let c = s.charCodeAt(i)
    if (c === SP || c === HTAB || c === COMMA) {
      i++
      continue
    }
    const start = i
    while (i < n && (c = s.charCodeAt(i)) !== SEMI && c !== COMMA && c !== SP && c !== HTAB) i++
    const kind = kindOf(s, start, i)
    let q = 1
    let valid = kind !== undefined || isMediaRange(s, start, i)
    // Parameters up to the next comma outside a quoted string.
    while (i < n) {
      i = skipSpace(s, i)
      if (i >= n) break
      c = s.charCodeAt(i)
      if (c === COMMA) break
      if (c !== SEMI) {
        // Junk after the range ("text/html foo"): the range does not count.
        valid = false
        i = skipToComma(s, i)
        break
      }
      i = skipSpace(s, i + 1)
      const nameStart = i
      while (i < n && (c = s.charCodeAt(i)) !== EQUALS && c !== SEMI && c !== COMMA && c !== SP && c !== HTAB) i++
      const isQ = i - nameStart === 1 && (s.charCodeAt(nameStart) | 0x20) === 0x71 // "q" or "Q"
      i = skipSpace(s, i)
      if (i >= n || s.charCodeAt(i) !== EQUALS) {
        if (isQ) valid = false
        continue
      }
      i = skipSpace(s, i + 1)
      const valueStart = i
      if (i < n && s.charCodeAt(i) === QUOTE) {
        i++
        while (i < n && (c = s.charCodeAt(i)) !== QUOTE) i += c === BACKSLASH ? 2 : 1
        i = Math.min(i + 1, n)
        // A quoted q is not a qvalue.
        if (isQ) valid = false
        continue
      }
      while (i < n && (c = s.charCodeAt(i)) !== SEMI && c !== COMMA && c !== SP && c !== HTAB) i++
      if (isQ) {
        q = qvalue(s, valueStart, i)
        if (q < 0) valid = false
      }
    }
    if (!valid) continue
    ranges++
    if (kind !== undefined && q > r[kind]) r[kind] = q
  }
  return ranges
}

function skipSpace(s: string, i: number): number {
  let c: number
  while (i < s.length && ((c = s.charCodeAt(i)) === SP || c === HTAB)) i++
  return i
}

function skipToComma(s: string, i: number): number {
  while (i < s.length && s.charCodeAt(i) !== COMMA) {
    if (s.charCodeAt(i) === QUOTE) {
      i++
      while (i < s.length && s.charCodeAt(i) !== QUOTE) i += s.charCodeAt(i) === BACKSLASH ? 2 : 1
    }
    i++
  }
  return i
}

/** "type/subtype": a slash with something on either side. */
function isMediaRange(s: string, start: number, end: number): boolean {
  for (let k = start + 1; k < end - 1; k++) if (s.charCodeAt(k) === 0x2f) return true
  return false
}

/** The kind of media range in s[start, end), or undefined for one that does not matter here. */
function kindOf(s: string, start: number, end: number): keyof Ranges | undefined {
  const length = end - start
  if (length === 9 && equalsAt(s, start, 'text/html')) return 'html'
  if (length === 6 && equalsAt(s, start, 'text/*')) return 'text'
  if (length === 3 && equalsAt(s, start, '*/*')) return 'any'
  if (length === 16 && equalsAt(s, start, 'application/json')) return 'json'
  if (length === 13 && equalsAt(s, start, 'application/*')) return 'app'
  // application/problem+json, application/vnd.api+json: JSON too.
  if (length > 17 && equalsAt(s, start, 'application/') && equalsAt(s, end - 5, '+json')) return 'json'
  return undefined
}

/** Whether s has `lower` (lower-case ASCII) at `at`, ignoring ASCII case. */
function equalsAt(s: string, at: number, lower: string): boolean {
  for (let k = 0; k < lower.length; k++) {
    const want = lower.charCodeAt(k)
    const got = s.charCodeAt(at + k)
    if (got !== want && !(want >= 0x61 && want <= 0x7a && got === want - 0x20)) return false
  }
  return true
}

/** RFC 9110 §12.4.2 qvalue: "0" ["." 0*3DIGIT] or "1" ["." 0*3"0"]; -1 for anything else. */
function qvalue(s: string, start: number, end: number): number {
  const length = end - start
  if (length < 1 || length > 5) return -1
  const first = s.charCodeAt(start)
  if (first !== 0x30 && first !== 0x31) return -1
  if (length === 1) return first - 0x30
  if (s.charCodeAt(start + 1) !== 0x2e) return -1
  let fraction = 0
  let scale = 1
  for (let k = start + 2; k < end; k++) {
    const digit = s.charCodeAt(k) - 0x30
    if (digit < 0 || digit > 9 || (first === 0x31 && digit !== 0)) return -1
    fraction = fraction * 10 + digit
    scale *= 10
  }
  return first === 0x31 ? 1 : fraction / scale
}
