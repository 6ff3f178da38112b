import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import type { BrowserJar, JarResponse } from '../helpers/browser-jar.ts'

/** Runs a login up to the IdP's redirect back to gatehouse and returns that callback URL, unvisited. */
async function callbackUrl(flow: Flow, browser: BrowserJar): Promise<URL> {
  const form = await browser.follow(await browser.get(`${flow.origin}/bff/login`))
  let res: JarResponse = await browser.submitForm(form, { username: 'alice', password: 'alice-demo-password' })
  for (;;) {
    const next = new URL(res.headers.get('location')!, res.url)
    if (next.pathname === '/signin-oidc') return next
    res = await browser.get(next.href)
  }
}

describe('authorization response checks (RFC 9207 iss, code, state)', () => {
  let flow: Flow
  before(async () => {
    flow = await startFlow()
  })
  after(() => flow.close())

  test('the IdP sends iss with the code, and the untouched response logs in', async () => {
    const browser = flow.browser()
    const url = await callbackUrl(flow, browser)
    assert.equal(url.searchParams.get('iss'), flow.idp.issuer)
    assert.equal((await browser.get(url.href)).status, 302)
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200)
  })

  for (const [name, change] of [
    ['a wrong iss (mix-up attack)', (u: URL) => u.searchParams.set('iss', 'https://evil.example')],
    ['a missing iss while the IdP advertises it', (u: URL) => u.searchParams.delete('iss')],
    ['two iss values', (u: URL) => u.searchParams.append('iss', flow.idp.issuer)],
    ['a swapped code', (u: URL) => u.searchParams.set('code', 'not-the-code')],
    ['a missing code', (u: URL) => u.searchParams.delete('code')],
  ] as const) {
    test(`a callback with ${name} is refused with 400 and starts no session`, async () => {
      const browser = flow.browser()
      const url = await callbackUrl(flow, browser)
      change(url)
      const res = await browser.get(url.href)
      assert.equal(res.status, 400, res.text.slice(0, 200))
      assert.equal(browser.cookies.has('__Host-gatehouse'), false)
      assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 401)
    })
  }
})
