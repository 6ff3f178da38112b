// The example apps (examples/*/server.ts) against a real IdP: gatehouse mounted in Express, Fastify
// and Hono — login through the IdP form, gatehouse's own endpoints, protected local routes, the
// access token used server-side, request bodies reaching gatehouse's proxy unread, and start().
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { importJWK, SignJWT } from 'jose'
import * as expressExample from '../../examples/express/server.ts'
import * as fastifyExample from '../../examples/fastify/server.ts'
import * as honoExample from '../../examples/hono/server.ts'
import type { Gatehouse, GatehouseOptions } from '../../src/index.ts'
import { generateKey } from '../../src/session/seal.ts'
import type { BrowserJar, JarResponse } from '../helpers/browser-jar.ts'
import { CLIENT_ID, CLIENT_SECRET, CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

interface Example {
  name: string
  createListener(options: {
    gatehouse: Gatehouse
    downstreamUrl?: string
  }):
    ((req: IncomingMessage, res: ServerResponse) => void) | Promise<(req: IncomingMessage, res: ServerResponse) => void>
  start(options: {
    config: GatehouseOptions
    port?: number
    host?: string
  }): Promise<{ url: string; close(): Promise<void> }>
}

const EXAMPLES: Example[] = [
  { name: 'Express', ...expressExample },
  { name: 'Fastify', ...fastifyExample },
  { name: 'Hono', ...honoExample },
]

type Claims = Array<{ type: string; value: unknown }>

/** An API refusal: 401 problem+json with this code, never a redirect to the login. */
function assertRefused(res: JarResponse, code: string): void {
  assert.equal(res.status, 401, res.text)
  assert.equal(res.headers.get('location'), null)
  assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/)
  assert.equal((JSON.parse(res.text) as { code: string }).code, code)
}

