import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { CLIENT_ID, CLIENT_SECRET, CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import { introspect } from '../helpers/upstream.ts'

describe('/bff/diagnostics', () => {
  let on: Flow
  let off: Flow
  before(async () => {
    on = await startFlow({ gatehouse: { diagnostics: true } })
    off = await startFlow()
  })
  after(async () => {
    await on.close()
    await off.close()
  })

  test('when enabled it shows the user and client access tokens the IdP accepts', async () => {
    const browser = on.browser()
    await on.login(browser)
    const res = await browser.get(`${on.origin}/bff/diagnostics`, CSRF)
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('cache-control'), 'no-store')
    const body = JSON.parse(res.text) as { userAccessToken: string; clientAccessToken: string }
    assert.equal((await introspect(on.idp.issuer, body.userAccessToken, CLIENT_ID, CLIENT_SECRET)).sub, 'alice-0001')
    assert.equal((await introspect(on.idp.issuer, body.clientAccessToken, CLIENT_ID, CLIENT_SECRET)).active, true)
  })

  test('it gives nothing without a session or without the anti-forgery header (no anonymous token dispenser)', async () => {
    const anonymous = await on.browser().get(`${on.origin}/bff/diagnostics`, CSRF)
    assert.equal(anonymous.status, 401)
    assert.doesNotMatch(anonymous.text, /AccessToken/)
    const browser = on.browser()
    await on.login(browser)
    assert.equal((await browser.get(`${on.origin}/bff/diagnostics`)).status, 401)
  })

  test('when disabled (the default) the endpoint does not exist', async () => {
    const browser = off.browser()
    await off.login(browser)
    assert.equal((await browser.get(`${off.origin}/bff/diagnostics`)).status, 404)
  })
})
