import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { pino } from 'pino'
import { createGatehouse, type Gatehouse } from '../../src/index.ts'
import { GatehouseError } from '../../src/errors.ts'
import {
  asUser as withSession,
  clearsCookie,
  COOKIE,
  failOnUnhandledRejections,
  logoutTokenSigner,
  postLogoutToken as postLogoutTokenTo,
  request,
  REQUEST_LIMIT_MS,
  STORE_FAILING,
  type Answer,
} from '../helpers/failover.ts'
import { startFlow, type Flow } from '../helpers/flow.ts'
import { instanceOptions, storeFixture, type SharedStoreKind, type StoreFixture } from '../helpers/instances.ts'
import { closedPort, silentPort, startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

// A shared store (Redis, PostgreSQL) that goes away and comes back, with a TCP proxy between gatehouse
// and the real server to pull the plug. Requests needing the store answer 503 store_unavailable promptly
// instead of hanging, health stays up and readiness reports the store; once the store is back, the same
// cookie works again without a restart. An unhandled rejection anywhere fails this file (node:test), and
// is also collected here to name it in the failing test.

/** How long the store has to be usable again after it is back. */
const RECOVERY_MS = 15_000

failOnUnhandledRejections()

/** Repeats `attempt` until `done` says so or RECOVERY_MS pass; returns the last answer. */
async function poll(attempt: () => Promise<Answer>, done: (a: Answer) => boolean): Promise<Answer> {
  const deadline = Date.now() + RECOVERY_MS
  for (;;) {
    const answer = await attempt()
    if (done(answer) || Date.now() > deadline) return answer
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

/** Rejects instead of waiting forever: a startup against a dead store must end on its own. */
function settleWithin<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what} neither resolved nor rejected within ${REQUEST_LIMIT_MS} ms (hangs)`)),
      REQUEST_LIMIT_MS,
    )
  })
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer))
}

function assertProblem(answer: Answer, status: number, code: string): void {
  assert.equal(answer.status, status, answer.body)
  assert.match(answer.headers.get('content-type') ?? '', /^application\/problem\+json/)
  assert.equal(answer.code, code)
}

for (const kind of ['redis', 'postgres'] as const satisfies readonly SharedStoreKind[]) {
  describe(`${kind} store outage`, () => {
    let store: StoreFixture
    let proxy: TcpProxy
    let upstream: Upstream
    let flow: Flow
    let cookie: string
    let sign: (sid: string) => Promise<string>

    const asUser = (path: string, init: RequestInit = {}) => withSession(flow.origin, cookie, path, init)
    const postLogoutToken = (token: string) => postLogoutTokenTo(flow.origin, token)

    before(async () => {
      store = await storeFixture(kind, 'gatehouse_outage')
      proxy = await startTcpProxy(store.target)
      upstream = await startUpstream()
      flow = await startFlow({
        gatehouse: {
          session: { store: store.url(proxy) },
          remoteApis: [{ path: '/api/user', target: upstream.url, token: 'user' }],
        },
      })
      const browser = flow.browser()
      await flow.login(browser)
      cookie = browser.cookies.get(COOKIE)!
      assert.ok(cookie, 'logged in')
      assert.equal((await asUser('/bff/user')).status, 200)
      assert.ok(proxy.accepted > 0, 'gatehouse reaches the store through the proxy')
      sign = await logoutTokenSigner(flow)
    })
    after(async () => {
      await proxy?.restore()
      await flow?.close()
      await proxy?.close()
      await upstream?.close()
      await store?.cleanup()
    })

    test('store cut: /bff/user and a proxied API answer 503 store_unavailable (cookie kept), /readyz 503 store failing, /healthz 200; back: the same cookie works again', async () => {
      const apiCallsBefore = upstream.received.length
      await proxy.cut()
      try {
        // A session read in the last session.cacheTtl (1 s) may be answered from the in-process copy
        // until gatehouse sees its store link go down; from then on every read needs the store.
        const user = await poll(
          () => asUser('/bff/user'),
          (a) => a.status !== 200,
        )
        assertProblem(user, 503, 'store_unavailable')
        assert.equal(clearsCookie(user), false, 'a store fault does not log the user out')
        assert.equal(JSON.parse(user.body).detail, undefined, 'no internals in the 5xx problem')

        const api = await asUser('/api/user/echo')
        assertProblem(api, 503, 'store_unavailable')
        assert.equal(clearsCookie(api), false)
        assert.equal(upstream.received.length, apiCallsBefore, 'nothing was forwarded without a session')

        const ready = await request(`${flow.origin}/readyz`)
        assert.equal(ready.status, 503, ready.body)
        assert.deepEqual(JSON.parse(ready.body), STORE_FAILING)
        const health = await request(`${flow.origin}/healthz`)
        assert.equal(health.status, 200)

        // Still answering, still 503, on repeated requests while the store stays away.
        const again = await Promise.all([
          asUser('/bff/user'),
          asUser('/api/user/echo'),
          asUser('/bff/user?slide=false'),
        ])
        for (const answer of again) assertProblem(answer, 503, 'store_unavailable')
      } finally {
        await proxy.restore()
      }

      const back = await poll(
        () => asUser('/bff/user'),
        (a) => a.status === 200,
      )
      assert.equal(
        back.status,
        200,
        `within ${RECOVERY_MS} ms of the store coming back, /bff/user works with the same cookie: ${back.status} ${back.body}`,
      )
      const claims: unknown = JSON.parse(back.body)
      assert.ok(Array.isArray(claims) && claims.some((c: { type: string }) => c.type === 'sub'))
      const ready = await poll(
        () => request(`${flow.origin}/readyz`),
        (a) => a.status === 200,
      )
      assert.equal(ready.status, 200, ready.body)
      assert.deepEqual(JSON.parse(ready.body), { status: 'ready', checks: { store: 'ok', idp: 'ok' } })
      const api = await asUser('/api/user/echo')
      assert.equal(api.status, 200, api.body)
    })

    test('a back-channel logout during the outage answers 503 (so the IdP retries), and the retried token is accepted once the store is back', async () => {
      const sid = JSON.parse((await asUser('/bff/user')).body).find((c: { type: string }) => c.type === 'sid')
        .value as string
      const token = await sign(sid)
      await proxy.cut()
      try {
        assertProblem(await postLogoutToken(token), 503, 'store_unavailable')
      } finally {
        await proxy.restore()
      }
      const retried = await poll(
        () => postLogoutToken(token),
        (a) => a.status !== 503,
      )
      assert.equal(retried.status, 200, `the IdP's retry is not taken for a replay: ${retried.body}`)
      assert.deepEqual(JSON.parse(retried.body), { sessionsEnded: 1 })
      assert.equal((await asUser('/bff/user')).status, 401, 'the session is ended')
    })

    test('startup with session.store at a closed port rejects with GatehouseError store_unavailable, without hanging', async () => {
      const port = await closedPort()
      const location = store.url({ host: '127.0.0.1', port })
      let started: Gatehouse | undefined
      await assert.rejects(
        settleWithin(
          createGatehouse(instanceOptions(flow, { session: { store: location } }), {
            logger: pino({ level: 'silent' }),
          }).then((g) => (started = g)),
          'createGatehouse',
        ),
        (err: unknown) => {
          assert.ok(err instanceof GatehouseError, `a GatehouseError, got ${String(err)}`)
          assert.equal(err.code, 'store_unavailable')
          assert.match(
            err.message,
            new RegExp(`127\\.0\\.0\\.1:${port}`),
            'the message names where the store was expected',
          )
          return true
        },
      )
      await started?.close()
    })

    test('startup with session.store at a port that accepts connections but never answers rejects with store_unavailable, without hanging', async () => {
      const silent = await silentPort()
      let started: Gatehouse | undefined
      try {
        await assert.rejects(
          settleWithin(
            createGatehouse(
              instanceOptions(flow, { session: { store: store.url({ host: '127.0.0.1', port: silent.port }) } }),
              { logger: pino({ level: 'silent' }) },
            ).then((g) => (started = g)),
            'createGatehouse',
          ),
          (err: unknown) => {
            assert.ok(err instanceof GatehouseError, `a GatehouseError, got ${String(err)}`)
            assert.equal(err.code, 'store_unavailable')
            return true
          },
        )
      } finally {
        await started?.close()
        await silent.close()
      }
    })
  })
}
