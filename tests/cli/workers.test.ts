// `gatehouse serve --workers N`: N processes (node:cluster) behind one port, sharing sessions
// through the store. The CLI runs as a child process with a real IdP, a real upstream and a real
// SQLite file, Redis or PostgreSQL. Every request goes on a new connection, so that the cluster
// spreads them over the workers; which worker served it is read from its access line on stdout.
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { spawn } from 'node:child_process'
import { request, type IncomingHttpHeaders } from 'node:http'
import { createServer, type AddressInfo } from 'node:net'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { importJWK, SignJWT } from 'jose'
import { DEMO_USERS, startIdp, type RunningIdp } from '../../src/demo/idp.ts'
import { generateKey } from '../../src/session/seal.ts'
import { BrowserJar } from '../helpers/browser-jar.ts'
import { CLI, runCli, startCli } from '../helpers/cli.ts'
import { storeFixture, type SharedStoreKind, type StoreFixture } from '../helpers/instances.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const CLIENT_ID = 'workers-test'
const CLIENT_SECRET = 'workers-test-client-secret-0123'
const ADMIN_TOKEN = 'workers-test-admin-token-0123'
const COOKIE = '__Host-gatehouse'
const CSRF = { 'x-csrf': '1' }
/** oidc.tokenRefreshSkew's default: an access token of 64 s is due for a refresh 4 s after it was issued. */
const REFRESH_SKEW_S = 60
const ACCESS_TOKEN_TTL_S = REFRESH_SKEW_S + 4
/** How long a test waits for something that happens in another process (a log line, a notice): never a timing assertion. */
const WAIT_MS = 10_000

type Line = Record<string, unknown>
type Running = Awaited<ReturnType<typeof startCli>>

interface Answer {
  status: number
  headers: IncomingHttpHeaders
  text: string
}

/** One request on a connection of its own (`Connection: close`): the cluster hands each connection to a worker. */
function call(url: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}) {
  return new Promise<Answer>((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (text += chunk))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(options.body)
  })
}

/** Polls `find` until it returns something, for up to WAIT_MS. */
async function until<T>(what: string, find: () => T | undefined | false | Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + WAIT_MS
  for (;;) {
    const found = await find()
    if (found !== undefined && found !== false) return found
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

function jsonLines(text: string): Line[] {
  return text
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Line)
}

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/** Whether a process with this pid exists (a zombie counts until its parent reaps it). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** The pids whose parent is `pid` (Linux /proc). */
function childrenOf(pid: number): number[] {
  const children: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      // pid (comm) state ppid …: comm may hold spaces and parentheses, so split after the last ")".
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) children.push(Number(entry))
    } catch {
      // gone meanwhile
    }
  }
  return children
}

/** `gatehouse serve --workers 2` in front of its own IdP (registered with its origin) and an echo API. */
interface Cluster {
  idp: RunningIdp
  upstream: Upstream
  origin: string
  admin: string
  running: Running
  lines(): Line[]
  /** Logs a user in through the IdP's form; returns the session cookie and the worker that served the callback. */
  login(username?: string): Promise<{ cookie: string; callbackWorker: number }>
  /** A proxied GET /api/echo/<unique> with the session cookie: its status, the worker that served it, the token it forwarded. */
  probe(cookie: string): Promise<{ status: number; worker: number; bearer: string | undefined }>
  /** The worker that served the request to `path` (the first access line for it after `from` lines). */
  servedBy(path: string, from?: number): Promise<number>
  claims(cookie: string): Promise<Array<{ type: string; value: unknown }>>
  close(): Promise<void>
}

let probes = 0