for (const example of EXAMPLES) {
  describe(`${example.name} example`, () => {
    let flow: Flow
    let upstream: Upstream
    before(async () => {
      upstream = await startUpstream()
      flow = await startFlow({
        gatehouse: { remoteApis: [{ path: '/remote', target: upstream.url, token: 'user' }] },
        listener: (gatehouse) =>
          example.createListener({ gatehouse, downstreamUrl: `${upstream.url}/echo/downstream` }),
      })
    })
    after(async () => {
      await flow?.close()
      await upstream?.close()
    })

    async function loggedIn(username = 'alice'): Promise<BrowserJar> {
      const browser = flow.browser()
      const done = await flow.login(browser, { username })
      assert.equal(done.status, 302, 'the callback redirects back into the app')
      assert.equal(done.headers.get('location'), '/')
      return browser
    }

    test('gatehouse endpoints answer through the framework; other paths reach the app', async () => {
      const anonymous = flow.browser()
      assertRefused(await anonymous.get(`${flow.origin}/bff/user`, CSRF), 'session_required')
      const login = await anonymous.get(`${flow.origin}/bff/login`)
      assert.equal(login.status, 302)
      assert.ok(login.headers.get('location')!.startsWith(flow.idp.issuer), 'login goes to the IdP')
      assert.equal((await anonymous.get(`${flow.origin}/healthz`)).status, 200)
      const page = await anonymous.get(`${flow.origin}/`)
      assert.equal(page.status, 200)
      assert.match(page.text, new RegExp(`gatehouse \\+ ${example.name}`))
    })

    test('login through the real IdP form; /bff/user then shows the claims', async () => {
      const browser = await loggedIn('bob')
      const user = await browser.get(`${flow.origin}/bff/user`, CSRF)
      assert.equal(user.status, 200)
      const claims = JSON.parse(user.text) as Claims
      assert.equal(claims.find((c) => c.type === 'sub')?.value, 'bob-0002')
      assert.equal(claims.find((c) => c.type === 'name')?.value, 'Bob Example')
    })

    test('GET /api/me with a session and X-CSRF is 200 with the user', async () => {
      const browser = await loggedIn()
      const res = await browser.get(`${flow.origin}/api/me`, CSRF)
      assert.equal(res.status, 200, res.text)
      assert.match(res.headers.get('content-type') ?? '', /^application\/json/)
      assert.deepEqual(JSON.parse(res.text), { sub: 'alice-0001', name: 'Alice Example' })
    })

    test('GET /api/me with a session but without X-CSRF is 401 antiforgery_failed', async () => {
      const browser = await loggedIn()
      assertRefused(await browser.get(`${flow.origin}/api/me`), 'antiforgery_failed')
      assertRefused(await browser.get(`${flow.origin}/api/me`, { 'x-csrf': '0' }), 'antiforgery_failed')
    })

    test('GET /api/me without a session is 401 session_required (with or without X-CSRF), never a 302', async () => {
      const anonymous = flow.browser()
      assertRefused(await anonymous.get(`${flow.origin}/api/me`, CSRF), 'session_required')
      assertRefused(await anonymous.get(`${flow.origin}/api/me`), 'antiforgery_failed')
      const forged = flow.browser()
      forged.cookies.set('__Host-gatehouse', 'not-a-session')
      assertRefused(await forged.get(`${flow.origin}/api/me`, CSRF), 'session_required')
      assert.equal(
        forged.cookies.has('__Host-gatehouse'),
        false,
        "gatehouse's Set-Cookie (clearing the bad cookie) passes through the framework",
      )
    })

    test('a protected POST refuses before the body matters and parses JSON when allowed', async () => {
      const json = { 'content-type': 'application/json' }
      assertRefused(
        await flow.browser().request('POST', `${flow.origin}/api/notes`, '{"text":"hi"}', { ...json, ...CSRF }),
        'session_required',
      )
      const browser = await loggedIn()
      assertRefused(
        await browser.request('POST', `${flow.origin}/api/notes`, '{"text":"hi"}', json),
        'antiforgery_failed',
      )
      const res = await browser.request('POST', `${flow.origin}/api/notes`, '{"text":"hi"}', { ...json, ...CSRF })
      assert.equal(res.status, 201, res.text)
      assert.deepEqual(JSON.parse(res.text), { sub: 'alice-0001', note: { text: 'hi' } })
    })

    test('a local route calls a downstream API server-side with the access token from getAccessToken', async () => {
      const browser = await loggedIn()
      const res = await browser.get(`${flow.origin}/api/downstream`, CSRF)
      assert.equal(res.status, 200, res.text)
      const { status, body } = JSON.parse(res.text) as {
        status: number
        body: { url: string; headers: Record<string, string> }
      }
      assert.equal(status, 200)
      assert.equal(body.url, '/echo/downstream')
      assert.match(body.headers.authorization ?? '', /^Bearer \S{20,}$/)
      // The browser never sees it.
      const token = body.headers.authorization!.slice('Bearer '.length)
      assert.ok(!browser.cookieHeader().includes(token))
      // A refused request never runs the handler: no downstream call without a session or without X-CSRF.
      const calls = () => upstream.received.filter((r) => r.url === '/echo/downstream').length
      const before = calls()
      assertRefused(await flow.browser().get(`${flow.origin}/api/downstream`, CSRF), 'session_required')
      assertRefused(await browser.get(`${flow.origin}/api/downstream`), 'antiforgery_failed')
      await new Promise((resolve) => setTimeout(resolve, 150))
      assert.equal(calls(), before)
    })

    test('request bodies of proxied routes reach gatehouse unread (body parsers come after it)', async () => {
      const browser = await loggedIn()
      for (const [type, body] of [
        ['application/json', '{"order":7}'],
        ['application/x-www-form-urlencoded', 'a=1&b=2'],
        ['text/plain', 'plain text'],
      ] as const) {
        const res = await browser.request('POST', `${flow.origin}/remote/body`, body, { 'content-type': type, ...CSRF })
        assert.equal(res.status, 200, `${type}: ${res.text}`)
        const seen = JSON.parse(res.text) as { body: string; headers: Record<string, string> }
        assert.equal(seen.body, body, type)
        assert.match(seen.headers.authorization ?? '', /^Bearer /)
      }
    })

    test('back-channel logout (a form POST) reaches gatehouse through the framework and ends the session', async () => {
      const browser = await loggedIn()
      const sid = (JSON.parse((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) as Claims).find(
        (c) => c.type === 'sid',
      )!.value as string
      const jwk = flow.idp.signingKey as { kid: string }
      const token = await new SignJWT({
        iss: flow.idp.issuer,
        aud: CLIENT_ID,
        iat: Math.floor(Date.now() / 1000),
        jti: randomUUID(),
        sid,
        events: { 'http://schemas.openid.net/event/backchannel-logout': {} },
      })
        .setProtectedHeader({ alg: 'RS256', kid: jwk.kid, typ: 'logout+jwt' })
        .sign(await importJWK(flow.idp.signingKey, 'RS256'))
      const res = await fetch(`${flow.origin}/bff/backchannel`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ logout_token: token }),
      })
      assert.equal(res.status, 200, await res.text())
      assertRefused(await browser.get(`${flow.origin}/api/me`, CSRF), 'session_required')
    })

    test('start() listens with a gatehouse.json-shaped config and closes cleanly', async () => {
      const config: GatehouseOptions = {
        oidc: { authority: flow.idp.issuer, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET },
        keys: [generateKey()],
        session: { store: 'memory' },
        log: { level: 'silent' },
      }
      const running = await example.start({ config, host: '127.0.0.1', port: 0 })
      try {
        assert.equal((await fetch(`${running.url}/healthz`)).status, 200)
        assert.equal((await fetch(`${running.url}/readyz`)).status, 200)
        const me = await fetch(`${running.url}/api/me`, { headers: CSRF, redirect: 'manual' })
        assert.equal(me.status, 401)
        assert.match(me.headers.get('content-type') ?? '', /^application\/problem\+json/)
        const login = await fetch(`${running.url}/bff/login`, { redirect: 'manual' })
        assert.equal(login.status, 302)
        assert.ok(login.headers.get('location')!.startsWith(`${flow.idp.issuer}/`))
      } finally {
        await running.close()
      }
    })
  })
}

