import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { importJWK, SignJWT, type JWK } from 'jose'
import { after, before, describe, test } from 'node:test'
import { pino } from 'pino'
import type { RunningIdp } from '../../src/demo/idp.ts'
import { MemoryStore } from '../../src/session/stores/memory.ts'
import type { BrowserJar, JarResponse } from '../helpers/browser-jar.ts'
import { CLIENT_ID, CLIENT_SECRET, CSRF, startFlow, storedTokens, type Flow } from '../helpers/flow.ts'
import {
  auth0,
  entraMultiTenant,
  entraSingleTenant,
  foreignJwks,
  hs256IdToken,
  issuerMismatch,
  keycloak,
  noRefreshToken,
  noUserinfo,
  shapeFlow,
  signedWith,
  startShapeIdp,
  staleAlgorithmList,
  strictClientAuth,
  TENANT_A,
  type IdpShape,
  type OidcOptions,
} from '../helpers/idp-shapes.ts'
import { logLines } from '../helpers/log-lines.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

/**
 * The same journey against the embedded IdP in the shapes of real IdPs (Keycloak, Entra ID, Auth0,
 * strict or unusual ones): login through the IdP's form, /bff/user, a proxied API call with the
 * bearer token, a refresh, logout — plus what each shape needs of gatehouse.
 */

const COOKIE = '__Host-gatehouse'
const SUB = 'alice-0001'
/** The embedded IdP's default access-token lifetime, and a moment past it. */
const PAST_ACCESS_TOKEN_EXPIRY_MS = 3600_000 + 60_000
const WARN = 40

let upstream: Upstream
const open: Flow[] = []
before(async () => {
  upstream = await startUpstream()
})
after(async () => {
  for (const flow of open) await flow.close()
  await upstream.close()
})

interface Rig {
  flow: Flow
  store: MemoryStore
  /** gatehouse's clock: real time plus an offset the tests move forward (the IdP keeps real time). */
  advance(ms: number): void
  lines: string[]
  entries(): Array<Record<string, unknown>>
}

/** gatehouse (memory store, test clock, collecting logger, /api → the upstream) in front of an IdP of this shape. */
async function startRig(shape: IdpShape, oidc?: (idp: RunningIdp) => OidcOptions): Promise<Rig> {
  let offset = 0
  const store = new MemoryStore()
  const { lines, sink, entries } = logLines()
  const flow = await startFlow(
    shapeFlow(shape, {
      ...(oidc ? { oidc } : {}),
      runtime: { store, now: () => Date.now() + offset, logger: pino({ level: 'debug' }, sink) },
      gatehouse: { remoteApis: [{ path: '/api', target: upstream.url, token: 'user' }] },
    }),
  )
  open.push(flow)
  return { flow, store, advance: (ms) => void (offset += ms), lines, entries }
}

type Claims = Array<{ type: string; value: unknown }>
const claim = (claims: Claims, type: string): unknown => claims.find((c) => c.type === type)?.value
const bearerOf = (res: JarResponse): string =>
  ((JSON.parse(res.text) as { headers: Record<string, string> }).headers.authorization ?? '').replace(/^Bearer /, '')

async function discoveryOf(idp: RunningIdp): Promise<Record<string, string>> {
  const base = idp.issuer.endsWith('/') ? idp.issuer : `${idp.issuer}/`
  return (await (await fetch(new URL('.well-known/openid-configuration', base))).json()) as Record<string, string>
}

/** Logs alice in through the IdP form; asserts the callback's 302, /bff/user and a proxied API call with a bearer token. */
async function signIn(rig: Rig): Promise<{ browser: BrowserJar; claims: Claims; bearer: string }> {
  const { flow } = rig
  const browser = flow.browser()
  const callback = await flow.login(browser).catch((err: Error) => assert.fail(`${err.message}\n${warnings(rig)}`))
  assert.equal(
    callback.status,
    302,
    `the callback answered ${callback.status}: ${callback.text.slice(0, 300)}\n${warnings(rig)}`,
  )
  assert.ok(browser.cookies.has(COOKIE), 'a session cookie is set')
  const user = await browser.get(`${flow.origin}/bff/user`, CSRF)
  assert.equal(user.status, 200, user.text)
  const claims = JSON.parse(user.text) as Claims
  assert.equal(claim(claims, 'sub'), SUB)
  const api = await browser.get(`${flow.origin}/api/echo`, CSRF)
  assert.equal(api.status, 200, api.text)
  const bearer = bearerOf(api)
  assert.ok(bearer.length > 10, 'the upstream got Authorization: Bearer <access token>')
  return { browser, claims, bearer }
}

