import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { calculateJwkThumbprint, createRemoteJWKSet, EmbeddedJWK, jwtVerify, type JWTPayload } from 'jose'
import { WebSocket } from 'ws'
import type { GatehouseOptions } from '../../src/index.ts'
import { KeyRing } from '../../src/session/seal.ts'
import type { SessionData } from '../../src/session/session.ts'
import { hashSessionId, sessionSealPurpose } from '../../src/session/sessions.ts'
import type { SessionStore } from '../../src/session/store.ts'
import { MemoryStore } from '../../src/session/stores/memory.ts'
import type { BrowserJar, JarResponse } from '../helpers/browser-jar.ts'
import { CLIENT_ID, CLIENT_SECRET, CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import { instanceOptions, startInstance, testClock, type Instance } from '../helpers/instances.ts'
import { introspect, startUpstream, type Upstream } from '../helpers/upstream.ts'

// remoteApis[].resource (RFC 8707): each API gets a token whose audience is its own resource, got with
// the session's refresh token; never the general token. Real oidc-provider (resource indicators with
// JWT access tokens), real upstreams: a token is checked as a resource server would (signature, aud).

const COOKIE = '__Host-gatehouse'
const ORDERS = 'https://orders.example.test'
const BILLING = 'https://billing.example.test/v1'
/** Known to the IdP, but configured in gatehouse only after the first logins. */
const REPORTS = 'urn:example:reports'
const ORDERS_TTL_MS = 600_000
const GENERAL_TTL_MS = 3600_000

/** The IdP's resource servers; a fresh copy per IdP, since a test takes one away. */
const resourceServers = (): Record<string, { scope?: string; accessTokenTtlSec?: number }> => ({
  [ORDERS]: { scope: 'orders:read orders:write', accessTokenTtlSec: ORDERS_TTL_MS / 1000 },
  [BILLING]: { scope: 'billing:read' },
  [REPORTS]: {},
})

type Apis = NonNullable<GatehouseOptions['remoteApis']>

const tokenOf = (res: JarResponse): string =>
  ((JSON.parse(res.text) as { headers: Record<string, string> }).headers.authorization ?? '').replace(
    /^(Bearer|DPoP) /,
    '',
  )
const refreshGrants = (flow: Flow): number => flow.idp.grants.filter((g) => g === 'refresh_token').length
const tokensSeenBy = (upstream: Upstream): Set<string> =>
  new Set(upstream.received.map((r) => String(r.headers.authorization ?? '').replace(/^(Bearer|DPoP) /, '')))

/** The token's claims after checking it as a resource server would: the IdP's signature, issuer, and `aud` = `resource`. */
async function verifiedFor(flow: Flow, token: string, resource: string): Promise<JWTPayload> {
  const meta = (await (await fetch(`${flow.idp.issuer}/.well-known/openid-configuration`)).json()) as {
    jwks_uri: string
  }
  const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(meta.jwks_uri)), {
    issuer: flow.idp.issuer,
    audience: resource,
  })
  assert.deepEqual([payload.aud].flat(), [resource], 'the audience is this resource only')
  return payload
}

async function sessionData(store: SessionStore, flow: Flow, browser: BrowserJar): Promise<SessionData> {
  const record = await store.get(hashSessionId(browser.cookies.get(COOKIE)!), 0)
  assert.ok(record, 'the session record exists')
  return JSON.parse(new KeyRing(flow.keys).unseal(record.sealed, sessionSealPurpose(record))!) as SessionData
}

/** Rewrites the session's sealed data in the store, as if the login had produced it. */
async function rewriteSession(
  store: SessionStore,
  flow: Flow,
  browser: BrowserJar,
  change: (data: SessionData) => SessionData,
): Promise<void> {
  const record = (await store.get(hashSessionId(browser.cookies.get(COOKIE)!), 0))!
  const data = change(
    JSON.parse(new KeyRing(flow.keys).unseal(record.sealed, sessionSealPurpose(record))!) as SessionData,
  )
  const sealed = new KeyRing(flow.keys).seal(JSON.stringify(data), sessionSealPurpose(record))
  assert.equal(await store.set({ ...record, sealed, version: record.version + 1 }, record.version), true)
}

