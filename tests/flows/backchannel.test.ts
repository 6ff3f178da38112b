import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { CompactEncrypt, EncryptJWT, exportJWK, generateKeyPair, importJWK, SignJWT, type JWTPayload } from 'jose'
import { CLIENT_ID, CLIENT_SECRET, CSRF, startFlow, stopIdp, storedTokens, type Flow } from '../helpers/flow.ts'
import { introspect } from '../helpers/upstream.ts'
import type { BrowserJar } from '../helpers/browser-jar.ts'
import { MemoryStore } from '../../src/session/stores/memory.ts'
import { KeyRing } from '../../src/session/seal.ts'
import { Sessions } from '../../src/session/sessions.ts'

const BCL = 'http://schemas.openid.net/event/backchannel-logout'
const EVENT = { [BCL]: {} }
type Claims = Array<{ type: string; value: unknown }>

/** A store whose deleteWhere fails while `failing` is set, to stand in for a store blip mid-logout. */
class BlinkingStore extends MemoryStore {
  failing = false
  override async deleteWhere(filter: Parameters<MemoryStore['deleteWhere']>[0]): Promise<number> {
    if (this.failing) throw new Error('store blip')
    return super.deleteWhere(filter)
  }
}

describe('back-channel logout while the store blinks', () => {
  const store = new BlinkingStore()
  let flow: Flow
  before(async () => {
    flow = await startFlow({ runtime: { store } })
  })
  after(() => flow.close())

  test('a logout that failed with 503 is accepted when the IdP retries the same token', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    const sid = (JSON.parse((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) as Claims).find(
      (c) => c.type === 'sid',
    )!.value as string
    const jwk = flow.idp.signingKey as { kid: string }
    const token = await new SignJWT({
      iss: flow.idp.issuer,
      aud: CLIENT_ID,
      iat: Math.floor(Date.now() / 1000),
      jti: randomUUID(),
      events: EVENT,
      sid,
    })
      .setProtectedHeader({ alg: 'RS256', kid: jwk.kid, typ: 'logout+jwt' })
      .sign(await importJWK(flow.idp.signingKey, 'RS256'))
    const body = new URLSearchParams({ logout_token: token }).toString()
    const post = () =>
      fetch(`${flow.origin}/bff/backchannel`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body,
      })
    store.failing = true
    assert.equal((await post()).status, 503)
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200)
    store.failing = false
    assert.equal((await post()).status, 200, 'the retry is not refused as a replay')
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 401)
  })
})

