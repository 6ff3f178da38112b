import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { pino } from 'pino'
import { createGatehouse, type Gatehouse, type GatehouseOptions } from '../../src/index.ts'
import { generateKey } from '../../src/session/seal.ts'
import { MemoryStore } from '../../src/session/stores/memory.ts'
import type { BrowserJar } from '../helpers/browser-jar.ts'
import { CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import { logLines } from '../helpers/log-lines.ts'
import { mountAdmin } from '../helpers/admin.ts'

const TOKEN = 'admin-token-Zq8xY2vR0kLm4NpT'
type Claims = Array<{ type: string; value: unknown }>

const OFFLINE: GatehouseOptions = {
  oidc: { authority: 'http://127.0.0.1:9', clientId: 'x', clientSecret: 'y' },
  keys: [generateKey()],
  session: { store: 'memory' },
}

describe('admin API', () => {
  let flow: Flow
  let admin: Awaited<ReturnType<typeof mountAdmin>>
  const store = new MemoryStore()

  before(async () => {
    flow = await startFlow({ runtime: { store }, gatehouse: { admin: { token: TOKEN } } })
    admin = await mountAdmin((req, res) => flow.gatehouse.adminHandler(req, res))
  })
  after(async () => {
    await admin.close()
    await flow.close()
  })

  const call = (path: string, init: { method?: string; authorization?: string } = {}) =>
    fetch(`${admin.url}${path}`, {
      method: init.method ?? 'GET',
      headers: init.authorization === undefined ? {} : { authorization: init.authorization },
    })
  const authed = (path: string, method = 'GET') => call(path, { method, authorization: `Bearer ${TOKEN}` })

  async function loggedIn(username = 'alice'): Promise<{ browser: BrowserJar; sub: string; sid: string }> {
    const browser = flow.browser()
    await flow.login(browser, { username })
    const claims = JSON.parse((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) as Claims
    return {
      browser,
      sub: claims.find((c) => c.type === 'sub')!.value as string,
      sid: claims.find((c) => c.type === 'sid')!.value as string,
    }
  }

  const refused: Array<[string, string | undefined]> = [
    ['no Authorization header', undefined],
    ['an empty bearer', 'Bearer '],
    ['a wrong token', 'Bearer wrong-token-0123456789abcdef'],
    ['the token without its last character', `Bearer ${TOKEN.slice(0, -1)}`],
    ['the token with one more character', `Bearer ${TOKEN}x`],
    ['the token with its last character changed', `Bearer ${TOKEN.slice(0, -1)}U`],
    ['the token in another case', `Bearer ${TOKEN.toUpperCase()}`],
    ['the token with a Basic scheme', `Basic ${TOKEN}`],
    ['the token without a scheme', TOKEN],
    ['the token as Basic credentials', `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}`],
  ]
  for (const [name, authorization] of refused) {
    test(`${name} is refused with 401 problem+json and a Bearer challenge, on /metrics and the session API`, async () => {
      for (const [path, method] of [
        ['/metrics', 'GET'],
        ['/admin/sessions', 'GET'],
        ['/admin/sessions?sub=alice-0001', 'DELETE'],
      ] as const) {
        const res = await call(path, { method, ...(authorization === undefined ? {} : { authorization }) })
        assert.equal(res.status, 401, `${method} ${path}`)
        assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/)
        assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer realm="gatehouse-admin"/)
        const body = (await res.json()) as { code: string }
        assert.equal(body.code, 'admin_unauthorized')
      }
    })
  }

  test('a wrong token gets error="invalid_token" in the challenge, a missing one does not', async () => {
    assert.equal((await call('/metrics')).headers.get('www-authenticate'), 'Bearer realm="gatehouse-admin"')
    assert.equal(
      (await call('/metrics', { authorization: 'Bearer nope' })).headers.get('www-authenticate'),
      'Bearer realm="gatehouse-admin", error="invalid_token"',
    )
  })

  test('a token in the query string is not accepted', async () => {
    assert.equal((await call(`/metrics?access_token=${TOKEN}`)).status, 401)
  })

  test('the right token opens /metrics, whatever the case of the scheme', async () => {
    const res = await call('/metrics', { authorization: `bearer ${TOKEN}` })
    assert.equal(res.status, 200)
    assert.match(await res.text(), /^# HELP gatehouse_/m)
  })

  test('sessions are listed with their metadata only, by sub and up to a limit', async () => {
    const alice = await loggedIn('alice')
    const bob = await loggedIn('bob')
    const res = await authed('/admin/sessions')
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('cache-control'), 'no-store')
    const text = await res.text()
    const { sessions } = JSON.parse(text) as { sessions: Array<Record<string, unknown>> }
    const mine = sessions.filter((s) => s.sid === alice.sid || s.sid === bob.sid)
    assert.equal(mine.length, 2)
    for (const s of mine) {
      assert.deepEqual(Object.keys(s).sort(), [
        'createdAt',
        'expiresAt',
        'idHash',
        'partition',
        'renewedAt',
        'sid',
        'sub',
      ])
      assert.equal(typeof s.createdAt, 'number')
      assert.ok((s.expiresAt as number) > Date.now())
      assert.equal(s.partition, 'default')
    }
    const stored = await store.list({ sub: alice.sub, limit: 10 }, Date.now())
    for (const record of stored) assert.ok(!text.includes(record.sealed), 'the sealed payload never leaves the store')
    assert.ok(!text.includes(alice.browser.cookies.get('__Host-gatehouse')!), 'nor does the cookie value')

    const bySub = (await (await authed(`/admin/sessions?sub=${encodeURIComponent(bob.sub)}`)).json()) as {
      sessions: Array<{ sub: string; sid: string }>
    }
    assert.ok(bySub.sessions.length >= 1)
    assert.ok(bySub.sessions.every((s) => s.sub === bob.sub))
    assert.ok(bySub.sessions.some((s) => s.sid === bob.sid))
    assert.equal(
      ((await (await authed('/admin/sessions?limit=1')).json()) as { sessions: unknown[] }).sessions.length,
      1,
    )
  })

  for (const query of ['limit=0', 'limit=abc', 'limit=1001', 'limit=-1', 'sub=a&sub=b', 'sub=']) {
    test(`listing with ${query} is refused with 400`, async () => {
      const res = await authed(`/admin/sessions?${query}`)
      assert.equal(res.status, 400)
      assert.ok(((await res.json()) as { errors?: unknown }).errors)
    })
  }

  test('revoking by sub ends every session of that user at its next request, and only those', async () => {
    const a1 = await loggedIn('alice')
    const a2 = await loggedIn('alice')
    const bob = await loggedIn('bob')
    const before = (await store.list({ sub: a1.sub, limit: 100 }, Date.now())).length
    const res = await authed(`/admin/sessions?sub=${encodeURIComponent(a1.sub)}`, 'DELETE')
    assert.equal(res.status, 200)
    assert.deepEqual(await res.json(), { revoked: before })
    assert.equal((await a1.browser.get(`${flow.origin}/bff/user`, CSRF)).status, 401)
    assert.equal((await a2.browser.get(`${flow.origin}/bff/user`, CSRF)).status, 401)
    assert.equal((await bob.browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200)
  })

  test('revoking by sid ends that IdP session only', async () => {
    const one = await loggedIn('alice')
    const two = await loggedIn('alice')
    const res = await authed(`/admin/sessions?sid=${encodeURIComponent(one.sid)}`, 'DELETE')
    assert.deepEqual(await res.json(), { revoked: 1 })
    assert.equal((await one.browser.get(`${flow.origin}/bff/user`, CSRF)).status, 401)
    assert.equal((await two.browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200)
    assert.deepEqual(await (await authed(`/admin/sessions?sid=${encodeURIComponent(one.sid)}`, 'DELETE')).json(), {
      revoked: 0,
    })
  })

  for (const query of ['', '?sub=a&sid=b', '?sub=', '?sid=a&sid=b']) {
    test(`revoking with "${query}" is refused with 400 and revokes nothing`, async () => {
      const { browser } = await loggedIn('alice')
      assert.equal((await authed(`/admin/sessions${query}`, 'DELETE')).status, 400)
      assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200)
    })
  }

  test('another method is 405 with Allow, another path 404', async () => {
    const res = await authed('/admin/sessions', 'POST')
    assert.equal(res.status, 405)
    assert.equal(res.headers.get('allow'), 'GET, DELETE')
    assert.equal((await authed('/admin/other')).status, 404)
    assert.equal((await authed('/index.html')).status, 404)
    assert.equal((await authed('//evil/metrics')).status, 404)
  })
})

describe('admin API without a configured token', () => {
  let gatehouse: Gatehouse
  let admin: Awaited<ReturnType<typeof mountAdmin>>
  const log = logLines()

  before(async () => {
    gatehouse = await createGatehouse({ ...OFFLINE, admin: {} }, { logger: pino({ level: 'info' }, log.sink) })
    admin = await mountAdmin(gatehouse.adminHandler)
  })
  after(async () => {
    await admin.close()
    await gatehouse.close()
  })

  test('a warning is logged at start', () => {
    const logs = log.entries()
    assert.ok(
      logs.some((l) => l.level === 40 && /admin\.token is not set/.test(String(l.msg))),
      JSON.stringify(logs),
    )
  })

  test('the session API is refused with 403, even with a bearer token', async () => {
    for (const headers of [{}, { authorization: 'Bearer anything-at-all-12345' }] as Array<Record<string, string>>) {
      for (const method of ['GET', 'DELETE']) {
        const res = await fetch(`${admin.url}/admin/sessions?sub=x`, { method, headers })
        assert.equal(res.status, 403)
        assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/)
      }
    }
  })

  test('/metrics is served without a token', async () => {
    const res = await fetch(`${admin.url}/metrics`)
    assert.equal(res.status, 200)
    assert.match(await res.text(), /gatehouse_http_requests_total/)
  })
})

describe('admin API in cookie mode', () => {
  test('has no server-side sessions to list (404) and exports no active-session gauge', async () => {
    const gatehouse = await createGatehouse(
      { ...OFFLINE, session: { mode: 'cookie' }, admin: { token: TOKEN } },
      { logger: pino({ level: 'silent' }) },
    )
    const admin = await mountAdmin(gatehouse.adminHandler)
    try {
      const res = await fetch(`${admin.url}/admin/sessions`, { headers: { authorization: `Bearer ${TOKEN}` } })
      assert.equal(res.status, 404)
      const metrics = await (
        await fetch(`${admin.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
      ).text()
      assert.doesNotMatch(metrics, /gatehouse_active_sessions/)
    } finally {
      await admin.close()
      await gatehouse.close()
    }
  })
})