async function startCluster(
  dir: string,
  store: string,
  options: { session?: Record<string, unknown>; workers?: string } = {},
): Promise<Cluster> {
  const port = await freePort()
  const origin = `http://127.0.0.1:${port}`
  const idp = await startIdp({
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        redirect_uris: [`${origin}/signin-oidc`],
        post_logout_redirect_uris: [`${origin}/signout-callback-oidc`],
        backchannel_logout_uri: `${origin}/bff/backchannel`,
      },
    ],
    accessTokenTtlSec: ACCESS_TOKEN_TTL_S,
  })
  const upstream = await startUpstream()
  const configFile = join(dir, `gatehouse-${port}.json`)
  writeFileSync(
    configFile,
    JSON.stringify({
      publicOrigin: origin,
      listen: { host: '127.0.0.1', port },
      oidc: {
        authority: idp.issuer,
        clientId: CLIENT_ID,
        clientSecret: CLIENT_SECRET,
        scopes: ['openid', 'profile', 'email', 'offline_access'],
      },
      keys: [generateKey()],
      session: { store, ...options.session },
      remoteApis: [{ path: '/api', target: upstream.url, token: 'user' }],
      admin: { listen: { host: '127.0.0.1', port: 0 }, token: ADMIN_TOKEN },
      log: { level: 'info' },
    }),
  )
  let running: Running
  try {
    running = await startCli(
      ['serve', '--config', configFile, '--workers', options.workers ?? '2'],
      /"event":"workers_started"/,
    )
  } catch (err) {
    await upstream.close()
    await idp.close()
    throw err
  }
  const lines = () => jsonLines(running.output())
  const started = lines().find((l) => l.event === 'workers_started')!

  const servedBy = async (path: string, from = 0): Promise<number> => {
    const line = await until(`the access line of ${path}`, () =>
      lines()
        .slice(from)
        .find((l) => l.path === path),
    )
    return line.worker as number
  }
  return {
    idp,
    upstream,
    origin,
    admin: started.admin as string,
    running,
    lines,
    servedBy,
    async login(username = 'alice') {
      const from = lines().length
      const browser = new BrowserJar()
      const form = await browser.follow(await browser.get(`${origin}/bff/login`))
      assert.match(form.text, /name="password"/, `the IdP login form, not ${form.status} at ${form.url}`)
      const user = DEMO_USERS.find((u) => u.username === username)!
      let res = await browser.submitForm(form, { username, password: user.password })
      for (let i = 0; i < 15 && res.status >= 300 && res.status < 400; i++) {
        const next = new URL(res.headers.get('location')!, res.url).href
        res = await browser.get(next)
        if (next.startsWith(`${origin}/signin-oidc`)) break
      }
      assert.equal(res.status, 302, `the callback redirects back: ${res.text}`)
      const cookie = browser.cookies.get(COOKIE)
      assert.ok(cookie, 'the login set the session cookie')
      return { cookie, callbackWorker: await servedBy('/signin-oidc', from) }
    },
    async probe(cookie) {
      const path = `/api/echo/probe-${++probes}`
      const res = await call(`${origin}${path}`, { headers: { ...CSRF, cookie: `${COOKIE}=${cookie}` } })
      const bearer =
        res.status === 200
          ? ((JSON.parse(res.text) as { headers: Record<string, string> }).headers.authorization ?? '').replace(
              /^Bearer /,
              '',
            )
          : undefined
      return { status: res.status, worker: await servedBy(path), bearer }
    },
    async claims(cookie) {
      const res = await call(`${origin}/bff/user`, { headers: { ...CSRF, cookie: `${COOKIE}=${cookie}` } })
      assert.equal(res.status, 200, res.text)
      return JSON.parse(res.text) as Array<{ type: string; value: unknown }>
    },
    async close() {
      running.child.kill('SIGKILL')
      await running.exited
      await upstream.close()
      await idp.close()
    },
  }
}

/** Probes with `cookie` on new connections until both workers have answered; returns every answer. */
async function onBothWorkers(cluster: Cluster, cookie: string) {
  const answers: Array<Awaited<ReturnType<Cluster['probe']>>> = []
  while (new Set(answers.map((a) => a.worker)).size < 2) {
    assert.ok(answers.length < 20, `20 connections all went to worker ${answers[0]?.worker}`)
    answers.push(await cluster.probe(cookie))
  }
  return answers
}

/** Probes until one is served by a worker other than `worker`; returns every answer, that one last. */
async function untilServedByOtherThan(cluster: Cluster, cookie: string, worker: number) {
  const answers: Array<Awaited<ReturnType<Cluster['probe']>>> = []
  while (answers.at(-1)?.worker === undefined || answers.at(-1)!.worker === worker) {
    assert.ok(answers.length < 20, `20 connections all went to worker ${worker}`)
    answers.push(await cluster.probe(cookie))
  }
  return answers
}

/** The value of one series in a Prometheus text exposition. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

async function scrape(cluster: Cluster): Promise<string> {
  const res = await call(`${cluster.admin}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  assert.equal(res.status, 200, res.text)
  return res.text
}

const HEALTHZ_SERIES = 'gatehouse_http_requests_total{route="healthz",method="GET",status="200"}'

/** The pid of worker `n` now: from workers_started, or the last worker_restarted of that number. */
function workerPid(cluster: Cluster, n: number): number {
  const lines = cluster.lines()
  const restarted = lines.filter((l) => l.event === 'worker_restarted' && l.worker === n).at(-1)
  const started = lines.find((l) => l.event === 'workers_started')!
  return (restarted?.pid ?? (started.pids as number[])[n - 1]) as number
}

/**
 * GET /healthz on new connections until worker 2 has answered some, then scrapes until /metrics has
 * counted every one of them (counted when each response closes): worker 2 has reported its share.
 * Returns the count of the series then.
 */