describe('remoteApis[].resource: audience-restricted tokens per API (real IdP, real upstreams)', () => {
  let orders: Upstream
  let billing: Upstream
  let general: Upstream
  let reports: Upstream
  let flow: Flow
  let apis: Apis
  const store = new MemoryStore()
  const clock = testClock()

  before(async () => {
    ;[orders, billing, general, reports] = await Promise.all([
      startUpstream(),
      startUpstream(),
      startUpstream(),
      startUpstream(),
    ])
    apis = [
      { path: '/api/orders', target: orders.url, token: 'user', resource: ORDERS, scopes: ['orders:read'] },
      { path: '/api/billing', target: billing.url, token: 'user', resource: BILLING },
      { path: '/api/general', target: general.url, token: 'user' },
      { path: '/client/orders', target: orders.url, token: 'client', resource: ORDERS, scopes: ['orders:read'] },
      {
        path: '/live/orders',
        target: orders.url,
        token: 'user',
        resource: ORDERS,
        scopes: ['orders:read'],
        websockets: true,
      },
    ]
    flow = await startFlow({
      runtime: { now: clock.now, store },
      idp: { resourceServers: resourceServers() },
      gatehouse: { remoteApis: apis },
    })
  })
  after(async () => {
    await flow.close()
    await Promise.all([orders, billing, general, reports].map((u) => u.close()))
  })

  async function loggedIn(): Promise<BrowserJar> {
    const browser = flow.browser()
    assert.equal((await flow.login(browser)).status, 302)
    return browser
  }

  async function call(browser: BrowserJar, path: string): Promise<string> {
    const res = await browser.get(`${flow.origin}${path}`, CSRF)
    assert.equal(res.status, 200, res.text)
    return tokenOf(res)
  }

  test("the authorization request names every resource once and asks for the APIs' scopes on top of oidc.scopes", async () => {
    const start = await flow.browser().get(`${flow.origin}/bff/login`)
    const authorize = new URL(start.headers.get('location')!)
    assert.deepEqual(authorize.searchParams.getAll('resource'), [ORDERS, BILLING])
    assert.deepEqual(authorize.searchParams.get('scope')!.split(' '), [
      'openid',
      'profile',
      'email',
      'offline_access',
      'orders:read',
    ])
  })

  test("two APIs with different resources each get a token whose aud is only their own resource, never the other's or the general token", async () => {
    const browser = await loggedIn()
    const ordersToken = await call(browser, '/api/orders/echo')
    const billingToken = await call(browser, '/api/billing/echo')
    const ordersClaims = await verifiedFor(flow, ordersToken, ORDERS)
    assert.equal(ordersClaims.scope, 'orders:read', 'only the scope the API asks for')
    assert.equal(ordersClaims.sub, 'alice-0001')
    assert.equal(ordersClaims.client_id, CLIENT_ID)
    const billingClaims = await verifiedFor(flow, billingToken, BILLING)
    assert.equal(billingClaims.scope, undefined, 'no scopes configured: none asked for, none granted')
    await assert.rejects(
      jwtVerify(ordersToken, createRemoteJWKSet(new URL(`${flow.idp.issuer}/jwks`)), { audience: BILLING }),
      'the orders token is no good at billing',
    )

    const data = await sessionData(store, flow, browser)
    const general = data.tokens.accessToken!
    assert.ok(![ordersToken, billingToken].includes(general))
    for (const [upstream, own] of [
      [orders, ordersToken],
      [billing, billingToken],
    ] as const) {
      const seen = tokensSeenBy(upstream)
      assert.ok(seen.has(own))
      assert.ok(!seen.has(general), 'a resource API never receives the general token')
    }
    assert.ok(!tokensSeenBy(orders).has(billingToken), 'orders never receives the billing token')
    assert.ok(!tokensSeenBy(billing).has(ordersToken), 'billing never receives the orders token')
  })

  test("an API without resource still gets the session's general token, which the IdP accepts", async () => {
    const browser = await loggedIn()
    await call(browser, '/api/orders/echo')
    const token = await call(browser, '/api/general/echo')
    const data = await sessionData(store, flow, browser)
    assert.equal(token, data.tokens.accessToken)
    const info = await introspect(flow.idp.issuer, token, CLIENT_ID, CLIENT_SECRET)
    assert.equal(info.active, true)
    assert.equal(info.sub, 'alice-0001')
    assert.ok(!Object.values(data.resourceTokens ?? {}).some((t) => t.accessToken === token))
  })

  test('a resource token is kept in the session and reused, and replaced with one grant when it comes within the skew of its own expiry', async () => {
    const browser = await loggedIn()
    const before = refreshGrants(flow)
    const first = await call(browser, '/api/orders/echo')
    assert.equal(refreshGrants(flow), before + 1, 'one refresh-token grant for the resource')
    const stored = (await sessionData(store, flow, browser)).resourceTokens ?? {}
    assert.deepEqual(
      Object.values(stored).map((t) => t.accessToken),
      [first],
      'kept sealed in the session',
    )
    assert.ok(
      Object.values(stored)[0]!.expiresAt! <= clock.now() + ORDERS_TTL_MS,
      "with the resource token's own expiry",
    )
    assert.equal(await call(browser, '/api/orders/echo'), first, 'reused')
    assert.equal(refreshGrants(flow), before + 1, 'no second grant')

    // 30 s before the orders token expires (inside the 60 s skew); the general token is far from expiry.
    clock.advance(ORDERS_TTL_MS - 30_000)
    const second = await call(browser, '/api/orders/echo')
    assert.notEqual(second, first)
    await verifiedFor(flow, second, ORDERS)
    assert.equal(refreshGrants(flow), before + 2, 'one grant for the new resource token')
    assert.equal(await call(browser, '/api/orders/echo'), second)
    await call(browser, '/api/general/echo')
    assert.equal(refreshGrants(flow), before + 2, 'the general token was not refreshed with it')
  })

  test('refresh-token rotation: every resource grant stores the rotated refresh token, and the general token refreshes with it afterwards', async () => {
    const browser = await loggedIn()
    const rt0 = (await sessionData(store, flow, browser)).tokens.refreshToken!
    await call(browser, '/api/orders/echo')
    const rt1 = (await sessionData(store, flow, browser)).tokens.refreshToken!
    assert.notEqual(rt1, rt0, 'the orders grant rotated the refresh token, and the new one is stored')
    await call(browser, '/api/billing/echo')
    const rt2 = (await sessionData(store, flow, browser)).tokens.refreshToken!
    assert.notEqual(rt2, rt1)
    assert.equal(
      (await introspect(flow.idp.issuer, rt0, CLIENT_ID, CLIENT_SECRET)).active,
      false,
      'the spent refresh token is dead',
    )
    assert.equal((await introspect(flow.idp.issuer, rt2, CLIENT_ID, CLIENT_SECRET)).active, true)

    const oldGeneral = (await sessionData(store, flow, browser)).tokens.accessToken
    clock.advance(GENERAL_TTL_MS + 60_000)
    const fresh = await call(browser, '/api/general/echo')
    assert.notEqual(fresh, oldGeneral, 'the general token refreshed with the rotated refresh token')
    assert.equal((await introspect(flow.idp.issuer, fresh, CLIENT_ID, CLIENT_SECRET)).active, true)
    // And the resource tokens renew after that, with the refresh token the general refresh rotated.
    await verifiedFor(flow, await call(browser, '/api/orders/echo'), ORDERS)
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200, 'the session is alive')
  })

  test('concurrent calls make one grant per resource, also mixed with a general refresh: all answer 200 and the grant is never revoked for reuse', async () => {
    const browser = await loggedIn()
    await call(browser, '/api/general/echo')
    const before = refreshGrants(flow)
    const ordersCalls = Array.from({ length: 10 }, (_, i) => browser.get(`${flow.origin}/api/orders/echo?n=${i}`, CSRF))
    const answers = await Promise.all(ordersCalls)
    assert.deepEqual(
      answers.map((r) => r.status),
      Array(10).fill(200),
    )
    assert.equal(new Set(answers.map(tokenOf)).size, 1, 'every call carried the same orders token')
    assert.equal(refreshGrants(flow), before + 1, 'exactly one grant for 10 concurrent calls')

    // Past every expiry: the general token and both resource tokens renew at once, each grant
    // spending the refresh token the previous one rotated.
    clock.advance(GENERAL_TTL_MS + 60_000)
    const paths = ['/api/orders/echo', '/api/billing/echo', '/api/general/echo']
    const mixed = await Promise.all(
      Array.from({ length: 18 }, (_, i) => browser.get(`${flow.origin}${paths[i % 3]}?m=${i}`, CSRF)),
    )
    assert.deepEqual(
      mixed.map((r) => r.status),
      Array(18).fill(200),
      mixed.find((r) => r.status !== 200)?.text,
    )
    assert.equal(refreshGrants(flow), before + 4, 'one grant each for orders, billing and the general token')
    for (const [i, resource] of [
      [0, ORDERS],
      [1, BILLING],
    ] as const) {
      const tokens = new Set(mixed.filter((_, n) => n % 3 === i).map(tokenOf))
      assert.equal(tokens.size, 1)
      await verifiedFor(flow, [...tokens][0]!, resource)
    }
    const rt = (await sessionData(store, flow, browser)).tokens.refreshToken!
    assert.equal(
      (await introspect(flow.idp.issuer, rt, CLIENT_ID, CLIENT_SECRET)).active,
      true,
      'the grant is intact: no refresh token was used twice',
    )
  })

  test("an API configured after the session's login: 403 resource_refused without asking the IdP, the upstream is never called, the session is kept; a new login covers it", async () => {
    const browser = await loggedIn()
    const withReports: Apis = [...apis, { path: '/api/reports', target: reports.url, token: 'user', resource: REPORTS }]
    await flow.restart({ remoteApis: withReports })
    try {
      const grants = refreshGrants(flow)
      const res = await browser.get(`${flow.origin}/api/reports/echo`, CSRF)
      assert.equal(res.status, 403, res.text)
      assert.match(res.headers.get('content-type')!, /^application\/problem\+json/)
      const problem = JSON.parse(res.text) as { code: string; detail: string }
      assert.equal(problem.code, 'resource_refused')
      assert.match(problem.detail, /log in again/)
      assert.equal(reports.received.length, 0, 'the upstream was never called')
      assert.equal(refreshGrants(flow), grants, 'no grant that the IdP would refuse (and spend the refresh token on)')
      assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200, 'the session is kept')
      await verifiedFor(flow, await call(browser, '/api/orders/echo'), ORDERS)

      // A login under the new configuration asks for the resource too: then the API gets its token.
      const fresh = await loggedIn()
      await verifiedFor(flow, await call(fresh, '/api/reports/echo'), REPORTS)
      assert.equal(reports.received.length, 1)
    } finally {
      await flow.restart()
    }
  })

  test('a session without a refresh token: 403 resource_refused for a resource API, the upstream is never called, the general API still works', async () => {
    const browser = await loggedIn()
    await rewriteSession(store, flow, browser, (data) => ({
      ...data,
      tokens: { ...data.tokens, refreshToken: undefined },
    }))
    const seenBefore = billing.received.length
    const res = await browser.get(`${flow.origin}/api/billing/echo`, CSRF)
    assert.equal(res.status, 403, res.text)
    assert.equal(JSON.parse(res.text).code, 'resource_refused')
    assert.equal(billing.received.length, seenBefore, 'the upstream was never called')
    await call(browser, '/api/general/echo')
  })

  test('a session that recorded no resources (started before gatehouse recorded them) counts as naming none: 403 resource_refused, no grant', async () => {
    const browser = await loggedIn()
    await rewriteSession(store, flow, browser, ({ resources: _named, ...data }) => data)
    const grants = refreshGrants(flow)
    const seenBefore = orders.received.length
    const res = await browser.get(`${flow.origin}/api/orders/echo`, CSRF)
    assert.equal(res.status, 403, res.text)
    assert.match((JSON.parse(res.text) as { detail: string }).detail, /log in again/)
    assert.equal(refreshGrants(flow), grants)
    assert.equal(orders.received.length, seenBefore)
  })

  test("a WebSocket to an API with resource carries the session's token for that resource", async () => {
    const browser = await loggedIn()
    const ws = new WebSocket(`${flow.origin.replace(/^http/, 'ws')}/live/orders/ws`, {
      headers: { cookie: browser.cookieHeader(), origin: flow.origin },
    })
    try {
      const first = await new Promise<string>((resolve, reject) => {
        ws.once('message', (data: Buffer) => resolve(data.toString('utf8')))
        ws.once('error', reject)
        ws.once('unexpected-response', (_req, res) => reject(new Error(`handshake refused with ${res.statusCode}`)))
      })
      const { authorization } = JSON.parse(first) as { authorization: string }
      const token = authorization.replace(/^Bearer /, '')
      await verifiedFor(flow, token, ORDERS)
      assert.equal(token, await call(browser, '/api/orders/echo'), 'the same token the HTTP API gets')
    } finally {
      ws.terminate()
    }
  })

  test('token "client" with a resource gets a client-credentials token whose aud is that resource, cached per resource', async () => {
    const grants = () => flow.idp.grants.filter((g) => g === 'client_credentials').length
    const before = grants()
    const anonymous = flow.browser()
    const first = await call(anonymous, '/client/orders/echo')
    assert.equal(await call(anonymous, '/client/orders/echo'), first)
    assert.equal(grants(), before + 1)
    const claims = await verifiedFor(flow, first, ORDERS)
    assert.equal(claims.client_id, CLIENT_ID)
    assert.equal(claims.sub, CLIENT_ID, 'a token of the client itself, not of a user')
    assert.equal(claims.scope, 'orders:read')
  })
})

