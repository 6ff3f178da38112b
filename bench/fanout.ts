/**
 * Fan-out of a logout (issue 18, point 5): how long after a logout on one gatehouse instance the other
 * instances sharing its store refuse the session.
 *
 *   node bench/fanout.ts [--stores redis,redis-cluster,postgres,redis-sentinel] [--logouts 100]
 *                        [--instances 3] [--mode processes|in-process] [--poll-from answer|send]
 *                        [--timeout 5000]
 *   npm run bench:fanout
 *
 * Per store: instances A, B, C (--instances) share one session store with `session.cacheTtl: "60s"`,
 * so a session that B or C has read stays in their in-process cache for a minute, and only the store's
 * session-end notice (pub/sub on Redis, Cluster and Sentinel; LISTEN/NOTIFY on PostgreSQL) can make them
 * refuse it sooner. First `--logouts` sessions are made through the real login flow (the embedded IdP's
 * form, gatehouse's callback on A), before anything is measured. Then, one session at a time:
 *
 *   1. GET /bff/user on B and on C: 200 (each now holds the session in its cache);
 *   2. GET /bff/logout?sid=… on A with the session cookie (the bff:logout_url claim): 302;
 *   3. t0 = when A's answer arrives; then B and C are polled concurrently, in tight loops (each poll
 *      sent as soon as the previous answer is in, no sleep; one keep-alive connection each) with
 *      GET /bff/user and the cookie, until each answers 401;
 *   4. the fan-out of that logout = (the later of B's and C's first 401 answer) − t0;
 *   5. (not timed) A answers 401 for the cookie too.
 *
 * Why t0 is A's answer: that is when the user (and the application) is told the session is over, and
 * from then on no instance should accept it; gatehouse's logout answers only after the store took the
 * notice, so a fan-out near one poll round trip means the notice was there before anyone could ask.
 * The figure is an upper bound: it includes the round trip of the poll that got the 401. The time
 * from *sending* the logout (which adds A's own logout work: the store delete, the notice, and the
 * refresh-token revocation at the IdP) is reported alongside ("from send"). With --poll-from send the
 * polls start together with the logout request instead, which shows when the notice lands relative to
 * A's answer (a negative fan-out: B and C refused before A answered).
 *
 * --mode processes (the default): every instance is a child process running gatehouse as
 * `gatehouse serve` does (bench/target.ts: startServer, log level warn, stdout discarded), the IdP
 * is another child, and this process only makes the requests. B and C listen on ports of their own
 * and are sent A's Host header, as a load balancer passes the browser's. --mode in-process: A, B, C,
 * the IdP and the polling client share this process's event loop (as tests/flows/multi-instance.test.ts
 * runs them): the polls then compete with the instances for the same thread.
 *
 * Stores come from tests/helpers/instances.ts: 'redis' (keys under a prefix of their own on the Redis
 * at GATEHOUSE_TEST_REDIS_URL, default redis://127.0.0.1:6379), 'postgres' (a schema of its own at
 * GATEHOUSE_TEST_POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/test), 'redis-cluster'
 * (a private 3-primary/3-replica cluster started from redis-server) and 'redis-sentinel' (a private
 * primary, replica and sentinel). Everything is removed and every child stopped by its pid at the end,
 * also on failure or Ctrl-C.
 *
 * Output: a table (store, logouts, p50, p99, max of the fan-out in ms, whether p99 < 50 ms, the same
 * from send, A's logout latency, how many logouts every other instance refused at its first poll — with
 * polls from the answer, each one short of all means requests sent after A's answer were still served
 * from a cache —, logouts not refused within --timeout, and the machine's 1-minute load average: the
 * tails follow it). p99 is the nearest-rank percentile (of 100 logouts: the 2nd largest). Exit code 1
 * when a store failed or a logout was not refused.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { cpus, loadavg } from 'node:os'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Client } from 'undici'
import { DEMO_USERS, type IdpClient } from '../src/demo/idp.ts'
import { generateKey } from '../src/session/seal.ts'
import { BrowserJar } from '../tests/helpers/browser-jar.ts'
import { CLIENT_ID, CLIENT_SECRET, startFlow } from '../tests/helpers/flow.ts'
import {
  instanceOptions,
  startInstance,
  storeFixture,
  type SharedStoreKind,
  type StoreFixture,
} from '../tests/helpers/instances.ts'

const COOKIE = '__Host-gatehouse'
const TARGET_SCRIPT = fileURLToPath(new URL('./target.ts', import.meta.url))
/** The project's goal for the fan-out (issue 18): p99 under 50 ms on loopback. */
export const GOAL_MS = 50
/** Long enough that only a notice makes B and C refuse a session they have read (default "1s"). */
const CACHE_TTL = '60s'

