import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { returnUrlParam, toLocalPath } from '../../src/http/return-url.ts'

/** Where a browser on https://app.example lands when it follows `Location: <value>`. */
function browserTarget(value: string): URL {
  return new URL(value, 'https://app.example/some/page')
}

/** The same, after a later hop (an SPA router, a second redirect) percent-decodes the path once or twice. */
function decodedForms(value: string): string[] {
  const out: string[] = []
  let current = value
  for (let i = 0; i < 2; i++) {
    try {
      current = decodeURIComponent(current)
    } catch {
      break
    }
    out.push(current)
  }
  return out
}

/**
 * Every payload here is a classic open-redirect vector; each names why a browser (or a later hop that
 * decodes it) could end up on another origin, or why the value cannot be put in a Location header at all.
 */
const HOSTILE: Array<[label: string, value: string]> = [
  ['absolute https URL', 'https://evil.example/'],
  ['absolute http URL', 'http://evil.example/path?x=1'],
  ['upper-case scheme', 'HTTPS://evil.example'],
  ['scheme without slashes', 'https:evil.example'],
  ['javascript: URL', 'javascript:alert(document.domain)'],
  ['javascript: URL with leading slash comment trick', 'javascript://%0aalert(1)'],
  ['data: URL', 'data:text/html,<script>alert(1)</script>'],
  ['userinfo in an absolute URL', 'http://app.example@evil.example/'],
  ['protocol-relative URL', '//evil.example'],
  ['protocol-relative URL with path', '//evil.example/login'],
  ['triple slash', '///evil.example'],
  ['slash backslash', '/\\evil.example'],
  ['backslash slash', '\\/evil.example'],
  ['double backslash', '\\\\evil.example'],
  ['backslash later in the path', '/ok/..\\..\\evil'],
  ['encoded second slash', '/%2F%2Fevil.example'],
  ['encoded single second slash', '/%2Fevil.example'],
  ['lower-case encoded slashes', '/%2f%2fevil.example'],
  ['encoded backslash', '/%5Cevil.example'],
  ['double-encoded slashes', '/%252F%252Fevil.example'],
  ['double-encoded backslash', '/%255Cevil.example'],
  ['dot segment climbing to a protocol-relative path', '/a/..//evil.example'],
  ['dot segment at root to a protocol-relative path', '/.//evil.example'],
  ['encoded dot segments to a protocol-relative path', '/%2e%2e//evil.example'],
  ['encoded dot segment and encoded slash (resolves to //evil once decoded)', '/%2E/%2Fevil.example'],
  ['fully encoded dot-dot-slash-slash', '/%2e%2e%2f%2fevil.example'],
  ['raw tab between the slashes (browsers strip it)', '/\t/evil.example'],
  ['raw newline between the slashes (browsers strip it)', '/\n/evil.example'],
  ['raw carriage return between the slashes', '/\r/evil.example'],
  ['header injection with CRLF', '/x\r\nLocation: https://evil.example'],
  ['raw NUL', '/x\u0000'],
  ['raw DEL', '/x\u007F'],
  ['encoded tab', '/%09/evil.example'],
  ['encoded newline', '/%0a/evil.example'],
  ['encoded CRLF header injection', '/x%0d%0aSet-Cookie:%20a=b'],
  ['encoded NUL', '/x%00'],
  ['double-encoded newline', '/x%250a'],
  ['leading space', ' /local'],
  ['leading space before a protocol-relative URL', ' //evil.example'],
  ['leading tab', '\t/local'],
  ['empty string', ''],
  ['relative path without leading slash', 'local/path'],
  ['bare host name', 'evil.example'],
  ['full-width solidus pair (not a path; IDNA maps it to "/" in hosts)', '／／evil.example'],
  ['malformed percent-encoding', '/%E0%A4%A'],
  ['lone percent sign', '/100%'],
  ['over-long value', `/${'a'.repeat(2048)}`],
]

describe('toLocalPath refuses open-redirect payloads', () => {
  test('there are at least 25 hostile payloads under test', () => {
    assert.ok(HOSTILE.length >= 25)
  })

  for (const [label, value] of HOSTILE) {
    test(`refuses ${label}: ${JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value)}`, () => {
      assert.equal(toLocalPath(value), undefined)
    })
  }

  test('a value of exactly 2048 characters is still accepted and one more is refused', () => {
    const max = `/${'a'.repeat(2047)}`
    assert.equal(toLocalPath(max), max)
    assert.equal(toLocalPath(`${max}a`), undefined)
  })
})

