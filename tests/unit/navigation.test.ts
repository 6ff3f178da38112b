import assert from 'node:assert/strict'
import type { IncomingHttpHeaders } from 'node:http'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import { isNavigation } from '../../src/http/navigation.ts'
import { anyString, hostileString, SEED } from './properties/arbitraries.ts'

const CHROME =
  'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7'
const FIREFOX = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'
const SAFARI = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'

/** As node:http hands them over: names lower-cased; a test may still pass odd shapes on purpose. */
const nav = (headers: Record<string, string | string[] | undefined>, antiForgery = 'X-CSRF') =>
  isNavigation(headers as IncomingHttpHeaders, antiForgery)

describe('isNavigation', () => {
  test('what browsers send when the user opens a page is a navigation', () => {
    for (const accept of [CHROME, FIREFOX, SAFARI]) {
      assert.equal(nav({ 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document', accept }), true, accept)
    }
  })

  test('a browser without Sec-Fetch headers navigates with an Accept that names text/html', () => {
    for (const accept of [FIREFOX, SAFARI, 'text/html, application/xhtml+xml, image/jxr, */*', 'text/html']) {
      assert.equal(nav({ accept }), true, accept)
    }
  })

  test('fetch(), XHR, subresources and WebSockets are never navigations, whatever their Accept', () => {
    for (const mode of ['cors', 'no-cors', 'same-origin', 'websocket', 'CORS', 'Same-Origin']) {
      for (const accept of [undefined, '*/*', 'text/html', CHROME]) {
        assert.equal(nav({ 'sec-fetch-mode': mode, accept }), false, `${mode} ${accept}`)
      }
    }
  })

  test('what fetch(), XHR, curl and API clients send without Sec-Fetch-Mode is not a navigation', () => {
    for (const accept of [
      undefined,
      '',
      '*/*',
      'application/json',
      'application/json, text/plain, */*',
      'text/*',
      'text/plain',
      'image/webp,*/*',
    ]) {
      assert.equal(nav({ accept }), false, String(accept))
    }
  })

  test('the anti-forgery header, with any value and under any configured spelling, makes it an API call', () => {
    for (const value of ['1', '', '0', 'anything']) {
      assert.equal(nav({ 'x-csrf': value, 'sec-fetch-mode': 'navigate', accept: CHROME }), false, value)
      assert.equal(nav({ 'x-csrf': value, accept: FIREFOX }), false, value)
    }
    assert.equal(nav({ 'x-csrf': ['1', '1'], accept: FIREFOX }), false)
    assert.equal(nav({ 'x-requested-by': 'app', accept: FIREFOX }, 'X-Requested-By'), false)
    assert.equal(nav({ 'x-requested-by': 'app', accept: FIREFOX }, 'x-requested-by'), false)
    assert.equal(nav({ 'x-csrf': '1', accept: FIREFOX }, 'X-Requested-By'), true, 'only the configured header counts')
  })

  test('a JSON preference wins over navigate and over text/html', () => {
    assert.equal(nav({ 'sec-fetch-mode': 'navigate', accept: 'application/json' }), false)
    assert.equal(nav({ 'sec-fetch-mode': 'navigate', accept: 'application/json, text/html;q=0.5' }), false)
    assert.equal(nav({ accept: 'application/json, text/html;q=0.9' }), false)
    assert.equal(nav({ accept: 'text/html;q=0.5, application/problem+json' }), false, 'a +json type is JSON')
    assert.equal(nav({ accept: 'text/html;q=0.5, application/*' }), false)
    assert.equal(nav({ accept: 'text/html;q=0.9, application/json;q=0.5' }), true)
    assert.equal(nav({ accept: 'text/html, application/json' }), true, 'equal preference: html is acceptable')
  })

  test('text/html;q=0 refuses HTML, even with navigate and a wildcard', () => {
    assert.equal(nav({ accept: 'text/html;q=0' }), false)
    assert.equal(nav({ accept: 'text/html;q=0, */*' }), false)
    assert.equal(nav({ 'sec-fetch-mode': 'navigate', accept: 'text/html;q=0, */*' }), false)
    assert.equal(nav({ 'sec-fetch-mode': 'navigate', accept: 'text/html;q=0.000' }), false)
    assert.equal(nav({ 'sec-fetch-mode': 'navigate', accept: 'image/png' }), false, 'names no HTML and no wildcard')
  })

  test('navigate without Accept, with */* or with an Accept of no well-formed range counts as accepting HTML', () => {
    for (const accept of [undefined, '', '*/*', 'text/*', 'garbage', ',,,', ';q=1']) {
      assert.equal(nav({ 'sec-fetch-mode': 'navigate', accept }), true, String(accept))
    }
  })

  test('a text/html range with a malformed q counts as not sent', () => {
    for (const q of ['2', '1.5', '1.001', '.5', '0.1234', '-1', 'abc', '', '"0.5"', '1e0', '0,5', 'NaN', 'Infinity']) {
      assert.equal(nav({ accept: `text/html;q=${q}` }), false, q)
    }
    // With navigate the malformed range drops out and the wildcard decides.
    assert.equal(nav({ 'sec-fetch-mode': 'navigate', accept: 'text/html;q=abc, */*;q=0.1' }), true)
    // A malformed JSON range drops out too.
    assert.equal(nav({ accept: 'application/json;q=x, text/html;q=0.2' }), true)
  })

  test('well-formed q-values and parameters are read as RFC 9110 writes them', () => {
    for (const q of ['1', '1.', '1.0', '1.000', '0.001', '0.5', '0.9']) {
      assert.equal(nav({ accept: `text/html;q=${q}` }), true, q)
      assert.equal(nav({ accept: `text/html ; Q=${q}` }), true, `Q ${q}`)
    }
    assert.equal(nav({ accept: 'text/html;level=1;q=0.8, */*;q=0.1' }), true)
    assert.equal(
      nav({ accept: 'text/html;charset="a,b;q=0";q=0.8' }),
      true,
      'a comma and q inside a quoted string are not separators',
    )
    assert.equal(nav({ accept: 'text/html;charset="a\\"b,c";q=0' }), false, 'an escaped quote stays inside the string')
    assert.equal(nav({ accept: 'TEXT/HTML' }), true, 'media types are case-insensitive')
    assert.equal(nav({ accept: '\ttext/html\t;\tq=0.7\t,\t*/*;q=0.1' }), true)
  })

  test('the highest q among repeated ranges of one type counts', () => {
    assert.equal(nav({ accept: 'text/html;q=0, text/html;q=0.5' }), true)
    assert.equal(nav({ accept: 'text/html;q=0.5, text/html;q=0' }), true)
  })

  test('repeated headers: Accept lines are read together, a repeated Sec-Fetch-Mode is no mode at all', () => {
    // node:http joins repeated Accept and Sec-Fetch-Mode lines with ", "; arrays come from hand-built headers.
    assert.equal(nav({ accept: ['application/json', 'text/html;q=0.5'] }), false)
    assert.equal(nav({ accept: ['*/*', 'text/html'] }), true)
    assert.equal(nav({ accept: [] }), false)
    assert.equal(nav({ 'sec-fetch-mode': 'navigate, cors', accept: '*/*' }), false, 'then Accept must name text/html')
    assert.equal(
      nav({ 'sec-fetch-mode': 'cors, navigate', accept: FIREFOX }),
      true,
      'as an old browser would be judged',
    )
    assert.equal(nav({ 'sec-fetch-mode': ['navigate', 'navigate'], accept: '*/*' }), false)
    assert.equal(nav({ 'sec-fetch-mode': ['navigate'], accept: '*/*' }), true)
    assert.equal(nav({ 'sec-fetch-mode': ['cors'], accept: FIREFOX }), false)
    assert.equal(nav({ 'sec-fetch-mode': [], accept: FIREFOX }), true)
  })

  test('unknown or odd Sec-Fetch-Mode values fall back to Accept', () => {
    for (const mode of ['', 'nested-navigate', ' navigate', 'navigatex', 'x'.repeat(5000)]) {
      assert.equal(nav({ 'sec-fetch-mode': mode, accept: '*/*' }), false, mode.slice(0, 20))
      assert.equal(nav({ 'sec-fetch-mode': mode, accept: FIREFOX }), true, mode.slice(0, 20))
    }
    assert.equal(nav({ 'sec-fetch-mode': 'NAVIGATE', accept: '*/*' }), true)
  })

  test('hostile Accept values end quickly and never throw', () => {
    const hostile = [
      '"'.repeat(100_000),
      ';'.repeat(100_000),
      ','.repeat(100_000),
      ' '.repeat(100_000),
      'text/html;q="'.repeat(10_000),
      'text/html;' + 'a=b;'.repeat(20_000) + 'q=0',
      '\\'.repeat(100_000),
      'text/html;x="\\',
      'text/html;q',
      'text/html;q=',
      'text/html;=;=;=',
      '\u0000text/html',
      'text/html\u0000',
      '\uD800',
      'application/+json',
      'application/' + 'x'.repeat(100_000) + '+json',
      'text/html,'.repeat(10_000),
    ]
    const started = performance.now()
    for (const accept of hostile) {
      for (const mode of [undefined, 'navigate'])
        assert.equal(typeof nav({ 'sec-fetch-mode': mode, accept }), 'boolean')
    }
    // Far above what node:http lets through (16 KiB of headers); anything quadratic would take minutes.
    assert.ok(performance.now() - started < 2000, 'linear in the header length')
    assert.equal(nav({ accept: 'text/html;q' }), false, 'a q without a value is malformed')
    assert.equal(nav({ accept: 'text/html;q=0;q=1' }), true, 'the last q of a range counts')
    assert.equal(nav({ accept: 'text/html garbage' }), false, 'junk after a range voids it')
    assert.equal(nav({ accept: 'text/html garbage, text/html;q=0.3' }), true, 'and only it')
  })

  test('no headers at all is not a navigation', () => {
    assert.equal(nav({}), false)
  })

  test('for any Accept: never throws; the anti-forgery header and API fetch modes are never navigations; adding JSON never makes one', () => {
    const accept = fc.oneof(
      anyString(60),
      hostileString(),
      fc
        .array(
          fc.constantFrom(
            'text/html',
            '*/*',
            'application/json',
            'text/*',
            ';',
            ',',
            'q=',
            '0.5',
            '1',
            '"',
            '\\',
            ' ',
            'Q',
            '+json',
            'application/',
          ),
          { maxLength: 20 },
        )
        .map((parts) => parts.join('')),
    )
    fc.assert(
      fc.property(
        accept,
        fc.constantFrom(undefined, 'navigate', 'cors', 'no-cors', 'same-origin', 'websocket', 'nested-navigate'),
        (value, mode) => {
          const result = nav({ accept: value, 'sec-fetch-mode': mode })
          assert.equal(typeof result, 'boolean')
          assert.equal(nav({ accept: value, 'sec-fetch-mode': mode, 'x-csrf': '1' }), false)
          if (mode !== undefined && mode !== 'navigate' && mode !== 'nested-navigate') assert.equal(result, false)
          // Also accepting JSON can only turn a navigation into an API call, never the other way round.
          if (nav({ accept: [value, 'application/json'], 'sec-fetch-mode': mode })) assert.equal(result, true)
        },
      ),
      { seed: SEED, numRuns: 5_000 },
    )
  })
})
