import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { after, before, describe, test } from 'node:test'
import { calculateJwkThumbprint, decodeProtectedHeader, EmbeddedJWK, jwtVerify, type JWK } from 'jose'
import { WebSocket } from 'ws'
import { startDemoApi } from '../../src/demo/api.ts'
import { createLogger } from '../../src/log.ts'
import { KeyRing } from '../../src/session/seal.ts'
import type { SessionData } from '../../src/session/session.ts'
import { hashSessionId, sessionSealPurpose } from '../../src/session/sessions.ts'
import { MemoryStore } from '../../src/session/stores/memory.ts'
import { createDpopKey, dpopProof, DpopKeys } from '../../src/tokens/dpop.ts'
import type { BrowserJar } from '../helpers/browser-jar.ts'
import { CLIENT_ID, CLIENT_SECRET, CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import { logLines } from '../helpers/log-lines.ts'
import { introspect, startUpstream, type RecordedRequest, type Upstream } from '../helpers/upstream.ts'

// oidc.dpop (RFC 9449): tokens bound to a key of the session's own, and a proof with every API call.
// Real oidc-provider (DPoP on, as by default), real upstream; proofs are checked as a resource server would.

const COOKIE = '__Host-gatehouse'
const PAST_EXPIRY_MS = 3600_000 + 60_000

interface Proof {
  jwk: JWK
  thumbprint: string
  payload: { jti: string; htm: string; htu: string; iat: number; ath: string }
}

/** Verifies the request's DPoP proof against the key it embeds (RFC 9449 §4.3) and that it belongs to this token. */
async function proofOf(request: RecordedRequest): Promise<Proof & { token: string }> {
  const match = /^DPoP (\S+)$/.exec(String(request.headers.authorization))
  assert.ok(match, `Authorization uses the DPoP scheme (got ${String(request.headers.authorization)})`)
  const proof = request.headers.dpop
  assert.equal(typeof proof, 'string', 'one DPoP header')
  const { payload, protectedHeader } = await jwtVerify(proof as string, EmbeddedJWK, {
    typ: 'dpop+jwt',
    algorithms: ['ES256'],
  })
  assert.equal((protectedHeader.jwk as JWK | undefined)?.d, undefined, 'the proof embeds the public key only')
  const token = match[1]!
  assert.equal(
    payload.ath,
    createHash('sha256').update(token).digest('base64url'),
    'ath is the hash of the access token sent with it',
  )
  assert.ok(Math.abs((payload.iat ?? 0) - Date.now() / 1000) < 60, 'iat is now')
  assert.equal(typeof payload.jti, 'string')
  const jwk = protectedHeader.jwk!
  return { token, jwk, thumbprint: await calculateJwkThumbprint(jwk), payload: payload as unknown as Proof['payload'] }
}

/** The cnf.jkt the IdP bound a token to, asked of the IdP (RFC 7662). */
async function boundTo(flow: Flow, token: string): Promise<string | undefined> {
  const info = await introspect(flow.idp.issuer, token, CLIENT_ID, CLIENT_SECRET)
  assert.equal(info.active, true, 'the token is active')
  return (info.cnf as { jkt?: string } | undefined)?.jkt
}

const last = (upstream: Upstream) => upstream.received.at(-1)!

describe('oidc.dpop: DPoP-bound user tokens, a proof with every API call', () => {
  let upstream: Upstream
  let flow: Flow
  const store = new MemoryStore()
  let offset = 0
  const now = () => Date.now() + offset

  before(async () => {
    upstream = await startUpstream()
    flow = await startFlow({
      oidc: { dpop: true },
      runtime: { now, store },
      gatehouse: {
        remoteApis: [
          { path: '/api', target: `${upstream.url}/base`, token: 'user' },
          { path: '/client', target: upstream.url, token: 'client' },
          { path: '/ws', target: upstream.url, token: 'user', websockets: true },
        ],
      },
    })
  })
  after(async () => {
    await flow.close()
    await upstream.close()
  })

  async function loggedIn(username = 'alice'): Promise<BrowserJar> {
    const browser = flow.browser()
    assert.equal((await flow.login(browser, { username })).status, 302)
    return browser
  }

  async function sessionData(browser: BrowserJar): Promise<SessionData> {
    const record = await store.get(hashSessionId(browser.cookies.get(COOKIE)!), 0)
    assert.ok(record)
    return JSON.parse(new KeyRing(flow.keys).unseal(record.sealed, sessionSealPurpose(record))!) as SessionData
  }

  test("the IdP binds the session's token to the key whose proofs reach the API: cnf.jkt is that key's thumbprint", async () => {
    const browser = await loggedIn()
    const res = await browser.get(`${flow.origin}/api/echo/orders?x=1#frag`, CSRF)
    assert.equal(res.status, 200, res.text)
    const request = last(upstream)
    assert.equal(request.url, '/base/echo/orders?x=1')
    const proof = await proofOf(request)
    assert.equal(proof.payload.htm, 'GET')
    assert.equal(
      proof.payload.htu,
      `${upstream.url}/base/echo/orders`,
      'htu is the upstream URL requested (target and rewritten path), without the query',
    )
    assert.equal(await boundTo(flow, proof.token), proof.thumbprint)
    // The session holds the same token and, sealed with it, the private key of that thumbprint.
    const data = await sessionData(browser)
    assert.equal(data.tokens.accessToken, proof.token)
    assert.equal(typeof data.dpopKey?.d, 'string')
    assert.equal(await calculateJwkThumbprint(data.dpopKey!), proof.thumbprint)
  })

  test("every request gets its own proof: that request's method and URL, a fresh jti", async () => {
    const browser = await loggedIn()
    const proofs: Proof[] = []
    for (const [method, path] of [
      ['GET', '/echo/a'],
      ['POST', '/body'],
      ['PUT', '/body'],
      ['GET', '/echo/a'],
    ] as const) {
      const res = await browser.request(method, `${flow.origin}/api${path}`, method === 'GET' ? undefined : 'x=1', CSRF)
      assert.equal(res.status, 200, res.text)
      const proof = await proofOf(last(upstream))
      assert.equal(proof.payload.htm, method)
      assert.equal(proof.payload.htu, `${upstream.url}/base${path}`)
      proofs.push(proof)
    }
    assert.equal(new Set(proofs.map((p) => p.payload.jti)).size, proofs.length, 'no jti is used twice')
    assert.equal(new Set(proofs.map((p) => p.thumbprint)).size, 1, 'one key for the session')
  })

  test('two sessions get two keys', async () => {
    const thumbprints: string[] = []
    for (const username of ['alice', 'bob', 'alice']) {
      const browser = await loggedIn(username)
      assert.equal((await browser.get(`${flow.origin}/api/echo`, CSRF)).status, 200)
      thumbprints.push((await proofOf(last(upstream))).thumbprint)
    }
    assert.equal(new Set(thumbprints).size, 3)
  })

  test('a refresh keeps the key: the new token is bound to it, and proofs go on with it', async () => {
    const browser = await loggedIn()
    await browser.get(`${flow.origin}/api/echo`, CSRF)
    const before = await proofOf(last(upstream))
    const grants = flow.idp.grants.filter((g) => g === 'refresh_token').length
    offset += PAST_EXPIRY_MS
    try {
      const res = await browser.get(`${flow.origin}/api/echo`, CSRF)
      assert.equal(res.status, 200, res.text)
    } finally {
      offset -= PAST_EXPIRY_MS
    }
    assert.equal(flow.idp.grants.filter((g) => g === 'refresh_token').length, grants + 1, 'one refresh grant')
    const after = await proofOf(last(upstream))
    assert.notEqual(after.token, before.token, 'a new access token')
    assert.equal(after.thumbprint, before.thumbprint, 'the same key')
    assert.equal(await boundTo(flow, after.token), before.thumbprint)
  })

  test("the session's key survives a restart (it is sealed in the session, not held by the process)", async () => {
    const browser = await loggedIn()
    await browser.get(`${flow.origin}/api/echo`, CSRF)
    const before = await proofOf(last(upstream))
    await flow.restart()
    assert.equal((await browser.get(`${flow.origin}/api/echo`, CSRF)).status, 200)
    assert.equal((await proofOf(last(upstream))).thumbprint, before.thumbprint)
  })

  test('logout revokes the refresh token as without DPoP', async () => {
    const browser = await loggedIn()
    const { refreshToken } = (await sessionData(browser)).tokens
    assert.equal((await introspect(flow.idp.issuer, refreshToken!, CLIENT_ID, CLIENT_SECRET)).active, true)
    const claims = JSON.parse((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) as Array<{
      type: string
      value: string
    }>
    assert.equal(
      (await browser.get(`${flow.origin}${claims.find((c) => c.type === 'bff:logout_url')!.value}`)).status,
      302,
    )
    assert.equal(
      (await introspect(flow.idp.issuer, refreshToken!, CLIENT_ID, CLIENT_SECRET)).active,
      false,
      'revoked at the IdP',
    )
  })

  test('a client-credentials token is DPoP-bound too, to a key of the process', async () => {
    const anonymous = flow.browser()
    const thumbprints: string[] = []
    for (let i = 0; i < 2; i++) {
      assert.equal((await anonymous.get(`${flow.origin}/client/echo`, CSRF)).status, 200)
      const proof = await proofOf(last(upstream))
      assert.equal(proof.payload.htu, `${upstream.url}/echo`)
      assert.equal(await boundTo(flow, proof.token), proof.thumbprint)
      thumbprints.push(proof.thumbprint)
    }
    assert.equal(new Set(thumbprints).size, 1, 'the cached client token keeps its key')
  })

  test('a WebSocket handshake carries a proof for GET on the http URL of the upstream handshake', async () => {
    const browser = await loggedIn()
    const ws = new WebSocket(`${flow.origin.replace('http', 'ws')}/ws/ws?room=1`, {
      headers: { cookie: browser.cookieHeader(), origin: flow.origin },
    })
    const first = await new Promise<string>((resolve, reject) => {
      ws.once('message', (data: Buffer) => resolve(data.toString()))
      ws.once('error', reject)
    })
    ws.close()
    assert.match((JSON.parse(first) as { authorization: string }).authorization, /^DPoP /)
    const handshake = upstream.received.findLast((r) => r.url.startsWith('/ws'))!
    const proof = await proofOf(handshake)
    assert.equal(proof.payload.htm, 'GET')
    assert.equal(proof.payload.htu, `${upstream.url}/ws`)
  })

  test("a DPoP header or Authorization from the browser never reaches the API: only gatehouse's own proof", async () => {
    const browser = await loggedIn()
    const forged = 'eyJ0eXAiOiJkcG9wK2p3dCJ9.forged.proof'
    assert.equal(
      (await browser.get(`${flow.origin}/api/echo`, { ...CSRF, dpop: forged, authorization: 'DPoP stolen' })).status,
      200,
    )
    const request = last(upstream)
    assert.notEqual(request.headers.dpop, forged)
    await proofOf(request)
    // An API without a token: no Authorization and no DPoP header at all.
    const open = await startFlow({
      gatehouse: { remoteApis: [{ path: '/open', target: upstream.url, token: 'none' }] },
    })
    try {
      assert.equal((await open.browser().get(`${open.origin}/open/echo`, { ...CSRF, dpop: forged })).status, 200)
      assert.equal(last(upstream).headers.dpop, undefined)
      assert.equal(last(upstream).headers.authorization, undefined)
    } finally {
      await open.close()
    }
  })
})

describe('oidc.dpop off (the default): Bearer tokens, no proofs', () => {
  test('the API gets a Bearer token, no DPoP header, and the session holds no key', async () => {
    const upstream = await startUpstream()
    const store = new MemoryStore()
    const flow = await startFlow({
      runtime: { store },
      gatehouse: { remoteApis: [{ path: '/api', target: upstream.url, token: 'user' }] },
    })
    try {
      const browser = flow.browser()
      await flow.login(browser)
      assert.equal((await browser.get(`${flow.origin}/api/echo`, CSRF)).status, 200)
      const request = last(upstream)
      assert.match(String(request.headers.authorization), /^Bearer /)
      assert.equal(request.headers.dpop, undefined)
      assert.equal(
        await boundTo(flow, String(request.headers.authorization).slice(7)),
        undefined,
        'the token is not bound',
      )
      const record = (await store.get(hashSessionId(browser.cookies.get(COOKIE)!), 0))!
      const data = JSON.parse(new KeyRing(flow.keys).unseal(record.sealed, sessionSealPurpose(record))!) as SessionData
      assert.equal(data.dpopKey, undefined)
    } finally {
      await flow.close()
      await upstream.close()
    }
  })
})

describe('oidc.dpop with an IdP that demands DPoP-Nonce', () => {
  test('login (code exchange and userinfo) and refresh answer the use_dpop_nonce challenge', async () => {
    const upstream = await startUpstream()
    let offset = 0
    const flow = await startFlow({
      idp: { dpop: { requireNonce: true } },
      oidc: { dpop: true },
      runtime: { now: () => Date.now() + offset },
      gatehouse: { remoteApis: [{ path: '/api', target: upstream.url, token: 'user' }] },
    })
    try {
      const browser = flow.browser()
      assert.equal((await flow.login(browser)).status, 302)
      const tokenCalls = () => flow.idp.requests.filter((r) => r.method === 'POST' && r.path === '/token').length
      assert.equal(tokenCalls(), 2, 'the code exchange was challenged once, then answered')
      const claims = JSON.parse((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) as Array<{ type: string }>
      assert.ok(
        claims.some((c) => c.type === 'email'),
        'userinfo answered (it needs a DPoP proof too)',
      )
      assert.equal((await browser.get(`${flow.origin}/api/echo`, CSRF)).status, 200)
      const first = await proofOf(last(upstream))
      offset += PAST_EXPIRY_MS
      assert.equal((await browser.get(`${flow.origin}/api/echo`, CSRF)).status, 200)
      const second = await proofOf(last(upstream))
      assert.notEqual(second.token, first.token, 'refreshed')
      assert.ok(tokenCalls() >= 3, 'a refresh grant')
      assert.equal(await boundTo(flow, second.token), first.thumbprint)
    } finally {
      await flow.close()
      await upstream.close()
    }
  })
})

describe('oidc.dpop with an IdP that does not offer it', () => {
  for (const [what, idp, dpop] of [
    ['an IdP with DPoP off', { dpop: false }, true],
    ['an algorithm the IdP does not list (ES384)', {}, { signingAlg: 'ES384' as const }],
  ] as const) {
    test(`${what}: gatehouse starts, logs an error naming oidc.dpop, is not ready, and refuses logins (502) rather than fall back to Bearer`, async () => {
      const { lines, sink } = logLines()
      const flow = await startFlow({ idp, oidc: { dpop }, runtime: { logger: createLogger('info', sink) } })
      try {
        const browser = flow.browser()
        const login = await browser.get(`${flow.origin}/bff/login`)
        assert.equal(login.status, 502)
        assert.equal(browser.cookies.size, 0, 'no login started')
        assert.equal((await fetch(`${flow.origin}/readyz`)).status, 503)
        const reported = lines
          .map((l) => JSON.parse(l) as { level: number; event?: string; msg: string })
          .find((e) => e.event === 'dpop_unsupported')
        assert.ok(reported, `an error at start: ${lines.join('\n')}`)
        assert.equal(reported.level, 50)
        assert.match(
          reported.msg,
          /^oidc\.dpop is on, but the identity provider does not accept DPoP proofs signed with ES(256|384)/,
        )
      } finally {
        await flow.close()
      }
    })
  }
})

describe('oidc.dpop with an IdP that advertises DPoP but issues Bearer tokens', () => {
  test('the login is refused (400, no session) rather than keep a token that is not bound', async () => {
    const flow = await startFlow({ idp: { dpop: false }, oidc: { dpop: true } })
    try {
      // The IdP's discovery now claims DPoP; its token endpoint still ignores proofs.
      const doc = (await (await fetch(`${flow.idp.issuer}/.well-known/openid-configuration`)).json()) as Record<
        string,
        unknown
      >
      const [idpListener] = flow.idp.server.listeners('request') as Array<
        (req: IncomingMessage, res: ServerResponse) => void
      >
      flow.idp.server.removeAllListeners('request')
      flow.idp.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
        if (!req.url?.startsWith('/.well-known/openid-configuration')) return idpListener!(req, res)
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify({ ...doc, dpop_signing_alg_values_supported: ['ES256'] }))
      })
      const browser = flow.browser()
      const res = await flow.login(browser)
      assert.equal(res.status, 400, res.text)
      assert.match(res.text, /not DPoP-bound/)
      assert.equal(browser.cookies.get(COOKIE), undefined, 'no session')
      assert.equal(flow.idp.grants.at(-1), 'authorization_code', 'the IdP did answer the code exchange')
    } finally {
      await flow.close()
    }
  })
})