describe('remoteApis[].resource with oidc.dpop', () => {
  let upstream: Upstream
  let flow: Flow
  const store = new MemoryStore()

  before(async () => {
    upstream = await startUpstream()
    flow = await startFlow({
      oidc: { dpop: true },
      runtime: { store },
      idp: { resourceServers: resourceServers() },
      gatehouse: {
        remoteApis: [{ path: '/api/orders', target: `${upstream.url}/base`, token: 'user', resource: ORDERS }],
      },
    })
  })
  after(async () => {
    await flow.close()
    await upstream.close()
  })

  test("the resource token is DPoP-bound to the session's key (cnf.jkt) and sent with a proof for the API's URL", async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const res = await browser.get(`${flow.origin}/api/orders/echo`, CSRF)
    assert.equal(res.status, 200, res.text)
    const request = upstream.received.at(-1)!
    const token = /^DPoP (\S+)$/.exec(String(request.headers.authorization))?.[1]
    assert.ok(token, 'the DPoP scheme')
    const claims = await verifiedFor(flow, token, ORDERS)
    const { payload, protectedHeader } = await jwtVerify(String(request.headers.dpop), EmbeddedJWK, { typ: 'dpop+jwt' })
    assert.equal(payload.htu, `${upstream.url}/base/echo`)
    assert.equal(payload.ath, createHash('sha256').update(token).digest('base64url'))
    const thumbprint = await calculateJwkThumbprint(protectedHeader.jwk!)
    assert.equal((claims.cnf as { jkt?: string }).jkt, thumbprint, 'bound to the key whose proof came with it')
    const data = await sessionData(store, flow, browser)
    assert.equal(await calculateJwkThumbprint(data.dpopKey!), thumbprint, "the session's own key")
  })
})

