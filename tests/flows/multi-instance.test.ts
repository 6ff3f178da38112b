import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { importJWK, SignJWT, type JWTPayload } from 'jose'
import { openStore } from '../../src/session/stores/open-store.ts'
import type { JarResponse } from '../helpers/browser-jar.ts'
import { CLIENT_ID, CLIENT_SECRET, CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import {
  instanceOptions,
  startInstance,
  storeFixture,
  testClock,
  type Instance,
  type SharedStoreKind,
  type StoreFixture,
} from '../helpers/instances.ts'
import { introspect, startUpstream, type Upstream } from '../helpers/upstream.ts'

// SPEC §4: several instances behind a load balancer share the store and the key ring; a session revoked
// on one is refused by all at the next request. SPEC §5: one refresh per session, also across instances.
// Runs against real Redis and PostgreSQL servers; an unreachable one fails its describe (never skips).

const COOKIE = '__Host-gatehouse'
/** The embedded IdP's default access-token lifetime, and a clock offset past it. */
const ACCESS_TOKEN_TTL_MS = 3600_000
const PAST_EXPIRY_MS = ACCESS_TOKEN_TTL_MS + 60_000
const EVENT = { 'http://schemas.openid.net/event/backchannel-logout': {} }

type Claims = Array<{ type: string; value: unknown }>
const claim = (claims: Claims, type: string): unknown => claims.find((c) => c.type === type)?.value
const bearerOf = (res: JarResponse): string =>
  ((JSON.parse(res.text) as { headers: Record<string, string> }).headers.authorization ?? '').replace(/^Bearer /, '')
const refreshGrants = (grants: readonly string[]): number => grants.filter((g) => g === 'refresh_token').length
/** How long an instance may take to receive another's session-end notice before a test gives up (not a timing assertion). */
const NOTICE_WAIT_MS = 5_000
const clearsCookie = (res: JarResponse): boolean =>
  res.headers.getSetCookie().some((line) => line.startsWith(`${COOKIE}=;`) && /; Max-Age=0\b/.test(line))

for (const kind of [
  'redis',
  'postgres',
  'redis-cluster',
  'redis-sentinel',
] as const satisfies readonly SharedStoreKind[]) {
  describe(`two gatehouse instances sharing one ${kind} store`, () => {
    let store: StoreFixture
    let upstream: Upstream
    let flow: Flow
    /** Instance B: its own port and process-local state; replaced by B' in the restart test. */
    let b: Instance
    const clock = testClock()
    let shared: {
      session: { store: string; cacheTtl: string }
      remoteApis: Array<{ path: string; target: string; token: 'user' }>
    }
    let sign: (payload: JWTPayload) => Promise<string>

    /** A fresh browser (no cookie jar) that presents `cookie` by hand, as a load balancer would send it to any instance. */
    const withCookie = (origin: string, cookie: string, path = '/bff/user') =>
      flow.browser().get(`${origin}${path}`, { ...CSRF, cookie: `${COOKIE}=${cookie}` })

    /**
     * The first answer for `cookie` on `origin` that is not 200, polling briefly: the other instance
     * learns of an ending through the store's pub/sub, which is asynchronous (in practice the notice
     * is there before the next request; on a starved machine it may take a moment).
     */
    async function refusedOn(origin: string, cookie: string, path = '/bff/user'): Promise<JarResponse> {
      const deadline = Date.now() + NOTICE_WAIT_MS
      for (;;) {
        const res = await withCookie(origin, cookie, path)
        if (res.status !== 200 || Date.now() > deadline) return res
        await new Promise((resolve) => setTimeout(resolve, 25))
      }
    }

    async function loggedInOnA(username = 'alice'): Promise<{ cookie: string; claims: Claims }> {
      const browser = flow.browser()
      await flow.login(browser, { username })
      const cookie = browser.cookies.get(COOKIE)
      assert.ok(cookie, 'the login on A set the session cookie')
      const res = await withCookie(flow.origin, cookie)
      assert.equal(res.status, 200, res.text)
      return { cookie, claims: JSON.parse(res.text) as Claims }
    }

    before(async () => {
      store = await storeFixture(kind, 'gatehouse_mi')
      upstream = await startUpstream()
      shared = {
        // A session-read cache far longer than any test: an ended session refused on the other
        // instance was dropped by the store's pub/sub notice, not by the cache entry's age.
        session: { store: store.url(), cacheTtl: '60s' },
        remoteApis: [{ path: '/api/user', target: upstream.url, token: 'user' }],
      }
      // Instance A: its origin is the one registered at the IdP, so logins happen there.
      flow = await startFlow({ runtime: { now: clock.now }, gatehouse: shared })
      // Instance B: same keys, IdP client, store and publicOrigin; reached on its own port.
      b = await startInstance(instanceOptions(flow, shared), { now: clock.now })
      const jwk = flow.idp.signingKey as { kid: string }
      const key = await importJWK(flow.idp.signingKey, 'RS256')
      sign = (payload) =>
        new SignJWT(payload).setProtectedHeader({ alg: 'RS256', kid: jwk.kid, typ: 'logout+jwt' }).sign(key)
    })
    after(async () => {
      await b?.close()
      await flow?.close()
      await upstream?.close()
      await store?.cleanup()
    })

    test("a login on A works on B: /bff/user on B answers 200 with the same claims for A's cookie", async () => {
      const { cookie, claims } = await loggedInOnA()
      const onB = await withCookie(b.origin, cookie)
      assert.equal(onB.status, 200, onB.text)
      const claimsOnB = JSON.parse(onB.text) as Claims
      assert.equal(claim(claimsOnB, 'sub'), claim(claims, 'sub'))
      assert.equal(claim(claimsOnB, 'sid'), claim(claims, 'sid'))
      assert.equal(claim(claimsOnB, 'bff:logout_url'), claim(claims, 'bff:logout_url'))
      // A cookie nobody issued is refused on B as on A.
      assert.equal((await withCookie(b.origin, 'x'.repeat(43))).status, 401)
    })

    test("logout on A: the same cookie is refused (401) on B once the store's notice arrives, long before B's cached copy would expire, and B clears it", async () => {
      const { cookie, claims } = await loggedInOnA()
      assert.equal((await withCookie(b.origin, cookie)).status, 200, 'B knows the session before the logout')
      const logout = await flow
        .browser()
        .get(`${flow.origin}${claim(claims, 'bff:logout_url') as string}`, { cookie: `${COOKIE}=${cookie}` })
      assert.equal(logout.status, 302, logout.text)

      const onB = await refusedOn(b.origin, cookie)
      assert.equal(onB.status, 401, onB.text)
      assert.equal(JSON.parse(onB.text).code, 'session_required')
      assert.ok(clearsCookie(onB), 'B clears the dead cookie on that response')
      const api = await withCookie(b.origin, cookie, '/api/user/echo')
      assert.equal(api.status, 401, 'a remote API call on B is refused too')
      assert.equal((await withCookie(flow.origin, cookie)).status, 401)
    })

    test('a revocation by another process (the CLI: its own store connection, delete, publish) is refused on A and B once the notice arrives, though both hold a fresh cached copy', async () => {
      const { cookie } = await loggedInOnA('bob')
      // Both instances have read the session within session.cacheTtl: each holds an in-process copy.
      for (const origin of [flow.origin, b.origin])
        assert.equal((await withCookie(origin, cookie, '/api/user/echo')).status, 200)
      const cli = await openStore(store.url())
      try {
        assert.equal(await cli.deleteWhere({ sub: 'bob-0002' }), 1)
        await cli.publishEnded!({ filter: { sub: 'bob-0002' }, reason: 'revoked', origin: 'cli' })
      } finally {
        await cli.close()
      }
      for (const origin of [flow.origin, b.origin]) {
        const api = await refusedOn(origin, cookie, '/api/user/echo')
        assert.equal(api.status, 401, `${origin === b.origin ? 'B' : 'A'}: ${api.text}`)
      }
    })

    test('a new login in the same browser on A ends its previous session on B too, though B holds a fresh cached copy', async () => {
      const browser = flow.browser()
      await flow.login(browser, { username: 'alice' })
      const first = browser.cookies.get(COOKIE)!
      assert.equal((await withCookie(b.origin, first)).status, 200, 'B has read (and cached) the first session')
      await flow.login(browser, { username: 'alice', prompt: 'login' })
      const second = browser.cookies.get(COOKIE)!
      assert.notEqual(second, first, 'the login issued a new session id')
      const onB = await refusedOn(b.origin, first)
      assert.equal(onB.status, 401, onB.text)
      assert.equal((await withCookie(b.origin, second)).status, 200, 'the new session works on B')
    })

    test('a back-channel logout posted to A ends the session on B (401 there once the notice arrives, whatever its cached copy)', async () => {
      const { cookie, claims } = await loggedInOnA()
      const other = await loggedInOnA('bob')
      assert.equal((await withCookie(b.origin, cookie)).status, 200, 'B knows the session before the logout')
      const token = await sign({
        iss: flow.idp.issuer,
        aud: CLIENT_ID,
        iat: Math.floor(Date.now() / 1000),
        jti: randomUUID(),
        events: EVENT,
        sid: claim(claims, 'sid') as string,
      })
      const res = await fetch(`${flow.origin}/bff/backchannel`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ logout_token: token }),
      })
      assert.equal(res.status, 200, await res.clone().text())
      assert.deepEqual(await res.json(), { sessionsEnded: 1 })

      const onB = await refusedOn(b.origin, cookie)
      assert.equal(onB.status, 401, onB.text)
      assert.ok(clearsCookie(onB))
      assert.equal((await withCookie(flow.origin, cookie)).status, 401)
      assert.equal((await withCookie(b.origin, other.cookie)).status, 200, "another user's session is untouched")

      // The jti is remembered in the shared store: the same token replayed at B is refused.
      const replay = await fetch(`${b.origin}/bff/backchannel`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ logout_token: token }),
      })
      assert.equal(replay.status, 400)
      assert.match(await replay.text(), /already used/)
    })

    test("restart: with B closed and A restarted (no instance up for a moment), a new instance B' serves the session", async () => {
      const { cookie, claims } = await loggedInOnA()
      await b.close()
      await flow.restart()
      b = await startInstance(instanceOptions(flow, shared), { now: clock.now })
      const onB = await withCookie(b.origin, cookie)
      assert.equal(onB.status, 200, onB.text)
      assert.equal(claim(JSON.parse(onB.text) as Claims, 'sub'), claim(claims, 'sub'))
      assert.equal((await withCookie(flow.origin, cookie)).status, 200, 'and so does the restarted A')
    })

    test('refresh single flight across instances: after expiry, 10 concurrent calls on A and 10 on B make one refresh grant, all 200 with the same new token', async () => {
      const { cookie } = await loggedInOnA()
      const first = await withCookie(flow.origin, cookie, '/api/user/echo')
      assert.equal(first.status, 200, first.text)
      const old = bearerOf(first)
      assert.equal(
        bearerOf(await withCookie(b.origin, cookie, '/api/user/echo')),
        old,
        "before expiry both forward the login's token",
      )

      const grantsBefore = refreshGrants(flow.idp.grants)
      clock.advance(PAST_EXPIRY_MS)
      const answers = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          withCookie(i % 2 === 0 ? flow.origin : b.origin, cookie, `/api/user/echo?n=${i}`),
        ),
      )
      assert.deepEqual(
        answers.map((r) => r.status),
        Array(20).fill(200),
        answers.map((r) => r.text).find((t, i) => answers[i]!.status !== 200),
      )
      assert.equal(
        refreshGrants(flow.idp.grants),
        grantsBefore + 1,
        'exactly one refresh grant across both instances, although refresh tokens rotate',
      )
      const tokens = new Set(answers.map(bearerOf))
      assert.equal(tokens.size, 1, 'both instances forwarded the same refreshed token')
      const [fresh] = tokens
      assert.notEqual(fresh, old)
      assert.equal((await introspect(flow.idp.issuer, fresh!, CLIENT_ID, CLIENT_SECRET)).active, true)

      for (const origin of [flow.origin, b.origin])
        assert.equal(bearerOf(await withCookie(origin, cookie, '/api/user/echo')), fresh)
      assert.equal(
        refreshGrants(flow.idp.grants),
        grantsBefore + 1,
        'later calls on either instance use the stored token',
      )
    })
  })
}