for (const example of EXAMPLES) {
  describe(`${example.name} example in cookie mode`, () => {
    let flow: Flow
    let offsetMs = 0
    before(async () => {
      flow = await startFlow({
        gatehouse: { session: { mode: 'cookie' } },
        runtime: { now: () => Date.now() + offsetMs },
        listener: (gatehouse) => example.createListener({ gatehouse }),
      })
    })
    after(() => flow?.close())

    test("a session renewed while protect() checks it sends its new cookie with the app's own answer", async () => {
      const browser = flow.browser()
      await flow.login(browser)
      const before = browser.cookies.get('__Host-gatehouse')
      assert.ok(before)
      offsetMs = 5 * 3600_000 // past half of the 8h sliding lifetime: the next read renews the session
      const res = await browser.get(`${flow.origin}/api/me`, CSRF)
      assert.equal(res.status, 200, res.text)
      assert.equal((JSON.parse(res.text) as { sub: string }).sub, 'alice-0001')
      assert.ok(
        res.headers.getSetCookie().some((line) => line.startsWith('__Host-gatehouse=')),
        'renewed cookie on the 200',
      )
      assert.notEqual(browser.cookies.get('__Host-gatehouse'), before)
      assert.equal((await browser.get(`${flow.origin}/api/me`, CSRF)).status, 200, 'the renewed cookie works')
    })
  })
}

for (const example of EXAMPLES) {
  describe(`${example.name} example with a static frontend at /`, () => {
    let flow: Flow
    let folder: string
    before(async () => {
      folder = await mkdtemp(join(tmpdir(), 'gatehouse-spa-'))
      await writeFile(join(folder, 'index.html'), '<!doctype html><title>the spa</title>')
      await writeFile(join(folder, 'app.js'), 'console.log("spa")')
      flow = await startFlow({
        gatehouse: { frontends: [{ name: 'app', path: '/', static: folder }] },
        listener: (gatehouse) => example.createListener({ gatehouse }),
      })
    })
    after(async () => {
      await flow?.close()
      await rm(folder, { recursive: true, force: true })
    })

    test('gatehouse serves the SPA through the framework', async () => {
      const page = await flow.browser().get(`${flow.origin}/`)
      assert.equal(page.status, 200)
      assert.match(page.text, /the spa/)
      assert.equal((await flow.browser().get(`${flow.origin}/app.js`)).text, 'console.log("spa")')
    })

    test("a missing asset, which gatehouse passes on only after looking at the disk, gets the framework's own 404", async () => {
      const res = await fetch(`${flow.origin}/missing.js`, { signal: AbortSignal.timeout(5000) })
      assert.equal(res.status, 404)
      assert.doesNotMatch(
        res.headers.get('content-type') ?? '',
        /problem\+json/,
        'answered by the framework, not gatehouse',
      )
    })

    test('local POST routes still reach the app', async () => {
      assertRefused(
        await flow
          .browser()
          .request('POST', `${flow.origin}/api/notes`, '{}', { 'content-type': 'application/json', ...CSRF }),
        'session_required',
      )
    })

    test('local GET routes still reach the app', async () => {
      assertRefused(await flow.browser().get(`${flow.origin}/api/me`, CSRF), 'session_required')
    })
  })
}

test('the examples read a gatehouse.json-shaped config with ${ENV} substitution', async () => {
  const env = {
    GATEHOUSE_CONFIG_JSON:
      '{"oidc":{"authority":"https://idp.example.com","clientId":"spa","clientSecret":"${SECRET}"},"keys":["${KEY}"]}',
    SECRET: 'se"cret',
    KEY: 'k',
  }
  for (const { loadConfig } of [expressExample, fastifyExample, honoExample]) {
    const config = await loadConfig(env)
    assert.equal(config.oidc.clientSecret, 'se"cret')
    assert.deepEqual(config.keys, ['k'])
    await assert.rejects(
      loadConfig({ GATEHOUSE_CONFIG_JSON: '{"keys":["${UNSET_VARIABLE_X}"]}' }),
      /UNSET_VARIABLE_X is not set/,
    )
  }
})
