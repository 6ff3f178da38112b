import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { WebSocket } from 'ws'
import type { BrowserJar, JarResponse } from '../helpers/browser-jar.ts'
import { CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const COOKIE = '__Host-gatehouse'
const SPA = 'https://spa.example.com'
const EVIL = 'https://evil.example'

/** Every Access-Control-* header of an answer, by name. */
function corsHeaders(res: JarResponse | Response): Record<string, string> {
  const out: Record<string, string> = {}
  res.headers.forEach((value, name) => {
    if (name.startsWith('access-control-')) out[name] = value
  })
  return out
}

function varies(res: JarResponse | Response): string[] {
  return (res.headers.get('vary') ?? '').split(',').map((v) => v.trim().toLowerCase())
}

function problem(res: JarResponse): {
  status: number
  code: string
  detail?: string
  errors?: Record<string, string[]>
} {
  assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/)
  return JSON.parse(res.text)
}

const GRANTED = { 'access-control-allow-origin': SPA, 'access-control-allow-credentials': 'true' }

describe('cross-origin SPA (cors.allowedOrigins)', () => {
  let flow: Flow
  let upstream: Upstream
  let alice: BrowserJar

  before(async () => {
    upstream = await startUpstream()
    flow = await startFlow({
      gatehouse: {
        session: { store: 'memory', sameSite: 'none' },
        cors: { allowedOrigins: [SPA, 'http://localhost:5173'] },
        remoteApis: [
          { path: '/api', target: upstream.url, token: 'user' },
          { path: '/reads', target: upstream.url, token: 'user', methods: ['GET'] },
          { path: '/live', target: upstream.url, token: 'user', websockets: true },
        ],
      },
      app: (gatehouse) =>
        gatehouse.protect(
          (req, res) =>
            void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ local: req.url })),
        ),
    })
    alice = flow.browser()
    const done = await flow.login(alice)
    assert.equal(done.status, 302)
  })
  after(async () => {
    await flow.close()
    await upstream.close()
  })

  describe('preflights', () => {
    test('a preflight of an allowed origin to /bff/user is 204 with the grant, without a session or the anti-forgery header', async () => {
      const res = await flow.browser().request('OPTIONS', `${flow.origin}/bff/user`, undefined, {
        origin: SPA,
        'access-control-request-method': 'GET',
        'access-control-request-headers': 'x-csrf',
      })
      assert.equal(res.status, 204)
      assert.deepEqual(corsHeaders(res), {
        ...GRANTED,
        'access-control-allow-methods': 'GET, HEAD',
        'access-control-allow-headers': 'x-csrf',
        'access-control-max-age': '600',
      })
      assert.ok(varies(res).includes('origin'))
      assert.equal(res.headers.getSetCookie().length, 0, 'a preflight sets no cookie')
    })

    test('a preflight of another origin is 403 problem+json and grants nothing', async () => {
      for (const origin of [EVIL, 'null', 'https://spa.example.com.evil.com', 'http://spa.example.com']) {
        const res = await flow.browser().request('OPTIONS', `${flow.origin}/bff/user`, undefined, {
          origin,
          'access-control-request-method': 'GET',
          'access-control-request-headers': 'x-csrf',
        })
        assert.equal(res.status, 403, origin)
        assert.equal(problem(res).code, 'forbidden')
        assert.deepEqual(corsHeaders(res), {}, origin)
      }
    })

    test('a preflight of an allowed origin asking for a method or header the endpoint does not take is 403', async () => {
      const method = await flow.browser().request('OPTIONS', `${flow.origin}/bff/user`, undefined, {
        origin: SPA,
        'access-control-request-method': 'DELETE',
      })
      assert.equal(method.status, 403)
      assert.match(problem(method).detail ?? '', /DELETE is not allowed/)
      const header = await flow.browser().request('OPTIONS', `${flow.origin}/bff/user`, undefined, {
        origin: SPA,
        'access-control-request-method': 'GET',
        'access-control-request-headers': 'x-csrf, authorization',
      })
      assert.equal(header.status, 403)
      assert.deepEqual(corsHeaders(header), {})
    })

    test("a remote API preflight is answered by gatehouse with the API's methods and never reaches the upstream", async () => {
      const before = upstream.received.length
      const res = await flow.browser().request('OPTIONS', `${flow.origin}/reads/echo`, undefined, {
        origin: SPA,
        'access-control-request-method': 'GET',
        'access-control-request-headers': 'x-csrf, x-tenant',
      })
      assert.equal(res.status, 204)
      assert.deepEqual(corsHeaders(res), {
        ...GRANTED,
        'access-control-allow-methods': 'GET, HEAD',
        'access-control-allow-headers': 'x-csrf, x-tenant',
        'access-control-max-age': '600',
      })
      const refused = await flow.browser().request('OPTIONS', `${flow.origin}/reads/echo`, undefined, {
        origin: SPA,
        'access-control-request-method': 'POST',
      })
      assert.equal(refused.status, 403)
      const evil = await flow.browser().request('OPTIONS', `${flow.origin}/api/cors`, undefined, {
        origin: EVIL,
        'access-control-request-method': 'GET',
      })
      assert.equal(evil.status, 403)
      assert.deepEqual(corsHeaders(evil), {})
      assert.equal(upstream.received.length, before, 'no preflight was forwarded')
    })

    test('a remote API preflight never lets the SPA send credentials or forwarding headers of its own', async () => {
      for (const name of ['authorization', 'dpop', 'x-forwarded-host', 'x-http-method-override']) {
        const res = await flow.browser().request('OPTIONS', `${flow.origin}/api/echo`, undefined, {
          origin: SPA,
          'access-control-request-method': 'POST',
          'access-control-request-headers': `x-csrf, ${name}`,
        })
        assert.equal(res.status, 403, name)
      }
    })

    test('a protected local route answers the preflight itself, for the method asked', async () => {
      const res = await flow.browser().request('OPTIONS', `${flow.origin}/local/orders`, undefined, {
        origin: SPA,
        'access-control-request-method': 'PUT',
        'access-control-request-headers': 'x-csrf, content-type',
      })
      assert.equal(res.status, 204)
      assert.deepEqual(corsHeaders(res), {
        ...GRANTED,
        'access-control-allow-methods': 'PUT',
        'access-control-allow-headers': 'x-csrf, content-type',
        'access-control-max-age': '600',
      })
      const evil = await flow.browser().request('OPTIONS', `${flow.origin}/local/orders`, undefined, {
        origin: EVIL,
        'access-control-request-method': 'PUT',
      })
      assert.equal(evil.status, 403)
    })

    test('login and logout are navigations: they grant no CORS, preflight or not', async () => {
      const preflight = await flow.browser().request('OPTIONS', `${flow.origin}/bff/login`, undefined, {
        origin: SPA,
        'access-control-request-method': 'GET',
      })
      assert.notEqual(preflight.status, 204)
      assert.deepEqual(corsHeaders(preflight), {})
      const start = await flow.browser().get(`${flow.origin}/bff/login`, { origin: SPA })
      assert.equal(start.status, 302)
      assert.deepEqual(corsHeaders(start), {})
    })
  })

  describe('actual requests', () => {
    test('GET /bff/user from the allowed origin with a session is 200 with the grant and Vary: Origin', async () => {
      const res = await alice.get(`${flow.origin}/bff/user`, { ...CSRF, origin: SPA })
      assert.equal(res.status, 200)
      assert.ok(Array.isArray(JSON.parse(res.text)))
      assert.deepEqual(corsHeaders(res), GRANTED)
      assert.ok(varies(res).includes('origin'))
    })

    test('GET /bff/user from another origin carries no CORS header', async () => {
      for (const origin of [EVIL, 'null', 'https://SPA.example.com']) {
        const res = await alice.get(`${flow.origin}/bff/user`, { ...CSRF, origin })
        assert.deepEqual(corsHeaders(res), {}, origin)
      }
    })

    test('a request without Origin carries no CORS header', async () => {
      const user = await alice.get(`${flow.origin}/bff/user`, CSRF)
      assert.equal(user.status, 200)
      assert.deepEqual(corsHeaders(user), {})
      const api = await alice.get(`${flow.origin}/api/echo`, CSRF)
      assert.equal(api.status, 200)
      assert.deepEqual(corsHeaders(api), {})
    })

    test('a 401 to the allowed origin carries the grant, so the SPA can read it', async () => {
      const anonymous = await flow.browser().get(`${flow.origin}/bff/user`, { ...CSRF, origin: SPA })
      assert.equal(anonymous.status, 401)
      assert.equal(problem(anonymous).code, 'session_required')
      assert.deepEqual(corsHeaders(anonymous), GRANTED)
      const forged = await alice.get(`${flow.origin}/bff/user`, { origin: SPA })
      assert.equal(forged.status, 401)
      assert.equal(problem(forged).code, 'antiforgery_failed')
      assert.deepEqual(corsHeaders(forged), GRANTED)
      const api = await flow.browser().get(`${flow.origin}/api/echo`, { ...CSRF, origin: SPA })
      assert.equal(api.status, 401)
      assert.deepEqual(corsHeaders(api), GRANTED)
    })

    test("a remote API call from the allowed origin carries gatehouse's grant, never the upstream's", async () => {
      const res = await alice.get(`${flow.origin}/api/cors`, { ...CSRF, origin: SPA })
      assert.equal(res.status, 200)
      assert.equal(res.text, 'cors')
      const cors = corsHeaders(res)
      assert.equal(cors['access-control-allow-origin'], SPA)
      assert.equal(cors['access-control-allow-credentials'], 'true')
      assert.equal(cors['access-control-max-age'], undefined, "the upstream's own grant is dropped")
      assert.equal(cors['access-control-allow-methods'], undefined)
      assert.doesNotMatch(cors['access-control-expose-headers'] ?? '', /x-secret/)
      assert.deepEqual(
        varies(res).filter((v) => v === 'origin'),
        ['origin'],
        'Vary names Origin once',
      )
    })

    test("a remote API answer to the allowed origin exposes the upstream's own headers but not Set-Cookie", async () => {
      const res = await alice.get(`${flow.origin}/api/echo`, { ...CSRF, origin: SPA })
      assert.equal(res.status, 200)
      assert.equal(JSON.parse(res.text).headers.authorization?.startsWith('Bearer '), true)
      const exposed = (res.headers.get('access-control-expose-headers') ?? '').split(', ')
      assert.ok(exposed.includes('date'), exposed.join())
      assert.ok(!exposed.includes('set-cookie'))
    })

    test('a remote API answer to another origin carries no grant, whatever the upstream says', async () => {
      const res = await alice.get(`${flow.origin}/api/cors`, { ...CSRF, origin: EVIL })
      assert.equal(res.status, 200)
      assert.deepEqual(corsHeaders(res), {})
      assert.ok(varies(res).includes('origin'), 'a shared cache keeps answers to different origins apart')
    })

    test('a protected local route answers the allowed origin with the grant, and others without', async () => {
      const res = await alice.request('PUT', `${flow.origin}/local/orders`, '{}', {
        ...CSRF,
        origin: SPA,
        'content-type': 'application/json',
      })
      assert.equal(res.status, 200)
      assert.deepEqual(JSON.parse(res.text), { local: '/local/orders' })
      assert.deepEqual(corsHeaders(res), GRANTED)
      const evil = await alice.request('PUT', `${flow.origin}/local/orders`, '{}', {
        ...CSRF,
        origin: EVIL,
        'content-type': 'application/json',
      })
      assert.deepEqual(corsHeaders(evil), {})
    })

    test('/bff/session-events streams to an EventSource of the allowed origin and refuses other sites', async () => {
      const cookie = `${COOKIE}=${alice.cookies.get(COOKIE)}`
      const abort = new AbortController()
      const res = await fetch(`${flow.origin}/bff/session-events`, {
        headers: { cookie, origin: SPA, 'sec-fetch-site': 'cross-site' },
        signal: abort.signal,
      })
      assert.equal(res.status, 200)
      assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/)
      assert.deepEqual(corsHeaders(res), GRANTED)
      abort.abort()
      await res.body?.cancel().catch(() => {})
      const evil = await fetch(`${flow.origin}/bff/session-events`, {
        headers: { cookie, origin: EVIL, 'sec-fetch-site': 'cross-site' },
      })
      assert.equal(evil.status, 403)
      assert.deepEqual(corsHeaders(evil), {})
      await evil.body?.cancel()
    })

    test('a WebSocket to a remote API opens from the allowed origin and not from another', async () => {
      const url = `${flow.origin.replace('http:', 'ws:')}/live/ws`
      const cookie = `${COOKIE}=${alice.cookies.get(COOKIE)}`
      const open = (origin: string) =>
        new Promise<number>((resolve, reject) => {
          const ws = new WebSocket(url, { headers: { origin, cookie } })
          ws.once('open', () => {
            ws.close()
            resolve(101)
          })
          ws.once('unexpected-response', (req, res) => {
            res.resume()
            req.destroy()
            resolve(res.statusCode ?? 0)
          })
          ws.once('error', reject)
        })
      assert.equal(await open(SPA), 101)
      assert.equal(await open(EVIL), 403)
    })
  })

  describe('session cookie', () => {
    test('the session cookie is SameSite=None and still Secure, HttpOnly and __Host-; the pending-login cookie stays Lax', async () => {
      const browser = flow.browser()
      const start = await browser.get(`${flow.origin}/bff/login`)
      const pending = start.headers.getSetCookie().filter((line) => !line.includes('Max-Age=0'))
      assert.equal(pending.length, 1)
      assert.match(pending[0]!, /; SameSite=Lax\b/)
      const done = await flow.login(browser)
      const session = done.headers
        .getSetCookie()
        .find((line) => line.startsWith(`${COOKIE}=`) && !line.startsWith(`${COOKIE}=;`))
      assert.ok(session, 'the callback sets the session cookie')
      assert.match(session, /; Path=\/; Secure; HttpOnly; SameSite=None\b/)
      assert.doesNotMatch(session, /Domain=/i)
    })
  })

  describe('returnUrl on an allowed origin', () => {
    test('a login with a returnUrl on the allowed origin ends there', async () => {
      const done = await flow.login(flow.browser(), { returnUrl: `${SPA}/orders?x=1#top` })
      assert.equal(done.status, 302)
      assert.equal(done.headers.get('location'), `${SPA}/orders?x=1#top`)
    })

    test('the same origin spelled with upper case or its default port is normalised', async () => {
      const done = await flow.login(flow.browser(), { returnUrl: 'HTTPS://SPA.example.com:443/x' })
      assert.equal(done.headers.get('location'), `${SPA}/x`)
    })

    const HOSTILE = [
      'https://spa.example.com.evil.com/',
      'https://spa.example.com@evil.com/',
      '//spa.example.com',
      'https:/\\evil.example',
      'https://user@spa.example.com/',
      'http://spa.example.com/',
      'https://spa.example.com./',
      'https://spa.example.com:8443/',
      'https://spа.example.com/',
      'https://ｓｐａ.example.com/',
      'https://spa.example.com//evil.example',
      'https://spa.example.com/%0d%0aSet-Cookie:a=b',
      'https://evil.example/',
    ]

    test('a login with a returnUrl on any other origin, however disguised, is 400 naming returnUrl', async () => {
      for (const value of HOSTILE) {
        const res = await flow.browser().get(`${flow.origin}/bff/login?returnUrl=${encodeURIComponent(value)}`)
        assert.equal(res.status, 400, value)
        assert.ok(problem(res).errors?.returnUrl, value)
        assert.equal(res.headers.get('location'), null)
      }
    })

    test('a logout with a returnUrl on the allowed origin comes back there after the IdP', async () => {
      const browser = flow.browser()
      await flow.login(browser)
      const claims = JSON.parse((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) as Array<{
        type: string
        value: string
      }>
      const logoutUrl = claims.find((c) => c.type === 'bff:logout_url')!.value
      const start = await browser.get(`${flow.origin}${logoutUrl}&returnUrl=${encodeURIComponent(`${SPA}/signed-out`)}`)
      assert.equal(start.status, 302)
      assert.doesNotMatch(
        start.headers.get('location')!,
        /spa\.example\.com/,
        'the returnUrl is sealed in state, not sent in clear',
      )
      const confirm = await browser.follow(start)
      let res = await browser.submitForm(confirm, { logout: 'yes' }, 'op.logoutForm')
      for (
        let i = 0;
        i < 10 && res.status >= 300 && res.status < 400 && !res.url.startsWith(`${flow.origin}/signout-callback-oidc`);
        i++
      ) {
        res = await browser.get(new URL(res.headers.get('location')!, res.url).href)
      }
      assert.ok(res.url.startsWith(`${flow.origin}/signout-callback-oidc?`), res.url)
      assert.equal(res.headers.get('location'), `${SPA}/signed-out`)
    })

    test('a logout with a returnUrl on another origin is 400 and the session survives', async () => {
      for (const value of HOSTILE) {
        const res = await alice.get(`${flow.origin}/bff/logout?returnUrl=${encodeURIComponent(value)}`)
        assert.equal(res.status, 400, value)
        assert.ok(problem(res).errors?.returnUrl, value)
      }
      assert.equal((await alice.get(`${flow.origin}/bff/user`, CSRF)).status, 200)
    })
  })
})

describe('without cors configured', () => {
  let flow: Flow

  before(async () => {
    flow = await startFlow()
  })
  after(() => flow.close())

  test('a preflight from any origin gets no grant and an absolute returnUrl is refused', async () => {
    const res = await flow.browser().request('OPTIONS', `${flow.origin}/bff/user`, undefined, {
      origin: SPA,
      'access-control-request-method': 'GET',
      'access-control-request-headers': 'x-csrf',
    })
    assert.equal(res.status, 405)
    assert.deepEqual(corsHeaders(res), {})
    assert.equal(res.headers.get('vary'), null)
    const user = await flow.browser().get(`${flow.origin}/bff/user`, { ...CSRF, origin: SPA })
    assert.deepEqual(corsHeaders(user), {})
    assert.equal(user.headers.get('vary'), null)
    const login = await flow.browser().get(`${flow.origin}/bff/login?returnUrl=${encodeURIComponent(`${SPA}/x`)}`)
    assert.equal(login.status, 400)
  })
})