describe('back-channel logout', () => {
  let flow: Flow
  let sign: (payload: JWTPayload, header?: Record<string, unknown>) => Promise<string>
  before(async () => {
    flow = await startFlow()
    const jwk = flow.idp.signingKey as { kid: string; alg: string }
    const key = await importJWK(flow.idp.signingKey, 'RS256')
    sign = (payload, header = {}) =>
      new SignJWT(payload).setProtectedHeader({ alg: 'RS256', kid: jwk.kid, typ: 'logout+jwt', ...header }).sign(key)
  })
  after(() => flow.close())

  async function loggedIn(): Promise<{ browser: BrowserJar; sid: string; sub: string }> {
    const browser = flow.browser()
    await flow.login(browser)
    const claims = JSON.parse((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) as Claims
    return {
      browser,
      sid: claims.find((c) => c.type === 'sid')!.value as string,
      sub: claims.find((c) => c.type === 'sub')!.value as string,
    }
  }

  const valid = (extra: JWTPayload = {}): JWTPayload => ({
    iss: flow.idp.issuer,
    aud: CLIENT_ID,
    iat: Math.floor(Date.now() / 1000),
    jti: randomUUID(),
    events: EVENT,
    ...extra,
  })

  const post = (body: string, type = 'application/x-www-form-urlencoded') =>
    fetch(`${flow.origin}/bff/backchannel`, { method: 'POST', headers: { 'content-type': type }, body })

  const stillLoggedIn = async (browser: BrowserJar) =>
    (await browser.get(`${flow.origin}/bff/user`, CSRF)).status === 200

  test('logging out at the IdP itself ends the gatehouse session through a real back-channel call', async () => {
    const { browser } = await loggedIn()
    // The user signs out at the IdP directly (not through gatehouse): the IdP posts a logout token.
    const confirm = await browser.follow(await browser.get(`${flow.idp.issuer}/session/end?client_id=${CLIENT_ID}`))
    const done = await browser.submitForm(confirm, { logout: 'yes' }, 'op.logoutForm')
    await browser.follow(done)
    assert.ok(flow.idp.requests.length > 0)
    assert.equal(await stillLoggedIn(browser), false)
  })

  test('a valid logout token with the sid ends that session only, answers 200 no-store', async () => {
    const first = await loggedIn()
    const other = flow.browser()
    await flow.login(other, { username: 'bob' })
    const res = await post(new URLSearchParams({ logout_token: await sign(valid({ sid: first.sid })) }).toString())
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('cache-control'), 'no-store')
    assert.equal(await stillLoggedIn(first.browser), false)
    assert.equal(await stillLoggedIn(other), true)
  })

  test('a logout token with only sub ends every session of that user', async () => {
    const a = await loggedIn()
    const b = flow.browser()
    await flow.login(b) // a second browser, same user, other IdP session? same IdP user
    const res = await post(new URLSearchParams({ logout_token: await sign(valid({ sub: a.sub })) }).toString())
    assert.equal(res.status, 200)
    assert.equal(await stillLoggedIn(a.browser), false)
    assert.equal(await stillLoggedIn(b), false)
  })

  const hostile: Array<[string, (sid: string) => Promise<string>, string?]> = [
    [
      'a tampered payload (signature no longer matches)',
      async (sid) => {
        const [h, , s] = (await sign(valid({ sid }))).split('.')
        return `${h}.${Buffer.from(JSON.stringify(valid({ sid, sub: 'someone-else' }))).toString('base64url')}.${s}`
      },
    ],
    [
      'a token signed by another key with the same kid',
      async (sid) => {
        const { privateKey } = await generateKeyPair('RS256')
        return new SignJWT(valid({ sid }))
          .setProtectedHeader({ alg: 'RS256', kid: (flow.idp.signingKey as { kid: string }).kid })
          .sign(privateKey)
      },
    ],
    [
      'a token signed by an unknown key',
      async (sid) => {
        const { privateKey, publicKey } = await generateKeyPair('ES256')
        void (await exportJWK(publicKey))
        return new SignJWT(valid({ sid })).setProtectedHeader({ alg: 'ES256', kid: 'unknown' }).sign(privateKey)
      },
    ],
    [
      'alg none',
      async (sid) =>
        `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'logout+jwt' })).toString('base64url')}.${Buffer.from(JSON.stringify(valid({ sid }))).toString('base64url')}.`,
    ],
    [
      'HS256 signed with the client secret',
      async (sid) =>
        new SignJWT(valid({ sid })).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(CLIENT_SECRET)),
    ],
    ['a wrong iss', async (sid) => sign(valid({ sid, iss: 'https://evil.example' }))],
    ['a wrong aud', async (sid) => sign(valid({ sid, aud: 'another-client' }))],
    [
      'an expired token',
      async (sid) =>
        sign(valid({ sid, exp: Math.floor(Date.now() / 1000) - 600, iat: Math.floor(Date.now() / 1000) - 700 })),
    ],
    ['a missing iat', async (sid) => sign((({ iat: _, ...rest }) => rest)(valid({ sid })))],
    ['an iat too old', async (sid) => sign(valid({ sid, iat: Math.floor(Date.now() / 1000) - 3600 }))],
    ['an iat in the future', async (sid) => sign(valid({ sid, iat: Math.floor(Date.now() / 1000) + 3600 }))],
    ['a missing jti', async (sid) => sign((({ jti: _, ...rest }) => rest)(valid({ sid })))],
    ['missing events', async (sid) => sign((({ events: _, ...rest }) => rest)(valid({ sid })))],
    [
      'events without the back-channel member',
      async (sid) => sign(valid({ sid, events: { 'http://schemas.openid.net/event/other': {} } })),
    ],
    [
      'events as a string',
      async (sid) => sign(valid({ sid, events: 'http://schemas.openid.net/event/backchannel-logout' })),
    ],
    ['an events member whose value is a string', async (sid) => sign(valid({ sid, events: { [BCL]: 'logout' } }))],
    ['an events member whose value is an array', async (sid) => sign(valid({ sid, events: { [BCL]: [] } }))],
    ['an events member whose value is null', async (sid) => sign(valid({ sid, events: { [BCL]: null } }))],
    ['an events member whose value is true', async (sid) => sign(valid({ sid, events: { [BCL]: true } }))],
    ['a nonce', async (sid) => sign(valid({ sid, nonce: 'n-0S6_WzA2Mj' }))],
    ['neither sub nor sid', async () => sign(valid())],
    ['an id_token typ', async (sid) => sign(valid({ sid }), { typ: 'at+jwt' })],
    // Encrypted logout tokens are unsupported (no ID-token encryption is ever negotiated): a JWE is
    // refused, also when it wraps a valid signed token, and whatever key it was encrypted to.
    [
      'a JWE wrapping a valid signed token (nested JWT)',
      async (sid) =>
        new CompactEncrypt(new TextEncoder().encode(await sign(valid({ sid }))))
          .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', cty: 'JWT' })
          .encrypt(randomBytes(32)),
    ],
    [
      'a JWE of the claims, encrypted to a public key',
      async (sid) => {
        const { publicKey } = await generateKeyPair('RSA-OAEP-256')
        return new EncryptJWT(valid({ sid }))
          .setProtectedHeader({ alg: 'RSA-OAEP-256', enc: 'A256GCM', typ: 'logout+jwt' })
          .encrypt(publicKey)
      },
    ],
    ['a malformed JWT', async () => 'not.a.jwt'],
    ['garbage', async () => '%%%'],
  ]
  for (const [name, make] of hostile) {
    test(`a logout token with ${name} is refused with 400 and the session is kept`, async () => {
      const { browser, sid } = await loggedIn()
      const res = await post(new URLSearchParams({ logout_token: await make(sid) }).toString())
      assert.equal(res.status, 400, await res.clone().text())
      assert.match(res.headers.get('content-type')!, /json/)
      assert.equal(res.headers.get('cache-control'), 'no-store')
      assert.equal(await stillLoggedIn(browser), true)
    })
  }

  test('a logout token with extra, unknown claims and header parameters is accepted: they are ignored (§2.4)', async () => {
    const { browser, sid, sub } = await loggedIn()
    const token = await sign(
      valid({
        sid,
        sub,
        exp: Math.floor(Date.now() / 1000) + 120,
        txn: 'a-transaction-id',
        acr: 'urn:example:loa:2',
        'https://example.com/claims/tenant': { id: 42, tags: ['a', 'b'] },
        events: { [BCL]: { reason: 'user-initiated' }, 'https://example.com/event/other': { reason: 'admin' } },
      }),
      { 'x-vendor-header': 'ignored' },
    )
    const res = await post(new URLSearchParams({ logout_token: token }).toString())
    assert.equal(res.status, 200, await res.clone().text())
    assert.equal(await stillLoggedIn(browser), false)
  })

  test('a replayed logout token (same jti) is refused with 400', async () => {
    const token = await sign(valid({ sid: 'some-idp-session-nobody-has' }))
    assert.equal((await post(new URLSearchParams({ logout_token: token }).toString())).status, 200)
    const { browser } = await loggedIn()
    const replay = await post(new URLSearchParams({ logout_token: token }).toString())
    assert.equal(replay.status, 400)
    assert.match(await replay.text(), /already used/)
    assert.equal(await stillLoggedIn(browser), true)
  })

  test('a wrong content type, an empty body, two tokens and GET are refused', async () => {
    const { browser, sid } = await loggedIn()
    const token = await sign(valid({ sid }))
    assert.equal((await post(JSON.stringify({ logout_token: token }), 'application/json')).status, 400)
    assert.equal((await post('')).status, 400)
    assert.equal((await post(`logout_token=${token}&logout_token=${token}`)).status, 400)
    assert.equal((await fetch(`${flow.origin}/bff/backchannel?logout_token=${token}`)).status, 405)
    assert.equal((await post('x'.repeat(70_000))).status, 400)
    assert.equal(await stillLoggedIn(browser), true)
  })
})

