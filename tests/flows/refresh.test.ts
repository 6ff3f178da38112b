import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, afterEach, before, describe, test } from 'node:test'
import { pino } from 'pino'
import { createGatehouse, type Gatehouse } from '../../src/index.ts'
import { createLogger } from '../../src/log.ts'
import { KeyRing } from '../../src/session/seal.ts'
import type { SessionData } from '../../src/session/session.ts'
import { hashSessionId, sessionSealPurpose } from '../../src/session/sessions.ts'
import { MemoryStore } from '../../src/session/stores/memory.ts'
import type { BrowserJar, JarResponse } from '../helpers/browser-jar.ts'
import { CLIENT_ID, CLIENT_SECRET, CSRF, startFlow, stopIdp, storedTokens, type Flow } from '../helpers/flow.ts'
import { logLines } from '../helpers/log-lines.ts'
import { introspect, startUpstream, type Upstream } from '../helpers/upstream.ts'

const COOKIE = '__Host-gatehouse'
/** The embedded IdP's default access-token lifetime. */
const ACCESS_TOKEN_TTL_MS = 3600_000
const PAST_EXPIRY_MS = ACCESS_TOKEN_TTL_MS + 60_000

/** gatehouse's clock: real time plus an offset the tests move forward (the IdP keeps real time). */
function testClock(): { now: () => number; advance(ms: number): void } {
  let offset = 0
  return {
    now: () => Date.now() + offset,
    advance(ms) {
      offset += ms
    },
  }
}

const bearerOf = (res: JarResponse): string =>
  ((JSON.parse(res.text) as { headers: Record<string, string> }).headers.authorization ?? '').replace(/^Bearer /, '')
const refreshGrants = (grants: readonly string[]): number => grants.filter((g) => g === 'refresh_token').length

function clearsCookie(res: JarResponse, name: string): boolean {
  return res.headers.getSetCookie().some((line) => line.startsWith(`${name}=;`) && /; Max-Age=0\b/.test(line))
}

interface Endpoints {
  token_endpoint: string
  revocation_endpoint: string
}

async function endpointsOf(issuer: string): Promise<Endpoints> {
  const meta = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as Endpoints
  assert.ok(meta.token_endpoint && meta.revocation_endpoint)
  return meta
}

/** RFC 7009 revocation at the IdP, as the gatehouse client (what an admin or the IdP itself would do). */
async function revokeAtIdp(endpoints: Endpoints, token: string): Promise<void> {
  const res = await fetch(endpoints.revocation_endpoint, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ token, token_type_hint: 'refresh_token' }),
  })
  assert.equal(res.status, 200)
}

/**
 * Makes the IdP's token endpoint answer 500 with an OAuth `server_error` (an IdP whose own database
 * is down) until the returned function is called; the IdP's other endpoints keep working.
 */
function failTokenEndpoint(server: Server, tokenEndpoint: string): () => void {
  const path = new URL(tokenEndpoint).pathname
  const listeners = server.listeners('request') as Array<(req: IncomingMessage, res: ServerResponse) => void>
  server.removeAllListeners('request')
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (req.method === 'POST' && req.url?.split('?')[0] === path) {
      res.writeHead(500, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: 'server_error', error_description: 'the token store is unavailable' }))
      return
    }
    for (const listener of listeners) listener.call(server, req, res)
  })
  return () => {
    server.removeAllListeners('request')
    for (const listener of listeners) server.on('request', listener)
  }
}

/** The log lines written after `mark` (a count of lines), once pino has written them all. */
async function loggedSince(logs: ReturnType<typeof logLines>, mark: number): Promise<Array<Record<string, unknown>>> {
  await new Promise((resolve) => setImmediate(resolve))
  return logs.entries().slice(mark)
}

/**
 * Holds gatehouse's next refresh-token request (gatehouse runs in this process and reaches the IdP
 * through the global fetch) at a chosen point, so a test can act while the refresh is in flight —
 * deterministically, without relying on how long anything takes.
 *   'before': the request has left gatehouse but the IdP has not seen it yet.
 *   'after':  the IdP has answered (new tokens issued) but gatehouse has not read the answer yet.
 */
