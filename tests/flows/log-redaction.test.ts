import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import { after, before, describe, test } from 'node:test'
import { importJWK, SignJWT, type JWTPayload } from 'jose'
import { createLogger } from '../../src/log.ts'
import { loginCookiePrefix, openLoginState } from '../../src/oidc/login-state.ts'
import { KeyRing } from '../../src/session/seal.ts'
import type { SessionData } from '../../src/session/session.ts'
import { hashSessionId, sessionSealPurpose } from '../../src/session/sessions.ts'
import { MemoryStore } from '../../src/session/stores/memory.ts'
import { BrowserJar, type JarResponse } from '../helpers/browser-jar.ts'
import { CLIENT_ID, CLIENT_SECRET, CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import { logLines } from '../helpers/log-lines.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

/**
 * SPEC §7: "tokens, cookies and secrets are never logged". One gatehouse with a real pino logger at
 * level "trace" (the most verbose) goes through a whole day of traffic — login, API calls, a refresh,
 * a refused refresh, 401s, a 502, forged and replayed callbacks, logout, back-channel logouts — and
 * then no log line may contain any secret value that existed during the run, not even a 16-character
 * piece of one.
 */

const COOKIE = '__Host-gatehouse'
const ACCESS_TOKEN_TTL_MS = 3600_000
const PAST_EXPIRY_MS = ACCESS_TOKEN_TTL_MS + 60_000
/** The shortest piece of a secret that counts as a leak. */
const FRAGMENT = 16
const EVENT = { 'http://schemas.openid.net/event/backchannel-logout': {} }
type Claims = Array<{ type: string; value: unknown }>

/** A browser that remembers every cookie value it was ever given (the jar forgets deleted ones). */
class RecordingJar extends BrowserJar {
  readonly given: Array<{ name: string; value: string }> = []

  override async request(
    method: string,
    url: string,
    body?: string,
    headers: Record<string, string> = {},
  ): Promise<JarResponse> {
    const res = await super.request(method, url, body, headers)
    for (const line of res.headers.getSetCookie()) {
      const pair = line.split(';')[0]!
      const eq = pair.indexOf('=')
      const value = pair.slice(eq + 1).trim()
      if (value) this.given.push({ name: pair.slice(0, eq).trim(), value })
    }
    return res
  }
}

/** Every secret of `secrets` (value → what it is), or FRAGMENT-long piece of one, found in the log lines. */
function leaksIn(lines: readonly string[], secrets: ReadonlyMap<string, string>): string[] {
  const text = lines.join('\n')
  const leaks: string[] = []
  for (const [value, what] of secrets) {
    for (const variant of new Set([value, encodeURIComponent(value)])) {
      if (variant.length < FRAGMENT) {
        if (text.includes(variant)) leaks.push(`${what}: "${variant}"`)
        continue
      }
      for (let i = 0; i + FRAGMENT <= variant.length; i++) {
        const piece = variant.slice(i, i + FRAGMENT)
        if (!text.includes(piece)) continue
        leaks.push(`${what}: "${piece}" in ${lines.find((l) => l.includes(piece))}`)
        break
      }
    }
  }
  return leaks
}

describe('logs never carry tokens, cookies or secrets (level trace, a full run)', () => {
  const { lines, sink } = logLines()
  const store = new MemoryStore()
  let offset = 0
  const now = () => Date.now() + offset
  /** Every secret value seen during the run, with where it came from (for the failure message). */
  const secrets = new Map<string, string>()
  const secret = (what: string, value: string | undefined) => {
    if (value) secrets.set(value, what)
  }
  const jars: RecordingJar[] = []
  const browser = () => {
    const jar = new RecordingJar()
    jars.push(jar)
    return jar
  }
  let upstream: Upstream
  let flow: Flow
  let downUrl: string

  before(async () => {
    upstream = await startUpstream()
    // A port that was just free: connections to it are refused (the upstream is down).
    const probe = createServer()
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
    downUrl = `http://127.0.0.1:${(probe.address() as AddressInfo).port}`
    await new Promise<void>((resolve) => probe.close(() => resolve()))
    flow = await startFlow({
      runtime: { logger: createLogger('trace', sink), now, store },
      gatehouse: {
        remoteApis: [
          { path: '/api/user', target: upstream.url, token: 'user' },
          { path: '/api/down', target: downUrl, token: 'user' },
        ],
      },
    })
  })
  after(async () => {
    await flow.close()
    await upstream.close()
  })

  /** Logs in through the real IdP form and records the login's secrets: state, nonce, code, verifier, login cookie. */
  async function login(jar: RecordingJar, username = 'alice'): Promise<string> {
    const from = jar.visited.length
    const res = await flow.login(jar, { username })
    assert.equal(res.status, 302, res.text)
    const visited = jar.visited.slice(from).map((u) => new URL(u))
    const authorize = visited.find((u) => u.searchParams.has('code_challenge'))!
    const callback = visited.find((u) => u.href.startsWith(`${flow.origin}/signin-oidc`))!
    assert.ok(authorize && callback, 'the login went through the authorize endpoint and the callback')
    const state = authorize.searchParams.get('state')!
    secret('state', state)
    secret('nonce', authorize.searchParams.get('nonce')!)
    secret('authorization code', callback.searchParams.get('code')!)
    const keyRing = new KeyRing(flow.keys)
    for (const { name, value } of jar.given) {
      if (!name.startsWith(loginCookiePrefix(COOKIE))) continue
      secret('login-state cookie', value)
      secret('PKCE code verifier', openLoginState(keyRing, value, state, now())?.codeVerifier)
    }
    const cookie = jar.cookies.get(COOKIE)
    assert.ok(cookie, 'logged in')
    secret('session cookie', cookie)
    await recordStoredTokens(cookie)
    return callback.href
  }

  /** The session's tokens as gatehouse keeps them (unsealed from the store), recorded as secrets. */
  async function recordStoredTokens(cookie: string): Promise<SessionData['tokens']> {
    const record = await store.get(hashSessionId(cookie), 0)
    assert.ok(record, 'the session is in the store')
    const plain = new KeyRing(flow.keys).unseal(record.sealed, sessionSealPurpose(record))
    assert.ok(plain, 'the stored record unseals with the flow keys')
    const tokens = (JSON.parse(plain) as SessionData).tokens
    secret('access token', tokens.accessToken)
    secret('refresh token', tokens.refreshToken)
    secret('id token', tokens.idToken)
    return tokens
  }

  const claimsOf = async (jar: BrowserJar): Promise<Claims> =>
    JSON.parse((await jar.get(`${flow.origin}/bff/user`, CSRF)).text) as Claims

  test('a full run logs what happened, and none of its secrets', async () => {
    // Login, /bff/user, a proxied call with the user's token.
    const alice = browser()
    const callbackUrl = await login(alice)
    const aliceCookie = alice.cookies.get(COOKIE)!
    const before = await recordStoredTokens(aliceCookie)
    const claims = await claimsOf(alice)
    const logoutUrl = claims.find((c) => c.type === 'bff:logout_url')!.value as string
    secret('logout sid', new URL(logoutUrl, flow.origin).searchParams.get('sid')!)
    // A query string may carry anything: it is never logged either.
    const queryToken = randomBytes(24).toString('base64url')
    secret('a token in a query string', queryToken)
    const echoed = await alice.get(`${flow.origin}/api/user/echo?access_token=${queryToken}`, CSRF)
    assert.equal(echoed.status, 200, echoed.text)
    assert.equal(
      (JSON.parse(echoed.text) as { headers: Record<string, string> }).headers.authorization,
      `Bearer ${before.accessToken}`,
    )

    // A refresh: the access token has expired by gatehouse's clock.
    const grants = flow.idp.grants.filter((g) => g === 'refresh_token').length
    offset += PAST_EXPIRY_MS
    const refreshed = await alice.get(`${flow.origin}/api/user/echo`, CSRF)
    assert.equal(refreshed.status, 200, refreshed.text)
    assert.equal(flow.idp.grants.filter((g) => g === 'refresh_token').length, grants + 1, 'one refresh grant')
    const after = await recordStoredTokens(aliceCookie)
    assert.notEqual(after.accessToken, before.accessToken)
    secret('session cookie after refresh', alice.cookies.get(COOKIE))

    // 401s: no session, and a forged session cookie.
    const anonymous = browser()
    assert.equal((await anonymous.get(`${flow.origin}/bff/user`, CSRF)).status, 401)
    assert.equal((await anonymous.get(`${flow.origin}/api/user/echo`, CSRF)).status, 401)
    const forgedCookie = randomBytes(32).toString('base64url')
    secret('forged session cookie', forgedCookie)
    anonymous.cookies.set(COOKIE, forgedCookie)
    assert.equal((await anonymous.get(`${flow.origin}/bff/user`, CSRF)).status, 401)
    assert.equal((await anonymous.get(`${flow.origin}/api/user/echo`, CSRF)).status, 401)

    // A 502: the API is down (its error, with cause, is logged).
    assert.equal((await alice.get(`${flow.origin}/api/down/x?secret=${queryToken}`, CSRF)).status, 502)

    // Failed callbacks: a forged state, and a replay of the real callback (its login cookie is gone).
    const forgedCode = randomBytes(32).toString('base64url')
    const forgedState = randomBytes(32).toString('base64url')
    secret('forged code', forgedCode)
    secret('forged state', forgedState)
    assert.equal(
      (await anonymous.get(`${flow.origin}/signin-oidc?code=${forgedCode}&state=${forgedState}`)).status,
      400,
    )
    assert.equal((await alice.get(callbackUrl)).status, 400)

    // A refused refresh: the refresh token was revoked at the IdP; the session ends (401).
    const bob = browser()
    await login(bob, 'bob')
    const bobTokens = await recordStoredTokens(bob.cookies.get(COOKIE)!)
    const meta = (await (await fetch(`${flow.idp.issuer}/.well-known/openid-configuration`)).json()) as {
      revocation_endpoint: string
    }
    const revoked = await fetch(meta.revocation_endpoint, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ token: bobTokens.refreshToken!, token_type_hint: 'refresh_token' }),
    })
    assert.equal(revoked.status, 200)
    offset += PAST_EXPIRY_MS
    assert.equal((await bob.get(`${flow.origin}/api/user/echo`, CSRF)).status, 401)

    // Logout through gatehouse and the IdP's end-session page, back to the post-logout callback.
    const toIdp = await alice.get(`${flow.origin}${logoutUrl}`)
    assert.equal(toIdp.status, 302)
    secret('logout state', new URL(toIdp.headers.get('location')!).searchParams.get('state')!)
    const confirm = await alice.follow(toIdp)
    const done = await alice.submitForm(confirm, { logout: 'yes' }, 'op.logoutForm')
    await alice.follow(done)
    assert.ok(
      alice.visited.some((u) => u.startsWith(`${flow.origin}/signout-callback-oidc`)),
      'back at the post-logout callback',
    )
    assert.equal((await alice.get(`${flow.origin}/bff/user`, CSRF)).status, 401)

    // Back-channel logout: a valid token (200), a tampered one and a replay (400).
    const carol = browser()
    await login(carol)
    const sid = (await claimsOf(carol)).find((c) => c.type === 'sid')!.value as string
    const jwk = flow.idp.signingKey as { kid: string }
    const key = await importJWK(flow.idp.signingKey, 'RS256')
    const sign = (payload: JWTPayload) =>
      new SignJWT(payload).setProtectedHeader({ alg: 'RS256', kid: jwk.kid, typ: 'logout+jwt' }).sign(key)
    const payload = {
      iss: flow.idp.issuer,
      aud: CLIENT_ID,
      iat: Math.floor(now() / 1000),
      jti: randomUUID(),
      events: EVENT,
      sid,
    }
    const logoutToken = await sign(payload)
    const [h, , s] = logoutToken.split('.')
    const tampered = `${h}.${Buffer.from(JSON.stringify({ ...payload, sub: 'someone-else' })).toString('base64url')}.${s}`
    secret('logout token', logoutToken)
    secret('tampered logout token', tampered)
    const post = (token: string) =>
      fetch(`${flow.origin}/bff/backchannel`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ logout_token: token }).toString(),
      })
    assert.equal((await post(tampered)).status, 400)
    assert.equal((await post(logoutToken)).status, 200)
    assert.equal((await post(logoutToken)).status, 400, 'a replay is refused')
    assert.equal((await carol.get(`${flow.origin}/bff/user`, CSRF)).status, 401)

    // Every cookie any browser was given (gatehouse's and the IdP's; not the test API's "upstream=1"), the client secret, the keys.
    for (const jar of jars)
      for (const { name, value } of jar.given) if (value.length >= FRAGMENT) secret(`cookie ${name}`, value)
    secret('client secret', CLIENT_SECRET)
    secret('client_secret_basic credentials', Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64'))
    for (const k of flow.keys) {
      secret('key-ring key', k)
      secret('key-ring key (base64)', Buffer.from(k, 'base64url').toString('base64'))
      secret('key-ring key (hex)', Buffer.from(k, 'base64url').toString('hex'))
    }
    await new Promise((resolve) => setImmediate(resolve))

    // The run was logged: the test means nothing if logging were silent.
    const entries = lines.map((line) => JSON.parse(line) as Record<string, unknown>)
    const has = (what: string, match: (e: Record<string, unknown>) => boolean) =>
      assert.ok(entries.some(match), `a log line for ${what}`)
    has('GET /bff/user', (e) => e.msg === 'request' && e.path === '/bff/user' && e.status === 200)
    has('a 401 on /bff/user', (e) => e.msg === 'request' && e.path === '/bff/user' && e.status === 401)
    has('the proxied call', (e) => e.msg === 'proxy' && e.api === '/api/user' && e.status === 200)
    has('the 502', (e) => e.msg === 'proxy' && e.api === '/api/down' && e.status === 502)
    has("the 502's cause", (e) => e.msg === 'request failed' && typeof e.err === 'object')
    has('the login', (e) => e.event === 'login')
    has('the refresh', (e) => e.event === 'refresh' && e.result === 'ok')
    has('the refused refresh', (e) => e.event === 'refresh_failed' && e.cause === 'invalid_grant')
    has('the forged callback', (e) => e.msg === 'request' && e.path === '/signin-oidc' && e.status === 400)
    has('the logout', (e) => e.event === 'logout')
    has('the post-logout callback', (e) => e.msg === 'request' && e.path === '/signout-callback-oidc')
    has('the back-channel logout', (e) => e.event === 'backchannel_logout' && e.sessions === 1)
    has('the refused logout token', (e) => e.event === 'backchannel_refused')

    // None of the secrets, nor any FRAGMENT-long piece of one, in any line.
    assert.ok(secrets.size >= 20, `secrets collected: ${secrets.size}`)
    const leaks = leaksIn(lines, secrets)
    assert.deepEqual(leaks, [], 'secrets in the logs')
  })
})

