import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { importJWK, SignJWT } from 'jose'
import { MemoryStore } from '../../src/session/stores/memory.ts'
import { CLIENT_ID, CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import type { BrowserJar } from '../helpers/browser-jar.ts'
import { openEvents } from '../helpers/session-events.ts'

type Claims = Array<{ type: string; value: unknown }>

describe('GET /bff/session-events', () => {
  const store = new MemoryStore()
  let offsetMs = 0
  let flow: Flow
  before(async () => {
    flow = await startFlow({ runtime: { store, now: () => Date.now() + offsetMs } })
  })
  after(() => flow.close())

  const logoutUrl = async (browser: BrowserJar) =>
    (JSON.parse((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) as Claims).find(
      (c) => c.type === 'bff:logout_url',
    )!.value as string

  test('without a session it answers 401; a cross-site request is refused with 403', async () => {
    assert.equal((await fetch(`${flow.origin}/bff/session-events`)).status, 401)
    const browser = flow.browser()
    await flow.login(browser)
    const cross = await fetch(`${flow.origin}/bff/session-events`, {
      headers: { cookie: browser.cookieHeader(), 'sec-fetch-site': 'cross-site' },
    })
    assert.equal(cross.status, 403)
  })

  test('an open stream reports the session, then its end by a logout elsewhere, at once', async () => {
    offsetMs = 0
    const browser = flow.browser()
    await flow.login(browser)
    const events = await openEvents(flow.origin, browser.cookieHeader())
    assert.equal(events.status, 200)
    assert.equal((await events.next('session')).state, 'active')
    const url = await logoutUrl(browser)
    await browser.get(`${flow.origin}${url}`)
    assert.deepEqual(await events.next('session-end'), { reason: 'logout' })
    events.close()
  })

  test('a back-channel logout ends the stream with reason backchannel', async () => {
    offsetMs = 0
    const browser = flow.browser()
    await flow.login(browser)
    const sid = (JSON.parse((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) as Claims).find(
      (c) => c.type === 'sid',
    )!.value as string
    const events = await openEvents(flow.origin, browser.cookieHeader())
    await events.next('session')
    const jwk = flow.idp.signingKey as { kid: string }
    const token = await new SignJWT({
      iss: flow.idp.issuer,
      aud: CLIENT_ID,
      iat: Math.floor(Date.now() / 1000),
      jti: randomUUID(),
      events: { 'http://schemas.openid.net/event/backchannel-logout': {} },
      sid,
    })
      .setProtectedHeader({ alg: 'RS256', kid: jwk.kid, typ: 'logout+jwt' })
      .sign(await importJWK(flow.idp.signingKey, 'RS256'))
    const res = await fetch(`${flow.origin}/bff/backchannel`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ logout_token: token }),
    })
    assert.equal(res.status, 200)
    assert.deepEqual(await events.next('session-end'), { reason: 'backchannel' })
    events.close()
  })

  test('a revocation this instance did not see (another instance, the CLI) is found by the periodic check', async () => {
    offsetMs = 0
    const browser = flow.browser()
    await flow.login(browser)
    const events = await openEvents(flow.origin, browser.cookieHeader())
    await events.next('session')
    await store.deleteWhere({ sub: 'alice-0001' }) // straight in the store, like `gatehouse sessions revoke`
    assert.deepEqual(await events.next('session-end'), { reason: 'revoked' })
    events.close()
  })

  test('expiry ends the stream with reason expired', async () => {
    offsetMs = 0
    const browser = flow.browser()
    await flow.login(browser)
    const events = await openEvents(flow.origin, browser.cookieHeader())
    await events.next('session')
    offsetMs = 9 * 3_600_000
    assert.deepEqual(await events.next('session-end'), { reason: 'expired' })
    events.close()
  })
})