/** Logs out through bff:logout_url; asserts where it went and that the session is gone. Returns the Location. */
async function signOut(rig: Rig, browser: BrowserJar, claims: Claims, endSession: boolean): Promise<URL> {
  const { flow } = rig
  const res = await browser.get(
    `${flow.origin}${claim(claims, 'bff:logout_url') as string}&returnUrl=${encodeURIComponent('/signed-out')}`,
  )
  assert.equal(res.status, 302, `logout answered ${res.status}: ${res.text.slice(0, 300)}`)
  const location = new URL(res.headers.get('location')!, flow.origin)
  if (endSession) {
    const { end_session_endpoint } = await discoveryOf(flow.idp)
    assert.equal(`${location.origin}${location.pathname}`, end_session_endpoint, 'to the IdP end-session endpoint')
    assert.equal(location.searchParams.get('post_logout_redirect_uri'), `${flow.origin}/signout-callback-oidc`)
  }
  assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 401, 'the session has ended')
  return location
}

/** Posts a logout token signed with the IdP's own key (what any tenant of a multi-tenant IdP gets signed). */
async function backchannelLogout(flow: Flow, claims: Record<string, unknown>): Promise<Response> {
  const key = flow.idp.signingKey as JWK & { kid: string; alg: string }
  const token = await new SignJWT({
    aud: CLIENT_ID,
    iat: Math.floor(Date.now() / 1000),
    jti: randomUUID(),
    events: { 'http://schemas.openid.net/event/backchannel-logout': {} },
    ...claims,
  })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'logout+jwt' })
    .sign(await importJWK(key, key.alg))
  return fetch(`${flow.origin}/bff/backchannel`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ logout_token: token }),
  })
}

/** Every warn-or-worse line gatehouse logged, for assertion messages. */
const warnings = (rig: Rig): string =>
  `warn+ log lines:\n${rig.lines.filter((l) => (JSON.parse(l) as { level: number }).level >= WARN).join('\n') || '(none)'}`

function warnLine(rig: Rig, fields: Record<string, unknown>): Record<string, unknown> {
  const found = rig.entries().find((e) => e.level === WARN && Object.entries(fields).every(([k, v]) => e[k] === v))
  assert.ok(found, `a warn line with ${JSON.stringify(fields)}; ${warnings(rig)}`)
  return found
}

function assertLogsHoldNone(rig: Rig, secrets: Array<string | undefined>): void {
  for (const secret of [CLIENT_SECRET, ...secrets]) {
    if (!secret) continue
    const leaking = rig.lines.find((line) => line.includes(secret))
    assert.equal(leaking, undefined, `a log line holds a secret or token: ${leaking?.slice(0, 200)}`)
  }
}

/** A login whose callback gatehouse must refuse: the status is acceptable, no session exists, and the warn line says why. */
async function assertLoginRefused(
  rig: Rig,
  cause: string,
  acceptable: (status: number) => boolean,
): Promise<Record<string, unknown>> {
  const { flow } = rig
  const browser = flow.browser()
  const callback = await flow.login(browser).catch((err: Error) => assert.fail(`${err.message}\n${warnings(rig)}`))
  assert.ok(
    acceptable(callback.status),
    `the callback answered ${callback.status}: ${callback.text.slice(0, 300)}\n${warnings(rig)}`,
  )
  assert.equal(browser.cookies.has(COOKIE), false, 'no session cookie')
  assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 401)
  return warnLine(rig, { event: 'login_failed', cause })
}

const is4xx = (status: number) => status >= 400 && status < 500

/**
 * The whole journey against one rig: login → /bff/user → API call with a bearer → refresh (where the
 * IdP issues refresh tokens) → logout to the end-session endpoint, or a local logout without one.
 */
async function journey(rig: Rig, shape: IdpShape): Promise<void> {
  const { flow } = rig
  const { browser, claims, bearer } = await signIn(rig)
  const stored = await storedTokens(rig.store, flow.keys, browser.cookies.get(COOKIE)!)
  assert.equal(
    Boolean(stored?.refreshToken),
    shape.offers.refreshTokens,
    'a refresh token is held exactly when the IdP issues one',
  )
  if (shape.offers.refreshTokens) {
    const grants = flow.idp.grants.filter((g) => g === 'refresh_token').length
    rig.advance(PAST_ACCESS_TOKEN_EXPIRY_MS)
    const res = await browser.get(`${flow.origin}/api/echo`, CSRF)
    assert.equal(res.status, 200, res.text)
    assert.notEqual(bearerOf(res), bearer, 'the API call after expiry carries a new access token')
    assert.equal(
      flow.idp.grants.filter((g) => g === 'refresh_token').length,
      grants + 1,
      'one refresh grant at the IdP',
    )
  }
  const location = await signOut(rig, browser, claims, shape.offers.endSession)
  if (!shape.offers.endSession)
    assert.equal(location.href, `${flow.origin}/signed-out`, 'a local logout goes straight to the returnUrl')
  if (!shape.offers.revocation)
    assert.ok(
      !flow.idp.requests.some((r) => r.path.endsWith('/revocation')),
      'nothing is sent to a revocation endpoint the IdP does not have',
    )
  assertLogsHoldNone(rig, [stored?.accessToken, stored?.refreshToken, stored?.idToken])
}