async function healthzCountedOnWorker2(cluster: Cluster): Promise<number> {
  const base = sample(await scrape(cluster), HEALTHZ_SERIES) ?? 0
  const from = cluster.lines().length
  const served = () =>
    cluster
      .lines()
      .slice(from)
      .filter((l) => l.path === '/healthz')
  await until('worker 2 to answer /healthz', async () => {
    assert.equal((await call(`${cluster.origin}/healthz`)).status, 200)
    return served().some((l) => l.worker === 2)
  })
  const sent = served().length
  return until('the requests counted', async () => {
    const count = sample(await scrape(cluster), HEALTHZ_SERIES) ?? 0
    return count >= base + sent && count
  })
}

describe('gatehouse serve --workers 2 with a SQLite file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-workers-'))
  let cluster: Cluster

  before(async () => {
    cluster = await startCluster(dir, `sqlite:${join(dir, 'sessions.db')}`)
  })
  after(async () => {
    await cluster?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  test('two workers listen on one port, each logging its start line; new connections reach both', async () => {
    const lines = cluster.lines()
    const starts = lines.filter((l) => l.event === 'listening')
    assert.deepEqual(
      starts.map((l) => ({ worker: l.worker, url: l.url })).sort((a, b) => Number(a.worker) - Number(b.worker)),
      [
        { worker: 1, url: cluster.origin },
        { worker: 2, url: cluster.origin },
      ],
    )
    assert.equal(starts.find((l) => l.worker === 1)!.admin, cluster.admin, 'worker 1 opened the admin listener')
    assert.equal(starts.find((l) => l.worker === 2)!.admin, undefined, 'worker 2 did not')
    assert.equal(lines.filter((l) => l.event === 'admin_listening').length, 1)
    const started = lines.find((l) => l.event === 'workers_started')!
    assert.deepEqual(
      { workers: started.workers, url: started.url, worker: started.worker, msg: started.msg },
      { workers: 2, url: cluster.origin, worker: undefined, msg: `2 workers listening on ${cluster.origin}` },
    )
    const pids = started.pids as number[]
    assert.equal(new Set(pids).size, 2)
    assert.deepEqual(childrenOf(cluster.running.child.pid!).sort(), [...pids].sort(), 'the primary has two children')

    const { cookie } = await cluster.login()
    const answers = await onBothWorkers(cluster, cookie)
    assert.deepEqual(new Set(answers.map((a) => a.status)), new Set([200]))
  })

  test('a login made through the port works on requests the other worker serves', async () => {
    const { cookie, callbackWorker } = await cluster.login()
    const answers = await untilServedByOtherThan(cluster, cookie, callbackWorker)
    const other = answers.at(-1)!
    assert.notEqual(other.worker, callbackWorker)
    assert.equal(other.status, 200, 'the other worker forwards the call with the session')
    assert.ok(other.bearer, 'with the access token')
    for (const answer of answers) assert.equal(answer.status, 200)
  })

  test('a logout on one worker is refused by the other at its next request', async () => {
    const { cookie } = await cluster.login()
    const before = await onBothWorkers(cluster, cookie)
    assert.deepEqual(new Set(before.map((a) => a.status)), new Set([200]), 'both workers have read the session')
    const logoutUrl = (await cluster.claims(cookie)).find((c) => c.type === 'bff:logout_url')!.value as string
    const from = cluster.lines().length
    const logout = await call(`${cluster.origin}${logoutUrl}`, { headers: { cookie: `${COOKIE}=${cookie}` } })
    assert.equal(logout.status, 302, logout.text)
    const logoutWorker = await cluster.servedBy('/bff/logout', from)

    const after = await untilServedByOtherThan(cluster, cookie, logoutWorker)
    assert.deepEqual(
      after.map((a) => a.status),
      after.map(() => 401),
      'every call after the logout is refused, the first on the other worker included',
    )
  })

  test('a back-channel logout ends the session on both workers', async () => {
    const { cookie } = await cluster.login()
    const bob = await cluster.login('bob')
    await onBothWorkers(cluster, cookie)
    const sid = (await cluster.claims(cookie)).find((c) => c.type === 'sid')!.value as string
    const jwk = cluster.idp.signingKey as { kid: string }
    const token = await new SignJWT({
      iss: cluster.idp.issuer,
      aud: CLIENT_ID,
      iat: Math.floor(Date.now() / 1000),
      jti: randomUUID(),
      events: { 'http://schemas.openid.net/event/backchannel-logout': {} },
      sid,
    })
      .setProtectedHeader({ alg: 'RS256', kid: jwk.kid, typ: 'logout+jwt' })
      .sign(await importJWK(cluster.idp.signingKey, 'RS256'))
    const res = await call(`${cluster.origin}/bff/backchannel`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ logout_token: token }).toString(),
    })
    assert.equal(res.status, 200, res.text)
    assert.deepEqual(JSON.parse(res.text), { sessionsEnded: 1 })

    const after = await onBothWorkers(cluster, cookie)
    assert.deepEqual(
      after.map((a) => a.status),
      after.map(() => 401),
    )
    const untouched = await onBothWorkers(cluster, bob.cookie)
    assert.deepEqual(new Set(untouched.map((a) => a.status)), new Set([200]), "another user's session lives on")
  })

  test('a burst of concurrent calls with an access token due for refresh makes one refresh grant across both workers', async () => {
    const { cookie } = await cluster.login()
    const first = await cluster.probe(cookie)
    assert.equal(first.status, 200)
    // The token is due 4 s after it was issued (64 s lifetime, refreshed 60 s before expiry).
    await new Promise((resolve) => setTimeout(resolve, (ACCESS_TOKEN_TTL_S - REFRESH_SKEW_S) * 1000 + 500))
    const refreshes = () => cluster.idp.grants.filter((g) => g === 'refresh_token').length
    const before = refreshes()
    const burst = await Promise.all(Array.from({ length: 20 }, () => cluster.probe(cookie)))
    assert.deepEqual(
      burst.map((a) => a.status),
      burst.map(() => 200),
    )
    assert.deepEqual(new Set(burst.map((a) => a.worker)), new Set([1, 2]), 'both workers served the burst')
    assert.equal(refreshes(), before + 1, 'one refresh grant for the whole burst')
    const tokens = new Set(burst.map((a) => a.bearer))
    assert.equal(tokens.size, 1, 'both workers forwarded the same refreshed token')
    assert.notEqual([...tokens][0], first.bearer)
  })

  test('/metrics on the admin listener adds up the requests of both workers and counts the active sessions once', async () => {
    await cluster.login()
    const series = 'gatehouse_http_requests_total{route="healthz",method="GET",status="200"}'
    const before = sample(await scrape(cluster), series) ?? 0
    const from = cluster.lines().length
    for (let i = 0; i < 6; i++) assert.equal((await call(`${cluster.origin}/healthz`)).status, 200)
    const served = await until('the six access lines', () => {
      const found = cluster
        .lines()
        .slice(from)
        .filter((l) => l.path === '/healthz')
      return found.length === 6 && found
    })
    assert.deepEqual(new Set(served.map((l) => l.worker)), new Set([1, 2]), 'both workers served some')
    // Counted when each response closes, which may come a moment after the client has read it.
    const text = await until('the six requests counted', async () => {
      const scraped = await scrape(cluster)
      return (sample(scraped, series) ?? 0) >= before + 6 && scraped
    }).catch(() => scrape(cluster))
    assert.equal(sample(text, series), before + 6, 'the requests of both workers, added up')

    const listed = await call(`${cluster.admin}/admin/sessions?limit=1000`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    })
    const live = (JSON.parse(listed.text) as { sessions: unknown[] }).sessions.length
    assert.ok(live > 0)
    assert.equal(sample(text, 'gatehouse_active_sessions'), live, 'the shared store counted once, not once per worker')

    // A limit every worker has alike is reported once, not summed; the group's start is its first worker's.
    const workers = childrenOf(cluster.running.child.pid!)
    const openFiles = (pid: number) =>
      Number(/^Max open files\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))?.[1])
    assert.equal(sample(text, 'process_max_fds'), Math.max(...workers.map(openFiles)))
    const started = sample(text, 'process_start_time_seconds')
    assert.ok(
      started !== undefined && started > 0 && started <= Date.now() / 1000,
      `process_start_time_seconds ${started}`,
    )
  })

  test("/admin/health on worker 1 adds up both workers' remote API requests and names the worker it runs in", async () => {
    const { cookie } = await cluster.login()
    const health = async () => {
      const res = await call(`${cluster.admin}/admin/health`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
      assert.equal(res.status, 200, res.text)
      return JSON.parse(res.text) as { instance: string | null; apis: Array<{ api: string; requests: number }> }
    }
    const before = (await health()).apis.find((a) => a.api === '/api')?.requests ?? 0
    // New connections until both workers have forwarded some.
    const answers = await onBothWorkers(cluster, cookie)
    for (const answer of answers) assert.equal(answer.status, 200)
    const report = await until('every forwarded call counted', async () => {
      const now = await health()
      return (now.apis.find((a) => a.api === '/api')?.requests ?? 0) >= before + answers.length && now
    }).catch(() => health())
    assert.equal(report.apis.find((a) => a.api === '/api')?.requests, before + answers.length, 'both workers, added up')
    assert.equal(report.instance, 'worker 1')
  })

  test('a worker killed with SIGKILL is replaced, and the port keeps answering', async () => {
    const { cookie } = await cluster.login()
    const started = cluster.lines().find((l) => l.event === 'workers_started')!
    const [, pid2] = started.pids as number[]
    process.kill(pid2!, 'SIGKILL')
    const exited = await until('the primary to see worker 2 exit', () =>
      cluster.lines().find((l) => l.event === 'worker_exited'),
    )
    assert.deepEqual(
      { level: exited.level, worker: exited.worker, pid: exited.pid, signal: exited.signal, code: exited.code },
      { level: 40, worker: 2, pid: pid2, signal: 'SIGKILL', code: null },
    )
    assert.equal(alive(pid2!), false)
    const answer = await cluster.probe(cookie)
    assert.deepEqual({ status: answer.status, worker: answer.worker }, { status: 200, worker: 1 })

    const restarted = await until('a new worker 2', () => cluster.lines().find((l) => l.event === 'worker_restarted'))
    assert.equal(restarted.worker, 2)
    assert.notEqual(restarted.pid, pid2)
    const answers = await onBothWorkers(cluster, cookie)
    assert.deepEqual(new Set(answers.map((a) => a.status)), new Set([200]), 'the new worker 2 serves the session')
  })

  test("a worker killed with SIGKILL: the group's counters keep what it had reported, they do not go down when its replacement starts from 0", async () => {
    const before = await healthzCountedOnWorker2(cluster)
    const pid = workerPid(cluster, 2)
    const from = cluster.lines().length
    process.kill(pid, 'SIGKILL')
    await until('the primary to see worker 2 exit', () =>
      cluster
        .lines()
        .slice(from)
        .find((l) => l.event === 'worker_exited' && l.pid === pid),
    )
    const meanwhile = sample(await scrape(cluster), HEALTHZ_SERIES)
    assert.ok(meanwhile! >= before, `${meanwhile} >= ${before} with worker 2 gone`)
    await until('a new worker 2', () =>
      cluster
        .lines()
        .slice(from)
        .find((l) => l.event === 'worker_restarted' && l.worker === 2),
    )
    const text = await scrape(cluster)
    const after = sample(text, HEALTHZ_SERIES)
    assert.ok(after! >= before, `${after} >= ${before} with a new worker 2`)
    assert.equal(sample(text, 'gatehouse_workers_reporting'), 2)
  })

  test('a stuck worker (SIGSTOP): /metrics answers 200 with the others added up, gatehouse_workers_reporting 1 of gatehouse_workers 2, its counters as last reported', async () => {
    const before = await healthzCountedOnWorker2(cluster)
    const whole = await scrape(cluster)
    assert.deepEqual(
      [sample(whole, 'gatehouse_workers'), sample(whole, 'gatehouse_workers_reporting')],
      [2, 2],
      'both report while neither is stuck',
    )
    const pid = workerPid(cluster, 2)
    const from = cluster.lines().length
    process.kill(pid, 'SIGSTOP')
    try {
      const partial = await scrape(cluster)
      assert.deepEqual([sample(partial, 'gatehouse_workers'), sample(partial, 'gatehouse_workers_reporting')], [2, 1])
      const count = sample(partial, HEALTHZ_SERIES)
      assert.ok(count! >= before, `${count} >= ${before}: worker 2's requests as it last reported them`)
      const missing = cluster
        .lines()
        .slice(from)
        .find((l) => l.event === 'workers_metrics_missing')
      assert.deepEqual({ level: missing?.level, workers: missing?.workers }, { level: 40, workers: [2] })
    } finally {
      process.kill(pid, 'SIGCONT')
    }
    const resumed = await until('worker 2 to report again', async () => {
      const text = await scrape(cluster)
      return sample(text, 'gatehouse_workers_reporting') === 2 && text
    })
    assert.equal(sample(resumed, 'gatehouse_workers'), 2)
  })

  test('SIGTERM to the primary: a slow call in flight completes 200, every worker drains and stops, the primary exits 0 and no worker is left', async () => {
    const { cookie } = await cluster.login()
    const primary = cluster.running.child.pid!
    const workers = childrenOf(primary)
    assert.equal(workers.length, 2)
    const received = cluster.upstream.received.length
    const slow = call(`${cluster.origin}/api/slow?ms=1500`, { headers: { ...CSRF, cookie: `${COOKIE}=${cookie}` } })
    await until('the slow call to reach the API', () =>
      cluster.upstream.received.slice(received).some((r) => r.url.startsWith('/slow')),
    )
    const from = cluster.lines().length
    cluster.running.child.kill('SIGTERM')
    const answer = await slow
    assert.deepEqual({ status: answer.status, text: answer.text }, { status: 200, text: 'slow' })
    assert.equal(await cluster.running.exited, 0, cluster.running.output())

    const lines = cluster.lines().slice(from)
    for (const worker of [1, 2]) {
      const own = lines.filter((l) => l.worker === worker).map((l) => l.event)
      assert.deepEqual(
        own.filter((e) => e === 'draining' || e === 'stopped'),
        ['draining', 'stopped'],
        `worker ${worker}`,
      )
    }
    // The worker that served the slow call waited for it: its connection was open when it began to drain.
    const slowWorker = await cluster.servedBy('/api/slow', from)
    const draining = lines.find((l) => l.event === 'draining' && l.worker === slowWorker)!
    assert.equal(draining.signal, 'SIGTERM')
    assert.ok((draining.connections as number) >= 1, `${draining.connections} open connection(s)`)
    assert.equal(lines.find((l) => l.event === 'stopped' && l.worker === slowWorker)!.connectionsCut, 0)
    assert.equal(lines.at(-1)!.event, 'workers_stopped')
    for (const pid of [primary, ...workers]) assert.equal(alive(pid), false, `process ${pid} is gone`)
  })
})

