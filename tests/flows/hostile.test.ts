import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { connect } from 'node:net'
import { pino } from 'pino'
import { after, before, describe, test } from 'node:test'
import { LOGIN_STATE_MAX_AGE_MS, loginCookieName, sealLoginState, type LoginState } from '../../src/oidc/login-state.ts'
import { generateKey, KeyRing } from '../../src/session/seal.ts'
import { MemoryStore } from '../../src/session/stores/memory.ts'
import { BrowserJar, type JarResponse } from '../helpers/browser-jar.ts'
import { CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import { logLines } from '../helpers/log-lines.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'
import { DEMO_USERS } from '../../src/demo/idp.ts'

const COOKIE = '__Host-gatehouse'
const PROBLEM_JSON = /^application\/problem\+json/

function problem(res: JarResponse): { code: string; status: number; errors?: Record<string, string[]> } {
  assert.match(
    res.headers.get('content-type') ?? '',
    PROBLEM_JSON,
    `problem+json expected, got ${res.status} ${res.headers.get('content-type')}`,
  )
  return JSON.parse(res.text)
}

/** The Set-Cookie line that deletes the session cookie, with the attributes it was set with (SPEC §10). */
function clearsSessionCookie(res: JarResponse): boolean {
  return res.headers
    .getSetCookie()
    .some(
      (line) =>
        line.startsWith(`${COOKIE}=;`) &&
        /; Path=\//.test(line) &&
        /; Secure/.test(line) &&
        /; HttpOnly/.test(line) &&
        /; Max-Age=0\b/.test(line),
    )
}

/** A Set-Cookie line that would give the browser a (new) session. */
function setsSession(res: JarResponse): boolean {
  return res.headers.getSetCookie().some((line) => line.startsWith(`${COOKIE}=`) && !line.startsWith(`${COOKIE}=;`))
}

/** Raw HTTP/1.1 over a socket: header names, casing and duplicates exactly as written. */
function rawRequest(origin: string, head: string): Promise<{ status: number; headers: string; body: string }> {
  const { hostname, port } = new URL(origin)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname)
    let data = ''
    socket.setEncoding('latin1')
    socket.on('data', (chunk: string) => (data += chunk))
    socket.on('error', reject)
    socket.on('end', () => {
      const [headers = '', body = ''] = data.split('\r\n\r\n', 2)
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(headers)?.[1] ?? 0), headers, body })
    })
    socket.write(`${head.replace(/\n/g, '\r\n')}\r\n\r\n`)
  })
}