describe('oidc.dpop with pushed authorization requests', () => {
  test('a PAR-initiated login gets a DPoP-bound token as well', async () => {
    const upstream = await startUpstream()
    const flow = await startFlow({
      oidc: { dpop: true, pushedAuthorizationRequests: true },
      gatehouse: { remoteApis: [{ path: '/api', target: upstream.url, token: 'user' }] },
    })
    try {
      const browser = flow.browser()
      assert.equal((await flow.login(browser)).status, 302)
      assert.ok(
        flow.idp.requests.some((r) => r.method === 'POST' && r.path === '/request'),
        'the authorization request was pushed',
      )
      assert.equal((await browser.get(`${flow.origin}/api/echo`, CSRF)).status, 200)
      const proof = await proofOf(last(upstream))
      assert.equal(await boundTo(flow, proof.token), proof.thumbprint)
    } finally {
      await flow.close()
      await upstream.close()
    }
  })
})

describe('oidc.dpop in cookie mode', () => {
  test('the key travels sealed in the session cookie; proofs and refresh work as in server mode', async () => {
    const upstream = await startUpstream()
    let offset = 0
    const flow = await startFlow({
      oidc: { dpop: true },
      runtime: { now: () => Date.now() + offset },
      gatehouse: { session: { mode: 'cookie' }, remoteApis: [{ path: '/api', target: upstream.url, token: 'user' }] },
    })
    try {
      const browser = flow.browser()
      assert.equal((await flow.login(browser)).status, 302)
      assert.equal((await browser.get(`${flow.origin}/api/echo`, CSRF)).status, 200)
      const first = await proofOf(last(upstream))
      assert.equal(await boundTo(flow, first.token), first.thumbprint)
      offset += PAST_EXPIRY_MS
      assert.equal((await browser.get(`${flow.origin}/api/echo`, CSRF)).status, 200)
      assert.equal(
        (await browser.get(`${flow.origin}/api/echo`, CSRF)).status,
        200,
        'the rewritten cookie carries the refreshed token and the key',
      )
      const second = await proofOf(last(upstream))
      assert.notEqual(second.token, first.token)
      assert.equal(second.thumbprint, first.thumbprint)
      assert.equal(decodeProtectedHeader(String(last(upstream).headers.dpop)).typ, 'dpop+jwt')
    } finally {
      await flow.close()
      await upstream.close()
    }
  })
})