describe('Keycloak-shaped IdP (issuer http://host:port/realms/demo)', () => {
  const shape = keycloak()

  test('login, /bff/user, a proxied API call, a refresh and logout through the realm end-session endpoint all work', async () => {
    await journey(await startRig(shape), shape)
  })

  test('an authority given with a trailing slash logs in, and /readyz answers 200', async () => {
    const rig = await startRig(shape, (idp) => ({ authority: `${idp.issuer}/` }))
    await signIn(rig)
    const ready = await rig.flow.browser().get(`${rig.flow.origin}/readyz`)
    assert.equal(ready.status, 200, ready.text)
  })
})

describe('Auth0-shaped IdP (issuer with a trailing slash, no end_session_endpoint)', () => {
  const shape = auth0()

  test('an authority without the trailing slash logs in, refreshes, and logout is local: 302 straight to the returnUrl', async () => {
    await journey(await startRig(shape), shape)
  })

  test('gatehouse warns once that logout will not end the IdP session', async () => {
    const rig = await startRig(shape)
    const { browser, claims } = await signIn(rig)
    await signIn(rig)
    await signOut(rig, browser, claims, false)
    const missing = rig.entries().filter((e) => e.event === 'end_session_missing')
    assert.equal(missing.length, 1, `one end_session_missing line; ${warnings(rig)}`)
    assert.equal(missing[0]!.level, WARN)
    assert.match(String(missing[0]!.msg), /logout will not end the IdP session/)
  })

  test('with oidc.endSessionEndpoint and endSessionParams, logout redirects there with returnTo and client_id', async () => {
    const rig = await startRig(shape, (idp) => ({
      endSessionEndpoint: `${idp.origin}/v2/logout`,
      endSessionParams: { returnTo: '{post_logout_redirect_uri}', client_id: '{client_id}' },
    }))
    const { browser, claims } = await signIn(rig)
    const location = await signOut(rig, browser, claims, false)
    assert.equal(`${location.origin}${location.pathname}`, `${rig.flow.idp.origin}/v2/logout`)
    assert.equal(location.searchParams.get('returnTo'), `${rig.flow.origin}/signout-callback-oidc`)
    assert.equal(location.searchParams.get('client_id'), CLIENT_ID)
  })
})

describe('Entra ID single-tenant IdP (issuer http://host:port/<tenant>/v2.0, no revocation endpoint)', () => {
  const shape = entraSingleTenant()

  test('login with the tenant authority, the API call, a refresh and logout work without a revocation endpoint', async () => {
    await journey(await startRig(shape), shape)
  })

  test('the tid claim of the id_token is among the user claims', async () => {
    const { claims } = await signIn(await startRig(shape))
    assert.equal(claim(claims, 'tid'), TENANT_A)
  })
})