const LOCAL: Array<[label: string, value: string, expected: string]> = [
  ['the root', '/', '/'],
  ['a plain path', '/orders', '/orders'],
  ['a nested path with query and fragment', '/orders/7?tab=items&x=1#line-3', '/orders/7?tab=items&x=1#line-3'],
  ['a query that itself contains //', '/a?next=//evil.example', '/a?next=//evil.example'],
  ['a fragment that itself contains //', '/a#//evil.example', '/a#//evil.example'],
  ['an encoded slash pair in the query only', '/a?x=%2F%2F', '/a?x=%2F%2F'],
  ['an @ right after the slash (a path, not userinfo)', '/@evil.example', '/@evil.example'],
  ['a path segment that looks like a scheme', '/javascript:alert(1)', '/javascript:alert(1)'],
  ['non-ASCII, percent-encoded in the output', '/ünïcode?q=ä#frag', '/%C3%BCn%C3%AFcode?q=%C3%A4#frag'],
  ['a full-width solidus after a real slash (stays a path segment)', '/／evil.example', '/%EF%BC%8Fevil.example'],
  ['an ideographic space (percent-encoded, no whitespace stripping)', '/\u3000/x', '/%E3%80%80/x'],
  ['a space inside the path (percent-encoded)', '/a b', '/a%20b'],
  ['a space after the first slash (the path "/ /x", not "//x")', '/ /evil.example', '/%20/evil.example'],
  ['harmless dot segments (resolved)', '/a/./b/../c', '/a/c'],
  ['an empty query and fragment (dropped)', '/x?#', '/x'],
  ['an already percent-encoded path (kept as is)', '/caf%C3%A9', '/caf%C3%A9'],
]

describe('toLocalPath accepts local paths and normalises them', () => {
  for (const [label, value, expected] of LOCAL) {
    test(`accepts ${label}: ${JSON.stringify(value)} → ${expected}`, () => {
      assert.equal(toLocalPath(value), expected)
    })
  }

  test('every accepted value is printable ASCII, so it is safe in a Location header', () => {
    for (const [, value] of LOCAL) assert.match(toLocalPath(value)!, /^\/[\x21-\x7E]*$/)
  })

  test('normalising is idempotent: an accepted output is accepted again unchanged', () => {
    for (const [, value] of [...LOCAL, ...HOSTILE]) {
      const once = toLocalPath(value)
      if (once !== undefined) assert.equal(toLocalPath(once), once, `output of ${JSON.stringify(value)}`)
    }
  })

  test('no accepted output sends a browser off-origin, also after one or two percent-decodings', () => {
    const inputs = [...LOCAL.map(([, v]) => v), ...HOSTILE.map(([, v]) => v)]
    for (const value of inputs) {
      const out = toLocalPath(value)
      if (out === undefined) continue
      for (const form of [out, ...decodedForms(out)]) {
        const target = browserTarget(form)
        assert.equal(target.origin, 'https://app.example', `${JSON.stringify(value)} → ${JSON.stringify(form)}`)
        assert.ok(
          !target.pathname.startsWith('//'),
          `${JSON.stringify(value)} → ${JSON.stringify(form)} keeps a single leading slash`,
        )
      }
    }
  })
})

describe('returnUrlParam', () => {
  const param = (query: string) => returnUrlParam(new URL(`https://app.example/bff/login${query}`))

  test('defaults to "/" when the parameter is absent', () => {
    assert.equal(param(''), '/')
  })

  test('returns the normalised local path of a single parameter', () => {
    assert.equal(param(`?returnUrl=${encodeURIComponent('/orders?x=1#y')}`), '/orders?x=1#y')
  })

  test('refuses a repeated parameter even when both values are local', () => {
    assert.equal(param('?returnUrl=/a&returnUrl=/b'), undefined)
  })

  test('refuses a present but empty parameter', () => {
    assert.equal(param('?returnUrl='), undefined)
  })

  test('refuses a parameter whose decoded value is protocol-relative', () => {
    assert.equal(param('?returnUrl=%2F%2Fevil.example'), undefined)
  })
})

test('a returnUrl still changing after three percent-decodings is refused', () => {
  assert.equal(toLocalPath('/%2525252F%2525252Fevil.example'), undefined)
  assert.equal(toLocalPath('/%25252541'), undefined)
  assert.equal(toLocalPath('/%252541'), '/%252541')
})