describe("back-channel logout while the IdP's JWKS cannot be fetched", () => {
  let flow: Flow
  before(async () => {
    flow = await startFlow({ runtime: { store: new MemoryStore() } })
  })
  after(() => flow.close())

  test('the logout answers 502 (so the IdP retries), keeps the session and leaves no replay marker: the same token is accepted once the JWKS is back', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    // The login fetched the JWKS (id_token signature); a restarted gatehouse (same store) has not.
    // Its discovery is cached by starting a login; the JWKS is not fetched by that.
    await flow.restart()
    assert.equal((await flow.browser().get(`${flow.origin}/bff/login`)).status, 302)
    const sid = (JSON.parse((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) as Claims).find(
      (c) => c.type === 'sid',
    )!.value as string
    const jwk = flow.idp.signingKey as { kid: string }
    const token = await new SignJWT({
      iss: flow.idp.issuer,
      aud: CLIENT_ID,
      iat: Math.floor(Date.now() / 1000),
      jti: randomUUID(),
      events: EVENT,
      sid,
    })
      .setProtectedHeader({ alg: 'RS256', kid: jwk.kid, typ: 'logout+jwt' })
      .sign(await importJWK(flow.idp.signingKey, 'RS256'))
    const body = new URLSearchParams({ logout_token: token }).toString()
    const post = () =>
      fetch(`${flow.origin}/bff/backchannel`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body,
      })

    const restart = await stopIdp(flow)
    let res: Response
    try {
      res = await post()
    } finally {
      await restart()
    }
    assert.equal(res.status, 502, await res.clone().text())
    assert.match(res.headers.get('content-type')!, /^application\/problem\+json/)
    assert.equal(res.headers.get('cache-control'), 'no-store')
    assert.equal(((await res.json()) as { code: string }).code, 'idp_unavailable')
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200, 'the session is kept')

    const retry = await post()
    assert.equal(retry.status, 200, 'the retry is not refused as a replay')
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 401)
    assert.equal((await post()).status, 400, 'a third post is a replay')
  })
})