export type FanoutMode = 'processes' | 'in-process'

export interface FanoutOptions {
  /** The `session.store` every instance opens (a Redis, Cluster, Sentinel or PostgreSQL URL). */
  store: string
  /** Sessions logged out, one at a time (default 100). */
  logouts?: number
  /** Instances sharing the store, A included (default 3: A, B, C). */
  instances?: number
  /** Default 'processes'. */
  mode?: FanoutMode
  /** How long the others have to refuse a session before that logout counts as not refused (default 5000 ms). */
  timeoutMs?: number
  /**
   * When the polls of the other instances start: once A's logout answer is in ('answer', the default),
   * or together with the logout request ('send': shows when the notice arrives relative to A's answer).
   */
  pollFrom?: 'answer' | 'send'
  /** Logins in flight at once while the sessions are made (default 8). */
  loginConcurrency?: number
  /** Progress lines (start-up, logins done); default none. */
  progress?: (line: string) => void
}

export interface LogoutSample {
  /** From sending the logout to A until A's answer (302). */
  logoutMs: number
  /** Per other instance (B, C, …): from sending the logout to that instance's first 401 answer; undefined if none in time. */
  refusedAfterSendMs: Array<number | undefined>
  /** Per other instance: polls sent, the refused one included. */
  polls: number[]
  /** The later of refusedAfterSendMs; undefined when an instance did not refuse in time. */
  fromSendMs: number | undefined
  /** fromSendMs − logoutMs: from A's answer (negative: every other instance refused before A answered, pollFrom 'send'). */
  fanoutMs: number | undefined
  /** Whether A itself answered 401 for the cookie afterwards (not timed). */
  refusedOnA: boolean
}

export interface Stats {
  p50: number
  p99: number
  max: number
  mean: number
}

export interface FanoutResult {
  mode: FanoutMode
  pollFrom: 'answer' | 'send'
  instances: number
  logouts: number
  samples: LogoutSample[]
  /** Logouts that some other instance did not refuse within timeoutMs. */
  unrefused: number
  /** Over the refused logouts; all NaN when none was. */
  fanout: Stats
  fromSend: Stats
  logout: Stats
  /** Logouts every other instance refused at its first poll. */
  refusedAtFirstPoll: number
  /** The machine's 1-minute load average when the measuring ended (the tails follow it). */
  loadAverage: number
  /** Seconds spent making the sessions (logins) and measuring. */
  loginSeconds: number
  measureSeconds: number
}

/** Nearest-rank percentile of an ascending list. */
function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!
}

function stats(values: readonly number[]): Stats {
  const sorted = [...values].sort((a, b) => a - b)
  return {
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    max: sorted.length ? sorted[sorted.length - 1]! : Number.NaN,
    mean: sorted.length ? sorted.reduce((a, b) => a + b, 0) / sorted.length : Number.NaN,
  }
}

// ---------------------------------------------------------------------------------------------
// Instances

/** A running set: A (where logins and logouts go) and the others; `origin` is publicOrigin, A's own. */
interface Deployment {
  origin: string
  /** Where each instance listens, A first. */
  listening: string[]
  close(): Promise<void>
}