describe('remoteApis[].resource with pushed authorization requests', () => {
  let upstream: Upstream
  let flow: Flow

  before(async () => {
    upstream = await startUpstream()
    flow = await startFlow({
      oidc: { pushedAuthorizationRequests: true },
      idp: { resourceServers: resourceServers() },
      gatehouse: {
        remoteApis: [
          { path: '/api/orders', target: upstream.url, token: 'user', resource: ORDERS, scopes: ['orders:read'] },
          { path: '/api/billing', target: upstream.url, token: 'user', resource: BILLING, scopes: ['billing:read'] },
        ],
      },
    })
  })
  after(async () => {
    await flow.close()
    await upstream.close()
  })

  test('the pushed request names both resources and their scopes: each API gets its token', async () => {
    const browser = flow.browser()
    const start = await browser.get(`${flow.origin}/bff/login`)
    const authorize = new URL(start.headers.get('location')!)
    assert.ok(authorize.searchParams.has('request_uri'), 'the browser carries only a request_uri')
    assert.ok(!authorize.searchParams.has('resource'))
    await flow.login(browser)
    for (const [path, resource, scope] of [
      ['/api/orders/echo', ORDERS, 'orders:read'],
      ['/api/billing/echo', BILLING, 'billing:read'],
    ] as const) {
      const res = await browser.get(`${flow.origin}${path}`, CSRF)
      assert.equal(res.status, 200, res.text)
      assert.equal((await verifiedFor(flow, tokenOf(res), resource)).scope, scope)
    }
  })
})