function holdNextRefresh(tokenEndpoint: string, at: 'before' | 'after') {
  const original = globalThis.fetch
  let release!: () => void
  const gate = new Promise<void>((resolve) => (release = resolve))
  let sent!: () => void
  const started = new Promise<void>((resolve) => (sent = resolve))
  let answer!: (body: Record<string, unknown>) => void
  const answered = new Promise<Record<string, unknown>>((resolve) => (answer = resolve))
  let armed = true
  globalThis.fetch = async (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url
    const body = init?.body
    if (
      !armed ||
      url !== tokenEndpoint ||
      !(body instanceof URLSearchParams) ||
      body.get('grant_type') !== 'refresh_token'
    )
      return original(input, init)
    armed = false
    sent()
    if (at === 'before') await gate
    const res = await original(input, init)
    answer((await res.clone().json()) as Record<string, unknown>)
    if (at === 'after') await gate
    return res
  }
  return {
    /** Resolves once gatehouse has sent the refresh request. */
    started,
    /** The IdP's JSON answer to the held refresh. */
    answered,
    release: () => release(),
    restore() {
      release()
      globalThis.fetch = original
    },
  }
}

describe('access-token refresh (one gatehouse, real IdP, real upstream)', () => {
  let upstream: Upstream
  let flow: Flow
  let endpoints: Endpoints
  const store = new MemoryStore()
  const clock = testClock()
  const logs = logLines()

  before(async () => {
    upstream = await startUpstream()
    flow = await startFlow({
      runtime: { now: clock.now, store, logger: createLogger('info', logs.sink) },
      gatehouse: {
        remoteApis: [
          { path: '/api/user', target: upstream.url, token: 'user' },
          { path: '/api/client', target: upstream.url, token: 'client' },
        ],
      },
      app: (gatehouse) =>
        gatehouse.protect(async (req, res) => {
          const token = await gatehouse.getAccessToken(req)
          res.setHeader('content-type', 'application/json')
          res.end(JSON.stringify({ headers: { authorization: `Bearer ${token}` } }))
        }),
    })
    endpoints = await endpointsOf(flow.idp.issuer)
  })
  after(async () => {
    await flow.close()
    await upstream.close()
  })

  /** A logged-in browser whose first API call went through; returns the access token that call carried. */
  async function loggedIn(): Promise<{ browser: BrowserJar; cookie: string; token: string }> {
    const browser = flow.browser()
    await flow.login(browser)
    const res = await browser.get(`${flow.origin}/api/user/echo`, CSRF)
    assert.equal(res.status, 200, res.text)
    return { browser, cookie: browser.cookies.get(COOKIE)!, token: bearerOf(res) }
  }

  const tokensOf = (cookie: string) => storedTokens(store, flow.keys, cookie)

  test('an access token inside the refresh skew is refreshed once before forwarding, and the new tokens are kept for later calls', async () => {
    const { browser, cookie, token: old } = await loggedIn()
    const oldStored = (await tokensOf(cookie))!
    const grantsBefore = refreshGrants(flow.idp.grants)
    // 30 s before expiry: still valid, but within the default 60 s skew.
    clock.advance(ACCESS_TOKEN_TTL_MS - 30_000)

    const res = await browser.get(`${flow.origin}/api/user/echo`, CSRF)
    assert.equal(res.status, 200, res.text)
    assert.equal(refreshGrants(flow.idp.grants), grantsBefore + 1, 'exactly one refresh grant at the IdP')
    const fresh = bearerOf(res)
    assert.notEqual(fresh, old, 'the upstream got a new access token')
    const info = await introspect(flow.idp.issuer, fresh, CLIENT_ID, CLIENT_SECRET)
    assert.equal(info.active, true)
    assert.equal(info.sub, 'alice-0001')

    const stored = (await tokensOf(cookie))!
    assert.equal(stored.accessToken, fresh, 'the new access token is stored')
    assert.notEqual(stored.refreshToken, oldStored.refreshToken, 'the rotated refresh token is stored')
    assert.ok(stored.accessTokenExpiresAt! > clock.now() + 60_000, 'the stored expiry is the new one')

    const again = await browser.get(`${flow.origin}/api/user/echo`, CSRF)
    assert.equal(again.status, 200)
    assert.equal(bearerOf(again), fresh)
    assert.equal(refreshGrants(flow.idp.grants), grantsBefore + 1, 'the second call made no further grant')
  })

  test('20 concurrent API calls of one session after expiry make one refresh grant and all carry the same new token', async () => {
    const { browser, token: old } = await loggedIn()
    const grantsBefore = refreshGrants(flow.idp.grants)
    clock.advance(PAST_EXPIRY_MS)

    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => browser.get(`${flow.origin}/api/user/echo?n=${i}`, CSRF)),
    )
    assert.deepEqual(
      answers.map((r) => r.status),
      Array(20).fill(200),
    )
    assert.equal(
      refreshGrants(flow.idp.grants),
      grantsBefore + 1,
      'exactly one refresh grant, although refresh tokens rotate',
    )
    const tokens = new Set(answers.map(bearerOf))
    assert.equal(tokens.size, 1, 'every call carried the same token')
    const [fresh] = tokens
    assert.notEqual(fresh, old)
    assert.equal((await introspect(flow.idp.issuer, fresh!, CLIENT_ID, CLIENT_SECRET)).active, true)
  })

  test('a refresh token revoked at the IdP ends the session at the next refresh: 401 session_ended, cookie cleared, /bff/user 401', async () => {
    const { browser, cookie } = await loggedIn()
    const { refreshToken } = (await tokensOf(cookie))!
    assert.ok(refreshToken)
    await revokeAtIdp(endpoints, refreshToken)
    clock.advance(PAST_EXPIRY_MS)

    const res = await browser.get(`${flow.origin}/api/user/echo`, CSRF)
    assert.equal(res.status, 401, res.text)
    assert.match(res.headers.get('content-type')!, /^application\/problem\+json/)
    assert.equal(JSON.parse(res.text).code, 'session_ended')
    assert.ok(clearsCookie(res, COOKIE), 'the session cookie is cleared')
    assert.equal(await tokensOf(cookie), undefined, 'the session record is gone')

    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 401)
    const replay = await flow.browser().get(`${flow.origin}/bff/user`, { ...CSRF, cookie: `${COOKIE}=${cookie}` })
    assert.equal(replay.status, 401, 'the old cookie replayed by hand is refused too')
  })

  test('an unreachable IdP at refresh answers 502 problem+json and keeps the session, which refreshes once the IdP is back', async () => {
    const { browser, cookie, token: old } = await loggedIn()
    const storedBefore = (await tokensOf(cookie))!
    clock.advance(PAST_EXPIRY_MS)
    const { port } = flow.idp.server.address() as AddressInfo
    flow.idp.server.closeAllConnections()
    await new Promise<void>((resolve, reject) => flow.idp.server.close((err) => (err ? reject(err) : resolve())))
    try {
      const res = await browser.get(`${flow.origin}/api/user/echo`, CSRF)
      assert.equal(res.status, 502, res.text)
      assert.match(res.headers.get('content-type')!, /^application\/problem\+json/)
      assert.equal(JSON.parse(res.text).code, 'idp_unavailable')
      assert.equal(clearsCookie(res, COOKIE), false, 'the session cookie is kept')
      assert.deepEqual(await tokensOf(cookie), storedBefore, 'the session and its tokens are unchanged in the store')
    } finally {
      // Same port, same provider and token storage: the IdP comes back as it was.
      await new Promise<void>((resolve, reject) =>
        flow.idp.server.once('error', reject).listen(port, '127.0.0.1', () => resolve()),
      )
    }
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200)
    const res = await browser.get(`${flow.origin}/api/user/echo`, CSRF)
    assert.equal(res.status, 200, res.text)
    assert.notEqual(bearerOf(res), old, 'with the IdP back, the same session refreshed')
  })

  test('an access token inside the skew whose refresh finds the IdP unreachable is still sent: 200, the session keeps its tokens; calls in the next 5 s use it without retrying, later ones retry until the IdP is back', async () => {
    const { browser, cookie, token: old } = await loggedIn()
    const storedBefore = (await tokensOf(cookie))!
    const grantsBefore = refreshGrants(flow.idp.grants)
    // 30 s before expiry: inside the default 60 s skew, still valid.
    clock.advance(ACCESS_TOKEN_TTL_MS - 30_000)
    const mark = logs.lines.length
    const restartIdp = await stopIdp(flow)
    try {
      for (const attempt of [1, 2, 3]) {
        // The third call comes after the 5 s pause that follows a failed refresh: it tries again.
        if (attempt === 3) clock.advance(6_000)
        const res = await browser.get(`${flow.origin}/api/user/echo?attempt=${attempt}`, CSRF)
        assert.equal(res.status, 200, res.text)
        assert.equal(bearerOf(res), old, 'the upstream got the current access token')
        assert.equal(upstream.received.at(-1)!.headers.authorization, `Bearer ${old}`)
        assert.equal(clearsCookie(res, COOKIE), false)
        assert.deepEqual(await tokensOf(cookie), storedBefore, 'the session and its tokens are unchanged in the store')
      }
    } finally {
      await restartIdp()
    }
    const entries = await loggedSince(logs, mark)
    const failed = entries.filter((e) => e.event === 'refresh_failed')
    assert.equal(
      failed.length,
      2,
      'the first and the third call tried the refresh; the second, within the pause, did not',
    )
    for (const e of failed) {
      assert.equal(e.cause, 'idp_unavailable')
      assert.match(String(e.err), /ECONNREFUSED/)
    }
    const deferred = entries.filter((e) => e.event === 'refresh_deferred')
    assert.equal(deferred.length, 2, 'one refresh_deferred line per failed refresh')
    for (const e of deferred) {
      assert.equal(e.level, 40, 'logged as a warning')
      assert.equal(e.cause, 'idp_unavailable')
      assert.ok(
        typeof e.expiresInSec === 'number' && e.expiresInSec > 0 && e.expiresInSec <= 30,
        `expiresInSec ${String(e.expiresInSec)}`,
      )
    }
    assert.ok(
      !entries.some((e) =>
        [storedBefore.accessToken, storedBefore.refreshToken].some((t) => JSON.stringify(e).includes(t!)),
      ),
      'no token in the lines',
    )

    clock.advance(6_000)
    const res = await browser.get(`${flow.origin}/api/user/echo`, CSRF)
    assert.equal(res.status, 200, res.text)
    const fresh = bearerOf(res)
    assert.notEqual(fresh, old, 'with the IdP back, the next call refreshed')
    assert.equal(refreshGrants(flow.idp.grants), grantsBefore + 1)
    assert.equal((await tokensOf(cookie))!.accessToken, fresh)
  })

  test('an access token inside the skew whose refresh gets a 500 from the IdP is still sent, and the next call after the IdP recovers refreshes it', async () => {
    const { browser, cookie, token: old } = await loggedIn()
    const storedBefore = (await tokensOf(cookie))!
    clock.advance(ACCESS_TOKEN_TTL_MS - 30_000)
    const mark = logs.lines.length
    const recover = failTokenEndpoint(flow.idp.server, endpoints.token_endpoint)
    try {
      const res = await browser.get(`${flow.origin}/api/user/echo`, CSRF)
      assert.equal(res.status, 200, res.text)
      assert.equal(bearerOf(res), old, 'the upstream got the current access token')
      assert.deepEqual(await tokensOf(cookie), storedBefore, 'the session and its tokens are unchanged in the store')
    } finally {
      recover()
    }
    const entries = await loggedSince(logs, mark)
    const failed = entries.find((e) => e.event === 'refresh_failed')
    assert.equal(failed?.cause, 'idp_unavailable')
    assert.match(String(failed?.err), /HTTP 500/)
    assert.equal(entries.find((e) => e.event === 'refresh_deferred')?.cause, 'idp_unavailable')

    const paused = await browser.get(`${flow.origin}/api/user/echo`, CSRF)
    assert.equal(bearerOf(paused), old, 'within 5 s of the failure the current token is used without a new attempt')
    clock.advance(6_000)
    const res = await browser.get(`${flow.origin}/api/user/echo`, CSRF)
    assert.equal(res.status, 200, res.text)
    assert.notEqual(bearerOf(res), old, 'the IdP answers again: the next call refreshed')
  })

  test('a refresh token revoked at the IdP ends the session also while the access token is still valid inside the skew: 401 session_ended, the token is not used', async () => {
    const { browser, cookie, token: old } = await loggedIn()
    const { refreshToken } = (await tokensOf(cookie))!
    await revokeAtIdp(endpoints, refreshToken!)
    clock.advance(ACCESS_TOKEN_TTL_MS - 30_000)
    const mark = logs.lines.length
    const seenBefore = upstream.received.length

    const res = await browser.get(`${flow.origin}/api/user/echo`, CSRF)
    assert.equal(res.status, 401, res.text)
    assert.equal(JSON.parse(res.text).code, 'session_ended')
    assert.ok(clearsCookie(res, COOKIE), 'the session cookie is cleared')
    assert.equal(await tokensOf(cookie), undefined, 'the session record is gone')
    assert.ok(
      !upstream.received.slice(seenBefore).some((r) => r.headers.authorization === `Bearer ${old}`),
      'the upstream was not called with the old token',
    )
    const entries = await loggedSince(logs, mark)
    assert.ok(entries.some((e) => e.event === 'refresh_failed' && e.cause === 'invalid_grant' && e.level === 40))
    assert.ok(!entries.some((e) => e.event === 'refresh_deferred'))
  })

  test("a request waiting for another instance's refresh that does not finish sends the current access token while it is valid, and refreshes once that instance lets go", async () => {
    const { browser, cookie, token: old } = await loggedIn()
    const grantsBefore = refreshGrants(flow.idp.grants)
    // 50 s before expiry: inside the skew, and still valid once the wait for the lease (oidc.timeout
    // 10 s + 5 s) has run out.
    clock.advance(ACCESS_TOKEN_TTL_MS - 50_000)
    const lease = `refresh:${hashSessionId(cookie)}`
    // Another instance took the session's refresh lease and hangs.
    assert.equal(await store.acquireLease(lease, 'hung-instance', 600_000, clock.now()), true)
    const acquire = store.acquireLease
    let tried!: () => void
    const waiting = new Promise<void>((resolve) => (tried = resolve))
    store.acquireLease = (name, owner, ttlMs, now) => {
      if (name === lease && owner !== 'hung-instance') tried()
      return acquire.call(store, name, owner, ttlMs, now)
    }
    const mark = logs.lines.length
    try {
      const call = browser.get(`${flow.origin}/api/user/echo`, CSRF)
      await waiting
      clock.advance(16_000)
      const res = await call
      assert.equal(res.status, 200, res.text)
      assert.equal(bearerOf(res), old, 'the upstream got the current access token')
      assert.equal(refreshGrants(flow.idp.grants), grantsBefore, 'no grant while the other instance holds the lease')
    } finally {
      store.acquireLease = acquire
      await store.releaseLease(lease, 'hung-instance')
    }
    const deferred = (await loggedSince(logs, mark)).find((e) => e.event === 'refresh_deferred')
    assert.equal(deferred?.cause, 'refresh_elsewhere_unfinished')

    clock.advance(6_000)
    const res = await browser.get(`${flow.origin}/api/user/echo`, CSRF)
    assert.equal(res.status, 200, res.text)
    assert.notEqual(bearerOf(res), old, 'with the lease free, the next call refreshed')
    assert.equal(refreshGrants(flow.idp.grants), grantsBefore + 1)
  })

  describe('logout while a refresh is in flight', () => {
    let hold: ReturnType<typeof holdNextRefresh> | undefined
    afterEach(() => {
      hold?.restore()
      hold = undefined
    })

    async function logoutUrlOf(browser: BrowserJar): Promise<string> {
      const claims = JSON.parse((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) as Array<{
        type: string
        value: unknown
      }>
      return claims.find((c) => c.type === 'bff:logout_url')!.value as string
    }

    test('logout before the IdP sees the refresh: the call ends 401, the session stays gone and no refresh grant succeeds', async () => {
      const { browser, cookie } = await loggedIn()
      const logoutUrl = await logoutUrlOf(browser)
      const grantsBefore = refreshGrants(flow.idp.grants)
      clock.advance(PAST_EXPIRY_MS)
      hold = holdNextRefresh(endpoints.token_endpoint, 'before')

      const call = browser.get(`${flow.origin}/api/user/echo`, CSRF)
      await hold.started
      const logout = await flow.browser().get(`${flow.origin}${logoutUrl}`, { cookie: `${COOKIE}=${cookie}` })
      assert.equal(logout.status, 302)
      assert.equal(await tokensOf(cookie), undefined, 'logout removed the session')
      hold.release()

      const res = await call
      assert.equal(res.status, 401, res.text)
      assert.equal(JSON.parse(res.text).code, 'session_ended')
      assert.equal(await tokensOf(cookie), undefined, 'the session was not written back')
      assert.equal(refreshGrants(flow.idp.grants), grantsBefore, 'the refresh token revoked by logout was refused')
    })

    test('logout after the IdP issued new tokens but before gatehouse stored them: 401, no write-back, and the late refresh token is revoked', async () => {
      // Logout itself does not revoke here, so only gatehouse's handling of the late refresh can.
      await flow.restart({ revokeRefreshTokenOnLogout: false })
      const { browser, cookie } = await loggedIn()
      const logoutUrl = await logoutUrlOf(browser)
      const grantsBefore = refreshGrants(flow.idp.grants)
      clock.advance(PAST_EXPIRY_MS)
      hold = holdNextRefresh(endpoints.token_endpoint, 'after')

      const call = browser.get(`${flow.origin}/api/user/echo`, CSRF)
      const late = await hold.answered
      assert.equal(refreshGrants(flow.idp.grants), grantsBefore + 1, 'the IdP completed the refresh')
      assert.equal(typeof late.refresh_token, 'string')
      assert.equal(
        (await introspect(flow.idp.issuer, late.refresh_token as string, CLIENT_ID, CLIENT_SECRET)).active,
        true,
        'the late refresh token is live before gatehouse sees it',
      )

      const logout = await flow.browser().get(`${flow.origin}${logoutUrl}`, { cookie: `${COOKIE}=${cookie}` })
      assert.equal(logout.status, 302)
      const requestsAtLogout = flow.idp.requests.length
      hold.release()

      const res = await call
      assert.notEqual(res.status, 200)
      assert.equal(res.status, 401, res.text)
      assert.equal(JSON.parse(res.text).code, 'session_ended')
      assert.ok(clearsCookie(res, COOKIE))
      assert.equal(await tokensOf(cookie), undefined, 'the session was not written back by the late refresh')
      assert.ok(
        !upstream.received.some((r) => r.headers.authorization === `Bearer ${late.access_token as string}`),
        'the late access token never reached the upstream',
      )
      assert.ok(
        flow.idp.requests.slice(requestsAtLogout).some((r) => r.method === 'POST' && r.path === '/token/revocation'),
        'gatehouse called the revocation endpoint after the late refresh',
      )
      assert.equal(
        (await introspect(flow.idp.issuer, late.refresh_token as string, CLIENT_ID, CLIENT_SECRET)).active,
        false,
        'the late refresh token was revoked',
      )
      assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 401)
    })

    after(() => flow.restart())
  })

  test('a client-credentials token is fetched once, reused, and fetched again once the cache passes its expiry', async () => {
    const count = () => flow.idp.grants.filter((g) => g === 'client_credentials').length
    const before = count()
    const anonymous = flow.browser()
    const first = await anonymous.get(`${flow.origin}/api/client/echo`, CSRF)
    const second = await anonymous.get(`${flow.origin}/api/client/echo`, CSRF)
    assert.equal(first.status, 200)
    assert.equal(second.status, 200)
    assert.equal(count(), before + 1, 'one client_credentials grant for two calls')
    assert.equal(bearerOf(second), bearerOf(first))
    const info = await introspect(flow.idp.issuer, bearerOf(first), CLIENT_ID, CLIENT_SECRET)
    assert.equal(info.active, true)
    assert.equal(info.client_id, CLIENT_ID)

    clock.advance(PAST_EXPIRY_MS)
    const third = await anonymous.get(`${flow.origin}/api/client/echo`, CSRF)
    assert.equal(third.status, 200)
    assert.equal(count(), before + 2, 'one more grant after the cached token expired')
    assert.notEqual(bearerOf(third), bearerOf(first))
    const fourth = await anonymous.get(`${flow.origin}/api/client/echo`, CSRF)
    assert.equal(bearerOf(fourth), bearerOf(third))
    assert.equal(count(), before + 2)
  })

  test('getAccessToken(req) in a local route refreshes an expired token once and stores it for the proxy too', async () => {
    const { browser, cookie, token: old } = await loggedIn()
    const grantsBefore = refreshGrants(flow.idp.grants)
    clock.advance(PAST_EXPIRY_MS)

    const res = await browser.get(`${flow.origin}/local/token`, CSRF)
    assert.equal(res.status, 200, res.text)
    const fresh = bearerOf(res)
    assert.notEqual(fresh, old)
    assert.equal(refreshGrants(flow.idp.grants), grantsBefore + 1)
    assert.equal((await introspect(flow.idp.issuer, fresh, CLIENT_ID, CLIENT_SECRET)).active, true)
    assert.equal((await tokensOf(cookie))!.accessToken, fresh)

    const proxied = await browser.get(`${flow.origin}/api/user/echo`, CSRF)
    assert.equal(bearerOf(proxied), fresh, 'the proxy uses the token the local route refreshed')
    assert.equal(refreshGrants(flow.idp.grants), grantsBefore + 1)
  })
})

