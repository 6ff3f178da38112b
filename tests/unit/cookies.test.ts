import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { deleteCookie, parseCookies, repeatedCookieNames, serializeCookie } from '../../src/http/cookies.ts'

describe('parseCookies', () => {
  test('reads name=value pairs separated by semicolons, trimming spaces', () => {
    assert.deepEqual(
      [...parseCookies('__Host-gatehouse=abc123;  theme=dark ;x=1')],
      [
        ['__Host-gatehouse', 'abc123'],
        ['theme', 'dark'],
        ['x', '1'],
      ],
    )
  })

  test('no header or an empty header gives no cookies', () => {
    assert.equal(parseCookies(undefined).size, 0)
    assert.equal(parseCookies('').size, 0)
    assert.equal(parseCookies('   ').size, 0)
  })

  test('garbage pairs are skipped without throwing and the good ones kept', () => {
    const cookies = parseCookies(';;; =nameless; novalue; ==; \u0000; a=1; ;b=2;=;c')
    assert.deepEqual(
      [...cookies],
      [
        ['a', '1'],
        ['b', '2'],
      ],
    )
    for (const header of ['%', '%E0%A4%A', '"', '=', ';', '\uffff=\ud800', 'a'.repeat(100_000)]) {
      assert.doesNotThrow(() => parseCookies(header), JSON.stringify(header.slice(0, 20)))
    }
  })

  test('a repeated name keeps its first value in the map and is reported as repeated', () => {
    const cookies = parseCookies('__Host-gatehouse=first; other=x; __Host-gatehouse=second')
    assert.equal(cookies.get('__Host-gatehouse'), 'first')
    assert.equal(cookies.size, 2)
    assert.deepEqual([...repeatedCookieNames(cookies)], ['__Host-gatehouse'])
  })

  test('a header without repeats reports none; a map parseCookies did not make reports none', () => {
    assert.equal(repeatedCookieNames(parseCookies('a=1; b=2; c=3')).size, 0)
    assert.equal(repeatedCookieNames(parseCookies(undefined)).size, 0)
    assert.equal(repeatedCookieNames(new Map([['a', '1']])).size, 0)
  })

  test('names are repeated when equal after trimming, also with equal values; names differing in case are different cookies', () => {
    assert.deepEqual(
      [...repeatedCookieNames(parseCookies('__Host-gatehouse=a;  __Host-gatehouse =a'))],
      ['__Host-gatehouse'],
    )
    assert.equal(
      repeatedCookieNames(parseCookies('__Host-gatehouse=a; __HOST-GATEHOUSE=b; __host-gatehouse=c')).size,
      0,
    )
  })

  test('a nameless pair ("=value") is skipped and repeats nothing', () => {
    assert.equal(repeatedCookieNames(parseCookies('__Host-gatehouse=a; =__Host-gatehouse=b')).size, 0)
    assert.equal(parseCookies('__Host-gatehouse=a; =__Host-gatehouse=b').get('__Host-gatehouse'), 'a')
  })

  test('a value may be empty or contain "="', () => {
    const cookies = parseCookies('empty=; b64=YWJj==; kv=a=b')
    assert.equal(cookies.get('empty'), '')
    assert.equal(cookies.get('b64'), 'YWJj==')
    assert.equal(cookies.get('kv'), 'a=b')
  })

  test('a double-quoted value is unquoted', () => {
    const cookies = parseCookies('q="quoted value"; e=""; lone="; half="abc')
    assert.equal(cookies.get('q'), 'quoted value')
    assert.equal(cookies.get('e'), '')
    assert.equal(cookies.get('lone'), '"')
    assert.equal(cookies.get('half'), '"abc')
  })

  test('values are not percent-decoded', () => {
    assert.equal(parseCookies('a=%41%20b').get('a'), '%41%20b')
  })

  test('a header with very many pairs is read only up to a cap', () => {
    const header = Array.from({ length: 1000 }, (_, i) => `c${i}=${i}`).join('; ')
    const cookies = parseCookies(header)
    assert.ok(cookies.size < 1000)
    assert.ok(cookies.size >= 50, 'a realistic number of cookies is still read')
    assert.equal(cookies.get('c0'), '0')
  })
})

describe('serializeCookie', () => {
  test('a session cookie carries Path=/, Secure, HttpOnly and SameSite, and no Domain', () => {
    assert.equal(
      serializeCookie('__Host-gatehouse', 'abc', { sameSite: 'lax' }),
      '__Host-gatehouse=abc; Path=/; Secure; HttpOnly; SameSite=Lax',
    )
    assert.equal(
      serializeCookie('__Host-gatehouse', 'abc', { sameSite: 'strict' }),
      '__Host-gatehouse=abc; Path=/; Secure; HttpOnly; SameSite=Strict',
    )
  })

  test('Max-Age is a whole, non-negative number of seconds', () => {
    assert.match(serializeCookie('n', 'v', { sameSite: 'lax', maxAgeSec: 3600 }), /; Max-Age=3600$/)
    assert.match(serializeCookie('n', 'v', { sameSite: 'lax', maxAgeSec: 59.9 }), /; Max-Age=59$/)
    assert.match(serializeCookie('n', 'v', { sameSite: 'lax', maxAgeSec: -5 }), /; Max-Age=0$/)
    assert.doesNotMatch(serializeCookie('n', 'v', { sameSite: 'lax' }), /Max-Age|Expires/)
  })

  test('a serialized cookie parses back to its value', () => {
    const value = 'AbC-_0123456789abcdefghijklmnopqrstuvwxyzAB'
    const header = serializeCookie('__Host-gatehouse', value, { sameSite: 'lax', maxAgeSec: 10 }).split(';')[0]!
    assert.equal(parseCookies(header).get('__Host-gatehouse'), value)
  })
})

describe('deleteCookie', () => {
  test('clears the cookie with Max-Age=0 and the same attributes it was set with', () => {
    for (const sameSite of ['lax', 'strict'] as const) {
      const set = serializeCookie('__Host-gatehouse', 'abc', { sameSite })
      const del = deleteCookie('__Host-gatehouse', sameSite)
      assert.equal(del, `__Host-gatehouse=; ${set.split('; ').slice(1).join('; ')}; Max-Age=0`)
    }
    assert.equal(
      deleteCookie('__Host-gatehouse', 'lax'),
      '__Host-gatehouse=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0',
    )
  })
})
