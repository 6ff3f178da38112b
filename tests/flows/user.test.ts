import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { exportJWK, generateKeyPair } from 'jose'
import { CSRF, startFlow, type Flow } from '../helpers/flow.ts'

type Claims = Array<{ type: string; value: unknown }>
const expiresIn = (text: string) =>
  (JSON.parse(text) as Claims).find((c) => c.type === 'bff:session_expires_in')!.value as number

describe('/bff/user and sliding sessions', () => {
  let flow: Flow
  let offsetMs = 0
  before(async () => {
    flow = await startFlow({ runtime: { now: () => Date.now() + offsetMs } })
  })
  after(() => flow.close())

  test('slide=false reads without renewing; a plain read renews once half the lifetime has passed', async () => {
    offsetMs = 0
    const browser = flow.browser()
    await flow.login(browser)
    assert.ok(expiresIn((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) > 8 * 3600 - 30)

    offsetMs = 5 * 3600_000 // 5 h later: past half of the 8 h lifetime
    const peek = expiresIn((await browser.get(`${flow.origin}/bff/user?slide=false`, CSRF)).text)
    assert.ok(peek <= 3 * 3600 && peek > 3 * 3600 - 30, `slide=false left ${peek}s`)
    const again = expiresIn((await browser.get(`${flow.origin}/bff/user?slide=false`, CSRF)).text)
    assert.ok(again <= 3 * 3600, 'still not renewed')

    const renewed = expiresIn((await browser.get(`${flow.origin}/bff/user`, CSRF)).text)
    assert.ok(renewed > 8 * 3600 - 30, `renewed to ${renewed}s`)
  })

  test('a sliding session never outlives the absolute lifetime, and an expired one is 401 and cleared', async () => {
    offsetMs = 0
    const browser = flow.browser()
    await flow.login(browser)
    for (const hours of [5, 10, 15, 20]) {
      offsetMs = hours * 3600_000
      assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200, `alive at ${hours} h`)
    }
    offsetMs = 20 * 3600_000
    const left = expiresIn((await browser.get(`${flow.origin}/bff/user`, CSRF)).text)
    assert.ok(left <= 4 * 3600, `capped by the 24 h absolute lifetime, ${left}s left`)
    offsetMs = 24 * 3600_000 + 1000
    const res = await browser.get(`${flow.origin}/bff/user`, CSRF)
    assert.equal(res.status, 401)
    assert.ok(
      res.headers.getSetCookie().some((c) => c.startsWith('__Host-gatehouse=;') && /Max-Age=0/.test(c)),
      'dead cookie cleared',
    )
  })
})

describe('anonymousSessionResponse: 200', () => {
  let flow: Flow
  before(async () => {
    flow = await startFlow({ gatehouse: { anonymousSessionResponse: 200 } })
  })
  after(() => flow.close())

  test('/bff/user without a session answers 200 with body null', async () => {
    const res = await flow.browser().get(`${flow.origin}/bff/user`, CSRF)
    assert.equal(res.status, 200)
    assert.equal(res.text, 'null')
    assert.equal(res.headers.get('cache-control'), 'no-store')
  })

  test('the anti-forgery header is still required', async () => {
    assert.equal((await flow.browser().get(`${flow.origin}/bff/user`)).status, 401)
  })
})

describe('client authentication methods', () => {
  test('client_secret_post logs in', async () => {
    const flow = await startFlow({
      client: { token_endpoint_auth_method: 'client_secret_post' },
      oidc: { clientAuth: 'client_secret_post' },
    })
    try {
      const browser = flow.browser()
      assert.equal((await flow.login(browser)).status, 302)
      assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200)
    } finally {
      await flow.close()
    }
  })

  test('private_key_jwt logs in with a signed client assertion', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true })
    const kid = 'test-client-key'
    const flow = await startFlow({
      client: {
        client_secret: undefined,
        token_endpoint_auth_method: 'private_key_jwt',
        token_endpoint_auth_signing_alg: 'ES256',
        jwks: { keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' }] },
      },
      oidc: {
        clientSecret: undefined,
        clientAuth: 'private_key_jwt',
        privateKeyJwk: { ...(await exportJWK(privateKey)), kid, alg: 'ES256' },
      },
    })
    try {
      const browser = flow.browser()
      assert.equal((await flow.login(browser)).status, 302)
      const claims = JSON.parse((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) as Claims
      assert.equal(claims.find((c) => c.type === 'sub')?.value, 'alice-0001')
      assert.ok(
        flow.idp.requests.some((r) => r.path === '/token'),
        'the token endpoint was called',
      )
    } finally {
      await flow.close()
    }
  })
})

describe('pushed authorization requests (RFC 9126)', () => {
  test('with oidc.pushedAuthorizationRequests the browser carries only a request_uri, and the login completes', async () => {
    const flow = await startFlow({ oidc: { pushedAuthorizationRequests: true } })
    try {
      const browser = flow.browser()
      const start = await browser.get(`${flow.origin}/bff/login?returnUrl=/par`)
      const authorize = new URL(start.headers.get('location')!)
      assert.ok(authorize.searchParams.get('request_uri')?.startsWith('urn:ietf:params:oauth:request_uri:'))
      for (const leaked of ['state', 'nonce', 'code_challenge', 'redirect_uri', 'scope'])
        assert.equal(authorize.searchParams.get(leaked), null, `${leaked} is not in the front channel`)
      assert.ok(
        flow.idp.requests.some((r) => r.method === 'POST' && r.path === '/request'),
        'the parameters were pushed to the IdP',
      )
      const res = await flow.login(browser, { returnUrl: '/par' })
      assert.equal(res.headers.get('location'), '/par')
      assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200)
    } finally {
      await flow.close()
    }
  })
})