describe('remoteApis[].resource refused by the IdP at the token endpoint', () => {
  let billing: Upstream
  let general: Upstream
  let flow: Flow
  const servers = resourceServers()

  before(async () => {
    ;[billing, general] = await Promise.all([startUpstream(), startUpstream()])
    flow = await startFlow({
      // Without rotation: oidc-provider rotates before it checks the resource, spending the refresh token of a refused request.
      idp: { resourceServers: servers, rotateRefreshTokens: false },
      gatehouse: {
        remoteApis: [
          { path: '/api/billing', target: billing.url, token: 'user', resource: BILLING },
          { path: '/api/general', target: general.url, token: 'user' },
        ],
      },
    })
  })
  after(async () => {
    await flow.close()
    await Promise.all([billing.close(), general.close()])
  })

  test('invalid_target from the IdP: 403 resource_refused naming it, the upstream is never called, no general token as a fallback, the session is kept', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    // The IdP stops serving the resource after the login asked for it.
    delete servers[BILLING]
    const res = await browser.get(`${flow.origin}/api/billing/echo`, CSRF)
    assert.equal(res.status, 403, res.text)
    assert.match(res.headers.get('content-type')!, /^application\/problem\+json/)
    const problem = JSON.parse(res.text) as { code: string; detail: string }
    assert.equal(problem.code, 'resource_refused')
    assert.match(problem.detail, /invalid_target/)
    assert.equal(billing.received.length, 0, 'the upstream was never called, with no token at all')
    assert.equal(flow.idp.grants.filter((g) => g === 'refresh_token').length, 0, 'the refused request issued nothing')
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200, 'the session is kept')
    const generalRes = await browser.get(`${flow.origin}/api/general/echo`, CSRF)
    assert.equal(generalRes.status, 200, 'the general API still works')
    assert.equal(billing.received.length, 0)
  })
})

