import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import express from 'express'
import { CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import { createGatehouse } from '../../src/index.ts'
import { GatehouseError } from '../../src/errors.ts'

describe('library use inside Express', () => {
  let flow: Flow
  before(async () => {
    flow = await startFlow({
      listener: (gatehouse) => {
        const app = express()
        app.use(gatehouse.handle)
        app.get('/api/me', gatehouse.protect(), async (req, res) => {
          const session = await gatehouse.getSession(req)
          const token = await gatehouse.getAccessToken(req)
          res.json({
            sub: session?.sub,
            name: session?.claims.find((c) => c.type === 'name')?.value,
            hasAccessToken: typeof token === 'string' && token.length > 10,
          })
        })
        app.get('/public', (_req, res) => res.send('public page'))
        return app
      },
    })
  })
  after(() => flow.close())

  test('gatehouse endpoints answer through Express and other routes fall through to the app', async () => {
    const browser = flow.browser()
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 401)
    const page = await browser.get(`${flow.origin}/public`)
    assert.equal(page.status, 200)
    assert.equal(page.text, 'public page')
  })

  test('a protected local route without a session is 401 problem+json, not a redirect', async () => {
    const res = await flow.browser().get(`${flow.origin}/api/me`, CSRF)
    assert.equal(res.status, 401)
    assert.match(res.headers.get('content-type')!, /^application\/problem\+json/)
    assert.equal(JSON.parse(res.text).code, 'session_required')
  })

  test('a protected local route without the anti-forgery header is 401 even with a session', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const res = await browser.get(`${flow.origin}/api/me`)
    assert.equal(res.status, 401)
    assert.equal(JSON.parse(res.text).code, 'antiforgery_failed')
  })

  test('a protected local route with session and header sees the user and can use the access token', async () => {
    const browser = flow.browser()
    await flow.login(browser, { username: 'bob' })
    const res = await browser.get(`${flow.origin}/api/me`, CSRF)
    assert.equal(res.status, 200)
    assert.deepEqual(JSON.parse(res.text), { sub: 'bob-0002', name: 'Bob Example', hasAccessToken: true })
  })
})

describe('library use with plain node:http', () => {
  let flow: Flow
  before(async () => {
    flow = await startFlow({
      app: (gatehouse) =>
        gatehouse.protect(async (req, res) => {
          if (req.url === '/boom') throw new Error('kaboom internal detail')
          const session = await gatehouse.getSession(req)
          res.setHeader('content-type', 'application/json')
          res.end(JSON.stringify({ sub: session?.sub }))
        }),
    })
  })
  after(() => flow.close())

  test('protect(handler) guards a node:http handler', async () => {
    const browser = flow.browser()
    assert.equal((await browser.get(`${flow.origin}/anything`, CSRF)).status, 401)
    await flow.login(browser)
    const res = await browser.get(`${flow.origin}/anything`, CSRF)
    assert.equal(res.status, 200)
    assert.deepEqual(JSON.parse(res.text), { sub: 'alice-0001' })
  })

  test('a protected handler that throws yields a 500 problem without internals, and serving goes on', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const res = await browser.get(`${flow.origin}/boom`, CSRF)
    assert.equal(res.status, 500)
    assert.equal(JSON.parse(res.text).code, 'internal')
    assert.doesNotMatch(res.text, /kaboom/)
    assert.equal((await browser.get(`${flow.origin}/anything`, CSRF)).status, 200)
  })
})

test('createGatehouse rejects an invalid config with every problem named by key path', async () => {
  await assert.rejects(
    createGatehouse({ oidc: { authority: 'ftp://idp', clientId: '', clientSecret: 's' }, keys: ['short'] } as never),
    (err: unknown) => {
      assert.ok(err instanceof GatehouseError)
      assert.equal(err.code, 'config_invalid')
      assert.deepEqual(Object.keys(err.errors ?? {}).sort(), ['keys[0]', 'oidc.authority', 'oidc.clientId'])
      return true
    },
  )
})

test('a body parser mounted before gatehouse makes proxied bodies fail loudly (500), never arrive empty', async () => {
  const { startUpstream } = await import('../helpers/upstream.ts')
  const upstream = await startUpstream()
  const flow = await startFlow({
    gatehouse: { remoteApis: [{ path: '/api', target: upstream.url, token: 'none' }] },
    listener: (gatehouse) => {
      const app = express()
      app.use(express.json())
      app.use(gatehouse.handle)
      return app
    },
  })
  try {
    const before = upstream.received.length
    const res = await flow
      .browser()
      .request('POST', `${flow.origin}/api/echo`, '{"a":1}', { 'content-type': 'application/json', ...CSRF })
    assert.equal(res.status, 500)
    assert.equal(upstream.received.length, before, 'nothing reached the upstream')
  } finally {
    await flow.close()
    await upstream.close()
  }
})