describe('a resource token (remoteApis[].resource) whose renewal finds the IdP down', () => {
  const ORDERS = 'https://orders.example.test'
  const ORDERS_TTL_MS = 600_000
  let upstream: Upstream
  let flow: Flow
  const store = new MemoryStore()
  const clock = testClock()
  const logs = logLines()

  before(async () => {
    upstream = await startUpstream()
    flow = await startFlow({
      runtime: { now: clock.now, store, logger: createLogger('info', logs.sink) },
      idp: { resourceServers: { [ORDERS]: { scope: 'orders:read', accessTokenTtlSec: ORDERS_TTL_MS / 1000 } } },
      gatehouse: {
        remoteApis: [
          { path: '/api/orders', target: upstream.url, token: 'user', resource: ORDERS, scopes: ['orders:read'] },
        ],
      },
    })
  })
  after(async () => {
    await flow.close()
    await upstream.close()
  })

  async function resourceTokensOf(cookie: string): Promise<SessionData['resourceTokens']> {
    const record = (await store.get(hashSessionId(cookie), 0))!
    return (JSON.parse(new KeyRing(flow.keys).unseal(record.sealed, sessionSealPurpose(record))!) as SessionData)
      .resourceTokens
  }

  test('a held resource token inside the skew is still sent while the IdP is down, the call answers 502 once it has expired, and the token is renewed once the IdP is back', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const cookie = browser.cookies.get(COOKIE)!
    const first = await browser.get(`${flow.origin}/api/orders/echo`, CSRF)
    assert.equal(first.status, 200, first.text)
    const held = bearerOf(first)
    const storedBefore = await resourceTokensOf(cookie)
    assert.deepEqual(
      Object.values(storedBefore ?? {}).map((t) => t.accessToken),
      [held],
    )

    clock.advance(ORDERS_TTL_MS - 30_000)
    const mark = logs.lines.length
    const restartIdp = await stopIdp(flow)
    try {
      const res = await browser.get(`${flow.origin}/api/orders/echo`, CSRF)
      assert.equal(res.status, 200, res.text)
      assert.equal(bearerOf(res), held, 'the upstream got the held resource token')
      assert.deepEqual(
        await resourceTokensOf(cookie),
        storedBefore,
        'the held resource token is unchanged in the store',
      )
      const deferred = (await loggedSince(logs, mark)).find((e) => e.event === 'refresh_deferred')
      assert.equal(deferred?.cause, 'idp_unavailable')
      assert.equal(deferred?.resource, ORDERS)

      clock.advance(60_000)
      const expired = await browser.get(`${flow.origin}/api/orders/echo`, CSRF)
      assert.equal(expired.status, 502, expired.text)
      assert.equal(JSON.parse(expired.text).code, 'idp_unavailable')
      assert.equal(clearsCookie(expired, COOKIE), false, 'the session cookie is kept')
    } finally {
      await restartIdp()
    }
    const res = await browser.get(`${flow.origin}/api/orders/echo`, CSRF)
    assert.equal(res.status, 200, res.text)
    assert.notEqual(bearerOf(res), held, 'with the IdP back, a new resource token')
  })
})

