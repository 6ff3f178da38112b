import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { SpanStatusCode, trace } from '@opentelemetry/api'
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace-base'
import { span } from '../../src/ops/tracing.ts'
import { KeyRing } from '../../src/session/seal.ts'
import type { SessionData } from '../../src/session/session.ts'
import { hashSessionId, sessionSealPurpose } from '../../src/session/sessions.ts'
import { MemoryStore } from '../../src/session/stores/memory.ts'
import { CLIENT_SECRET, CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const COOKIE = '__Host-gatehouse'
const PAST_EXPIRY_MS = 3600_000 + 60_000

describe('tracing without an SDK', () => {
  test('span() runs its function with a non-recording span and passes results and errors through', async () => {
    assert.equal(await span('gatehouse.test', { a: 1 }, async (s) => s.isRecording()), false)
    await assert.rejects(
      span('gatehouse.test', {}, async () => Promise.reject(new Error('boom'))),
      /boom/,
    )
  })
})

describe('tracing with an SDK registered (after gatehouse loaded: the tracer picks it up late)', () => {
  const exporter = new InMemorySpanExporter()
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
  const store = new MemoryStore()
  let offset = 0
  let upstream: Upstream
  let flow: Flow

  before(async () => {
    assert.ok(trace.setGlobalTracerProvider(provider), 'the SDK registered')
    upstream = await startUpstream()
    const probe = createServer()
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
    const downUrl = `http://127.0.0.1:${(probe.address() as AddressInfo).port}`
    await new Promise<void>((resolve) => probe.close(() => resolve()))
    flow = await startFlow({
      runtime: { store, now: () => Date.now() + offset },
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
    await provider.shutdown()
    trace.disable()
  })

  async function storedTokens(cookie: string): Promise<SessionData['tokens']> {
    const record = await store.get(hashSessionId(cookie), 0)
    assert.ok(record)
    const plain = new KeyRing(flow.keys).unseal(record.sealed, sessionSealPurpose(record))
    assert.ok(plain)
    return (JSON.parse(plain) as SessionData).tokens
  }

  test('login, a proxied call, a refresh and a 502 make gatehouse.login, gatehouse.proxy and gatehouse.refresh spans without secrets', async () => {
    const secrets: string[] = [CLIENT_SECRET, ...flow.keys]
    const browser = flow.browser()
    const from = browser.visited.length
    assert.equal((await flow.login(browser)).status, 302)
    for (const url of browser.visited.slice(from).map((u) => new URL(u))) {
      for (const name of ['code', 'state', 'nonce']) {
        const value = url.searchParams.get(name)
        if (value && value.length >= 16) secrets.push(value)
      }
    }
    const cookie = browser.cookies.get(COOKIE)!
    secrets.push(cookie)
    const before = await storedTokens(cookie)
    secrets.push(before.accessToken!, before.refreshToken!, before.idToken!)

    const query = randomBytes(24).toString('base64url')
    secrets.push(query)
    assert.equal((await browser.get(`${flow.origin}/api/user/echo?access_token=${query}`, CSRF)).status, 200)
    offset += PAST_EXPIRY_MS
    assert.equal((await browser.get(`${flow.origin}/api/user/echo`, CSRF)).status, 200)
    const refreshed = await storedTokens(cookie)
    assert.notEqual(refreshed.accessToken, before.accessToken, 'the call refreshed the token')
    secrets.push(refreshed.accessToken!, refreshed.refreshToken!)
    assert.equal((await browser.get(`${flow.origin}/api/down/x?q=${query}`, CSRF)).status, 502)
    const forged = randomBytes(32).toString('base64url')
    secrets.push(forged)
    assert.equal((await flow.browser().get(`${flow.origin}/signin-oidc?code=${forged}&state=${forged}`)).status, 400)

    const spans = exporter.getFinishedSpans()
    const named = (name: string) => spans.filter((s) => s.name === name)
    const one = (name: string, match: (s: ReadableSpan) => boolean) =>
      assert.ok(
        named(name).some(match),
        `a ${name} span like that: ${JSON.stringify(named(name).map((s) => s.attributes))}`,
      )
    one(
      'gatehouse.login',
      (s) => s.status.code !== SpanStatusCode.ERROR && s.attributes['gatehouse.frontend'] !== undefined,
    )
    one(
      'gatehouse.login',
      (s) => s.status.code === SpanStatusCode.ERROR && s.attributes['gatehouse.error'] === 'login_state_invalid',
    )
    one(
      'gatehouse.proxy',
      (s) =>
        s.attributes['gatehouse.api'] === '/api/user' &&
        s.attributes['http.request.method'] === 'GET' &&
        s.attributes['http.response.status_code'] === 200,
    )
    one(
      'gatehouse.proxy',
      (s) =>
        s.attributes['gatehouse.api'] === '/api/down' &&
        s.attributes['http.response.status_code'] === 502 &&
        s.attributes['gatehouse.error'] === 'upstream_unavailable',
    )
    assert.equal(named('gatehouse.refresh').length, 1, 'one refresh grant, one span')
    one('gatehouse.refresh', (s) => s.attributes['gatehouse.result'] === 'ok' && s.status.code !== SpanStatusCode.ERROR)

    // Nothing a span carries (name, attributes, status, events) holds a secret or a 16-character piece of one.
    const text = JSON.stringify(
      spans.map((s) => ({ name: s.name, attributes: s.attributes, status: s.status, events: s.events })),
    )
    for (const value of secrets) {
      assert.ok(value.length >= 16)
      for (let i = 0; i + 16 <= value.length; i++)
        assert.ok(
          !text.includes(value.slice(i, i + 16)),
          `a span carries a piece of a secret: ${value.slice(i, i + 16)}`,
        )
    }
  })
})