describe('remoteApis[].resource unknown to the IdP', () => {
  let flow: Flow

  before(async () => {
    flow = await startFlow({
      idp: { resourceServers: resourceServers() },
      gatehouse: {
        remoteApis: [
          {
            path: '/api/unknown',
            target: 'http://127.0.0.1:9',
            token: 'user',
            resource: 'https://unknown.example.test',
          },
        ],
      },
    })
  })
  after(() => flow.close())

  test('the login fails with 400 idp_error naming invalid_target and starts no session', async () => {
    const browser = flow.browser()
    const res = await browser.follow(await browser.get(`${flow.origin}/bff/login`))
    assert.equal(res.status, 400, res.text)
    assert.ok(
      res.url.startsWith(`${flow.origin}/signin-oidc?`),
      `answered by gatehouse's callback, not the IdP (${res.url})`,
    )
    assert.match(res.text, /The identity provider refused the login/)
    assert.match(res.text, /invalid_target/)
    assert.equal(browser.cookies.get(COOKIE), undefined)
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 401)
  })
})

describe('remoteApis[].resource in cookie mode', () => {
  let orders: Upstream
  let general: Upstream
  let flow: Flow
  const clock = testClock()

  before(async () => {
    ;[orders, general] = await Promise.all([startUpstream(), startUpstream()])
    flow = await startFlow({
      runtime: { now: clock.now },
      idp: { resourceServers: resourceServers() },
      gatehouse: {
        session: { mode: 'cookie' },
        remoteApis: [
          { path: '/api/orders', target: orders.url, token: 'user', resource: ORDERS, scopes: ['orders:read'] },
          { path: '/api/billing', target: orders.url, token: 'user', resource: BILLING },
          { path: '/api/general', target: general.url, token: 'user' },
        ],
      },
    })
  })
  after(async () => {
    await flow.close()
    await Promise.all([orders.close(), general.close()])
  })

  test('concurrent general and resource refreshes of one session run one after another: one grant each, rotation intact', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const before = refreshGrants(flow)
    const paths = ['/api/orders/echo', '/api/billing/echo', '/api/general/echo']
    clock.advance(GENERAL_TTL_MS + 60_000)
    const answers = await Promise.all(
      Array.from({ length: 12 }, (_, i) => browser.get(`${flow.origin}${paths[i % 3]}?n=${i}`, CSRF)),
    )
    assert.deepEqual(
      answers.map((r) => r.status),
      Array(12).fill(200),
      answers.find((r) => r.status !== 200)?.text,
    )
    assert.equal(refreshGrants(flow), before + 3, 'one grant each for orders, billing and the general token')
    await verifiedFor(flow, tokenOf(answers[0]!), ORDERS)
    await verifiedFor(flow, tokenOf(answers[1]!), BILLING)
    // The cookie the browser now holds carries the tokens: later calls need no grant.
    assert.equal(tokenOf(await browser.get(`${flow.origin}/api/orders/echo`, CSRF)), tokenOf(answers[0]!))
    assert.equal(refreshGrants(flow), before + 3)
  })
})

