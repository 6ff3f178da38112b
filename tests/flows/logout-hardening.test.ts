import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { MemoryStore } from '../../src/session/stores/memory.ts'
import { CSRF, startFlow, type Flow } from '../helpers/flow.ts'

type Claims = Array<{ type: string; value: unknown }>
const logoutUrl = (text: string) =>
  (JSON.parse(text) as Claims).find((c) => c.type === 'bff:logout_url')!.value as string

/** A store whose deletes can be made to fail, to stand in for an outage in the middle of a logout. */
class FlakyStore extends MemoryStore {
  failDeletes = false
  override async delete(idHash: string): Promise<boolean> {
    if (this.failDeletes) throw new Error('store down')
    return super.delete(idHash)
  }
}

describe('logout with SameSite=Strict sessions', () => {
  let flow: Flow
  before(async () => {
    flow = await startFlow({ gatehouse: { session: { store: 'memory', sameSite: 'strict' } } })
  })
  after(() => flow.close())

  test('a cross-site navigation to /bff/logout (no Strict cookie sent) does not delete the session cookie', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    // What a browser sends on a cross-site top-level navigation: no Strict cookie at all.
    const res = await fetch(`${flow.origin}/bff/logout`, { redirect: 'manual' })
    assert.equal(res.status, 302)
    assert.ok(
      !res.headers.getSetCookie().some((c) => c.startsWith('__Host-gatehouse=')),
      'no deletion of the session cookie',
    )
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200)
  })

  test('the same-site logout with the sid deletes the Strict cookie with matching attributes', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const url = logoutUrl((await browser.get(`${flow.origin}/bff/user`, CSRF)).text)
    const res = await browser.get(`${flow.origin}${url}`)
    assert.equal(res.status, 302)
    assert.ok(
      res.headers.getSetCookie().includes('__Host-gatehouse=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0'),
    )
  })
})

describe('logout during a store outage', () => {
  const store = new FlakyStore()
  let flow: Flow
  before(async () => {
    flow = await startFlow({ runtime: { store } })
  })
  after(() => flow.close())

  test('a failed delete answers 503, keeps the cookie, and the retried logout succeeds', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const url = logoutUrl((await browser.get(`${flow.origin}/bff/user`, CSRF)).text)
    store.failDeletes = true
    const failed = await browser.get(`${flow.origin}${url}`)
    assert.equal(failed.status, 503)
    assert.ok(
      !failed.headers.getSetCookie().some((c) => c.startsWith('__Host-gatehouse=')),
      'cookie kept so the user can retry',
    )
    store.failDeletes = false
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200)
    const retried = await browser.get(`${flow.origin}${url}`)
    assert.equal(retried.status, 302)
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 401)
  })
})

describe('state-changing endpoints refuse HEAD', () => {
  let flow: Flow
  before(async () => {
    flow = await startFlow()
  })
  after(() => flow.close())

  for (const path of ['/bff/login', '/bff/logout', '/signin-oidc?state=x&code=y', '/signout-callback-oidc']) {
    test(`HEAD ${path} is 405 with Allow: GET`, async () => {
      const res = await fetch(`${flow.origin}${path}`, { method: 'HEAD', redirect: 'manual' })
      assert.equal(res.status, 405)
      assert.equal(res.headers.get('allow'), 'GET')
    })
  }

  test('HEAD /bff/logout with a valid sid does not end the session', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const url = logoutUrl((await browser.get(`${flow.origin}/bff/user`, CSRF)).text)
    await browser.request('HEAD', `${flow.origin}${url}`)
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200)
  })

  test('a returnUrl that grows past 2048 characters when percent-encoded is refused', async () => {
    const res = await fetch(`${flow.origin}/bff/login?returnUrl=${encodeURIComponent(`/${'é'.repeat(500)}`)}`, {
      redirect: 'manual',
    })
    assert.equal(res.status, 400)
  })

  test('many concurrent /readyz probes cost one discovery fetch at the IdP', async () => {
    const before = flow.idp.requests.filter((r) => r.path === '/.well-known/openid-configuration').length
    const answers = await Promise.all(Array.from({ length: 20 }, () => fetch(`${flow.origin}/readyz`)))
    assert.ok(answers.every((r) => r.status === 200))
    const after = flow.idp.requests.filter((r) => r.path === '/.well-known/openid-configuration').length
    assert.equal(after - before, 1)
  })
})
