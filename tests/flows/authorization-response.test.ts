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

describe('the ID token nonce (RFC 9700 §4.5.3.2)', () => {
  let flow: Flow
  before(async () => {
    flow = await startFlow()
  })
  after(() => flow.close())

  /**
   * Starts a login, lets `tamper` change the authorize URL the browser follows (what an attacker
   * or a broken IdP could do to the nonce), and walks the real IdP up to gatehouse's callback.
   */
  async function callbackWith(browser: BrowserJar, tamper: (authorize: URL) => void): Promise<URL> {
    const start = await browser.get(`${flow.origin}/bff/login`)
    const authorize = new URL(start.headers.get('location')!)
    tamper(authorize)
    const form = await browser.follow(await browser.get(authorize.href))
    let res: JarResponse = await browser.submitForm(form, { username: 'alice', password: 'alice-demo-password' })
    for (;;) {
      const next = new URL(res.headers.get('location')!, res.url)
      if (next.pathname === '/signin-oidc') return next
      res = await browser.get(next.href)
    }
  }

  for (const [name, tamper] of [
    [
      'the IdP issuing an ID token with another nonce',
      (u: URL) => u.searchParams.set('nonce', 'a-nonce-of-the-attacker'),
    ],
    ['the IdP issuing an ID token without a nonce', (u: URL) => u.searchParams.delete('nonce')],
  ] as const) {
    test(`${name} is refused with 400, starts no session and uses no token`, async () => {
      const browser = flow.browser()
      const url = await callbackWith(browser, tamper)
      const seen = flow.idp.requests.length
      const res = await browser.get(url.href)
      assert.equal(res.status, 400, res.text.slice(0, 200))
      assert.match(res.headers.get('content-type')!, /^text\/html/)
      assert.equal(browser.cookies.has('__Host-gatehouse'), false)
      const after = flow.idp.requests.slice(seen).map((r) => r.path)
      assert.ok(after.includes('/token'), 'the code was exchanged')
      assert.equal(after.includes('/me'), false, 'the access token of that answer was never used (no UserInfo call)')
      assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 401)
    })
  }
})

describe("UserInfo answers (OIDC Core §5.3.2: its sub must be the ID token's)", () => {
  let flow: Flow
  const mode = { userInfoSub: undefined as string | undefined }
  before(async () => {
    flow = await startFlow({
      idp: { userInfoSubject: (sub) => mode.userInfoSub ?? sub },
    })
  })
  after(() => flow.close())

  test('a UserInfo answer naming another sub is refused with 400 and starts no session', async () => {
    mode.userInfoSub = 'bob-0002'
    try {
      const browser = flow.browser()
      const url = await callbackUrl(flow, browser)
      const seen = flow.idp.requests.length
      const res = await browser.get(url.href)
      assert.equal(res.status, 400, res.text.slice(0, 200))
      assert.ok(
        flow.idp.requests.slice(seen).some((r) => r.path === '/me'),
        'UserInfo was asked',
      )
      assert.equal(browser.cookies.has('__Host-gatehouse'), false)
      assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 401)
    } finally {
      mode.userInfoSub = undefined
    }
  })

  test('the same IdP answering UserInfo with the right sub logs in (control)', async () => {
    const browser = flow.browser()
    const url = await callbackUrl(flow, browser)
    assert.equal((await browser.get(url.href)).status, 302)
    const claims = JSON.parse((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) as Array<{
      type: string
      value: unknown
    }>
    assert.equal(claims.find((c) => c.type === 'sub')?.value, 'alice-0001')
  })
})