describe('remoteApis[].resource across two gatehouse instances sharing one SQLite store', () => {
  let dir: string
  let orders: Upstream
  let general: Upstream
  let flow: Flow
  let b: Instance
  const clock = testClock()

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gatehouse-resource-'))
    ;[orders, general] = await Promise.all([startUpstream(), startUpstream()])
    const shared: Partial<GatehouseOptions> = {
      session: { store: `sqlite:${join(dir, 'sessions.db')}` },
      remoteApis: [
        { path: '/api/orders', target: orders.url, token: 'user', resource: ORDERS, scopes: ['orders:read'] },
        { path: '/api/general', target: general.url, token: 'user' },
      ],
    }
    flow = await startFlow({
      runtime: { now: clock.now },
      idp: { resourceServers: resourceServers() },
      gatehouse: shared,
    })
    b = await startInstance(instanceOptions(flow, shared), { now: clock.now })
  })
  after(async () => {
    await b.close()
    await flow.close()
    await Promise.all([orders.close(), general.close()])
    rmSync(dir, { recursive: true, force: true })
  })

  test('concurrent resource and general calls on both instances make one grant per token in total, all with the same tokens', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const before = refreshGrants(flow)
    const targets = [
      `${flow.origin}/api/orders/echo`,
      `${b.origin}/api/orders/echo`,
      `${flow.origin}/api/general/echo`,
      `${b.origin}/api/general/echo`,
    ]
    const first = await Promise.all(Array.from({ length: 16 }, (_, i) => browser.get(`${targets[i % 2]}?n=${i}`, CSRF)))
    assert.deepEqual(
      first.map((r) => r.status),
      Array(16).fill(200),
    )
    assert.equal(new Set(first.map(tokenOf)).size, 1, 'both instances forwarded the same orders token')
    assert.equal(refreshGrants(flow), before + 1, 'one resource grant across both instances')

    clock.advance(GENERAL_TTL_MS + 60_000)
    const mixed = await Promise.all(Array.from({ length: 16 }, (_, i) => browser.get(`${targets[i % 4]}?m=${i}`, CSRF)))
    assert.deepEqual(
      mixed.map((r) => r.status),
      Array(16).fill(200),
      mixed.find((r) => r.status !== 200)?.text,
    )
    assert.equal(
      refreshGrants(flow),
      before + 3,
      'one more grant for orders and one for the general token, across both instances',
    )
    const ordersTokens = new Set(mixed.filter((_, i) => i % 4 < 2).map(tokenOf))
    assert.equal(ordersTokens.size, 1)
    await verifiedFor(flow, [...ordersTokens][0]!, ORDERS)
    assert.equal(new Set(mixed.filter((_, i) => i % 4 >= 2).map(tokenOf)).size, 1)
  })
})