describe('Entra ID multi-tenant authority (/common/v2.0 with the issuer template {tenantid})', () => {
  const shape = entraMultiTenant()
  const allowing = (tenants: string[]) => () => ({ allowedTenants: tenants })

  test("with allowedTenants naming the user's tenant, login, the API call, a refresh and logout work", async () => {
    await journey(await startRig(shape, allowing([TENANT_A])), shape)
  })

  test('a tenant outside allowedTenants is refused at the callback: 4xx, no session, a tenant_not_allowed warning', async () => {
    const rig = await startRig(shape, allowing(['some-other-tenant']))
    await assertLoginRefused(rig, 'tenant_not_allowed', is4xx)
    assertLogsHoldNone(rig, [])
  })

  test('a back-channel logout token of another tenant, signed with the same IdP key, ends no session of this tenant; one of this tenant ends it', async () => {
    const open = await startRig(shape)
    const { browser, claims } = await signIn(open)
    warnLine(open, { event: 'tenants_unrestricted' })
    const sid = claim(claims, 'sid') as string
    const other = 'another-tenant-0002'
    const foreign = await backchannelLogout(open.flow, {
      iss: `${open.flow.idp.origin}/${other}/v2.0`,
      tid: other,
      sid,
    })
    assert.equal(foreign.status, 200, 'a tenant of the IdP may log out its own sessions (none here)')
    assert.deepEqual(await foreign.json(), { sessionsEnded: 0 })
    assert.equal(
      (await browser.get(`${open.flow.origin}/bff/user`, CSRF)).status,
      200,
      "the other tenant's token did not end this session",
    )
    const own = await backchannelLogout(open.flow, { iss: `${open.flow.idp.origin}/${TENANT_A}/v2.0`, sid })
    assert.equal(own.status, 200)
    assert.deepEqual(await own.json(), { sessionsEnded: 1 })
    assert.equal((await browser.get(`${open.flow.origin}/bff/user`, CSRF)).status, 401)

    const restricted = await startRig(shape, allowing([TENANT_A]))
    const refused = await backchannelLogout(restricted.flow, {
      iss: `${restricted.flow.idp.origin}/${other}/v2.0`,
      tid: other,
      sid,
    })
    assert.equal(refused.status, 400, 'a tenant outside allowedTenants cannot send logout tokens at all')
  })

  test('a tenant taken out of allowedTenants loses its sessions at their next refresh: 401 session_ended and a refresh_failed issuer_not_allowed line', async () => {
    const rig = await startRig(shape, allowing([TENANT_A]))
    const { browser } = await signIn(rig)
    const { origin } = rig.flow.idp
    // The operator narrows the tenants and restarts; the session store is kept.
    await rig.flow.restart({
      oidc: {
        authority: `${origin}/common/v2.0`,
        clientId: CLIENT_ID,
        clientSecret: CLIENT_SECRET,
        scopes: ['openid', 'profile', 'email', 'offline_access'],
        allowedTenants: ['another-tenant-0002'],
      },
    })
    rig.advance(PAST_ACCESS_TOKEN_EXPIRY_MS)
    const res = await browser.get(`${rig.flow.origin}/api/echo`, CSRF)
    assert.equal(res.status, 401, res.text)
    assert.equal((JSON.parse(res.text) as { code: string }).code, 'session_ended')
    warnLine(rig, { event: 'refresh_failed', cause: 'issuer_not_allowed' })
    assert.equal((await browser.get(`${rig.flow.origin}/bff/user`, CSRF)).status, 401)
  })

  test('an exact oidc.issuer override with the /common authority logs in', async () => {
    const rig = await startRig(shape, (idp) => ({ issuer: `${idp.origin}/${TENANT_A}/v2.0` }))
    const { claims } = await signIn(rig)
    assert.equal(claim(claims, 'tid'), TENANT_A)
  })
})

describe('strict IdP (client_secret_post only)', () => {
  const shape = strictClientAuth()

  test('without oidc.clientAuth gatehouse authenticates the way discovery allows, says so at start, and the journey works', async () => {
    const rig = await startRig(shape)
    await journey(rig, shape)
    const chosen = rig.entries().filter((e) => e.event === 'client_auth_chosen')
    assert.equal(chosen.length, 1, 'said once')
    assert.equal(chosen[0]!.method, 'client_secret_post')
    assert.deepEqual(chosen[0]!.listed, ['client_secret_post'])
  })

  test('a forced oidc.clientAuth "client_secret_basic" is refused: no 500, no session, a warning naming the method and the config key', async () => {
    const rig = await startRig(shape, () => ({ clientAuth: 'client_secret_basic' }))
    const line = await assertLoginRefused(rig, 'client_auth_refused', (status) => is4xx(status) || status === 502)
    assert.equal(line.method, 'client_secret_basic')
    assert.equal(line.configKey, 'oidc.clientAuth')
    assertLogsHoldNone(rig, [])
  })
})

describe('signing algorithms', () => {
  for (const alg of ['ES256', 'PS256'] as const) {
    test(`an IdP signing id_tokens with ${alg}: login, the API call, a refresh and logout work`, async () => {
      const shape = signedWith(alg)
      await journey(await startRig(shape), shape)
    })
  }

  test('an IdP signing with ES256 while its discovery lists only RS256 still logs in, and gatehouse says so once', async () => {
    const rig = await startRig(staleAlgorithmList())
    await signIn(rig)
    await signIn(rig)
    const mentions = rig.entries().filter((e) => (e.level as number) >= 30 && JSON.stringify(e).includes('ES256'))
    assert.equal(mentions.length, 1, `one info/warn line naming ES256; lines:\n${rig.lines.join('\n')}`)
  })

  test('an id_token signed by a key the JWKS does not hold is refused: 4xx, no session, an id_token_invalid warning', async () => {
    await assertLoginRefused(await startRig(await foreignJwks()), 'id_token_invalid', is4xx)
  })

  test('an HS256 id_token (signed with the client secret) is refused: 4xx, no session, an id_token_invalid warning', async () => {
    const rig = await startRig(hs256IdToken())
    assert.ok(
      (await discoveryOf(rig.flow.idp)).id_token_signing_alg_values_supported?.includes('HS256'),
      'the IdP offers HS256',
    )
    await assertLoginRefused(rig, 'id_token_invalid', is4xx)
  })
})