describe('the demo API checks DPoP as a resource server must (RFC 9449 §7)', () => {
  test('through gatehouse it sees a token bound to the session key; a stolen token or proof gets nowhere', async () => {
    const store = new MemoryStore()
    const flow = await startFlow({ oidc: { dpop: true }, runtime: { store } })
    const meta = (await (await fetch(`${flow.idp.issuer}/.well-known/openid-configuration`)).json()) as {
      introspection_endpoint: string
    }
    const api = await startDemoApi({
      introspectionEndpoint: meta.introspection_endpoint,
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
    })
    await flow.restart({ remoteApis: [{ path: '/api', target: api.url, token: 'user' }] })
    try {
      const browser = flow.browser()
      assert.equal((await flow.login(browser)).status, 302)
      const res = await browser.get(`${flow.origin}/api/hello?x=1`, CSRF)
      assert.equal(res.status, 200, res.text)
      const record = (await store.get(hashSessionId(browser.cookies.get(COOKIE)!), 0))!
      const data = JSON.parse(new KeyRing(flow.keys).unseal(record.sealed, sessionSealPurpose(record))!) as SessionData
      const key = await new DpopKeys().get(data.dpopKey!)
      assert.equal(
        (JSON.parse(res.text) as { tokenSeenByApi: { dpopBoundTo: string } }).tokenSeenByApi.dpopBoundTo,
        key.thumbprint,
      )

      // What someone holding the access token (and maybe one proof) but not the key could try.
      const token = data.tokens.accessToken!
      const call = (headers: Record<string, string>) => fetch(`${api.url}/hello`, { headers }).then((r) => r.status)
      const proof = await dpopProof(key, 'GET', new URL(`${api.url}/hello`), token)
      assert.equal(await call({ authorization: `DPoP ${token}`, dpop: proof }), 200, "the key holder's own proof")
      assert.equal(await call({ authorization: `DPoP ${token}`, dpop: proof }), 401, 'a replayed proof')
      assert.equal(await call({ authorization: `Bearer ${token}` }), 401, 'the bound token as a Bearer token')
      assert.equal(await call({ authorization: `DPoP ${token}` }), 401, 'no proof')
      assert.equal(
        await call({
          authorization: `DPoP ${token}`,
          dpop: await dpopProof(key, 'GET', new URL(`${api.url}/other`), token),
        }),
        401,
        'a proof for another URL',
      )
      assert.equal(
        await call({
          authorization: `DPoP ${token}`,
          dpop: await dpopProof(key, 'POST', new URL(`${api.url}/hello`), token),
        }),
        401,
        'a proof for another method',
      )
      assert.equal(
        await call({
          authorization: `DPoP ${token}`,
          dpop: await dpopProof(key, 'GET', new URL(`${api.url}/hello`), 'another-token'),
        }),
        401,
        'a proof for another token',
      )
      const attacker = await createDpopKey('ES256')
      assert.equal(
        await call({
          authorization: `DPoP ${token}`,
          dpop: await dpopProof(attacker, 'GET', new URL(`${api.url}/hello`), token),
        }),
        401,
        'a proof by another key',
      )
    } finally {
      await flow.close()
      await api.close()
    }
  })
})