describe("back-channel logout and the session's refresh token (§2.7)", () => {
  const stores = { bound: new MemoryStore(), offline: new MemoryStore() }
  let bound: Flow
  let offline: Flow
  before(async () => {
    // Without offline_access the refresh token belongs to the IdP session and is revoked with it.
    bound = await startFlow({ runtime: { store: stores.bound }, oidc: { scopes: ['openid', 'profile', 'email'] } })
    offline = await startFlow({
      runtime: { store: stores.offline },
      oidc: { scopes: ['openid', 'profile', 'email', 'offline_access'] },
    })
  })
  after(async () => {
    await bound.close()
    await offline.close()
  })

  /**
   * A login whose refresh token is session-bound (`bound`) or offline. oidc-provider grants
   * offline_access only with prompt=consent (OIDC Core §11), so the offline flow asks for it.
   */
  async function loggedIn(
    flow: Flow,
    store: MemoryStore,
    username = 'alice',
    consent = flow === offline,
  ): Promise<{ browser: BrowserJar; sid: string; sub: string; refreshToken: string }> {
    const browser = flow.browser()
    await flow.login(browser, { username, ...(consent ? { prompt: 'consent' } : {}) })
    const claims = JSON.parse((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) as Claims
    const tokens = (await storedTokens(store, flow.keys, browser.cookies.get('__Host-gatehouse')!))!
    assert.ok(tokens.refreshToken, 'the IdP issued a refresh token')
    assert.equal(tokens.scope?.split(' ').includes('offline_access'), consent, `granted scope ${tokens.scope}`)
    return {
      browser,
      sid: claims.find((c) => c.type === 'sid')!.value as string,
      sub: claims.find((c) => c.type === 'sub')!.value as string,
      refreshToken: tokens.refreshToken,
    }
  }

  async function logoutToken(flow: Flow, claims: JWTPayload): Promise<Response> {
    const jwk = flow.idp.signingKey as { kid: string }
    const token = await new SignJWT({
      iss: flow.idp.issuer,
      aud: CLIENT_ID,
      iat: Math.floor(Date.now() / 1000),
      jti: randomUUID(),
      events: EVENT,
      ...claims,
    })
      .setProtectedHeader({ alg: 'RS256', kid: jwk.kid, typ: 'logout+jwt' })
      .sign(await importJWK(flow.idp.signingKey, 'RS256'))
    return fetch(`${flow.origin}/bff/backchannel`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ logout_token: token }).toString(),
    })
  }

  /** Whether the IdP still honours the refresh token: a real refresh grant as the client (it rotates the token: call it last). */
  async function refreshWorks(flow: Flow, refreshToken: string): Promise<boolean> {
    const res = await fetch(`${flow.idp.issuer}/token`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }),
    })
    await res.body?.cancel()
    return res.status === 200
  }

  const revocations = (flow: Flow) => flow.idp.requests.filter((r) => r.path === '/token/revocation').length

  test('a logout token ending more than 100 sessions revokes the refresh tokens of 100 of them and ends them all', async () => {
    // One user with 105 IdP sessions, each with a session-bound refresh token: made directly in the
    // store (105 real logins would only be slower), sealed with the flow's keys as a login would.
    const { browser } = await loggedIn(bound, stores.bound, 'bob')
    const partition = (await stores.bound.list({ limit: 1000 }, Date.now())).find((r) =>
      r.sub.startsWith('bob'),
    )!.partition
    const sessions = new Sessions({
      store: stores.bound,
      keyRing: new KeyRing(bound.keys),
      policy: { lifetimeMs: 3_600_000, sliding: false, absoluteLifetimeMs: 3_600_000 },
    })
    const sub = `many-${randomUUID()}`
    for (let i = 0; i < 105; i++) {
      await sessions.create({
        sub,
        sid: `sid-${i}`,
        partition,
        data: {
          claims: [{ type: 'sub', value: sub }],
          tokens: {
            accessToken: 'at',
            refreshToken: `rt-${i}-${randomUUID()}`,
            idToken: undefined,
            accessTokenExpiresAt: undefined,
            scope: 'openid profile',
          },
          logoutSid: `l${i}`,
          sessionState: undefined,
        },
      })
    }
    const before = revocations(bound)
    const res = await logoutToken(bound, { sub })
    assert.equal(res.status, 200)
    assert.deepEqual(await res.json(), { sessionsEnded: 105 })
    assert.equal(revocations(bound) - before, 100, 'one revocation request per session, for at most 100 sessions')
    assert.equal((await stores.bound.list({ sub, limit: 1000 }, Date.now())).length, 0, 'every session ended')
    assert.equal(
      (await browser.get(`${bound.origin}/bff/user`, CSRF)).status,
      200,
      "another user's session is untouched",
    )
  })

  test('without offline_access, a logout token with only a sid ends the session and revokes its refresh token at the IdP', async () => {
    const { browser, sid, refreshToken } = await loggedIn(bound, stores.bound)
    assert.equal((await introspect(bound.idp.issuer, refreshToken, CLIENT_ID, CLIENT_SECRET)).active, true)
    const other = await loggedIn(bound, stores.bound, 'bob')
    const res = await logoutToken(bound, { sid })
    assert.equal(res.status, 200)
    assert.equal((await browser.get(`${bound.origin}/bff/user`, CSRF)).status, 401)
    assert.equal(
      (await introspect(bound.idp.issuer, refreshToken, CLIENT_ID, CLIENT_SECRET)).active,
      false,
      'the refresh token is revoked',
    )
    assert.equal(await refreshWorks(bound, refreshToken), false, 'it no longer refreshes')
    assert.equal(
      (await introspect(bound.idp.issuer, other.refreshToken, CLIENT_ID, CLIENT_SECRET)).active,
      true,
      "another user's refresh token is untouched",
    )
  })

  test('without offline_access, a logout token with only sub revokes the refresh tokens of every session it ends', async () => {
    const first = await loggedIn(bound, stores.bound)
    const second = await loggedIn(bound, stores.bound)
    const res = await logoutToken(bound, { sub: first.sub })
    assert.equal(res.status, 200)
    assert.ok(((await res.json()) as { sessionsEnded: number }).sessionsEnded >= 2)
    for (const { refreshToken } of [first, second]) assert.equal(await refreshWorks(bound, refreshToken), false)
  })

  test('a revocation that fails (IdP down) does not fail the back-channel answer: 200, the session ended, in bounded time', async () => {
    const { browser, sid } = await loggedIn(bound, stores.bound)
    // The JWKS is cached from the tests above, so only the revocation needs the IdP.
    const restart = await stopIdp(bound)
    let res: Response
    const started = performance.now()
    try {
      res = await logoutToken(bound, { sid })
    } finally {
      await restart()
    }
    assert.equal(res.status, 200, await res.clone().text())
    assert.ok(performance.now() - started < 5_000, 'answered without waiting on the IdP for long')
    assert.equal((await browser.get(`${bound.origin}/bff/user`, CSRF)).status, 401)
  })

  test('an IdP slow to revoke holds the back-channel answer 3 s at most: 200 and the session ended meanwhile', async () => {
    const { browser, sid, refreshToken } = await loggedIn(bound, stores.bound)
    bound.idp.revocationDelayMs = 9_000
    const started = performance.now()
    let res: Response
    try {
      res = await logoutToken(bound, { sid })
    } finally {
      bound.idp.revocationDelayMs = 0
    }
    const took = performance.now() - started
    assert.equal(res.status, 200)
    // Not a timing measurement: the bound only tells "answered at the 3 s cap" from "waited for the 9 s revocation".
    assert.ok(took < 8_000, `answered after ${Math.round(took)} ms, before the revocation`)
    assert.equal((await browser.get(`${bound.origin}/bff/user`, CSRF)).status, 401)
    // The revocation carries on after the answer and lands (introspection does not spend the token, a refresh would rotate it).
    const active = async () => (await introspect(bound.idp.issuer, refreshToken, CLIENT_ID, CLIENT_SECRET)).active
    assert.equal(await active(), true, 'not revoked yet when the answer came')
    for (let i = 0; i < 150 && (await active()); i++) await new Promise((resolve) => setTimeout(resolve, 100))
    assert.equal(await active(), false)
  })

  test('with offline_access the refresh token is not revoked (§2.7: offline tokens normally outlive the IdP session)', async () => {
    const { browser, sid, refreshToken } = await loggedIn(offline, stores.offline)
    const before = revocations(offline)
    const res = await logoutToken(offline, { sid })
    assert.equal(res.status, 200)
    assert.equal((await browser.get(`${offline.origin}/bff/user`, CSRF)).status, 401, 'the session still ends')
    assert.equal(revocations(offline), before, 'no revocation request')
    assert.equal((await introspect(offline.idp.issuer, refreshToken, CLIENT_ID, CLIENT_SECRET)).active, true)
    assert.equal(await refreshWorks(offline, refreshToken), true)
  })

  test('offline_access asked for but not granted (no consent at the IdP): the granted scope decides, and the refresh token is revoked', async () => {
    const { sid, refreshToken } = await loggedIn(offline, stores.offline, 'alice', false)
    assert.equal((await logoutToken(offline, { sid })).status, 200)
    assert.equal(await refreshWorks(offline, refreshToken), false)
  })

  test('with revokeRefreshTokenOnLogout false nothing is revoked, offline_access or not', async () => {
    await bound.restart({ revokeRefreshTokenOnLogout: false })
    const { sid, refreshToken } = await loggedIn(bound, stores.bound)
    const before = revocations(bound)
    assert.equal((await logoutToken(bound, { sid })).status, 200)
    assert.equal(revocations(bound), before)
    assert.equal((await introspect(bound.idp.issuer, refreshToken, CLIENT_ID, CLIENT_SECRET)).active, true)
  })
})