describe('hostile input', () => {
  let flow: Flow
  const store = new MemoryStore()
  const sessionCount = async () => (await store.list({ limit: 1000 }, Date.now())).length

  before(async () => {
    flow = await startFlow({ runtime: { store } })
  })
  after(() => flow.close())

  /**
   * Starts a login and walks the IdP (submitting its form when it shows one) up to, but not into,
   * gatehouse's callback. Returns the callback URL and the pending-login cookie it needs.
   */
  async function reachCallback(
    browser: BrowserJar,
    query = '',
  ): Promise<{ callbackUrl: string; state: string; loginCookie: [string, string] }> {
    const start = await browser.get(`${flow.origin}/bff/login${query}`)
    assert.equal(start.status, 302)
    const state = new URL(start.headers.get('location')!).searchParams.get('state')!
    const name = loginCookieName(COOKIE, state)
    const value = browser.cookies.get(name)
    assert.ok(value, 'a pending-login cookie named after the state is set')
    let res = start
    const alice = DEMO_USERS[0]!
    for (let i = 0; i < 20; i++) {
      if (res.status >= 300 && res.status < 400) {
        const next = new URL(res.headers.get('location')!, res.url).href
        if (next.startsWith(`${flow.origin}/signin-oidc`))
          return { callbackUrl: next, state, loginCookie: [name, value] }
        res = await browser.get(next)
      } else if (res.text.includes('name="password"')) {
        res = await browser.submitForm(res, { username: alice.username, password: alice.password })
      } else {
        break
      }
    }
    throw new Error(`never reached the callback; last answer ${res.status} at ${res.url}`)
  }

  describe('/bff/login parameters', () => {
    const BAD_RETURN_URLS = [
      'https://evil.example/',
      'http://evil.example',
      'HTTPS://evil.example',
      'https:evil.example',
      'javascript:alert(1)',
      'data:text/html,<script>alert(1)</script>',
      'http://app@evil.example/',
      '//evil.example',
      '///evil.example',
      '/\\evil.example',
      '\\/evil.example',
      '/%2F%2Fevil.example',
      '/%2Fevil.example',
      '/%5Cevil.example',
      '/%252F%252Fevil.example',
      '/a/..//evil.example',
      '/%2e%2e//evil.example',
      '/%2E/%2Fevil.example',
      '/\t/evil.example',
      '/\n/evil.example',
      '/x\r\nSet-Cookie: a=b',
      '/%0d%0aSet-Cookie:a=b',
      '/x\u0000',
      '/x%00',
      ' /local',
      '',
      'local',
      '／／evil.example',
      `/${'a'.repeat(3000)}`,
    ]

    test('there are at least 20 hostile returnUrl values under test', () => {
      assert.ok(BAD_RETURN_URLS.length >= 20)
    })

    for (const bad of BAD_RETURN_URLS) {
      const shown = JSON.stringify(bad.length > 40 ? `${bad.slice(0, 40)}…` : bad)
      test(`returnUrl=${shown} is refused with 400 problem+json naming returnUrl and no redirect`, async () => {
        const browser = flow.browser()
        const res = await browser.get(`${flow.origin}/bff/login?returnUrl=${encodeURIComponent(bad)}`)
        assert.equal(res.status, 400)
        assert.equal(res.headers.get('location'), null)
        const body = problem(res)
        assert.equal(body.status, 400)
        assert.ok(
          Array.isArray(body.errors?.returnUrl) && body.errors.returnUrl.length > 0,
          'errors.returnUrl lists a message',
        )
        assert.equal([...browser.cookies.keys()].length, 0, 'no pending-login cookie is set')
      })
    }

    test('a repeated returnUrl is refused with 400 even when each value is local', async () => {
      const res = await flow.browser().get(`${flow.origin}/bff/login?returnUrl=/a&returnUrl=/b`)
      assert.equal(res.status, 400)
      assert.equal(res.headers.get('location'), null)
      assert.ok(problem(res).errors?.returnUrl)
    })

    test('a prompt the IdP does not support is refused with 400 problem+json naming prompt', async () => {
      for (const prompt of ['bogus', 'none login', 'NONE', '']) {
        const res = await flow.browser().get(`${flow.origin}/bff/login?prompt=${encodeURIComponent(prompt)}`)
        assert.equal(res.status, 400, `prompt=${JSON.stringify(prompt)}`)
        assert.equal(res.headers.get('location'), null)
        const body = problem(res)
        assert.ok(
          Array.isArray(body.errors?.prompt) && body.errors.prompt.length > 0,
          `errors.prompt for ${JSON.stringify(prompt)}`,
        )
      }
    })

    test('a repeated prompt is refused with 400 naming prompt', async () => {
      const res = await flow.browser().get(`${flow.origin}/bff/login?prompt=login&prompt=none`)
      assert.equal(res.status, 400)
      assert.ok(problem(res).errors?.prompt)
    })

    test('the authorize redirect carries response_type=code, an S256 code_challenge of the sealed verifier, and fresh state and nonce', async () => {
      const seen = new Set<string>()
      for (let i = 0; i < 2; i++) {
        const browser = flow.browser()
        const res = await browser.get(`${flow.origin}/bff/login`)
        assert.equal(res.status, 302)
        const location = new URL(res.headers.get('location')!)
        assert.equal(`${location.origin}${location.pathname}`, `${flow.idp.issuer}/auth`)
        const params = location.searchParams
        assert.equal(params.get('response_type'), 'code')
        assert.equal(params.get('code_challenge_method'), 'S256')
        assert.equal(params.getAll('code_challenge').length, 1)
        assert.match(params.get('code_challenge')!, /^[A-Za-z0-9_-]{43}$/)
        assert.equal(params.get('redirect_uri'), `${flow.origin}/signin-oidc`)
        for (const name of ['state', 'nonce']) {
          assert.equal(params.getAll(name).length, 1, name)
          assert.ok(params.get(name)!.length >= 22, `${name} has at least 128 bits`)
        }
        // The challenge is S256 of the verifier kept in this browser's sealed pending-login cookie.
        const state = params.get('state')!
        const pending = JSON.parse(
          new KeyRing(flow.keys).unseal(browser.cookies.get(loginCookieName(COOKIE, state))!, 'login-state')!,
        ) as LoginState
        assert.equal(
          params.get('code_challenge'),
          createHash('sha256').update(pending.codeVerifier).digest('base64url'),
        )
        assert.notEqual(pending.codeVerifier, params.get('code_challenge'))
        assert.equal(pending.nonce, params.get('nonce'))
        for (const value of [state, params.get('nonce')!, params.get('code_challenge')!]) {
          assert.equal(seen.has(value), false, 'state, nonce and challenge are new for every login')
          seen.add(value)
        }
      }
    })

    test('a local returnUrl and a supported prompt still start the login (302 to the IdP)', async () => {
      const res = await flow
        .browser()
        .get(`${flow.origin}/bff/login?returnUrl=${encodeURIComponent('/orders?x=1#y')}&prompt=login`)
      assert.equal(res.status, 302)
      const location = new URL(res.headers.get('location')!)
      assert.equal(location.origin, flow.idp.issuer)
      assert.equal(location.searchParams.get('prompt'), 'login')
    })
  })

  describe('anti-forgery on /bff/user', () => {
    let browser: BrowserJar
    before(async () => {
      browser = flow.browser()
      await flow.login(browser)
      assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200)
    })

    test('a request without the X-CSRF header is 401 antiforgery_failed even with a valid session', async () => {
      const res = await browser.get(`${flow.origin}/bff/user`)
      assert.equal(res.status, 401)
      assert.equal(problem(res).code, 'antiforgery_failed')
      assert.equal(res.headers.get('location'), null)
    })

    for (const value of ['0', 'true', '', '11', 'yes']) {
      test(`X-CSRF: ${JSON.stringify(value)} is 401 antiforgery_failed even with a valid session`, async () => {
        const res = await browser.get(`${flow.origin}/bff/user`, { 'x-csrf': value })
        assert.equal(res.status, 401)
        assert.equal(problem(res).code, 'antiforgery_failed')
      })
    }

    test('a failed anti-forgery check does not end or clear the session', async () => {
      const res = await browser.get(`${flow.origin}/bff/user`, { 'x-csrf': '0' })
      assert.equal(res.status, 401)
      assert.equal(clearsSessionCookie(res), false)
      assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200)
    })

    test('the header name is matched case-insensitively on the wire (X-CSRF, x-csrf, X-Csrf)', async () => {
      for (const name of ['X-CSRF', 'x-csrf', 'X-Csrf']) {
        const res = await rawRequest(
          flow.origin,
          `GET /bff/user HTTP/1.1\nHost: ${new URL(flow.origin).host}\n${name}: 1\nCookie: ${browser.cookieHeader()}\nConnection: close`,
        )
        assert.equal(res.status, 200, name)
      }
    })

    test('two X-CSRF headers are not accepted as the configured value', async () => {
      const res = await rawRequest(
        flow.origin,
        `GET /bff/user HTTP/1.1\nHost: ${new URL(flow.origin).host}\nX-CSRF: 1\nX-CSRF: 1\nCookie: ${browser.cookieHeader()}\nConnection: close`,
      )
      assert.equal(res.status, 401)
    })
  })

  describe('/signin-oidc callback', () => {
    test('a forged state with no pending-login cookie is 400 and starts no session', async () => {
      const before = await sessionCount()
      const res = await flow
        .browser()
        .get(
          `${flow.origin}/signin-oidc?code=forged-code&state=forged-state&iss=${encodeURIComponent(flow.idp.issuer)}`,
        )
      assert.equal(res.status, 400)
      assert.match(res.headers.get('content-type')!, /^text\/html/)
      assert.equal(setsSession(res), false)
      assert.equal(await sessionCount(), before)
    })

    test('a callback without any state is 400', async () => {
      const res = await flow.browser().get(`${flow.origin}/signin-oidc?code=abc`)
      assert.equal(res.status, 400)
      assert.equal(setsSession(res), false)
    })

    test('a callback with two state parameters is 400', async () => {
      const browser = flow.browser()
      const { callbackUrl } = await reachCallback(browser)
      const res = await browser.get(`${callbackUrl}&state=second`)
      assert.equal(res.status, 400)
      assert.equal(setsSession(res), false)
    })

    test('replaying a completed callback is 400 and never creates a second session, with or without the login cookie', async () => {
      const browser = flow.browser()
      const { callbackUrl, loginCookie } = await reachCallback(browser)
      const first = await browser.get(callbackUrl)
      assert.equal(first.status, 302)
      assert.equal(first.headers.get('location'), '/')
      const sessionCookie = browser.cookies.get(COOKIE)!
      assert.ok(sessionCookie)
      assert.equal(browser.cookies.has(loginCookie[0]), false, 'the pending-login cookie is consumed')
      const count = await sessionCount()

      // Same browser, login cookie already gone.
      const replay = await browser.get(callbackUrl)
      assert.equal(replay.status, 400)
      assert.equal(setsSession(replay), false)

      // An attacker who kept the original login cookie (and nothing else).
      const attacker = new BrowserJar()
      attacker.cookies.set(...loginCookie)
      const replayWithCookie = await attacker.get(callbackUrl)
      assert.equal(replayWithCookie.status, 400)
      assert.equal(setsSession(replayWithCookie), false)
      assert.equal(attacker.cookies.has(COOKIE), false)

      // The victim's own browser with the old login cookie put back.
      browser.cookies.set(...loginCookie)
      const replayInBrowser = await browser.get(callbackUrl)
      assert.equal(replayInBrowser.status, 400)
      assert.equal(setsSession(replayInBrowser), false)
      assert.equal(browser.cookies.get(COOKIE), sessionCookie, 'the session cookie is untouched')

      assert.equal(await sessionCount(), count, 'no second session was stored')
    })

    test('a pending-login cookie sealed for another state is refused with 400', async () => {
      const browser = flow.browser()
      const a = await reachCallback(browser)
      const b = await reachCallback(browser)
      // Put login A's sealed state under the cookie name that callback B looks for.
      const swapped = new BrowserJar()
      swapped.cookies.set(b.loginCookie[0], a.loginCookie[1])
      const res = await swapped.get(b.callbackUrl)
      assert.equal(res.status, 400)
      assert.equal(setsSession(res), false)
    })

    test('a pending-login cookie sealed with the right key for a different state is refused with 400', async () => {
      const browser = flow.browser()
      const { callbackUrl, loginCookie } = await reachCallback(browser)
      const original = JSON.parse(new KeyRing(flow.keys).unseal(loginCookie[1], 'login-state')!)
      const forged = sealLoginState(new KeyRing(flow.keys), { ...original, state: 'another-state' })
      const jar = new BrowserJar()
      jar.cookies.set(loginCookie[0], forged)
      const res = await jar.get(callbackUrl)
      assert.equal(res.status, 400)
      assert.equal(setsSession(res), false)
    })

    test('a pending-login cookie sealed under a foreign key is refused with 400', async () => {
      const browser = flow.browser()
      const { callbackUrl, loginCookie } = await reachCallback(browser)
      const original = JSON.parse(new KeyRing(flow.keys).unseal(loginCookie[1], 'login-state')!)
      const foreign = sealLoginState(new KeyRing([generateKey()]), original)
      const jar = new BrowserJar()
      jar.cookies.set(loginCookie[0], foreign)
      const res = await jar.get(callbackUrl)
      assert.equal(res.status, 400)
      assert.equal(setsSession(res), false)
    })

    for (const [name, createdAt] of [
      ['older than 10 minutes', () => Date.now() - LOGIN_STATE_MAX_AGE_MS - 1_000],
      ['more than 60 s in the future', () => Date.now() + 61_000],
      ['with no createdAt', () => undefined],
    ] as const) {
      test(`a pending-login cookie ${name} (sealed with the right key, right state) is refused with 400 and starts no session`, async () => {
        const browser = flow.browser()
        const { callbackUrl, loginCookie } = await reachCallback(browser)
        const original = JSON.parse(new KeyRing(flow.keys).unseal(loginCookie[1], 'login-state')!) as LoginState
        const aged = sealLoginState(new KeyRing(flow.keys), { ...original, createdAt: createdAt() as number })
        const jar = new BrowserJar()
        jar.cookies.set(loginCookie[0], aged)
        const before = await sessionCount()
        const res = await jar.get(callbackUrl)
        assert.equal(res.status, 400)
        assert.equal(setsSession(res), false)
        assert.equal(await sessionCount(), before)
        // Control: the code is still unspent and the fresh cookie of the same login still works.
        const fresh = await browser.get(callbackUrl)
        assert.equal(fresh.status, 302)
        assert.ok(setsSession(fresh))
      })
    }

    test('error=access_denied from the IdP is a 4xx HTML page, no session, and the pending login is consumed', async () => {
      const browser = flow.browser()
      const start = await browser.get(`${flow.origin}/bff/login`)
      const state = new URL(start.headers.get('location')!).searchParams.get('state')!
      const before = await sessionCount()
      const res = await browser.get(
        `${flow.origin}/signin-oidc?error=access_denied&error_description=${encodeURIComponent('The user said no')}&state=${encodeURIComponent(state)}&iss=${encodeURIComponent(flow.idp.issuer)}`,
      )
      assert.ok(res.status >= 400 && res.status < 500, `status ${res.status}`)
      assert.match(res.headers.get('content-type')!, /^text\/html/)
      assert.match(res.text, /access_denied/)
      assert.equal(setsSession(res), false)
      assert.equal(browser.cookies.has(COOKIE), false)
      assert.equal(browser.cookies.has(loginCookieName(COOKIE, state)), false, 'the pending-login cookie is cleared')
      assert.equal(await sessionCount(), before)
    })

    test('an IdP error value carrying markup is not reflected as HTML', async () => {
      const browser = flow.browser()
      const start = await browser.get(`${flow.origin}/bff/login`)
      const state = new URL(start.headers.get('location')!).searchParams.get('state')!
      const res = await browser.get(
        `${flow.origin}/signin-oidc?error=${encodeURIComponent('<script>alert(1)</script>')}&state=${encodeURIComponent(state)}`,
      )
      assert.equal(res.status, 400)
      assert.doesNotMatch(res.text, /<script>/i)
      assert.equal(setsSession(res), false)
    })
  })

  describe('bad session cookies', () => {
    let valid: string
    before(async () => {
      const browser = flow.browser()
      await flow.login(browser)
      valid = browser.cookies.get(COOKIE)!
      assert.match(valid, /^[A-Za-z0-9_-]{43}$/)
    })

    const anonymousAndCleared = async (cookieHeader: string): Promise<void> => {
      const res = await flow.browser().get(`${flow.origin}/bff/user`, { ...CSRF, cookie: cookieHeader })
      assert.equal(res.status, 401)
      assert.equal(problem(res).code, 'session_required')
      assert.ok(clearsSessionCookie(res), `the bad cookie is cleared: ${res.headers.getSetCookie().join(' | ')}`)
    }

    test('a tampered session cookie is anonymous (401) and cleared', async () => {
      const flipped = (valid[0] === 'A' ? 'B' : 'A') + valid.slice(1)
      await anonymousAndCleared(`${COOKIE}=${flipped}`)
    })

    test('a truncated session cookie is anonymous (401) and cleared', async () => {
      await anonymousAndCleared(`${COOKIE}=${valid.slice(0, 20)}`)
    })

    test('a session cookie with one extra character is anonymous (401) and cleared', async () => {
      await anonymousAndCleared(`${COOKIE}=${valid}A`)
    })

    test('an oversized (~8 KB) session cookie is anonymous (401) and cleared', async () => {
      await anonymousAndCleared(`${COOKIE}=${'A'.repeat(8 * 1024)}`)
    })

    test('a garbage session cookie is anonymous (401) and cleared', async () => {
      for (const garbage of [
        '%%%%',
        '"quoted"',
        'a.b.c.d',
        '../../etc/passwd',
        '<script>',
        '\u00e9\u00e8',
        "' OR 1=1 --",
      ]) {
        await anonymousAndCleared(`${COOKIE}=${encodeURIComponent(garbage).replace(/%25/g, '%')}`)
      }
    })

    test('an empty session cookie is anonymous (401) and cleared', async () => {
      await anonymousAndCleared(`${COOKIE}=`)
    })

    /** Two session cookies: which is the browser's own cannot be told, so none is used and none deleted (SECURITY.md T45). */
    const anonymousAndKept = async (cookieHeader: string): Promise<void> => {
      const res = await flow.browser().get(`${flow.origin}/bff/user`, { ...CSRF, cookie: cookieHeader })
      assert.equal(res.status, 401)
      assert.equal(problem(res).code, 'session_required')
      assert.deepEqual(res.headers.getSetCookie(), [], 'no cookie is deleted: a deletion would hit the real one')
    }

    test('duplicate bad session cookies are anonymous (401) and not cleared', async () => {
      await anonymousAndKept(`${COOKIE}=${'x'.repeat(43)}; ${COOKIE}=garbage`)
    })

    test('a bad session cookie listed before or after a valid one is anonymous (401), not a 500, and the valid one is not cleared', async () => {
      await anonymousAndKept(`${COOKIE}=garbage; ${COOKIE}=${valid}`)
      await anonymousAndKept(`${COOKIE}=${valid}; ${COOKIE}=garbage`)
    })

    test('a malformed Cookie header is anonymous (401), never a 500', async () => {
      for (const header of ['=;;=;', ';;;', `${COOKIE}`, `=${valid}`, `${COOKIE} ${valid}`]) {
        const res = await flow.browser().get(`${flow.origin}/bff/user`, { ...CSRF, cookie: header })
        assert.equal(res.status, 401, JSON.stringify(header))
        assert.equal(problem(res).code, 'session_required')
      }
    })

    test('the valid session still works after all of that', async () => {
      const res = await flow.browser().get(`${flow.origin}/bff/user`, { ...CSRF, cookie: `${COOKIE}=${valid}` })
      assert.equal(res.status, 200)
    })
  })

  describe('request hygiene', () => {
    for (const host of [
      'evil.example/path',
      'evil example',
      'user@evil.example',
      'evil.example?x',
      'evil\\example',
      '[::1',
      'host:99999999',
      'host:port',
      '',
    ]) {
      test(`a malformed Host header (${JSON.stringify(host)}) is 400, never served`, async () => {
        const res = await rawRequest(flow.origin, `GET /bff/user HTTP/1.1\nHost: ${host}\nX-CSRF: 1\nConnection: close`)
        assert.equal(res.status, 400)
      })
    }

    test('two Host headers are 400', async () => {
      const host = new URL(flow.origin).host
      const res = await rawRequest(
        flow.origin,
        `GET /bff/user HTTP/1.1\nHost: ${host}\nHost: evil.example\nX-CSRF: 1\nConnection: close`,
      )
      assert.equal(res.status, 400)
    })

    test('an HTTP/1.1 request without a Host header is 400', async () => {
      const res = await rawRequest(flow.origin, `GET /bff/user HTTP/1.1\nX-CSRF: 1\nConnection: close`)
      assert.equal(res.status, 400)
    })

    test('a malformed Host header at /bff/login gets no redirect', async () => {
      const res = await rawRequest(flow.origin, `GET /bff/login HTTP/1.1\nHost: evil.example/x\nConnection: close`)
      assert.equal(res.status, 400)
      assert.doesNotMatch(res.headers, /^location:/im)
    })

    test('a Host that is valid but names no origin of gatehouse (e.g. a container name with "_") is 421 misdirected_request, not 400', async () => {
      const res = await rawRequest(
        flow.origin,
        `GET /bff/user HTTP/1.1\nHost: gatehouse_app:8080\nX-CSRF: 1\nConnection: close`,
      )
      assert.equal(res.status, 421)
      assert.equal(JSON.parse(res.body).code, 'misdirected_request')
    })

    test('a well-formed Host header is served normally (control)', async () => {
      const res = await rawRequest(
        flow.origin,
        `GET /bff/user HTTP/1.1\nHost: ${new URL(flow.origin).host}\nX-CSRF: 1\nConnection: close`,
      )
      assert.equal(res.status, 401)
    })

    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      test(`${method} /bff/user is 405 problem+json with Allow: GET, HEAD`, async () => {
        const res = await flow
          .browser()
          .request(method, `${flow.origin}/bff/user`, method === 'DELETE' ? undefined : '{}', {
            ...CSRF,
            'content-type': 'application/json',
          })
        assert.equal(res.status, 405)
        assert.equal(res.headers.get('allow'), 'GET, HEAD')
        assert.equal(problem(res).code, 'method_not_allowed')
      })
    }

    test("gatehouse's own answers carry Referrer-Policy no-referrer, nosniff and X-Frame-Options DENY; its HTML pages a CSP that forbids framing", async () => {
      const browser = flow.browser()
      await flow.login(browser)
      const logoutUrl = (
        JSON.parse((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) as Array<{ type: string; value: string }>
      ).find((c) => c.type === 'bff:logout_url')!.value
      const anonymous = flow.browser()
      const answers: Array<[string, JarResponse]> = [
        ['/bff/user 200', await browser.get(`${flow.origin}/bff/user`, CSRF)],
        ['/bff/user 401', await anonymous.get(`${flow.origin}/bff/user`, CSRF)],
        ['/bff/user 401 antiforgery', await browser.get(`${flow.origin}/bff/user`)],
        ['/bff/user 405', await anonymous.request('POST', `${flow.origin}/bff/user`, '{}', CSRF)],
        ['/bff/login 302', await anonymous.get(`${flow.origin}/bff/login`)],
        ['/bff/login 400', await anonymous.get(`${flow.origin}/bff/login?returnUrl=//evil.example`)],
        ['/signin-oidc 400 page', await anonymous.get(`${flow.origin}/signin-oidc?state=x&code=y`)],
        ['/signout-callback-oidc 302', await anonymous.get(`${flow.origin}/signout-callback-oidc`)],
        ['/healthz', await anonymous.get(`${flow.origin}/healthz`)],
        ['/readyz', await anonymous.get(`${flow.origin}/readyz`)],
        ['404', await anonymous.get(`${flow.origin}/no/such/path`)],
        ['/bff/backchannel 400', await anonymous.request('POST', `${flow.origin}/bff/backchannel`, 'logout_token=x')],
        ['/bff/logout 302', await browser.get(`${flow.origin}${logoutUrl}`)],
      ]
      for (const [name, res] of answers) {
        assert.equal(res.headers.get('referrer-policy'), 'no-referrer', name)
        assert.equal(res.headers.get('x-content-type-options'), 'nosniff', name)
        assert.equal(res.headers.get('x-frame-options'), 'DENY', name)
        assert.equal(res.headers.get('access-control-allow-origin'), null, name)
        if (/^text\/html/.test(res.headers.get('content-type') ?? '')) {
          const csp = res.headers.get('content-security-policy') ?? ''
          assert.match(csp, /default-src 'none'/, name)
          assert.match(csp, /frame-ancestors 'none'/, name)
        }
      }
      assert.ok(
        answers.some(([, res]) => /^text\/html/.test(res.headers.get('content-type') ?? '')),
        'an HTML page was among them',
      )
    })

    test("the silent-login page may be framed by the app alone (SAMEORIGIN, frame-ancestors 'self'), and keeps no-referrer and nosniff", async () => {
      const res = await flow.browser().get(`${flow.origin}/bff/silent-login-callback`)
      assert.equal(res.status, 200)
      assert.equal(res.headers.get('x-frame-options'), 'SAMEORIGIN')
      assert.match(res.headers.get('content-security-policy') ?? '', /frame-ancestors 'self'/)
      assert.equal(res.headers.get('referrer-policy'), 'no-referrer')
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff')
    })

    test('the session-events stream carries the same headers (it writes its own head)', async () => {
      const browser = flow.browser()
      await flow.login(browser)
      const abort = new AbortController()
      const res = await fetch(`${flow.origin}/bff/session-events`, {
        headers: { cookie: browser.cookieHeader() },
        signal: abort.signal,
      })
      try {
        assert.equal(res.status, 200)
        assert.match(res.headers.get('content-type')!, /^text\/event-stream/)
        assert.equal(res.headers.get('referrer-policy'), 'no-referrer')
        assert.equal(res.headers.get('x-content-type-options'), 'nosniff')
        assert.equal(res.headers.get('x-frame-options'), 'DENY')
      } finally {
        abort.abort()
        await res.body?.cancel().catch(() => undefined)
      }
    })

    test('error answers carry no stack trace or internals', async () => {
      const res = await flow.browser().get(`${flow.origin}/signin-oidc?state=x&code=y`)
      assert.equal(res.status, 400)
      assert.doesNotMatch(res.text, /\bat .*\.ts:\d+|node:internal|Error:/)
    })
  })
})