describe('with oidc.dpop, logs never carry DPoP proofs or keys (level trace)', () => {
  test('login, proofs with user and client tokens, a refresh, a forged browser proof, a 502 and logout: no proof, key or token in any line', async () => {
    const { lines, sink } = logLines()
    const store = new MemoryStore()
    let offset = 0
    const upstream = await startUpstream()
    const flow = await startFlow({
      oidc: { dpop: true },
      runtime: { logger: createLogger('trace', sink), now: () => Date.now() + offset, store },
      gatehouse: {
        remoteApis: [
          { path: '/api/user', target: upstream.url, token: 'user' },
          { path: '/api/client', target: upstream.url, token: 'client' },
          { path: '/api/down', target: 'http://127.0.0.1:1', token: 'user' },
        ],
      },
    })
    const secrets = new Map<string, string>()
    const secret = (what: string, value: string | undefined) => {
      if (value) secrets.set(value, what)
    }
    const recordSession = async (cookie: string) => {
      const record = (await store.get(hashSessionId(cookie), 0))!
      const data = JSON.parse(new KeyRing(flow.keys).unseal(record.sealed, sessionSealPurpose(record))!) as SessionData
      secret('access token', data.tokens.accessToken)
      secret('refresh token', data.tokens.refreshToken)
      secret('DPoP private key (d)', data.dpopKey?.d as string | undefined)
      secret('DPoP private JWK', JSON.stringify(data.dpopKey))
    }
    try {
      const alice = flow.browser()
      assert.equal((await flow.login(alice)).status, 302)
      const cookie = alice.cookies.get(COOKIE)!
      secret('session cookie', cookie)
      await recordSession(cookie)
      const forged = `eyJ${randomBytes(48).toString('base64url')}`
      secret('a DPoP header from the browser', forged)
      assert.equal((await alice.get(`${flow.origin}/api/user/echo`, { ...CSRF, dpop: forged })).status, 200)
      assert.equal((await alice.request('POST', `${flow.origin}/api/user/body`, 'a=1', CSRF)).status, 200)
      assert.equal((await flow.browser().get(`${flow.origin}/api/client/echo`, CSRF)).status, 200)
      offset += PAST_EXPIRY_MS
      assert.equal((await alice.get(`${flow.origin}/api/user/echo`, CSRF)).status, 200)
      await recordSession(cookie)
      assert.equal((await alice.get(`${flow.origin}/api/down/x`, CSRF)).status, 502)
      const claims = JSON.parse((await alice.get(`${flow.origin}/bff/user`, CSRF)).text) as Claims
      assert.equal(
        (await alice.get(`${flow.origin}${claims.find((c) => c.type === 'bff:logout_url')!.value as string}`)).status,
        302,
      )
      for (const request of upstream.received) {
        secret(`DPoP proof to ${request.method} ${request.url}`, request.headers.dpop as string | undefined)
        secret(
          `access token to ${request.method} ${request.url}`,
          String(request.headers.authorization).replace(/^DPoP /, ''),
        )
      }
      await new Promise((resolve) => setImmediate(resolve))

      const entries = lines.map((line) => JSON.parse(line) as Record<string, unknown>)
      assert.ok(
        entries.some((e) => e.msg === 'proxy' && e.api === '/api/user' && e.status === 200),
        'the proxied calls were logged',
      )
      assert.ok(
        entries.some((e) => e.event === 'refresh' && e.result === 'ok'),
        'the refresh was logged',
      )
      assert.ok(upstream.received.filter((r) => r.headers.dpop).length >= 4, 'proofs were sent')
      assert.ok(secrets.size >= 10, `secrets collected: ${secrets.size}`)
      assert.deepEqual(leaksIn(lines, secrets), [], 'secrets in the logs')
    } finally {
      await flow.close()
      await upstream.close()
    }
  })

  test('the redaction list covers DPoP headers and keys that slip into a log object', () => {
    const lines: string[] = []
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(String(chunk))
        done()
      },
    })
    const log = createLogger('info', sink)
    log.info(
      {
        dpop: 'proof-1-secret-value',
        headers: { dpop: 'proof-2-secret-value' },
        req: { dpop: 'proof-3-secret-value' },
        dpopKey: { d: 'key-1-secret-value' },
        session: { dpopKey: { d: 'key-2-secret-value' } },
      },
      'slipped',
    )
    const text = lines.join('')
    assert.ok(text.includes('slipped'))
    assert.doesNotMatch(text, /secret-value/)
  })
})