for (const kind of ['redis', 'postgres'] as const satisfies readonly SharedStoreKind[]) {
  describe(`gatehouse serve --workers 2 with ${kind}`, () => {
    const dir = mkdtempSync(join(tmpdir(), `gatehouse-workers-${kind}-`))
    let store: StoreFixture
    let cluster: Cluster

    before(async () => {
      store = await storeFixture(kind, 'gatehouse_workers')
      // A read cache far longer than the test: the other worker drops its copy on the store's notice.
      cluster = await startCluster(dir, store.url(), { session: { cacheTtl: '60s' } })
    })
    after(async () => {
      await cluster?.close()
      await store?.cleanup()
      rmSync(dir, { recursive: true, force: true })
    })

    test('a login made through the port works on requests the other worker serves', async () => {
      const { cookie, callbackWorker } = await cluster.login()
      const answers = await untilServedByOtherThan(cluster, cookie, callbackWorker)
      assert.deepEqual(new Set(answers.map((a) => a.status)), new Set([200]))
    })

    test("a logout on one worker is refused by the other once the store's notice arrives, though it holds a cached copy", async () => {
      const { cookie } = await cluster.login()
      await onBothWorkers(cluster, cookie)
      const logoutUrl = (await cluster.claims(cookie)).find((c) => c.type === 'bff:logout_url')!.value as string
      const from = cluster.lines().length
      const logout = await call(`${cluster.origin}${logoutUrl}`, { headers: { cookie: `${COOKIE}=${cookie}` } })
      assert.equal(logout.status, 302, logout.text)
      const logoutWorker = await cluster.servedBy('/bff/logout', from)
      // The notice travels through the store's pub/sub, asynchronously: the other worker is asked until it refuses.
      const refused = await until('the other worker to refuse the session', async () => {
        const answers = await untilServedByOtherThan(cluster, cookie, logoutWorker)
        return answers.at(-1)!.status !== 200 && answers.at(-1)!
      })
      assert.equal(refused.status, 401)
    })
  })
}

