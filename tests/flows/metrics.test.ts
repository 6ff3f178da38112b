import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { importJWK, SignJWT, type JWTPayload } from 'jose'
import { pino } from 'pino'
import { createGatehouse } from '../../src/index.ts'
import { generateKey } from '../../src/session/seal.ts'
import { MemoryStore } from '../../src/session/stores/memory.ts'
import { CLIENT_ID, CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const ADMIN_TOKEN = 'metrics-test-admin-token-0123456789'
const EVENT = { 'http://schemas.openid.net/event/backchannel-logout': {} }
/** Past the embedded IdP's one-hour access tokens. */
const PAST_EXPIRY_MS = 3600_000 + 60_000
type Claims = Array<{ type: string; value: unknown }>

interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

/** Prometheus text exposition → samples (comments skipped; label values here never hold quotes or commas). */
function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    assert.ok(match, `unparsable exposition line: ${line}`)
    const labels: Record<string, string> = {}
    for (const pair of (match[2] ?? '').split(',').filter(Boolean)) {
      const [key, quoted] = pair.split('=') as [string, string]
      labels[key] = quoted.slice(1, -1)
    }
    samples.push({ name: match[1]!, labels, value: Number(match[3]) })
  }
  return samples
}

/** The value of the one series with exactly these labels; 0 when it does not exist (yet). */
function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = samples.filter(
    (s) =>
      s.name === name &&
      Object.keys(s.labels).length === Object.keys(labels).length &&
      Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  )
  assert.ok(found.length <= 1, `${name} ${JSON.stringify(labels)} names one series`)
  return found[0]?.value ?? 0
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