describe('IdP without a UserInfo endpoint', () => {
  const shape = noUserinfo()

  test('login, the API call, a refresh and logout work', async () => {
    await journey(await startRig(shape), shape)
  })

  test('/bff/user holds the claims of the id_token, and no UserInfo request is made', async () => {
    const rig = await startRig(shape)
    assert.equal((await discoveryOf(rig.flow.idp)).userinfo_endpoint, undefined)
    const { claims } = await signIn(rig)
    assert.equal(claim(claims, 'name'), 'Alice Example')
    assert.equal(claim(claims, 'email'), 'alice@example.test')
    assert.ok(!rig.flow.idp.requests.some((r) => r.path === '/me'))
  })
})

describe('IdP that issues no refresh token', () => {
  const shape = noRefreshToken()

  test('login, the API call and logout work, with no refresh token held', async () => {
    await journey(await startRig(shape), shape)
  })

  test('once the access token expired, an API call answers 401 session_ended', async () => {
    const rig = await startRig(shape)
    const { browser } = await signIn(rig)
    rig.advance(PAST_ACCESS_TOKEN_EXPIRY_MS)
    const res = await browser.get(`${rig.flow.origin}/api/echo`, CSRF)
    assert.equal(res.status, 401, res.text)
    assert.equal((JSON.parse(res.text) as { code: string }).code, 'session_ended')
    assert.ok(!rig.flow.idp.grants.includes('refresh_token'), 'no refresh grant was tried')
  })
})

describe('IdP whose discovery document names another issuer', () => {
  const PUBLISHED = 'http://127.0.0.1:1/other'

  test('/bff/login answers 502, /readyz 503, and gatehouse warns discovery_failed issuer_mismatch with both issuers', async () => {
    const rig = await startRig(issuerMismatch(PUBLISHED))
    const browser = rig.flow.browser()
    const login = await browser.get(`${rig.flow.origin}/bff/login`)
    assert.equal(login.status, 502, `${login.text.slice(0, 300)}\n${warnings(rig)}`)
    const ready = await browser.get(`${rig.flow.origin}/readyz`)
    assert.equal(ready.status, 503, ready.text)
    warnLine(rig, {
      event: 'discovery_failed',
      cause: 'issuer_mismatch',
      expected: rig.flow.idp.issuer,
      published: PUBLISHED,
    })
  })
})

describe('the embedded IdP in these shapes', () => {
  const idps: RunningIdp[] = []
  after(async () => {
    for (const idp of idps) await idp.close()
  })

  test('publishes issuers and endpoints under the realm or tenant path, or without revocation, end-session and UserInfo', async () => {
    const client = {
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: ['http://127.0.0.1:1/signin-oidc'],
    }
    for (const shape of [keycloak(), auth0(), entraMultiTenant(), noUserinfo()])
      idps.push(await startShapeIdp(shape, [client]))
    const [kc, a0, entra, plain] = await Promise.all(idps.map(async (idp) => ({ idp, doc: await discoveryOf(idp) })))
    assert.equal(kc!.doc.issuer, `${kc!.idp.origin}/realms/demo`)
    assert.ok(kc!.doc.token_endpoint!.startsWith(`${kc!.idp.origin}/realms/demo/`))
    assert.equal(a0!.doc.issuer, `${a0!.idp.origin}/`)
    assert.equal(a0!.doc.end_session_endpoint, undefined)
    assert.equal(entra!.doc.issuer, `${entra!.idp.origin}/${TENANT_A}/v2.0`)
    assert.equal(entra!.doc.revocation_endpoint, undefined)
    assert.equal(plain!.doc.userinfo_endpoint, undefined)
    const common = (await (
      await fetch(`${entra!.idp.origin}/common/v2.0/.well-known/openid-configuration`)
    ).json()) as Record<string, string>
    assert.equal(common.issuer, `${entra!.idp.origin}/{tenantid}/v2.0`)
    assert.equal(common.token_endpoint, entra!.doc.token_endpoint)
  })
})