describe('a session cookie sent twice (cookie tossing: another path, a nameless "=__Host-gatehouse=…")', () => {
  let flow: Flow
  let upstream: Upstream
  const log = logLines()
  let victim: BrowserJar
  let real: string
  let attackers: string

  before(async () => {
    upstream = await startUpstream()
    flow = await startFlow({
      runtime: { logger: pino({ level: 'warn' }, log.sink) },
      gatehouse: { remoteApis: [{ path: '/api', target: upstream.url, token: 'user' }] },
    })
    victim = flow.browser()
    await flow.login(victim)
    real = victim.cookies.get(COOKIE)!
    const attacker = flow.browser()
    await flow.login(attacker, { username: DEMO_USERS[1]!.username })
    attackers = attacker.cookies.get(COOKIE)!
    assert.notEqual(real, attackers)
  })
  after(async () => {
    await flow.close()
    await upstream.close()
  })

  const ambiguousWarnings = () => log.entries().filter((entry) => entry.event === 'cookie_ambiguous')

  test("/bff/user with the attacker's session cookie before or after the user's is 401, deletes no cookie and logs one cookie_ambiguous warning (a minute's worth) without the values", async () => {
    const pads = Array.from({ length: 250 }, (_, i) => `p${i}=x`).join('; ')
    for (const header of [
      `${COOKIE}=${attackers}; ${COOKIE}=${real}`,
      `${COOKIE}=${real}; ${COOKIE}=${attackers}`,
      `${COOKIE}=${real}; theme=dark; ${COOKIE}=${real}`,
      `${COOKIE}=${attackers}; ${pads}; ${COOKIE}=${real}`,
    ]) {
      const res = await flow.browser().get(`${flow.origin}/bff/user`, { ...CSRF, cookie: header })
      assert.equal(res.status, 401, header.slice(0, 120))
      assert.equal(problem(res).code, 'session_required')
      assert.deepEqual(res.headers.getSetCookie(), [], 'no Set-Cookie at all, so none deleting the session cookie')
    }
    assert.equal(ambiguousWarnings().length, 1, 'one warning, however many such requests come within a minute')
    const entry = ambiguousWarnings().at(-1)!
    assert.equal(entry.level, 40, 'warn')
    const text = log.lines.join('\n')
    assert.ok(!text.includes(real) && !text.includes(attackers), 'the cookie values are never logged')
  })

  test('a user API call carrying the session cookie twice is 401, never reaches the upstream, and deletes no cookie', async () => {
    const before = upstream.received.length
    const warnings = ambiguousWarnings().length
    const res = await flow
      .browser()
      .get(`${flow.origin}/api/echo`, { ...CSRF, cookie: `${COOKIE}=${attackers}; ${COOKIE}=${real}` })
    assert.equal(res.status, 401)
    assert.equal(problem(res).code, 'session_required')
    assert.deepEqual(res.headers.getSetCookie(), [])
    assert.equal(upstream.received.length, before)
    assert.equal(ambiguousWarnings().length, warnings, 'not logged again within the minute')
  })

  test('once the browser sends its one cookie again, the same session is served: /bff/user 200 and the API 200 as the user', async () => {
    const user = await victim.get(`${flow.origin}/bff/user`, CSRF)
    assert.equal(user.status, 200)
    assert.equal(
      (JSON.parse(user.text) as Array<{ type: string; value: unknown }>).find((c) => c.type === 'sub')?.value,
      'alice-0001',
    )
    const call = await victim.get(`${flow.origin}/api/echo`, CSRF)
    assert.equal(call.status, 200)
    assert.equal(victim.cookies.get(COOKIE), real)
  })
})