/** Child processes of this module that are still running: killed by pid if this process exits first. */
const live = new Set<ChildProcess>()
let exitHook = false
function track(child: ChildProcess): void {
  live.add(child)
  child.once('exit', () => live.delete(child))
  if (exitHook) return
  exitHook = true
  process.on('exit', () => {
    for (const c of live) {
      try {
        if (c.pid !== undefined) process.kill(c.pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
  })
}

interface Target {
  url: string
  stop(): Promise<void>
}

/** bench/target.ts as a child: `kind` with `options`; resolves once it listens. */
async function startTarget(kind: 'idp' | 'gatehouse', name: string, options: Record<string, unknown>): Promise<Target> {
  const child = spawn(process.execPath, [TARGET_SCRIPT, kind], {
    env: { ...process.env, BENCH_TARGET: JSON.stringify(options) },
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  })
  track(child)
  let stderr = ''
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000)
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return
    if (child.connected) child.send('stop')
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
    await exited
    clearTimeout(timer)
  }
  try {
    const url = await new Promise<string>((resolve, reject) => {
      child.on('message', (m: { ready?: string; error?: string; uncaught?: string }) => {
        if (m.ready) resolve(m.ready)
        else if (m.error) reject(new Error(`${name}: ${m.error}`))
        else if (m.uncaught) process.stderr.write(`!! ${name} threw an uncaught error: ${m.uncaught}\n`)
      })
      child.once('error', (err) => reject(new Error(`${name}: ${err.message}`)))
      child.once('exit', (code, signal) =>
        reject(new Error(`${name} exited (${signal ?? `code ${code}`}) before listening: ${stderr.trim()}`)),
      )
    })
    return { url, stop }
  } catch (err) {
    await stop()
    throw err
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

/** Stops everything in `stops`, last started first, whatever fails. */
async function stopAll(stops: Array<() => Promise<void>>): Promise<void> {
  for (const stop of stops.reverse()) await stop().catch(() => undefined)
}

async function startProcesses(store: string, count: number): Promise<Deployment> {
  const stops: Array<() => Promise<void>> = []
  try {
    // A's port is chosen first: it is the publicOrigin, which the IdP must know as the redirect URI.
    const port = await freePort()
    const origin = `http://127.0.0.1:${port}`
    const client: IdpClient = {
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: [`${origin}/signin-oidc`],
      post_logout_redirect_uris: [`${origin}/signout-callback-oidc`],
    }
    const idp = await startTarget('idp', 'idp', { port: 0, clients: [client] })
    stops.push(idp.stop)
    const gatehouse = {
      publicOrigin: origin,
      oidc: {
        authority: idp.url,
        clientId: CLIENT_ID,
        clientSecret: CLIENT_SECRET,
        scopes: ['openid', 'profile', 'email', 'offline_access'],
      },
      keys: [generateKey()],
      session: { store, cacheTtl: CACHE_TTL },
      log: { level: 'warn' },
    }
    const started = await Promise.allSettled(
      Array.from({ length: count }, (_, i) =>
        startTarget('gatehouse', `gatehouse ${String.fromCharCode(65 + i)}`, { port: i === 0 ? port : 0, gatehouse }),
      ),
    )
    for (const s of started) if (s.status === 'fulfilled') stops.push(s.value.stop)
    const failed = started.find((s) => s.status === 'rejected')
    if (failed) throw failed.reason
    const listening = started.map((s) => (s as PromiseFulfilledResult<Target>).value.url)
    return { origin, listening, close: () => stopAll(stops) }
  } catch (err) {
    await stopAll(stops)
    throw err
  }
}

async function startInProcess(store: string, count: number): Promise<Deployment> {
  const shared = { session: { store, cacheTtl: CACHE_TTL } }
  const flow = await startFlow({ gatehouse: shared })
  const stops: Array<() => Promise<void>> = [() => flow.close()]
  try {
    const listening = [flow.origin]
    for (let i = 1; i < count; i++) {
      const instance = await startInstance(instanceOptions(flow, shared))
      stops.push(() => instance.close())
      listening.push(instance.origin)
    }
    return { origin: flow.origin, listening, close: () => stopAll(stops) }
  } catch (err) {
    await stopAll(stops)
    throw err
  }
}

// ---------------------------------------------------------------------------------------------
// Requests

/** Logs a fresh browser in on A through the IdP's form; the session cookie and its logout URL. */
async function login(origin: string): Promise<{ cookie: string; logoutUrl: string }> {
  const user = DEMO_USERS[0]!
  const browser = new BrowserJar()
  const form = await browser.follow(await browser.get(`${origin}/bff/login`))
  if (!form.text.includes('name="password"'))
    throw new Error(`expected the IdP login form, got ${form.status} at ${form.url}`)
  let res = await browser.submitForm(form, { username: user.username, password: user.password })
  for (let i = 0; i < 15 && res.status >= 300 && res.status < 400; i++) {
    const next = new URL(res.headers.get('location')!, res.url).href
    res = await browser.get(next)
    if (next.startsWith(`${origin}/signin-oidc`)) break
  }
  const cookie = browser.cookies.get(COOKIE)
  if (!cookie || res.status !== 302) throw new Error(`login did not end with a session: ${res.status} at ${res.url}`)
  const me = await fetch(`${origin}/bff/user`, { headers: { 'x-csrf': '1', cookie: `${COOKIE}=${cookie}` } })
  const body = await me.text()
  if (me.status !== 200) throw new Error(`/bff/user after login: ${me.status} ${body}`)
  const claims = JSON.parse(body) as Array<{ type: string; value: unknown }>
  const logoutUrl = claims.find((c) => c.type === 'bff:logout_url')?.value
  if (typeof logoutUrl !== 'string') throw new Error(`no bff:logout_url claim: ${body}`)
  return { cookie, logoutUrl }
}

/** One keep-alive connection to an instance, sending A's Host (as a load balancer passes the browser's). */
function connection(
  listening: string,
  host: string,
): {
  get(path: string, cookie: string, csrf: boolean): Promise<number>
  close(): Promise<void>
} {
  const client = new Client(listening, { pipelining: 1, keepAliveTimeout: 60_000 })
  return {
    async get(path, cookie, csrf) {
      const headers: Record<string, string> = { host, cookie: `${COOKIE}=${cookie}` }
      if (csrf) headers['x-csrf'] = '1'
      const res = await client.request({ method: 'GET', path, headers })
      // The status is the answer: the time is taken when it arrives, the (small) body is then drained.
      const status = res.statusCode
      await res.body.dump()
      return status
    },
    close: () => client.close(),
  }
}

/** Runs `task` over `items` with at most `limit` in flight; the results in order. */
async function pooled<T, R>(items: readonly T[], limit: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++
      out[i] = await task(items[i]!)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return out
}

// ---------------------------------------------------------------------------------------------
// The measurement

/** Starts the instances on `store`, makes the sessions, measures each logout's fan-out, stops everything. */
export async function measureFanout(options: FanoutOptions): Promise<FanoutResult> {
  const logouts = options.logouts ?? 100
  const instances = options.instances ?? 3
  const mode = options.mode ?? 'processes'
  const timeoutMs = options.timeoutMs ?? 5_000
  const pollFrom = options.pollFrom ?? 'answer'
  const progress = options.progress ?? (() => {})
  if (!Number.isSafeInteger(logouts) || logouts < 1)
    throw new RangeError(`logouts: ${logouts} is not a positive integer`)
  if (!Number.isSafeInteger(instances) || instances < 2) throw new RangeError(`instances: ${instances} is not >= 2`)

  const deployment =
    mode === 'processes'
      ? await startProcesses(options.store, instances)
      : await startInProcess(options.store, instances)
  const host = new URL(deployment.origin).host
  const [onA, ...others] = deployment.listening.map((url) => connection(url, host))
  try {
    progress(`${instances} instances up (${mode}); logging in ${logouts} sessions`)
    const loginStarted = performance.now()
    const sessions = await pooled(
      Array.from({ length: logouts }, (_, i) => i),
      options.loginConcurrency ?? 8,
      () => login(deployment.origin),
    )
    const loginSeconds = (performance.now() - loginStarted) / 1000
    progress(`${logouts} sessions in ${loginSeconds.toFixed(1)} s; measuring`)

    const measureStarted = performance.now()
    const samples: LogoutSample[] = []
    for (const { cookie, logoutUrl } of sessions) {
      for (const [i, other] of others.entries()) {
        const status = await other.get('/bff/user', cookie, true)
        if (status !== 200)
          throw new Error(`warm-up: instance ${String.fromCharCode(66 + i)} answered ${status}, not 200`)
      }
      const sent = performance.now()
      const logout = onA!.get(logoutUrl, cookie, false).then((status) => ({ status, at: performance.now() }))
      // Awaited below, after the polls; a failure meanwhile must not count as unhandled.
      logout.catch(() => undefined)
      if (pollFrom === 'answer') {
        const { status } = await logout
        if (status !== 302) throw new Error(`logout on A answered ${status}, not 302`)
      }
      const polled = await Promise.all(
        others.map(async (other, i) => {
          for (let polls = 1; ; polls++) {
            const status = await other.get('/bff/user', cookie, true)
            const at = performance.now()
            if (status === 401) return { ms: at - sent, polls }
            if (status !== 200)
              throw new Error(`instance ${String.fromCharCode(66 + i)} answered ${status} while polling`)
            if (at - sent > timeoutMs) return { ms: undefined, polls }
          }
        }),
      )
      const answer = await logout
      if (answer.status !== 302) throw new Error(`logout on A answered ${answer.status}, not 302`)
      const logoutMs = answer.at - sent
      const refusedAfterSendMs = polled.map((p) => p.ms)
      const fromSendMs = refusedAfterSendMs.some((ms) => ms === undefined)
        ? undefined
        : Math.max(...(refusedAfterSendMs as number[]))
      samples.push({
        logoutMs,
        refusedAfterSendMs,
        polls: polled.map((p) => p.polls),
        fromSendMs,
        fanoutMs: fromSendMs === undefined ? undefined : fromSendMs - logoutMs,
        refusedOnA: (await onA!.get('/bff/user', cookie, true)) === 401,
      })
    }
    const measureSeconds = (performance.now() - measureStarted) / 1000
    const refused = samples.filter((s) => s.fanoutMs !== undefined)
    return {
      mode,
      pollFrom,
      instances,
      logouts,
      samples,
      unrefused: samples.length - refused.length,
      fanout: stats(refused.map((s) => s.fanoutMs!)),
      fromSend: stats(refused.map((s) => s.fromSendMs!)),
      logout: stats(samples.map((s) => s.logoutMs)),
      refusedAtFirstPoll: samples.filter((s) =>
        s.polls.every((n, i) => n === 1 && s.refusedAfterSendMs[i] !== undefined),
      ).length,
      loadAverage: loadavg()[0]!,
      loginSeconds,
      measureSeconds,
    }
  } finally {
    await Promise.all([onA, ...others].map((c) => c!.close().catch(() => undefined)))
    await deployment.close()
  }
}

// ---------------------------------------------------------------------------------------------
// Output

const ms = (n: number): string => (Number.isNaN(n) ? '—' : n.toFixed(2))

export const TABLE_HEADER = [
  'store',
  'logouts',
  'p50 ms',
  'p99 ms',
  'max ms',
  `p99 < ${GOAL_MS} ms`,
  'from send p50 / p99',
  'logout on A p50',
  'refused at 1st poll',
  'not refused',
  'load 1m',
]

/** One table row (the columns of TABLE_HEADER). */
export function tableRow(store: string, r: FanoutResult): string[] {
  return [
    store,
    String(r.logouts),
    ms(r.fanout.p50),
    ms(r.fanout.p99),
    ms(r.fanout.max),
    r.unrefused === 0 && r.fanout.p99 < GOAL_MS ? 'yes' : 'no',
    `${ms(r.fromSend.p50)} / ${ms(r.fromSend.p99)}`,
    ms(r.logout.p50),
    `${r.refusedAtFirstPoll}/${r.logouts}`,
    String(r.unrefused),
    r.loadAverage.toFixed(2),
  ]
}

/** One line for a test log: `redis: fan-out p50 0.71 ms, p99 … (100 logouts, 3 instances, processes)`. */
export function summaryLine(store: string, r: FanoutResult): string {
  return (
    `${store}: fan-out p50 ${ms(r.fanout.p50)} ms, p99 ${ms(r.fanout.p99)} ms, max ${ms(r.fanout.max)} ms ` +
    `(from send p50 ${ms(r.fromSend.p50)} / p99 ${ms(r.fromSend.p99)} ms; refused at the first poll ${r.refusedAtFirstPoll}/${r.logouts}; ` +
    `not refused ${r.unrefused}; ${r.logouts} logouts, ${r.instances} instances, ${r.mode}, polls from ${r.pollFrom}; load average ${r.loadAverage.toFixed(2)})`
  )
}

export function formatTable(rows: readonly string[][]): string {
  const all = [TABLE_HEADER, ...rows]
  const widths = TABLE_HEADER.map((_, c) => Math.max(...all.map((row) => (row[c] ?? '').length)))
  const line = (row: readonly string[]) =>
    row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ')
  return [line(TABLE_HEADER), ...rows.map(line)].join('\n')
}

/** What ran where, for the output (the in-process figures include the polls' load on the instances' thread). */
export function setupNote(mode: FanoutMode, instances: number, pollFrom: 'answer' | 'send' = 'answer'): string {
  const others = Array.from({ length: instances - 1 }, (_, i) => String.fromCharCode(66 + i)).join(', ')
  const polls = `${others} polled in tight loops (no sleep; one keep-alive connection each) from ${pollFrom === 'answer' ? "A's logout answer" : 'the moment the logout is sent'}`
  const where =
    mode === 'processes'
      ? `${instances} gatehouse instances, each a child process as \`gatehouse serve\` runs it (log level warn), the IdP another child; this process only sends the requests`
      : `${instances} gatehouse instances, the IdP and the polling client all in this one process: the polls compete with the instances for one event loop`
  return `${where}. ${polls}. session.cacheTtl ${CACHE_TTL}: only the store's notice makes ${others} refuse.`
}

// ---------------------------------------------------------------------------------------------
// CLI

const STORE_KINDS = [
  'redis',
  'redis-cluster',
  'postgres',
  'redis-sentinel',
] as const satisfies readonly SharedStoreKind[]

async function main(): Promise<void> {
  const { values: flags } = parseArgs({
    options: {
      stores: { type: 'string' },
      logouts: { type: 'string' },
      instances: { type: 'string' },
      mode: { type: 'string' },
      timeout: { type: 'string' },
      'poll-from': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  })
  const usage =
    'usage: node bench/fanout.ts [--stores redis,redis-cluster,postgres,redis-sentinel] [--logouts 100] [--instances 3] [--mode processes|in-process] [--poll-from answer|send] [--timeout 5000]'
  if (flags.help) return void console.log(usage)
  const fail = (message: string): never => {
    console.error(`${message}\n${usage}`)
    process.exit(2)
  }
  const stores = (flags.stores ?? STORE_KINDS.join(',')).split(',').map((s) => s.trim())
  for (const s of stores)
    if (!(STORE_KINDS as readonly string[]).includes(s))
      fail(`--stores: unknown store "${s}" (${STORE_KINDS.join(', ')})`)
  const logouts = Number(flags.logouts ?? 100)
  if (!Number.isSafeInteger(logouts) || logouts < 1) fail(`--logouts: ${flags.logouts} is not a positive integer`)
  const instances = Number(flags.instances ?? 3)
  if (!Number.isSafeInteger(instances) || instances < 2) fail(`--instances: ${flags.instances} is not an integer >= 2`)
  const mode = (flags.mode ?? 'processes') as FanoutMode
  if (mode !== 'processes' && mode !== 'in-process') fail(`--mode: "${flags.mode}" is not processes or in-process`)
  const pollFrom = flags['poll-from'] ?? 'answer'
  if (pollFrom !== 'answer' && pollFrom !== 'send') fail(`--poll-from: "${pollFrom}" is not answer or send`)
  const timeoutMs = Number(flags.timeout ?? 5000)
  if (!(timeoutMs > 0)) fail(`--timeout: ${flags.timeout} is not a positive number of milliseconds`)

  let current: StoreFixture | undefined
  // Ctrl-C: the store's keys or schema are removed (a second Ctrl-C skips that), then the 'exit' hooks
  // (here and in tests/helpers/redis-topology.ts) kill every child process by its pid.
  process.on('SIGINT', () => {
    if (!current) process.exit(130)
    const fixture = current
    current = undefined
    setTimeout(() => process.exit(130), 5_000).unref()
    fixture.cleanup().finally(() => process.exit(130))
  })
  const [load1] = loadavg()
  console.log(
    `fan-out of a logout: ${logouts} logouts per store, each until every other instance answers 401 ` +
      `(Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model.trim() ?? 'CPU'}, load average ${load1!.toFixed(2)})`,
  )
  console.log(setupNote(mode, instances, pollFrom as 'answer' | 'send'))
  const rows: string[][] = []
  const failures: string[] = []
  for (const kind of stores as SharedStoreKind[]) {
    process.stderr.write(`${kind}: starting\n`)
    try {
      current = await storeFixture(kind, 'gatehouse_fanout')
      const result = await measureFanout({
        store: current.url(),
        logouts,
        instances,
        mode,
        pollFrom: pollFrom as 'answer' | 'send',
        timeoutMs,
        progress: (line) => process.stderr.write(`${kind}: ${line}\n`),
      })
      process.stderr.write(`${kind}: ${result.measureSeconds.toFixed(1)} s measuring\n`)
      rows.push(tableRow(kind, result))
      if (result.unrefused > 0) failures.push(`${kind}: ${result.unrefused} logouts not refused within ${timeoutMs} ms`)
    } catch (err) {
      failures.push(`${kind}: failed: ${err instanceof Error ? err.message : String(err)}`)
    } finally {
      const fixture = current
      current = undefined
      await fixture?.cleanup().catch(() => undefined)
    }
  }
  if (rows.length) console.log(formatTable(rows))
  for (const line of failures) console.log(line)
  console.log(
    "fan-out: from A's logout answer to the later first 401 of the others (an upper bound: it includes the round trip " +
      'of the poll that got the 401; negative: they refused before A answered). "from send" adds A\'s own logout work ' +
      '(store delete, notice, refresh-token revocation at the IdP). p99 is nearest-rank (of 100: the 2nd largest).',
  )
  process.exitCode = failures.length ? 1 : 0
}

if (import.meta.main) await main()
