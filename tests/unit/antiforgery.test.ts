import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { isAntiForgeryValid } from '../../src/http/antiforgery.ts'

const RULE = { header: 'X-CSRF', value: '1' }

describe('isAntiForgeryValid', () => {
  test('a request carrying the configured header and value passes', () => {
    // Node lower-cases incoming header names.
    assert.equal(isAntiForgeryValid({ 'x-csrf': '1' }, RULE), true)
  })

  test('a request without the header fails', () => {
    assert.equal(isAntiForgeryValid({}, RULE), false)
    assert.equal(isAntiForgeryValid({ cookie: 'x-csrf=1', 'x-csrf-token': '1' }, RULE), false)
  })

  test('a header with another value fails, the comparison being exact', () => {
    for (const value of ['', '0', 'true', ' 1', '1 ', '11', '1, 1']) {
      assert.equal(isAntiForgeryValid({ 'x-csrf': value }, RULE), false, JSON.stringify(value))
    }
  })

  test('a header sent more than once fails', () => {
    assert.equal(isAntiForgeryValid({ 'x-csrf': ['1', '1'] as unknown as string }, RULE), false)
  })

  test('the configured header name is matched case-insensitively and the value exactly', () => {
    const rule = { header: 'X-Requested-By', value: 'MyApp' }
    assert.equal(isAntiForgeryValid({ 'x-requested-by': 'MyApp' }, rule), true)
    assert.equal(isAntiForgeryValid({ 'x-requested-by': 'myapp' }, rule), false)
    assert.equal(isAntiForgeryValid({ 'x-csrf': '1' }, rule), false)
  })
})