describe('gatehouse serve --workers: the choice of workers', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-workers-choice-'))
  const config = (name: string, store: string, session: Record<string, unknown> = {}) => {
    const file = join(dir, `${name}.json`)
    writeFileSync(
      file,
      JSON.stringify({
        listen: { host: '127.0.0.1', port: 0 },
        oidc: { authority: 'http://127.0.0.1:9', clientId: 'spa', clientSecret: 'x' },
        keys: [generateKey()],
        session: { store, ...session },
        log: { level: 'info' },
      }),
    )
    return file
  }
  /**
   * The CLI forked by a node:cluster primary of its own, as pm2's cluster mode runs a script: with
   * `marker`, the environment a gatehouse primary gives its workers, but no start message ever.
   */
  const supervisor = join(dir, 'supervisor.mjs')
  writeFileSync(
    supervisor,
    [
      "import cluster from 'node:cluster'",
      'const [marker, exec, ...args] = process.argv.slice(2)',
      'cluster.setupPrimary({ exec, args })',
      "const worker = cluster.fork(marker === 'marker' ? { GATEHOUSE_WORKER_OF: String(process.pid) } : {})",
      'worker.on("exit", (code, signal) => process.exit(signal ? 1 : code))',
      "process.on('SIGTERM', () => worker.process.kill('SIGTERM'))",
    ].join('\n'),
  )
  const supervised = (marker: 'marker' | 'none', args: string[]) => {
    const child = spawn(process.execPath, [supervisor, marker, CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
    return { child, exited, stdout: () => stdout, stderr: () => stderr }
  }
  after(() => rmSync(dir, { recursive: true, force: true }))

  test('more than one worker with sessions in memory is refused: exit 2, one line', async () => {
    for (const [store, why] of [
      ['memory', 'sessions in memory are not shared between workers'],
      ['sqlite::memory:', 'an in-memory SQLite database is not shared between workers'],
    ]) {
      const res = await runCli(['serve', '--config', config('memory', store!), '--workers', '2'])
      assert.equal(res.code, 2, res.stderr)
      assert.equal(res.stderr, `gatehouse serve: --workers 2: ${why}; use --workers 1 or a shared store\n`)
      assert.equal(res.stdout, '')
    }
  })

  test('a --workers that is not a whole number from 1 to 256 or "auto" is a usage error naming it (exit 2)', async () => {
    for (const value of ['0', 'x', '-1', '257', '1.5']) {
      const res = await runCli(['serve', '--config', config('bad', 'memory'), `--workers=${value}`])
      assert.equal(res.code, 2, `${value}: ${res.stderr}`)
      assert.equal(
        res.stderr.split('\n')[0],
        `gatehouse serve: --workers must be a whole number from 1 to 256, or "auto" (got "${value}")`,
      )
      assert.equal(res.stdout, '')
    }
  })

  test('--workers 1 and the default with memory are the single process of before: no cluster, no worker field', async () => {
    for (const extra of [['--workers', '1'], []]) {
      const running = await startCli(['serve', '--config', config('single', 'memory'), ...extra], /"event":"listening"/)
      try {
        assert.deepEqual(childrenOf(running.child.pid!), [], 'no worker processes')
        const lines = jsonLines(running.output())
        assert.ok(lines.every((l) => !('worker' in l)))
        assert.ok(!lines.some((l) => l.event === 'workers_started'))
        running.child.kill('SIGTERM')
        assert.equal(await running.exited, 0)
      } finally {
        running.child.kill('SIGKILL')
      }
    }
  })

  test('the default with a SQLite file is one worker per available CPU, all on the port the first was given for port 0', async () => {
    const running = await startCli(
      ['serve', '--config', config('auto', `sqlite:${join(dir, 'auto.db')}`)],
      /"event":"(workers_started|listening)"/,
    )
    try {
      const cpus = availableParallelism()
      if (cpus === 1) {
        assert.deepEqual(childrenOf(running.child.pid!), [], 'one CPU: no cluster')
      } else {
        const started = await until('the workers', () =>
          jsonLines(running.output()).find((l) => l.event === 'workers_started'),
        )
        assert.equal(started.workers, cpus)
        assert.equal(childrenOf(running.child.pid!).length, cpus)
        // listen.port 0: the first worker's free port is every worker's.
        const urls = jsonLines(running.output())
          .filter((l) => l.event === 'listening')
          .map((l) => l.url)
        assert.deepEqual(urls, Array(cpus).fill(started.url))
        assert.match(started.url as string, /^http:\/\/127\.0\.0\.1:[1-9]\d*$/)
      }
      running.child.kill('SIGTERM')
      assert.equal(await running.exited, 0)
    } finally {
      running.child.kill('SIGKILL')
    }
  })

  test('the default in cookie mode is one process: refreshes are coordinated per process, no cluster', async () => {
    const running = await startCli(
      ['serve', '--config', config('cookie-auto', 'memory', { mode: 'cookie' })],
      /"event":"(workers_started|listening)"/,
    )
    try {
      assert.deepEqual(childrenOf(running.child.pid!), [], 'no worker processes')
      const lines = jsonLines(running.output())
      assert.ok(!lines.some((l) => l.event === 'workers_started' || l.event === 'workers_cookie_mode'))
      assert.ok(lines.every((l) => !('worker' in l)))
      running.child.kill('SIGTERM')
      assert.equal(await running.exited, 0)
    } finally {
      running.child.kill('SIGKILL')
    }
  })

  test('--workers 2 in cookie mode runs two, and the primary warns once that refreshes are per process', async () => {
    const running = await startCli(
      ['serve', '--config', config('cookie-two', 'memory', { mode: 'cookie' }), '--workers', '2'],
      /"event":"workers_started"/,
    )
    try {
      assert.equal(childrenOf(running.child.pid!).length, 2)
      const warnings = jsonLines(running.output()).filter((l) => l.event === 'workers_cookie_mode')
      assert.equal(warnings.length, 1, running.output())
      const [warning] = warnings
      assert.deepEqual(
        { level: warning!.level, worker: warning!.worker, workers: warning!.workers },
        { level: 40, worker: undefined, workers: 2 },
      )
      assert.match(
        warning!.msg as string,
        /coordinated within each worker only.*refresh-token rotation.*invalid_grant.*logged out/,
      )
      running.child.kill('SIGTERM')
      assert.equal(await running.exited, 0)
    } finally {
      running.child.kill('SIGKILL')
    }
  })

  test('forked by another node:cluster supervisor (pm2 cluster mode), serve runs as a single process: it listens and answers /healthz', async () => {
    for (const extra of [['--workers', '1'], []]) {
      const proc = supervised('none', ['serve', '--config', config('pm2', `sqlite:${join(dir, 'pm2.db')}`), ...extra])
      try {
        const listening = await until('the listening line', () =>
          jsonLines(proc.stdout()).find((l) => l.event === 'listening'),
        ).catch((err: Error) => assert.fail(`${err.message}: ${proc.stdout()}${proc.stderr()}`))
        assert.equal(listening.worker, undefined, 'not a gatehouse worker')
        assert.ok(!jsonLines(proc.stdout()).some((l) => l.event === 'workers_started'))
        const health = await call(`${listening.url as string}/healthz`)
        assert.equal(health.status, 200, health.text)
        proc.child.kill('SIGTERM')
        assert.equal(await proc.exited, 0, proc.stderr())
      } finally {
        proc.child.kill('SIGKILL')
      }
    }
  })

  test('under another node:cluster supervisor, --workers 2 is refused: exit 2, one line', async () => {
    const proc = supervised('none', [
      'serve',
      '--config',
      config('pm2-two', `sqlite:${join(dir, 'pm2.db')}`),
      '--workers',
      '2',
    ])
    assert.equal(await proc.exited, 2, proc.stderr())
    assert.equal(
      proc.stderr(),
      "gatehouse serve: --workers 2: this process is a worker of another node:cluster supervisor (such as pm2's cluster mode), which cannot fork workers of its own; use --workers 1 and let the supervisor run the processes\n",
    )
    assert.equal(proc.stdout(), '')
  })

  test('a gatehouse worker that gets no start message from its primary exits 1 with one line', async () => {
    const proc = supervised('marker', ['serve', '--config', config('orphan', `sqlite:${join(dir, 'orphan.db')}`)])
    try {
      assert.equal(await proc.exited, 1)
      assert.match(
        proc.stderr(),
        /^gatehouse: a worker of gatehouse serve --workers \(GATEHOUSE_WORKER_OF=\d+\) got no start message from its primary within 10 s\n$/,
      )
      assert.equal(proc.stdout(), '')
    } finally {
      proc.child.kill('SIGKILL')
    }
  })

  test('a worker that does not drain (SIGSTOP) is killed 20 s after SIGTERM to the primary, which exits 1', async () => {
    const running = await startCli(
      ['serve', '--config', config('stuck', `sqlite:${join(dir, 'stuck.db')}`), '--workers', '2'],
      /"event":"workers_started"/,
    )
    const pids = jsonLines(running.output()).find((l) => l.event === 'workers_started')!.pids as number[]
    try {
      process.kill(pids[1]!, 'SIGSTOP')
      running.child.kill('SIGTERM')
      assert.equal(await running.exited, 1)
      const lines = jsonLines(running.output())
      const killed = lines.find((l) => l.event === 'workers_killed')
      assert.deepEqual(
        { level: killed?.level, workers: killed?.workers, msg: killed?.msg },
        { level: 50, workers: [2], msg: '1 worker(s) still running 20 s after SIGTERM were killed' },
      )
      assert.ok(
        lines.some((l) => l.event === 'stopped' && l.worker === 1),
        'worker 1 drained',
      )
      for (const pid of pids) assert.equal(alive(pid), false, `process ${pid} is gone`)
    } finally {
      for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL')
      running.child.kill('SIGKILL')
    }
  })

  test('a worker that cannot start (its port in use) stops the group: exit 1, its error on stderr once', async () => {
    const taken = createServer()
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve))
    try {
      const { port } = taken.address() as AddressInfo
      const res = await runCli([
        'serve',
        '--config',
        config('taken', `sqlite:${join(dir, 'taken.db')}`),
        '--workers',
        '3',
        '--port',
        String(port),
      ])
      assert.equal(res.code, 1, res.stderr)
      assert.match(
        res.stderr,
        new RegExp(`^gatehouse: .*EADDRINUSE.*127\\.0\\.0\\.1:${port} — is another server using that port\\?\\n$`),
      )
      assert.ok(!jsonLines(res.stdout).some((l) => l.event === 'listening'))
    } finally {
      await new Promise<void>((resolve) => taken.close(() => resolve()))
    }
  })
})
