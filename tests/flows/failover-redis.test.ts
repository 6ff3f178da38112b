import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, afterEach, before, describe, test, type TestContext } from 'node:test'
import { Redis } from 'ioredis'
import { pino } from 'pino'
import { hashSessionId } from '../../src/session/sessions.ts'
import { CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import { instanceOptions, startInstance, storeFixture, type Instance, type StoreFixture } from '../helpers/instances.ts'
import { logLines } from '../helpers/log-lines.ts'
import { startUpstream } from '../helpers/upstream.ts'

// Issue 18 point 3: Redis failover without restart. Two gatehouse instances A and B share a store on a
// private Redis Sentinel setup (primary, replica, sentinel) or a private 3-primary/3-replica Redis Cluster;
// a primary is SIGKILLed and its replica promoted. gatehouse keeps answering (200 or 503 store_unavailable,
// never 500, never hanging), /readyz goes 503 and comes back, sessions made durable on the replica before
// the kill keep working without a new login, and the pub/sub link that carries session-end notices is
// re-established (its loss logged and counted).

const COOKIE = '__Host-gatehouse'
const ADMIN_TOKEN = 'failover-redis-admin-token-0123456789'
/** How long a single request may take before it counts as hanging (generous: not a timing assertion). */
const REQUEST_LIMIT_MS = 20_000
/** How long gatehouse has to serve again after a kill, or its read cache to come back. */
const WAIT_MS = 20_000
/** How long B may take to receive A's end notice before the test gives up (not a timing assertion). */
const NOTICE_WAIT_MS = 5_000

const unhandled: unknown[] = []
process.on('unhandledRejection', (reason) => unhandled.push(reason))
afterEach(() => assert.deepEqual(unhandled, [], 'no unhandled rejection'))

interface Answer {
  status: number
  headers: Headers
  body: string
  /** The problem's `code`, when the body is a JSON object with one. */
  code: string | undefined
}

function codeOf(body: string): string | undefined {
  try {
    const parsed: unknown = JSON.parse(body)
    if (parsed && typeof parsed === 'object' && 'code' in parsed && typeof parsed.code === 'string') return parsed.code
  } catch {
    // not JSON
  }
  return undefined
}

/** A request that fails (instead of hanging the test) if no answer comes within REQUEST_LIMIT_MS. */
async function request(url: string, init: RequestInit = {}): Promise<Answer> {
  let res: Response
  let body: string
  try {
    res = await fetch(url, { redirect: 'manual', ...init, signal: AbortSignal.timeout(REQUEST_LIMIT_MS) })
    body = await res.text()
  } catch (err) {
    assert.fail(`${init.method ?? 'GET'} ${url} got no answer within ${REQUEST_LIMIT_MS} ms (hangs): ${String(err)}`)
  }
  return { status: res.status, headers: res.headers, body, code: codeOf(body) }
}

const asUser = (origin: string, cookie: string, path = '/bff/user', init: RequestInit = {}): Promise<Answer> =>
  request(`${origin}${path}`, { ...init, headers: { ...CSRF, cookie: `${COOKIE}=${cookie}`, ...init.headers } })

const clearsCookie = (answer: Answer): boolean =>
  answer.headers.getSetCookie().some((line) => line.startsWith(`${COOKIE}=;`))

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `check` every 50 ms until it holds; fails naming `what` after `limit` ms. Returns the ms it took. */
async function until(what: string, check: () => Promise<boolean>, limit = WAIT_MS): Promise<number> {
  const started = performance.now()
  for (;;) {
    if (await check()) return Math.round(performance.now() - started)
    if (performance.now() - started > limit) assert.fail(`${what}: not within ${limit} ms`)
    await sleep(50)
  }
}

interface Sample {
  target: string
  /** performance.now() when the request was sent. */
  at: number
  status: number
  code: string | undefined
  clears: boolean
  ms: number
  error?: string
}

/**
 * Requests `targets` in a loop (one loop each, a few ms apart) until stop() is called; stop() resolves
 * with every answer. A request with no answer within REQUEST_LIMIT_MS is kept as status 0.
 */
function load(targets: Array<{ name: string; send: () => Promise<Answer> }>): { stop: () => Promise<Sample[]> } {
  const samples: Sample[] = []
  let stopped = false
  const loops = targets.map(async ({ name, send }) => {
    while (!stopped) {
      const at = performance.now()
      try {
        const a = await send()
        const ms = Math.round(performance.now() - at)
        samples.push({ target: name, at, status: a.status, code: a.code, clears: clearsCookie(a), ms })
      } catch (err) {
        const ms = Math.round(performance.now() - at)
        samples.push({ target: name, at, status: 0, code: undefined, clears: false, ms, error: String(err) })
      }
      await sleep(5)
    }
  })
  return {
    async stop() {
      stopped = true
      await Promise.all(loops)
      return samples
    },
  }
}

/** Anything but what gatehouse may answer while its store fails over: served, or 503 store_unavailable keeping the cookie. */
const unacceptable = (samples: Sample[]): Sample[] =>
  samples.filter((s) => !(s.status === 200 || (s.status === 503 && s.code === 'store_unavailable' && !s.clears)))

function summary(samples: Sample[], since: number): string {
  const byStatus = new Map<number, number>()
  for (const s of samples) byStatus.set(s.status, (byStatus.get(s.status) ?? 0) + 1)
  const statuses = [...byStatus].map(([status, n]) => `${status}×${n}`).join(', ')
  const refused = samples.filter((s) => s.status === 503)
  const window =
    refused.length === 0
      ? 'no 503'
      : `503s sent from ${Math.round(Math.min(...refused.map((s) => s.at)) - since)} to ${Math.round(Math.max(...refused.map((s) => s.at)) - since)} ms after the kill`
  return `${samples.length} requests (${statuses}), ${window}, slowest ${Math.max(0, ...samples.map((s) => s.ms))} ms`
}

interface ReadySample {
  instance: 'A' | 'B'
  at: number
  status: number
  body: string
}

/** Polls /readyz on A and B (each every ~25 ms) until stop(); stop() resolves with every answer. */
function watchReadyz(origins: { A: string; B: string }): { stop: () => Promise<ReadySample[]> } {
  const samples: ReadySample[] = []
  let stopped = false
  const loops = (['A', 'B'] as const).map(async (instance) => {
    while (!stopped) {
      const at = performance.now()
      try {
        const a = await request(`${origins[instance]}/readyz`)
        samples.push({ instance, at, status: a.status, body: a.body })
      } catch (err) {
        samples.push({ instance, at, status: 0, body: String(err) })
      }
      await sleep(25)
    }
  })
  return {
    async stop() {
      stopped = true
      await Promise.all(loops)
      return samples
    },
  }
}

/** For one instance: when /readyz first answered 503 after `since`, and when 200 again after its last 503. */
function readyWindow(
  samples: ReadySample[],
  instance: 'A' | 'B',
  since: number,
): { first503: number; back200: number } | undefined {
  const mine = samples.filter((s) => s.instance === instance).sort((x, y) => x.at - y.at)
  const refused = mine.filter((s) => s.status === 503)
  if (refused.length === 0) return undefined
  const last503 = refused.at(-1)!.at
  const back = mine.find((s) => s.at > last503 && s.status === 200)
  return {
    first503: Math.round(refused[0]!.at - since),
    back200: back === undefined ? NaN : Math.round(back.at - since),
  }
}

/** One command batch on a fresh connection to one server (no retries): what `use` returns, or a throw. */
async function onNode<T>(port: number, use: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis({
    host: '127.0.0.1',
    port,
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    connectTimeout: 2000,
    commandTimeout: 8000,
  })
  client.on('error', () => {})
  try {
    await client.connect()
    return await use(client)
  } finally {
    client.disconnect()
  }
}

function losses(metrics: string): number {
  const match = /^gatehouse_session_notice_link_losses_total (\d+)$/m.exec(metrics)
  assert.ok(match, 'the instance exports gatehouse_session_notice_link_losses_total')
  return Number(match[1])
}

/** Two gatehouse instances A and B on one Cluster or Sentinel store, with what the tests need to observe them. */
interface Pair {
  fixture: StoreFixture
  /** The key prefix of this store (from its URL). */
  prefix: string
  flow: Flow
  b: Instance
  /** Every line each instance logged (its access log included). */
  logs: { A: ReturnType<typeof logLines>; B: ReturnType<typeof logLines> }
  /** A session only used to observe whether an instance serves from its read cache (servedFrom). */
  probe: string
  /** The port of the primary holding `key` now. */
  primaryOf(key: string): Promise<number>
  /** The instance's metrics, as its admin listener's GET /metrics answers them. */
  metrics(instance: 'A' | 'B'): Promise<string>
  close(): Promise<void>
}

const recordKey = (prefix: string, cookie: string) => `${prefix}{s:${hashSessionId(cookie)}}`
/** Same hash tag (slot) as the record, outside the `{s:` key pattern gatehouse SCANs. */
const besideRecord = (prefix: string, cookie: string, label: string) => `${prefix}${label}{s:${hashSessionId(cookie)}}`

async function startPair(kind: 'redis-cluster' | 'redis-sentinel'): Promise<Pair> {
  const closers: Array<() => Promise<void>> = []
  const close = async () => {
    for (const stop of closers.reverse()) await stop().catch(() => {})
  }
  try {
    const fixture = await storeFixture(kind, 'gatehouse_failover')
    closers.push(() => fixture.cleanup())
    const prefix = decodeURIComponent(/[?&]prefix=([^&]*)/.exec(fixture.url())![1]!)
    const upstream = await startUpstream()
    closers.push(() => upstream.close())
    const shared = {
      // A session-read cache far longer than any test: an instance that refuses an ended session was
      // told by the store's notice (or read the store), never merely saw its copy age out.
      session: { store: fixture.url(), cacheTtl: '60s' },
      remoteApis: [{ path: '/api/user', target: upstream.url, token: 'user' as const }],
      admin: { token: ADMIN_TOKEN },
    }
    const logs = { A: logLines(), B: logLines() }
    const flow = await startFlow({ gatehouse: shared, runtime: { logger: pino({ level: 'info' }, logs.A.sink) } })
    closers.push(() => flow.close())
    const b = await startInstance(instanceOptions(flow, shared), { logger: pino({ level: 'info' }, logs.B.sink) })
    closers.push(() => b.close())
    const admins = new Map<'A' | 'B', string>()
    for (const [name, gatehouse] of [
      ['A', flow.gatehouse],
      ['B', b.gatehouse],
    ] as const) {
      const server: Server = createServer((req, res) => gatehouse.adminHandler(req, res))
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      closers.push(async () => {
        server.closeAllConnections()
        await new Promise<void>((resolve) => server.close(() => resolve()))
      })
      admins.set(name, `http://127.0.0.1:${(server.address() as AddressInfo).port}`)
    }
    const primaryOf =
      kind === 'redis-cluster'
        ? (key: string) => fixture.cluster!.primaryOf(key)
        : () => fixture.sentinel!.currentPrimary()
    return {
      fixture,
      prefix,
      flow,
      b,
      logs,
      probe: await loggedInOnA(flow, 'bob'),
      primaryOf,
      async metrics(instance) {
        const res = await request(`${admins.get(instance)}/metrics`, {
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        })
        assert.equal(res.status, 200, res.body)
        return res.body
      },
      close,
    }
  } catch (err) {
    await close()
    throw err
  }
}

async function loggedInOnA(flow: Flow, username = 'alice'): Promise<string> {
  const browser = flow.browser()
  await flow.login(browser, { username })
  const cookie = browser.cookies.get(COOKIE)
  assert.ok(cookie, 'the login on A set the session cookie')
  return cookie
}

/** The `session_notice_link_*` events an instance logged, in order. */
const linkEvents = (log: ReturnType<typeof logLines>): string[] =>
  log.lines
    .filter((line) => line.includes('session_notice_link_'))
    .map((line) => String((JSON.parse(line) as { event?: unknown }).event))

/**
 * How `origin` answers for the probe session while its record is hidden from the store (renamed, on the
 * primary holding it, for the duration of one request, then put back): 'cache' when it still answers 200 —
 * only its in-process read cache can have answered, which it does only while its end-notice link reports
 * listening (CachedStore) — 'store' when it answers 401 (it read the store) or 503 (it tried to).
 */
async function servedFrom(pair: Pair, origin: string): Promise<'cache' | 'store'> {
  const warm = await asUser(origin, pair.probe, '/bff/user?slide=false')
  if (warm.status === 503 && warm.code === 'store_unavailable') return 'store'
  assert.equal(warm.status, 200, `the probe session works: ${warm.body}`)
  const key = recordKey(pair.prefix, pair.probe)
  const hidden = besideRecord(pair.prefix, pair.probe, 'hidden')
  const port = await pair.primaryOf(key)
  await onNode(port, (c) => c.rename(key, hidden))
  try {
    const res = await asUser(origin, pair.probe, '/bff/user?slide=false')
    if (res.status === 200) return 'cache'
    assert.ok(
      res.status === 401 || (res.status === 503 && res.code === 'store_unavailable'),
      `${res.status} ${res.body}`,
    )
    return 'store'
  } finally {
    await onNode(port, (c) => c.rename(hidden, key))
  }
}

/**
 * Makes `cookie`'s record durable on the replica of the primary holding it: a write on that primary's slot
 * from this connection, then WAIT 1 — the replica acknowledged the replication stream up to that write, so
 * every earlier write (the record) too. Returns the primary's port.
 */
async function durable(pair: Pair, cookie: string): Promise<number> {
  const key = recordKey(pair.prefix, cookie)
  const port = await pair.primaryOf(key)
  const acked = await onNode(port, async (c) => {
    assert.equal(await c.exists(key), 1, `the record is on :${port}`)
    await c.set(besideRecord(pair.prefix, cookie, 'sync'), '1', 'PX', 60_000)
    return c.call('WAIT', '1', '5000')
  })
  assert.equal(acked, 1, `the replica of :${port} acknowledged the record`)
  return port
}

/** Makes durable those of `cookies` whose records are on the primary `port` (the one about to be killed). */
async function durableOn(pair: Pair, port: number, cookies: string[]): Promise<void> {
  for (const cookie of cookies)
    if ((await pair.primaryOf(recordKey(pair.prefix, cookie))) === port) await durable(pair, cookie)
}

/** The four requests the load runs: the session and a proxied API on A and on B. */
const targets = (pair: Pair, cookie: string) =>
  [pair.flow.origin, pair.b.origin].flatMap((origin) => {
    const name = origin === pair.flow.origin ? 'A' : 'B'
    return [
      { name: `${name} /bff/user`, send: () => asUser(origin, cookie) },
      { name: `${name} /api/user/echo`, send: () => asUser(origin, cookie, '/api/user/echo') },
    ]
  })

/** Both instances ready and serving `cookie` (user endpoint and proxied API). */
async function serving(pair: Pair, cookie: string): Promise<boolean> {
  return (await notServing(pair, cookie)) === undefined
}

/** What keeps A or B from serving `cookie` now (the first answer that is not 200), or undefined. */
async function notServing(pair: Pair, cookie: string): Promise<string | undefined> {
  for (const [name, origin] of [
    ['A', pair.flow.origin],
    ['B', pair.b.origin],
  ]) {
    const ready = await request(`${origin}/readyz`)
    if (ready.status !== 200) return `${name} /readyz ${ready.status} ${ready.body}`
    for (const path of ['/bff/user', '/api/user/echo']) {
      const res = await asUser(origin!, cookie, path)
      if (res.status !== 200) return `${name} ${path} ${res.status} ${res.body}`
    }
  }
  return undefined
}

/**
 * The failover under load: `kill()` runs while the four loops and the /readyz watch run; the load stops once
 * `serving` holds again (and a moment after). Asserts every answer was acceptable and that /readyz on A and B
 * went 503 and came back to 200; prints the timings.
 */
async function failoverUnderLoad(
  t: TestContext,
  pair: Pair,
  cookie: string,
  kill: () => Promise<void>,
  failover: () => Promise<number>,
): Promise<void> {
  assert.ok(await serving(pair, cookie), 'A and B serve the session before the kill')
  const ready = watchReadyz({ A: pair.flow.origin, B: pair.b.origin })
  const running = load(targets(pair, cookie))
  await sleep(300)
  let samples: Sample[] = []
  let readySamples: ReadySample[] = []
  let resumedMs = 0
  let failoverMs = 0
  const killedAt = performance.now()
  try {
    await kill()
    ;[failoverMs, resumedMs] = await Promise.all([
      failover(),
      until('A and B serve again (/readyz 200, the same cookie 200 on both)', () => serving(pair, cookie)).catch(
        async (err: unknown) => {
          throw new Error(`${String(err)}; now: ${(await notServing(pair, cookie)) ?? 'serving'}`)
        },
      ),
    ])
    // Keep the load on a little past the recovery: the first moments after the switch count too.
    await sleep(300)
  } finally {
    samples = await running.stop()
    readySamples = await ready.stop()
  }
  const windows = { A: readyWindow(readySamples, 'A', killedAt), B: readyWindow(readySamples, 'B', killedAt) }
  const shown = (['A', 'B'] as const)
    .map((i) => {
      const w = windows[i]
      return w
        ? `${i} 503 from ${w.first503} ms, 200 again at ${w.back200} ms (${w.back200 - w.first503} ms)`
        : `${i} never 503`
    })
    .join('; ')
  t.diagnostic(
    `servers promoted the replica ${failoverMs} ms after the kill; service resumed ${resumedMs} ms after it; /readyz: ${shown}; load: ${summary(samples, killedAt)}`,
  )
  assert.deepEqual(unacceptable(samples), [], 'only 200 or 503 store_unavailable (cookie kept) during the failover')
  const oddReady = readySamples.filter((s) => s.status !== 200 && s.status !== 503)
  assert.deepEqual(oddReady, [], '/readyz answers 200 or 503 only')
  for (const s of readySamples.filter((r) => r.status === 503))
    assert.deepEqual(JSON.parse(s.body), { status: 'not_ready', checks: { store: 'failing', idp: 'ok' } })
  for (const instance of ['A', 'B'] as const) {
    const w = windows[instance]
    assert.ok(w, `/readyz on ${instance} answered 503 during the failover`)
    assert.ok(!Number.isNaN(w.back200), `/readyz on ${instance} answered 200 again after its last 503`)
  }
}

/** The first answer for `cookie` on `origin` that is not 200, polling up to NOTICE_WAIT_MS (the notice is asynchronous). */
async function refusedOn(origin: string, cookie: string): Promise<{ answer: Answer; ms: number }> {
  const started = performance.now()
  for (;;) {
    const answer = await asUser(origin, cookie)
    const ms = Math.round(performance.now() - started)
    if (answer.status !== 200 || ms > NOTICE_WAIT_MS) return { answer, ms }
    await sleep(25)
  }
}

// Why this fails when B's subscription is not re-linked after the failover: with cacheTtl 60 s, B answers
// from its in-process copy of a session as long as its read cache's notice link says it is listening, and
// only a notice can drop that copy. The test first waits until B serves the probe from its cache again (so
// the link reported itself back: onLink(true)); B then reads (and caches) a fresh session and A logs it out.
// If B's new link were not subscribed where the notice is published (the promoted primary; for the cluster,
// the node that now serves the channel's slot), B would keep answering 200 from its copy for 60 s and the
// 401 below would not come. If the link never reported itself back, the wait for the cache fails instead.
// The link loss counted on B's /metrics and the lost/restored events in its log are those of B's other
// subscription (the one feeding /bff/session-events streams): both links must come back.
async function logoutOnARefusedByB(t: TestContext, pair: Pair, lossesBefore: number): Promise<void> {
  const { flow, b } = pair
  const cacheMs = await until(
    'B serves the probe from its read cache again (its notice link is re-established and onLink(true) was called)',
    async () => (await servedFrom(pair, b.origin)) === 'cache',
  )
  const cookie = await loggedInOnA(flow)
  const user = await asUser(flow.origin, cookie)
  assert.equal(user.status, 200, user.body)
  const claims = JSON.parse(user.body) as Array<{ type: string; value: unknown }>
  const logoutUrl = claims.find((c) => c.type === 'bff:logout_url')?.value as string
  const onB = await asUser(b.origin, cookie)
  assert.equal(onB.status, 200, `B reads (and caches) the session after the failover: ${onB.body}`)
  const logout = await request(`${flow.origin}${logoutUrl}`, { headers: { cookie: `${COOKIE}=${cookie}` } })
  assert.equal(logout.status, 302, logout.body)
  const { answer, ms } = await refusedOn(b.origin, cookie)
  const counted = losses(await pair.metrics('B'))
  t.diagnostic(
    `B's read cache served again (checked ${cacheMs} ms into this test); B refused the logged-out session ${ms} ms after A answered the logout; B's link losses: ${lossesBefore} before the kill, ${counted} now; B's link events: ${linkEvents(pair.logs.B).join(', ')}`,
  )
  assert.equal(answer.status, 401, `B still serves the ended session (its cached copy): ${answer.body}`)
  assert.equal(answer.code, 'session_required')
  assert.equal((await asUser(b.origin, cookie, '/api/user/echo')).status, 401)
  assert.ok(counted >= lossesBefore + 1, `B counted the notice link's loss (${lossesBefore} → ${counted})`)
  const events = linkEvents(pair.logs.B)
  assert.ok(events.includes('session_notice_link_lost'), `B logged the link loss: ${events.join(', ')}`)
  assert.equal(events.at(-1), 'session_notice_link_restored', `B logged the link back: ${events.join(', ')}`)
}

describe('Redis Sentinel failover: two instances, the primary killed, the replica promoted', () => {
  let pair: Pair
  /** The session the load runs on, made durable on the replica before the kill. */
  let main: string
  /** A session logged in on A before the kill (durable on the replica) and never read on B until after it. */
  let cold: string
  let lossesBefore = 0
  let failedOver = false

  before(async () => {
    pair = await startPair('redis-sentinel')
    main = await loggedInOnA(pair.flow)
    cold = await loggedInOnA(pair.flow)
  })
  after(async () => {
    await pair?.close()
  })

  test('primary killed under load: every answer on A and B is 200 or 503 store_unavailable (no 500, no hang), /readyz 503 then 200, sessions durable on the replica work on A and B without a new login', async (t) => {
    const { sentinel } = pair.fixture
    assert.ok(sentinel)
    for (const cookie of [main, cold, pair.probe]) await durable(pair, cookie)
    lossesBefore = losses(await pair.metrics('B'))
    await failoverUnderLoad(
      t,
      pair,
      main,
      () => sentinel.killPrimary(),
      () => sentinel.waitForFailover(),
    )
    failedOver = true
    assert.equal(await sentinel.currentPrimary(), sentinel.replicaPort, 'the sentinel names the old replica')
    // B never read this one: a 200 there comes from the promoted replica's copy of the record.
    for (const origin of [pair.b.origin, pair.flow.origin]) {
      const res = await asUser(origin, cold)
      assert.equal(res.status, 200, `the session logged in before the kill works without a new login: ${res.body}`)
    }
  })

  test('after the failover, both notice links are back: a logout on A is refused (401) by B, which held a fresh cached copy; B counted and logged the link loss', async (t) => {
    assert.ok(failedOver, 'runs after the failover of the previous test')
    await logoutOnARefusedByB(t, pair, lossesBefore)
  })
})

describe('Redis Cluster failover: two instances, primaries killed, their replicas promoted', () => {
  let pair: Pair
  /** The primary serving the notice channel's slot at the start. */
  let channelPrimary: number
  /** The session the load runs on; its record is on another primary than the channel's. */
  let main: string
  /** The primary holding main's record at the start. */
  let recordPrimary: number
  /** The session the load runs on while the channel's primary is killed: its record is on that primary. */
  let onChannelPrimary: string
  /** Logged in on A before the kills, never read on B until after them: one on each killed primary. */
  let coldOnRecordPrimary: string
  let coldOnChannelPrimary: string
  let lossesBefore = 0
  let channelFailedOver = false

  /** Logs in on A until the session's record lands on a primary `wanted` accepts (slots are random). */
  async function loginWhere(wanted: (port: number) => boolean, what: string): Promise<string> {
    for (let attempt = 0; attempt < 30; attempt++) {
      const cookie = await loggedInOnA(pair.flow)
      if (wanted(await pair.primaryOf(recordKey(pair.prefix, cookie)))) return cookie
    }
    assert.fail(`no session landed on ${what} in 30 logins`)
  }

  before(async () => {
    pair = await startPair('redis-cluster')
    channelPrimary = await pair.primaryOf(`${pair.prefix}{session-ended}`)
    main = await loginWhere((port) => port !== channelPrimary, 'a primary other than the channel slot owner')
    recordPrimary = await pair.primaryOf(recordKey(pair.prefix, main))
    coldOnRecordPrimary = await loginWhere((port) => port === recordPrimary, `:${recordPrimary}`)
    onChannelPrimary = await loginWhere((port) => port === channelPrimary, `:${channelPrimary}`)
    coldOnChannelPrimary = await loginWhere((port) => port === channelPrimary, `:${channelPrimary}`)
  })
  after(async () => {
    await pair?.close()
  })

  test("the primary holding the session record's slot (not the notice channel's) killed under load: every answer on A and B is 200 or 503 store_unavailable, /readyz 503 then 200, sessions durable on its replica work on A and B without a new login", async (t) => {
    const { cluster } = pair.fixture
    assert.ok(cluster)
    assert.notEqual(recordPrimary, channelPrimary)
    await durableOn(pair, recordPrimary, [main, coldOnRecordPrimary, pair.probe])
    const before = losses(await pair.metrics('B'))
    await failoverUnderLoad(
      t,
      pair,
      main,
      () => cluster.kill(recordPrimary),
      () => cluster.waitForFailover(recordPrimary),
    )
    const heir = await pair.primaryOf(recordKey(pair.prefix, main))
    assert.notEqual(heir, recordPrimary, 'the slot moved to the promoted replica')
    for (const origin of [pair.b.origin, pair.flow.origin]) {
      const res = await asUser(origin, coldOnRecordPrimary)
      assert.equal(res.status, 200, `the session logged in before the kill works without a new login: ${res.body}`)
    }
    t.diagnostic(
      `killed :${recordPrimary} (main's record), :${heir} took over; the channel's primary :${channelPrimary} untouched; B's link losses ${before} → ${losses(await pair.metrics('B'))}`,
    )
  })

  test("the primary serving the notice channel's slot (and the loaded session's record) killed under load: every answer on A and B is 200 or 503 store_unavailable, /readyz 503 then 200, sessions durable on its replica work on A and B without a new login", async (t) => {
    const { cluster } = pair.fixture
    assert.ok(cluster)
    await durableOn(pair, channelPrimary, [onChannelPrimary, coldOnChannelPrimary, pair.probe])
    assert.equal(await pair.primaryOf(`${pair.prefix}{session-ended}`), channelPrimary, 'the channel has not moved')
    lossesBefore = losses(await pair.metrics('B'))
    await failoverUnderLoad(
      t,
      pair,
      onChannelPrimary,
      () => cluster.kill(channelPrimary),
      () => cluster.waitForFailover(channelPrimary),
    )
    channelFailedOver = true
    const heir = await pair.primaryOf(`${pair.prefix}{session-ended}`)
    assert.notEqual(heir, channelPrimary, "the channel's slot moved to the promoted replica")
    for (const origin of [pair.b.origin, pair.flow.origin]) {
      const res = await asUser(origin, coldOnChannelPrimary)
      assert.equal(res.status, 200, `the session logged in before the kill works without a new login: ${res.body}`)
    }
    t.diagnostic(
      `killed :${channelPrimary} (the notice channel's slot and the loaded session's record), :${heir} took over; B's link losses ${lossesBefore} → ${losses(await pair.metrics('B'))}`,
    )
  })

  test("after the channel primary's failover, both notice links are re-linked to the promoted replica: a logout on A is refused (401) by B, which held a fresh cached copy; B counted and logged the link loss", async (t) => {
    assert.ok(channelFailedOver, "runs after the failover of the channel's primary in the previous test")
    await logoutOnARefusedByB(t, pair, lossesBefore)
  })
})