describe('access-token refresh across two gatehouse instances sharing one SQLite store', () => {
  let dir: string
  let upstream: Upstream
  let flow: Flow
  let second: Gatehouse
  let secondServer: Server
  let secondOrigin: string
  const clock = testClock()

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gatehouse-refresh-'))
    upstream = await startUpstream()
    const shared = {
      remoteApis: [{ path: '/api/user', target: upstream.url, token: 'user' as const }],
      session: { store: `sqlite:${join(dir, 'sessions.db')}` },
    }
    flow = await startFlow({ runtime: { now: clock.now }, gatehouse: shared })
    // Instance B: same IdP client, keys and store file, its own process-local state and port.
    second = await createGatehouse(
      {
        publicOrigin: flow.origin,
        oidc: {
          authority: flow.idp.issuer,
          clientId: CLIENT_ID,
          clientSecret: CLIENT_SECRET,
          scopes: ['openid', 'profile', 'email', 'offline_access'],
        },
        keys: flow.keys,
        log: { level: 'silent' },
        ...shared,
      },
      { logger: pino({ level: 'silent' }), now: clock.now },
    )
    // Behind the same (imagined) load balancer as A: the browser's Host is passed on.
    secondServer = createServer((req, res) => {
      req.headers.host = new URL(flow.origin).host
      second.handle(req, res)
    })
    await new Promise<void>((resolve) => secondServer.listen(0, '127.0.0.1', resolve))
    secondOrigin = `http://127.0.0.1:${(secondServer.address() as AddressInfo).port}`
  })
  after(async () => {
    await second.close()
    secondServer.closeAllConnections()
    await new Promise<void>((resolve) => secondServer.close(() => resolve()))
    await flow.close()
    await upstream.close()
    rmSync(dir, { recursive: true, force: true })
  })

  test('after expiry, 10 concurrent calls on each instance make one refresh grant in total and all answer 200 with the same new token', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const first = await browser.get(`${flow.origin}/api/user/echo`, CSRF)
    assert.equal(first.status, 200, first.text)
    const old = bearerOf(first)
    const onB = await browser.get(`${secondOrigin}/bff/user`, CSRF)
    assert.equal(onB.status, 200, 'the session from a login on instance A works on instance B')

    const grantsBefore = refreshGrants(flow.idp.grants)
    clock.advance(PAST_EXPIRY_MS)
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        browser.get(`${i % 2 === 0 ? flow.origin : secondOrigin}/api/user/echo?n=${i}`, CSRF),
      ),
    )
    assert.deepEqual(
      answers.map((r) => r.status),
      Array(20).fill(200),
    )
    assert.equal(refreshGrants(flow.idp.grants), grantsBefore + 1, 'exactly one refresh grant across both instances')
    const tokens = new Set(answers.map(bearerOf))
    assert.equal(tokens.size, 1, 'both instances forwarded the same refreshed token')
    const [fresh] = tokens
    assert.notEqual(fresh, old)
    assert.equal((await introspect(flow.idp.issuer, fresh!, CLIENT_ID, CLIENT_SECRET)).active, true)

    // Later calls on either instance use the stored token without another grant.
    for (const origin of [flow.origin, secondOrigin])
      assert.equal(bearerOf(await browser.get(`${origin}/api/user/echo`, CSRF)), fresh)
    assert.equal(refreshGrants(flow.idp.grants), grantsBefore + 1)
  })
})