describe('metrics across a whole session (login, user, proxy, refresh, logout, back-channel logout)', () => {
  let upstream: Upstream
  let flow: Flow
  let admin: Server
  let adminUrl: string
  let offsetMs = 0
  const store = new MemoryStore()

  before(async () => {
    upstream = await startUpstream()
    flow = await startFlow({
      runtime: { store, now: () => Date.now() + offsetMs },
      gatehouse: { remoteApis: [{ path: '/api', target: upstream.url, token: 'user' }], admin: { token: ADMIN_TOKEN } },
    })
    // Mounted the way a library user would: on a server of its own, through gatehouse.adminHandler.
    admin = createServer((req, res) => flow.gatehouse.adminHandler(req, res))
    adminUrl = await listen(admin)
  })
  after(async () => {
    admin.closeAllConnections()
    await new Promise<void>((resolve) => admin.close(() => resolve()))
    await flow.close()
    await upstream.close()
  })

  async function scrape(): Promise<Sample[]> {
    const res = await fetch(`${adminUrl}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
    assert.equal(res.status, 200)
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/)
    return parseMetrics(await res.text())
  }

  async function signLogoutToken(payload: JWTPayload): Promise<string> {
    const jwk = flow.idp.signingKey as { kid: string }
    // Issued "now" by gatehouse's clock, which the refresh step moved forward.
    return new SignJWT({
      iss: flow.idp.issuer,
      aud: CLIENT_ID,
      iat: Math.floor((Date.now() + offsetMs) / 1000),
      jti: randomUUID(),
      events: EVENT,
      ...payload,
    })
      .setProtectedHeader({ alg: 'RS256', kid: jwk.kid, typ: 'logout+jwt' })
      .sign(await importJWK(flow.idp.signingKey, 'RS256'))
  }

  const postBackchannel = (token: string) =>
    fetch(`${flow.origin}/bff/backchannel`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ logout_token: token }).toString(),
    })

  test('every step moves its counters by exactly what happened, and the active-session gauge follows the store', async () => {
    const start = await scrape()
    assert.equal(valueOf(start, 'gatehouse_active_sessions'), 0)
    for (const result of ['ok', 'invalid_state', 'idp_error', 'idp_unavailable', 'bad_request', 'error']) {
      assert.ok(
        start.some((s) => s.name === 'gatehouse_logins_total' && s.labels.result === result),
        `logins_total{result="${result}"} exists before the first login`,
      )
    }
    assert.ok(
      start.some((s) => s.name === 'process_cpu_user_seconds_total'),
      'default process metrics are exported',
    )

    // Login, /bff/user, and a proxied call.
    const browser = flow.browser()
    await flow.login(browser)
    const user = await browser.get(`${flow.origin}/bff/user`, CSRF)
    assert.equal(user.status, 200)
    assert.equal((await browser.get(`${flow.origin}/bff/user`)).status, 401, 'no anti-forgery header')
    assert.equal((await browser.get(`${flow.origin}/api/echo`, CSRF)).status, 200)
    const loggedIn = await scrape()
    const delta = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
      valueOf(samples, name, labels) - valueOf(start, name, labels)
    assert.equal(delta(loggedIn, 'gatehouse_logins_total', { result: 'ok' }), 1)
    assert.equal(
      delta(loggedIn, 'gatehouse_http_requests_total', { route: 'bff_login', method: 'GET', status: '302' }),
      1,
    )
    assert.equal(
      delta(loggedIn, 'gatehouse_http_requests_total', { route: 'callback', method: 'GET', status: '302' }),
      1,
    )
    assert.equal(
      delta(loggedIn, 'gatehouse_http_requests_total', { route: 'bff_user', method: 'GET', status: '200' }),
      1,
    )
    assert.equal(
      delta(loggedIn, 'gatehouse_http_requests_total', { route: 'bff_user', method: 'GET', status: '401' }),
      1,
    )
    assert.equal(
      delta(loggedIn, 'gatehouse_http_requests_total', { route: 'api:/api', method: 'GET', status: '200' }),
      1,
    )
    assert.equal(delta(loggedIn, 'gatehouse_proxy_duration_seconds_count', { api: '/api' }), 1)
    assert.ok(delta(loggedIn, 'gatehouse_proxy_duration_seconds_sum', { api: '/api' }) > 0)
    assert.equal(delta(loggedIn, 'gatehouse_proxy_duration_seconds_bucket', { api: '/api', le: '+Inf' }), 1)
    assert.equal(valueOf(loggedIn, 'gatehouse_active_sessions'), 1)
    assert.ok(
      !loggedIn.some((s) => s.name === 'gatehouse_http_requests_total' && /echo|\?/.test(s.labels.route ?? '')),
      'no raw path in a label',
    )

    // The access token expires: the next proxied call refreshes it once.
    offsetMs += PAST_EXPIRY_MS
    assert.equal((await browser.get(`${flow.origin}/api/echo?again=1`, CSRF)).status, 200)
    const refreshed = await scrape()
    assert.equal(delta(refreshed, 'gatehouse_token_refreshes_total', { result: 'ok' }), 1)
    assert.equal(delta(refreshed, 'gatehouse_token_refreshes_total', { result: 'invalid_grant' }), 0)
    assert.equal(
      delta(refreshed, 'gatehouse_http_requests_total', { route: 'api:/api', method: 'GET', status: '200' }),
      2,
    )
    assert.equal(delta(refreshed, 'gatehouse_proxy_duration_seconds_count', { api: '/api' }), 2)

    // Logout.
    const logoutUrl = (JSON.parse((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) as Claims).find(
      (c) => c.type === 'bff:logout_url',
    )!.value as string
    assert.equal((await browser.get(`${flow.origin}${logoutUrl}`)).status, 302)
    const loggedOut = await scrape()
    assert.equal(delta(loggedOut, 'gatehouse_logouts_total'), 1)
    assert.equal(
      delta(loggedOut, 'gatehouse_http_requests_total', { route: 'bff_logout', method: 'GET', status: '302' }),
      1,
    )
    assert.equal(valueOf(loggedOut, 'gatehouse_active_sessions'), 0)

    // A second user, logged out by the IdP over the back channel; then a forged and a replayed token.
    const other = flow.browser()
    await flow.login(other, { username: 'bob' })
    const sid = (JSON.parse((await other.get(`${flow.origin}/bff/user`, CSRF)).text) as Claims).find(
      (c) => c.type === 'sid',
    )!.value as string
    assert.equal(valueOf(await scrape(), 'gatehouse_active_sessions'), 1)
    const token = await signLogoutToken({ sid })
    assert.equal((await postBackchannel(token)).status, 200)
    assert.equal((await postBackchannel(token)).status, 400, 'a replay is refused')
    assert.equal((await postBackchannel('not.a.jwt')).status, 400)
    assert.equal((await fetch(`${flow.origin}/signin-oidc?state=forged&code=x`)).status, 400)
    const end = await scrape()
    assert.equal(delta(end, 'gatehouse_backchannel_logouts_total', { result: 'ok' }), 1)
    assert.equal(delta(end, 'gatehouse_backchannel_logouts_total', { result: 'invalid' }), 2)
    assert.equal(delta(end, 'gatehouse_backchannel_logouts_total', { result: 'error' }), 0)
    assert.equal(
      delta(end, 'gatehouse_http_requests_total', { route: 'bff_backchannel', method: 'POST', status: '200' }),
      1,
    )
    assert.equal(
      delta(end, 'gatehouse_http_requests_total', { route: 'bff_backchannel', method: 'POST', status: '400' }),
      2,
    )
    assert.equal(delta(end, 'gatehouse_logins_total', { result: 'ok' }), 2)
    assert.equal(delta(end, 'gatehouse_logins_total', { result: 'invalid_state' }), 1)
    assert.equal(delta(end, 'gatehouse_http_requests_total', { route: 'callback', method: 'GET', status: '400' }), 1)
    assert.equal(delta(end, 'gatehouse_logouts_total'), 1, 'a back-channel logout is not a user logout')
    assert.equal(delta(end, 'gatehouse_token_refreshes_total', { result: 'ok' }), 1)
    assert.equal(valueOf(end, 'gatehouse_active_sessions'), 0)
  })

  test('two gatehouses in one process keep separate registries', async () => {
    const second = await createGatehouse(
      {
        oidc: { authority: 'http://127.0.0.1:9', clientId: 'x', clientSecret: 'y' },
        keys: [generateKey()],
        session: { store: 'memory' },
        admin: { token: ADMIN_TOKEN },
      },
      { logger: pino({ level: 'silent' }) },
    )
    const server = createServer((req, res) => second.adminHandler(req, res))
    const url = await listen(server)
    try {
      const own = parseMetrics(
        await (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).text(),
      )
      assert.equal(valueOf(own, 'gatehouse_logins_total', { result: 'ok' }), 0)
      assert.ok(
        valueOf(await scrape(), 'gatehouse_logins_total', { result: 'ok' }) >= 1,
        'the first gatehouse still has its own counts',
      )
    } finally {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await second.close()
    }
  })
})
