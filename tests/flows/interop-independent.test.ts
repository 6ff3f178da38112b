/**
 * Interop with an OpenID provider gatehouse's authors did not write: oauth2-mock-server (npm), a
 * small independent implementation with real RS256-signed tokens, discovery, JWKS, PKCE, nonce,
 * refresh, userinfo, revocation and end-session endpoints. It authenticates nobody (its /authorize
 * redirects straight back with a code) and validates no client credential, so what is checked here
 * is gatehouse's side of the protocol against a foreign discovery document and foreign tokens.
 */
import assert from 'node:assert/strict'
import { createHmac, createSign, generateKeyPairSync, randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { decodeJwt, decodeProtectedHeader } from 'jose'
import {
  Events,
  OAuth2Server,
  type MutableRedirectUri,
  type MutableResponse,
  type MutableToken,
  type StatusCodeMutableResponse,
  type TokenRequestIncomingMessage,
} from 'oauth2-mock-server'
import { createGatehouse, type Gatehouse } from '../../src/index.ts'
import { createLogger } from '../../src/log.ts'
import { generateKey } from '../../src/session/seal.ts'
import { BrowserJar, type JarResponse } from '../helpers/browser-jar.ts'
import { logLines } from '../helpers/log-lines.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

/**
 * Letters and digits only: with client_secret_basic, gatehouse (openid-client) form-urlencodes the
 * client_id inside the Basic credentials as RFC 6749 §2.3.1 requires ("-" becomes "%2D"), and
 * oauth2-mock-server does not decode them, so it would put "interop%2Dbff" into the id_token's aud.
 */
const CLIENT_ID = 'interopbff01'
const CLIENT_SECRET = 'interop-bff-secret-0123456789'
const CSRF = { 'x-csrf': '1' }
const COOKIE = '__Host-gatehouse'

/** The user the mock's tokens name (its built-in subject is always "johndoe"; these are ours). */
const USER = {
  sub: 'interop-user-7f3a9c',
  name: 'Ines Interop',
  email: 'ines@interop.test',
  groups: ['interop-readers', 'interop-writers'],
  /** Only in the userinfo answer, never in the id_token. */
  zoneinfo: 'Pacific/Auckland',
}

interface TokenExchange {
  grant: string
  form: Record<string, unknown>
  authorization: string | undefined
  /** The mock's answer as finally sent (a test's `once` hook may have replaced it). */
  response: MutableResponse
}

interface Revocation {
  authorization: string | undefined
  form: Promise<URLSearchParams>
}

interface Interop {
  mock: OAuth2Server
  issuer: string
  discovery: Record<string, unknown>
  origin: string
  gatehouse: Gatehouse
  upstream: Upstream
  clock: { now: () => number; advance(ms: number): void }
  authorizeRequests: URLSearchParams[]
  tokenExchanges: TokenExchange[]
  userinfoCalls: Array<string | undefined>
  revocations: Revocation[]
  /** The last status/body plus the warnings and errors gatehouse logged, for assertion messages. */
  explain(res: JarResponse): string
  /** Every line gatehouse logged, parsed. */
  entries(): Array<Record<string, unknown>>
  browser(): BrowserJar
  /** /bff/login → the mock's /authorize → /signin-oidc; returns each hop's answer. */
  login(
    browser: BrowserJar,
    returnUrl?: string,
  ): Promise<{ start: JarResponse; authorize: JarResponse; callback: JarResponse }>
  close(): Promise<void>
}

/**
 * oauth2-mock-server (RS256 key) on 127.0.0.1, the echoing upstream, and gatehouse from
 * createGatehouse on node:http, all on port 0. No `oidc.clientAuth`: gatehouse chooses from discovery.
 */
async function startInterop(
  options: { discovery?: (document: Record<string, unknown>) => void; trailingSlash?: boolean } = {},
): Promise<Interop> {
  // The mock's own option: its issuer (and so the id_token's iss) always ends with "/", or never does.
  const mock = new OAuth2Server(undefined, undefined, {
    shouldIssuerUrlBeSuffixedWithATralingSlash: options.trailingSlash ?? false,
  })
  await mock.issuer.keys.generate('RS256')
  await mock.start(0, '127.0.0.1')
  // The mock names itself http://localhost:PORT when bound to a loopback address; everything in these
  // tests talks to 127.0.0.1, so it is told its issuer URL explicitly (as a deployment would configure it).
  mock.issuer.url = `http://127.0.0.1:${mock.address().port}`
  const issuer = mock.issuer.url!

  const authorizeRequests: URLSearchParams[] = []
  const tokenExchanges: TokenExchange[] = []
  const userinfoCalls: Array<string | undefined> = []
  const revocations: Revocation[] = []

  if (options.discovery) {
    const edit = options.discovery
    mock.service.on(Events.BeforeWellKnownOpenIdConfiguration, (res: MutableResponse) => {
      if (res.body !== '') edit(res.body)
    })
  }
  mock.service.on(Events.BeforeAuthorizeRedirect, (_redirect: MutableRedirectUri, req: IncomingMessage) => {
    authorizeRequests.push(new URL(req.url ?? '/', issuer).searchParams)
  })
  // Our user instead of the mock's fixed "johndoe"; a jti makes every token unique (the mock signs
  // deterministically, so two tokens issued in the same second would otherwise be byte-identical).
  mock.service.on(Events.BeforeTokenSigning, (token: MutableToken) => {
    token.payload.sub = USER.sub
    token.payload.jti = randomUUID()
    // The mock builds access tokens with a `scope` member and id_tokens without one.
    if (!('scope' in token.payload))
      Object.assign(token.payload, { name: USER.name, email: USER.email, groups: USER.groups })
  })
  mock.service.on(Events.BeforeResponse, (response: MutableResponse, req: TokenRequestIncomingMessage) => {
    const form = req.body as unknown as Record<string, unknown>
    tokenExchanges.push({ grant: String(form.grant_type), form, authorization: req.headers.authorization, response })
  })
  mock.service.on(Events.BeforeUserinfo, (response: MutableResponse, req: IncomingMessage) => {
    userinfoCalls.push(req.headers.authorization)
    response.body = { sub: USER.sub, zoneinfo: USER.zoneinfo }
  })
  mock.service.on(Events.BeforeRevoke, (_response: StatusCodeMutableResponse, req: IncomingMessage) => {
    // The mock's /revoke does not read its body; read it here to see which token was revoked.
    const form = new Promise<URLSearchParams>((resolve, reject) => {
      const chunks: Buffer[] = []
      req.on('data', (chunk: Buffer) => chunks.push(chunk))
      req.on('end', () => resolve(new URLSearchParams(Buffer.concat(chunks).toString('utf8'))))
      req.on('error', reject)
    })
    revocations.push({ authorization: req.headers.authorization, form })
  })

  let discovery: Record<string, unknown>
  try {
    discovery = (await (await fetch(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`)).json()) as Record<
      string,
      unknown
    >
  } catch (err) {
    await mock.stop()
    throw err
  }
  const upstream = await startUpstream()
  let offset = 0
  const clock = { now: () => Date.now() + offset, advance: (ms: number) => void (offset += ms) }
  const log = logLines()

  let gatehouse: Gatehouse | undefined
  const server: Server = createServer((req, res) => gatehouse!.handle(req, res))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  try {
    gatehouse = await createGatehouse(
      {
        publicOrigin: origin,
        oidc: {
          authority: issuer,
          clientId: CLIENT_ID,
          clientSecret: CLIENT_SECRET,
          scopes: ['openid', 'profile', 'email', 'offline_access'],
        },
        keys: [generateKey()],
        session: { store: 'memory' },
        log: { level: 'debug' },
        remoteApis: [{ path: '/api', target: upstream.url, token: 'user' }],
      },
      { logger: createLogger('debug', log.sink), now: clock.now },
    )
  } catch (err) {
    await new Promise<void>((resolve) => server.close(() => resolve()))
    await upstream.close()
    await mock.stop()
    throw err
  }
  const explain = (res: JarResponse): string => {
    const problems = log
      .entries()
      .filter((entry) => Number(entry.level) >= 40)
      .slice(-8)
    return `${res.status} ${res.url}\n${res.text.slice(0, 800)}\ngatehouse warnings/errors:\n${problems.map((entry) => JSON.stringify(entry)).join('\n') || '(none)'}`
  }

  return {
    mock,
    issuer,
    discovery,
    origin,
    gatehouse,
    upstream,
    clock,
    authorizeRequests,
    tokenExchanges,
    userinfoCalls,
    revocations,
    explain,
    entries: log.entries,
    browser: () => new BrowserJar(),
    async login(browser, returnUrl) {
      const query = returnUrl === undefined ? '' : `?${new URLSearchParams({ returnUrl })}`
      const start = await browser.get(`${origin}/bff/login${query}`)
      assert.equal(start.status, 302, explain(start))
      const authorize = await browser.get(new URL(start.headers.get('location')!, start.url).href)
      assert.equal(authorize.status, 302, explain(authorize))
      const callback = await browser.get(new URL(authorize.headers.get('location')!, authorize.url).href)
      return { start, authorize, callback }
    },
    async close() {
      await gatehouse!.close()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await upstream.close()
      await mock.stop()
    },
  }
}

type Claims = Array<{ type: string; value: unknown }>
const claimValues = (claims: Claims, type: string): unknown[] =>
  claims.filter((c) => c.type === type).map((c) => c.value)
const bearerOf = (res: JarResponse): string =>
  ((JSON.parse(res.text) as { headers: Record<string, string> }).headers.authorization ?? '').replace(/^Bearer /, '')
const bodyOf = (exchange: TokenExchange): Record<string, unknown> =>
  exchange.response.body === '' ? {} : exchange.response.body
const since = <T>(list: T[], mark: number): T[] => list.slice(mark)
/** RFC 6749 §2.3.1: Basic credentials are the form-urlencoded client_id and secret. */
function basicCredentials(authorization: string | undefined): { id: string; secret: string } | undefined {
  if (!authorization?.startsWith('Basic ')) return undefined
  const plain = Buffer.from(authorization.slice(6), 'base64').toString('utf8')
  const colon = plain.indexOf(':')
  const decode = (part: string) => decodeURIComponent(part.replace(/\+/g, ' '))
  return { id: decode(plain.slice(0, colon)), secret: decode(plain.slice(colon + 1)) }
}

describe('interop with oauth2-mock-server, an independent OpenID provider', () => {
  let it: Interop
  before(async () => {
    it = await startInterop()
  })
  after(() => it?.close())

  test("/readyz is 200 with the independent provider's discovery document", async () => {
    const res = await it.browser().get(`${it.origin}/readyz`)
    assert.equal(res.status, 200, it.explain(res))
  })

  test("a login goes to the provider's authorize endpoint with code flow, PKCE S256, state and nonce, and comes back with a session cookie on the returnUrl", async () => {
    const browser = it.browser()
    const authorizeMark = it.authorizeRequests.length
    const tokenMark = it.tokenExchanges.length
    const { start, authorize, callback } = await it.login(browser, '/after/login?x=1')

    const to = new URL(start.headers.get('location')!)
    assert.equal(`${to.origin}${to.pathname}`, it.discovery.authorization_endpoint)
    const [sent] = since(it.authorizeRequests, authorizeMark)
    assert.ok(sent, 'the provider received the authorize request')
    assert.equal(sent.get('response_type'), 'code')
    assert.equal(sent.get('client_id'), CLIENT_ID)
    assert.equal(sent.get('redirect_uri'), `${it.origin}/signin-oidc`)
    assert.equal(sent.get('code_challenge_method'), 'S256')
    assert.match(sent.get('code_challenge') ?? '', /^[A-Za-z0-9_-]{43}$/)
    assert.ok(sent.get('state'), 'state sent')
    assert.ok(sent.get('nonce'), 'nonce sent')
    assert.deepEqual(sent.get('scope')?.split(' ').sort(), ['email', 'offline_access', 'openid', 'profile'])

    const back = new URL(authorize.headers.get('location')!)
    assert.equal(`${back.origin}${back.pathname}`, `${it.origin}/signin-oidc`)
    assert.equal(back.searchParams.get('state'), sent.get('state'))

    assert.equal(callback.status, 302, it.explain(callback))
    assert.equal(callback.headers.get('location'), '/after/login?x=1')
    assert.ok(
      callback.headers.getSetCookie().some((line) => line.startsWith(`${COOKIE}=`)),
      'session cookie set',
    )
    assert.ok(browser.cookies.get(COOKIE), 'the browser keeps the session cookie')

    const [exchange] = since(it.tokenExchanges, tokenMark)
    assert.ok(exchange, "the code was exchanged at the provider's token endpoint")
    assert.equal(exchange.grant, 'authorization_code')
    assert.equal(exchange.form.code, back.searchParams.get('code'))
    assert.equal(exchange.form.redirect_uri, `${it.origin}/signin-oidc`)
    assert.match(String(exchange.form.code_verifier), /^[A-Za-z0-9._~-]{43,128}$/)
    // The provider carried the authorize request's nonce into the id_token, which gatehouse accepted.
    assert.equal(decodeJwt(String(bodyOf(exchange).id_token)).nonce, sent.get('nonce'))
  })

  test('the token requests identify gatehouse as its configured client_id', async () => {
    await it.login(it.browser())
    const exchange = it.tokenExchanges.at(-1)!
    const clientId = basicCredentials(exchange.authorization)?.id ?? exchange.form.client_id
    assert.equal(clientId, CLIENT_ID)
  })

  test("/bff/user answers the sub and profile claims of the provider's id_token, the userinfo claims, and a logout URL", async () => {
    const browser = it.browser()
    const userinfoMark = it.userinfoCalls.length
    await it.login(browser)
    const res = await browser.get(`${it.origin}/bff/user`, CSRF)
    assert.equal(res.status, 200, it.explain(res))
    const claims = JSON.parse(res.text) as Claims
    assert.deepEqual(claimValues(claims, 'sub'), [USER.sub])
    assert.deepEqual(claimValues(claims, 'name'), [USER.name])
    assert.deepEqual(claimValues(claims, 'email'), [USER.email])
    assert.deepEqual(claimValues(claims, 'groups'), USER.groups)
    // From the provider's userinfo endpoint, called with the access token of this login.
    assert.deepEqual(claimValues(claims, 'zoneinfo'), [USER.zoneinfo])
    assert.equal(since(it.userinfoCalls, userinfoMark).length, 1)
    assert.equal(since(it.userinfoCalls, userinfoMark)[0], `Bearer ${bodyOf(it.tokenExchanges.at(-1)!).access_token}`)
    for (const protocol of ['nonce', 'aud', 'iss', 'exp', 'iat', 'nbf', 'jti'])
      assert.deepEqual(claimValues(claims, protocol), [], `${protocol} is not a user claim`)
    assert.match(String(claimValues(claims, 'bff:logout_url')[0]), /^\/bff\/logout\?sid=[A-Za-z0-9_-]+$/)
  })

  test('a userinfo answer about another subject fails the login with a 4xx page and no session', async () => {
    const browser = it.browser()
    it.mock.service.once(Events.BeforeUserinfo, (response: MutableResponse) => {
      response.body = { sub: 'someone-else', zoneinfo: USER.zoneinfo }
    })
    const { callback } = await it.login(browser)
    // The provider answered, wrongly: a clear 4xx page (SPEC §3, /signin-oidc), not an internal error.
    assert.ok(callback.status >= 400 && callback.status < 500, it.explain(callback))
    assert.equal(browser.cookies.has(COOKIE), false)
    assert.equal((await browser.get(`${it.origin}/bff/user`, CSRF)).status, 401)
  })

  test("an id_token whose nonce is not the authorize request's is refused with a 4xx page and no session", async () => {
    const tamper = (token: MutableToken): void => {
      if ('scope' in token.payload) return // the access token
      token.payload.nonce = 'not-the-nonce-gatehouse-sent'
      it.mock.service.off(Events.BeforeTokenSigning, tamper)
    }
    it.mock.service.on(Events.BeforeTokenSigning, tamper)
    const browser = it.browser()
    const { callback } = await it.login(browser)
    assert.ok(callback.status >= 400 && callback.status < 500, it.explain(callback))
    assert.equal(browser.cookies.has(COOKIE), false)
    assert.equal((await browser.get(`${it.origin}/bff/user`, CSRF)).status, 401)
  })

  test('an id_token signed with a key the provider does not publish is refused with a 4xx page and no session', async () => {
    // Same header (kid, alg) and claims as the provider's own id_token, signed by a stranger's key.
    const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey
    it.mock.service.once(Events.BeforeResponse, (response: MutableResponse) => {
      if (response.body === '' || typeof response.body.id_token !== 'string') return
      const [header, payload] = response.body.id_token.split('.')
      const signature = createSign('RSA-SHA256').update(`${header}.${payload}`).sign(stranger).toString('base64url')
      response.body.id_token = `${header}.${payload}.${signature}`
    })
    const browser = it.browser()
    const { callback } = await it.login(browser)
    assert.notEqual(decodeProtectedHeader(String(bodyOf(it.tokenExchanges.at(-1)!).id_token)).kid, undefined)
    assert.ok(callback.status >= 400 && callback.status < 500, it.explain(callback))
    assert.equal(browser.cookies.has(COOKIE), false)
    assert.equal((await browser.get(`${it.origin}/bff/user`, CSRF)).status, 401)
  })

  for (const alg of ['none', 'HS256']) {
    test(`an id_token with the provider's own claims but alg ${alg} (unsigned, or MACed with the client secret) is refused with a 4xx page and no session`, async () => {
      it.mock.service.once(Events.BeforeResponse, (response: MutableResponse) => {
        if (response.body === '' || typeof response.body.id_token !== 'string') return
        const [, payload] = response.body.id_token.split('.')
        const header = Buffer.from(JSON.stringify({ alg, typ: 'JWT' })).toString('base64url')
        const signature =
          alg === 'none' ? '' : createHmac('sha256', CLIENT_SECRET).update(`${header}.${payload}`).digest('base64url')
        response.body.id_token = `${header}.${payload}.${signature}`
      })
      const browser = it.browser()
      const { callback } = await it.login(browser)
      assert.ok(callback.status >= 400 && callback.status < 500, it.explain(callback))
      assert.equal(browser.cookies.has(COOKIE), false)
      assert.equal((await browser.get(`${it.origin}/bff/user`, CSRF)).status, 401)
      const refusal = it
        .entries()
        .filter((e) => e.event === 'login_failed')
        .at(-1)
      assert.equal(refusal?.cause, 'id_token_invalid', it.explain(callback))
    })
  }

  test("a remote API call reaches the upstream with the provider's access token as Bearer, and without the browser's cookies", async () => {
    const browser = it.browser()
    await it.login(browser)
    const accessToken = String(bodyOf(it.tokenExchanges.at(-1)!).access_token)
    const res = await browser.get(`${it.origin}/api/echo/orders?x=1`, CSRF)
    assert.equal(res.status, 200, it.explain(res))
    const seen = JSON.parse(res.text) as { url: string; headers: Record<string, string> }
    assert.equal(seen.url, '/echo/orders?x=1')
    assert.equal(seen.headers.authorization, `Bearer ${accessToken}`)
    assert.doesNotMatch(seen.headers.cookie ?? '', /__Host-gatehouse/)
    assert.equal(decodeJwt(accessToken).sub, USER.sub)
  })

  test("past the access token's expiry, the API call goes out with a new access token from the provider's refresh_token grant, and the rotated refresh token is used next", async () => {
    const browser = it.browser()
    await it.login(browser)
    const login = bodyOf(it.tokenExchanges.at(-1)!)
    const expiresIn = Number(login.expires_in)
    assert.ok(expiresIn > 0, 'the provider sends expires_in')
    const first = await browser.get(`${it.origin}/api/echo`, CSRF)
    assert.equal(first.status, 200, it.explain(first))
    assert.equal(bearerOf(first), login.access_token)

    const mark = it.tokenExchanges.length
    it.clock.advance((expiresIn + 1) * 1000)
    const refreshed = await browser.get(`${it.origin}/api/echo`, CSRF)
    assert.equal(refreshed.status, 200, it.explain(refreshed))
    const grants = since(it.tokenExchanges, mark)
    assert.deepEqual(
      grants.map((g) => g.grant),
      ['refresh_token'],
    )
    assert.equal(grants[0]!.form.refresh_token, login.refresh_token)
    const renewed = bodyOf(grants[0]!)
    assert.notEqual(bearerOf(refreshed), login.access_token)
    assert.equal(bearerOf(refreshed), renewed.access_token)

    // The new token is kept: no second refresh while it is fresh.
    const again = await browser.get(`${it.origin}/api/echo`, CSRF)
    assert.equal(bearerOf(again), renewed.access_token)
    assert.equal(since(it.tokenExchanges, mark).length, 1)

    // The provider rotates refresh tokens (a new one with every answer): the next refresh uses the new one.
    assert.notEqual(renewed.refresh_token, login.refresh_token)
    it.clock.advance((expiresIn + 1) * 1000)
    const third = await browser.get(`${it.origin}/api/echo`, CSRF)
    assert.equal(third.status, 200, it.explain(third))
    const next = since(it.tokenExchanges, mark)
    assert.deepEqual(
      next.map((g) => g.grant),
      ['refresh_token', 'refresh_token'],
    )
    assert.equal(next[1]!.form.refresh_token, renewed.refresh_token)
    assert.equal(bearerOf(third), bodyOf(next[1]!).access_token)

    const user = await browser.get(`${it.origin}/bff/user`, CSRF)
    assert.equal(user.status, 200, it.explain(user))
    assert.deepEqual(claimValues(JSON.parse(user.text) as Claims, 'sub'), [USER.sub])
  })

  test('a refresh the provider answers with invalid_grant ends the session: the API call and /bff/user are 401', async () => {
    const browser = it.browser()
    await it.login(browser)
    const expiresIn = Number(bodyOf(it.tokenExchanges.at(-1)!).expires_in)
    it.mock.service.once(Events.BeforeResponse, (response: MutableResponse) => {
      response.statusCode = 400
      response.body = { error: 'invalid_grant', error_description: 'refresh token revoked' }
    })
    const mark = it.tokenExchanges.length
    it.clock.advance((expiresIn + 1) * 1000)
    const res = await browser.get(`${it.origin}/api/echo`, CSRF)
    assert.equal(res.status, 401, it.explain(res))
    assert.deepEqual(
      since(it.tokenExchanges, mark).map((g) => g.grant),
      ['refresh_token'],
    )
    assert.equal((await browser.get(`${it.origin}/bff/user`, CSRF)).status, 401)
  })

  test('logout revokes the refresh token at the provider, redirects to its end_session_endpoint with id_token_hint, comes back to the returnUrl, and the session is gone', async () => {
    const browser = it.browser()
    await it.login(browser)
    const login = bodyOf(it.tokenExchanges.at(-1)!)
    const user = await browser.get(`${it.origin}/bff/user`, CSRF)
    assert.equal(user.status, 200, it.explain(user))
    const logoutUrl = String(claimValues(JSON.parse(user.text) as Claims, 'bff:logout_url')[0])
    // The provider issues no sid: the logout URL carries gatehouse's own random value, and nothing else ends the session.
    assert.deepEqual(claimValues(JSON.parse(user.text) as Claims, 'sid'), [])
    assert.match(logoutUrl, /^\/bff\/logout\?sid=[A-Za-z0-9_-]{22}$/)
    for (const sid of ['', 'johndoe', 'undefined'])
      assert.equal((await browser.get(`${it.origin}/bff/logout?sid=${sid}`)).status, 400, `sid ${JSON.stringify(sid)}`)
    assert.equal((await browser.get(`${it.origin}/bff/logout`)).status, 400, 'no sid at all')

    const revokeMark = it.revocations.length
    const res = await browser.get(`${it.origin}${logoutUrl}&returnUrl=/goodbye`)
    assert.equal(res.status, 302, it.explain(res))
    assert.ok(
      res.headers
        .getSetCookie()
        .some((line) => line.startsWith(`${COOKIE}=;`) || (line.startsWith(`${COOKIE}=`) && /Max-Age=0/i.test(line))),
      'session cookie cleared',
    )
    const to = new URL(res.headers.get('location')!)
    assert.equal(typeof it.discovery.end_session_endpoint, 'string', 'the provider publishes end_session_endpoint')
    assert.equal(`${to.origin}${to.pathname}`, it.discovery.end_session_endpoint)
    assert.equal(to.searchParams.get('id_token_hint'), login.id_token)
    assert.equal(to.searchParams.get('post_logout_redirect_uri'), `${it.origin}/signout-callback-oidc`)
    assert.ok(to.searchParams.get('state'), 'state sent')

    const revoked = since(it.revocations, revokeMark)
    assert.equal(revoked.length, 1, 'one revocation request')
    const form = await revoked[0]!.form
    assert.equal(form.get('token'), login.refresh_token)
    assert.equal(form.get('token_type_hint'), 'refresh_token')

    assert.equal((await browser.get(`${it.origin}/bff/user`, CSRF)).status, 401)

    // The provider redirects to post_logout_redirect_uri with the state; gatehouse sends the browser on.
    const endSession = await browser.get(to.href)
    assert.equal(endSession.status, 302, it.explain(endSession))
    const callback = await browser.get(new URL(endSession.headers.get('location')!, endSession.url).href)
    assert.equal(callback.status, 302, it.explain(callback))
    assert.equal(callback.headers.get('location'), '/goodbye')
  })
})

for (const method of ['client_secret_basic', 'client_secret_post'] as const) {
  describe(`interop with oauth2-mock-server advertising ${method} only`, () => {
    let it: Interop
    before(async () => {
      it = await startInterop({
        discovery: (document) => void (document.token_endpoint_auth_methods_supported = [method]),
      })
    })
    after(() => it?.close())

    test(`gatehouse authenticates its code exchange and refresh with ${method}, and the login and refresh complete`, async () => {
      const browser = it.browser()
      const mark = it.tokenExchanges.length
      const { callback } = await it.login(browser)
      assert.equal(callback.status, 302, it.explain(callback))
      const expiresIn = Number(bodyOf(it.tokenExchanges.at(-1)!).expires_in)
      it.clock.advance((expiresIn + 1) * 1000)
      const api = await browser.get(`${it.origin}/api/echo`, CSRF)
      assert.equal(api.status, 200, it.explain(api))

      const exchanges = since(it.tokenExchanges, mark)
      assert.deepEqual(
        exchanges.map((e) => e.grant),
        ['authorization_code', 'refresh_token'],
      )
      for (const exchange of exchanges) {
        if (method === 'client_secret_basic') {
          assert.deepEqual(basicCredentials(exchange.authorization), { id: CLIENT_ID, secret: CLIENT_SECRET })
          assert.equal(exchange.form.client_secret, undefined, 'no secret in the body')
        } else {
          assert.equal(exchange.authorization, undefined, 'no Authorization header')
          assert.equal(exchange.form.client_id, CLIENT_ID)
          assert.equal(exchange.form.client_secret, CLIENT_SECRET)
        }
      }
    })
  })
}

describe('interop with oauth2-mock-server whose issuer ends with a slash', () => {
  let it: Interop
  before(async () => {
    it = await startInterop({ trailingSlash: true })
  })
  after(() => it?.close())

  test("a login with that issuer as the authority completes and /bff/user answers the provider's subject", async () => {
    assert.match(it.issuer, /\/$/)
    const browser = it.browser()
    const { callback } = await it.login(browser)
    assert.equal(callback.status, 302, it.explain(callback))
    const user = await browser.get(`${it.origin}/bff/user`, CSRF)
    assert.equal(user.status, 200, it.explain(user))
    assert.deepEqual(claimValues(JSON.parse(user.text) as Claims, 'sub'), [USER.sub])
    assert.equal(decodeJwt(String(bodyOf(it.tokenExchanges.at(-1)!).id_token)).iss, it.issuer)
  })
})
