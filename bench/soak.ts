/**
 * `npm run soak`: mixed traffic against one gatehouse for 5 minutes (docs/operations.md, "Soak
 * test"). Not part of `npm test`.
 *
 * Starts on loopback, each in its own child process: a real upstream API and the embedded IdP
 * (bench/soak-child.ts), gatehouse as `gatehouse serve` runs it (bench/target.ts, SQLite store,
 * logging at info, its JSON log lines collected), and the hostile clients (bench/soak-child.ts).
 * From this process, at the same time:
 *
 *   - logged-in users: --users steady virtual users and --churn-users more, each logged in through
 *     the IdP's form and then a loop of 1–3 parallel API calls (undici, keep-alive) and a think time;
 *     access tokens live --token-ttl seconds, so gatehouse refreshes them all along;
 *   - logins: a full login (IdP form, callback), /bff/user, one API call and /bff/logout, one every
 *     --login-every seconds;
 *   - back-channel logouts: a logout token signed with the IdP's key for one churn user every
 *     --backchannel-every seconds; that user then gets 401 and logs in again;
 * and, from the hostile child, on raw sockets from loopback addresses of their own (--hostile-addresses
 * per kind, so that gatehouse's per-client caps see several clients): held event streams on a token
 * "none" API, uploads that declare 100 MiB and send 1 byte, GETs whose 1 KiB body comes one byte every
 * 5 s, downloads (64 MiB) that are never read — --hostile of each open at a time, each held 30–90 s,
 * then recycled — and malformed requests (--malformed-rate a second: foreign Host, TRACE, duplicate
 * cookies, path escapes, oversized headers, garbage bytes, request smuggling shapes …).
 *
 * gatehouse runs with its default limits (limits.*, remoteApis[].connections/queue) unless --limits
 * gives others (JSON, e.g. '{"perClient":64}'); the report names the limits in effect.
 *
 * Report (stdout, and JSON in bench/results/soak-<UTC time>.json): answers by status per traffic
 * kind, the logged-in users' latency (overall and per minute), gatehouse's RSS and heap every 5 s
 * with their slope, sessions lost (a 401 on a session the IdP did not log out: expected 0), gatehouse's
 * log lines at level ≥ 50 (with where they came from), uncaught errors, CPU per process.
 *
 *   node bench/soak.ts [--minutes 5 | --quick] [--users 20] [--churn-users 4] [--think 50]
 *                      [--login-every 2] [--backchannel-every 10] [--hostile 100] [--hostile-addresses 4]
 *                      [--malformed-rate 20] [--token-ttl 40] [--store sqlite|memory] [--limits JSON]
 *                      [--shared-upstream] [--out FILE]
 *
 * --quick is 30 s. --shared-upstream puts both APIs on one upstream origin (gatehouse still keeps a
 * pool per API). Everything is bounded (sockets, timeouts, counts) and on loopback; every child is
 * stopped by its pid at the end, also on failure or Ctrl-C, and the SQLite file is removed.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from 'node:os'
import { join, relative } from 'node:path'
import { performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { importJWK, SignJWT } from 'jose'
import { Agent, Pool, setGlobalDispatcher } from 'undici'
import { validateConfig } from '../src/config/validate.ts'
import { DEMO_USERS } from '../src/demo/idp.ts'
import { generateKey } from '../src/session/seal.ts'
import { BrowserJar, type JarResponse } from '../tests/helpers/browser-jar.ts'
import type { HostileOptions, HostileStats } from './soak-child.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '')

// ---------------------------------------------------------------------------------------------
// Options

const { values: flags } = parseArgs({
  options: {
    minutes: { type: 'string' },
    quick: { type: 'boolean' },
    users: { type: 'string' },
    'churn-users': { type: 'string' },
    think: { type: 'string' },
    'login-every': { type: 'string' },
    'backchannel-every': { type: 'string' },
    hostile: { type: 'string' },
    'malformed-rate': { type: 'string' },
    'token-ttl': { type: 'string' },
    store: { type: 'string' },
    limits: { type: 'string' },
    'hostile-addresses': { type: 'string' },
    'shared-upstream': { type: 'boolean' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
})
if (flags.help) {
  console.log(
    'usage: node bench/soak.ts [--minutes 5 | --quick] [--users 20] [--churn-users 4] [--think 50] [--login-every 2] [--backchannel-every 10] [--hostile 100] [--malformed-rate 20] [--hostile-addresses 4] [--token-ttl 40] [--store sqlite|memory] [--limits JSON] [--shared-upstream] [--out FILE]',
  )
  process.exit(0)
}
const num = (name: string, text: string | undefined, fallback: number, min: number, max: number): number => {
  const value = text === undefined ? fallback : Number(text)
  if (!Number.isFinite(value) || value < min || value > max)
    throw new TypeError(`--${name}: "${text}" must be a number from ${min} to ${max}`)
  return value
}
if (flags.quick && flags.minutes !== undefined) throw new TypeError('--quick and --minutes: one or the other')
const MINUTES = flags.quick ? 0.5 : num('minutes', flags.minutes, 5, 0.25, 120)
const DURATION_MS = MINUTES * 60_000
const USERS = num('users', flags.users, 20, 1, 500)
const CHURN_USERS = num('churn-users', flags['churn-users'], 4, 0, 100)
const THINK_MS = num('think', flags.think, 50, 0, 60_000)
const LOGIN_EVERY_MS = num('login-every', flags['login-every'], 2, 0.1, 3600) * 1000
const BACKCHANNEL_EVERY_MS =
  num('backchannel-every', flags['backchannel-every'], flags.quick ? 5 : 10, 0.5, 3600) * 1000
const HOSTILE = num('hostile', flags.hostile, 100, 0, 1000)
const MALFORMED_RATE = num('malformed-rate', flags['malformed-rate'], 20, 0, 1000)
const HOSTILE_ADDRESSES = num('hostile-addresses', flags['hostile-addresses'], 4, 1, 250)
/** Overrides of gatehouse's `limits` (its defaults otherwise). */
const LIMITS = flags.limits === undefined ? undefined : (JSON.parse(flags.limits) as Record<string, unknown>)
const TOKEN_TTL_S = num('token-ttl', flags['token-ttl'], 40, 20, 3600)
/** Refresh this long before expiry: half the token's life, so each session refreshes every TTL/2. */
const REFRESH_SKEW_S = Math.floor(TOKEN_TTL_S / 2)
const STORE = flags.store ?? 'sqlite'
if (STORE !== 'sqlite' && STORE !== 'memory') throw new TypeError('--store: sqlite or memory')
/** Held sockets: each is kept this long (uniform), then recycled. */
const HOLD_MIN_MS = 30_000
const HOLD_MAX_MS = 90_000
const DRIP_MS = 5_000
const SAMPLE_EVERY_MS = 5_000
const PROGRESS_EVERY_MS = flags.quick ? 10_000 : 30_000
/** Client-side bounds on every request the soak makes. */
const REQUEST_TIMEOUT_MS = 30_000
const LOGIN_TIMEOUT_MS = 60_000
const LOGIN_CONCURRENCY = 2

const STAMP = new Date()
  .toISOString()
  .replace(/[:.]/g, '')
  .replace(/\d{2}\d{3}Z$/, 'Z')
const OUT = flags.out ?? join(ROOT, 'bench', 'results', `soak-${STAMP}.json`)
const CLIENT_ID = 'soak-bff'
const CLIENT_SECRET = 'soak-bff-secret-0123456789'
const COOKIE_NAME = '__Host-gatehouse'
const ADMIN_TOKEN = `soak-admin-${randomUUID()}`
const BCL_EVENT = { 'http://schemas.openid.net/event/backchannel-logout': {} }
/**
 * Loopback addresses: the logged-in users, logins and back-channel calls come from 127.0.0.1; each
 * hostile kind from its own --hostile-addresses addresses (127.0.2.1… streams, 127.0.3.x uploads,
 * 127.0.4.x slow bodies, 127.0.5.x unread downloads), malformed requests from 127.0.6.1. gatehouse's
 * per-client caps count each address as a client.
 */
const addresses = (net: number, n: number) => Array.from({ length: n }, (_, i) => `127.0.${net}.${i + 1}`)
const SOURCES: HostileOptions['sources'] = {
  stream: addresses(2, HOSTILE_ADDRESSES),
  upload: addresses(3, HOSTILE_ADDRESSES),
  slowBody: addresses(4, HOSTILE_ADDRESSES),
  unreadDownload: addresses(5, HOSTILE_ADDRESSES),
  malformed: ['127.0.6.1'],
}

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  } catch {
    return 100
  }
})()

function print(text = ''): void {
  process.stdout.write(`${text}\n`)
}

const round = (value: number, digits = 1): number => {
  const f = 10 ** digits
  return Math.round(value * f) / f
}
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

// ---------------------------------------------------------------------------------------------
// Child processes: started here, stopped by their pid, never left behind

interface Child {
  name: string
  pid: number
  process: ChildProcess
  exited: Promise<void>
  stop(): Promise<void>
}

const children = new Set<Child>()
/** Every pid started, to check at the end that none is left. */
const startedPids: number[] = []

async function startChild(
  name: string,
  script: string,
  args: string[],
  env: Record<string, string>,
  onSpawn?: (child: ChildProcess) => void,
): Promise<{ child: Child; ready: unknown }> {
  const proc = spawn(process.execPath, [script, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', onSpawn ? 'pipe' : 'ignore', onSpawn ? 'pipe' : 'inherit', 'ipc'],
  })
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
  const child: Child = {
    name,
    pid: proc.pid!,
    process: proc,
    exited,
    async stop() {
      children.delete(child)
      if (proc.exitCode !== null || proc.signalCode !== null) return
      if (proc.connected) proc.send('stop')
      const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000)
      await exited
      clearTimeout(timer)
    },
  }
  children.add(child)
  startedPids.push(child.pid)
  onSpawn?.(proc)
  let failure: string | undefined
  const ready = await new Promise<unknown>((resolve, reject) => {
    proc.once('message', (m: { ready?: unknown; error?: string }) =>
      m.ready ? resolve(m.ready) : reject(new Error(`${name}: ${(failure = m.error)}`)),
    )
    // The child's own explanation (IPC) may arrive just after its exit.
    proc.once('exit', (code) =>
      setTimeout(
        () =>
          reject(
            new Error(
              `${name} exited with ${code} before it was ready${failure ? `: ${failure}` : ''}${logs.stderrSamples.length ? `: ${logs.stderrSamples.join(' | ')}` : ''}`,
            ),
          ),
        100,
      ),
    )
  })
  return { child, ready }
}

/** Last resort (exit, crash): SIGKILL every child still running, by pid. */
function killChildren(): void {
  for (const child of children) {
    if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill('SIGKILL')
  }
}
process.on('exit', killChildren)

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/** RSS (bytes) and CPU ms of a process, from /proc; undefined elsewhere. */
function usage(pid: number): { rss: number; cpuMs: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN)
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return { rss: rssKb * 1024, cpuMs: ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK }
  } catch {
    return undefined
  }
}

// ---------------------------------------------------------------------------------------------
// Counting

/** kind → what → status → count. Status is the HTTP status, or `error:<code>` for a failed request. */
const statuses = new Map<string, Map<string, Map<string, number>>>()
function count(kind: string, what: string, status: number | string): void {
  let byWhat = statuses.get(kind)
  if (!byWhat) statuses.set(kind, (byWhat = new Map()))
  let byStatus = byWhat.get(what)
  if (!byStatus) byWhat.set(what, (byStatus = new Map()))
  const key = String(status)
  byStatus.set(key, (byStatus.get(key) ?? 0) + 1)
}
const errorCode = (err: unknown): string => {
  const e = err as { code?: string; name?: string; cause?: { code?: string } }
  return `error:${e.code ?? e.cause?.code ?? e.name ?? 'unknown'}`
}

/** Latencies of the logged-in users' calls (ms, any answer), overall and per minute of the run. */
class Latencies {
  values = new Float64Array(1 << 16)
  n = 0
  add(ms: number): void {
    if (this.n === this.values.length) {
      const bigger = new Float64Array(this.values.length * 2)
      bigger.set(this.values)
      this.values = bigger
    }
    this.values[this.n++] = ms
  }
  summary(): { count: number; p50: number | undefined; p99: number | undefined; max: number | undefined } {
    if (!this.n) return { count: 0, p50: undefined, p99: undefined, max: undefined }
    const sorted = this.values.slice(0, this.n).sort()
    const at = (q: number) => round(sorted[Math.min(this.n - 1, Math.floor(q * this.n))]!, 2)
    return { count: this.n, p50: at(0.5), p99: at(0.99), max: round(sorted[this.n - 1]!, 2) }
  }
}

// ---------------------------------------------------------------------------------------------
// Gatehouse's log

const logs = {
  lines: 0,
  byLevel: {} as Record<string, number>,
  /** Answers as gatehouse logged them (request and proxy lines), by status. */
  answersByStatus: {} as Record<string, number>,
  /** Level 40 lines by event/msg. */
  warnings: {} as Record<string, number>,
  /** Level ≥ 50 lines: how many, by event/msg and error code, by where (the API, or the path's first segment), and the first 5 in full. */
  errors: 0,
  errorKinds: {} as Record<string, number>,
  errorsByWhere: {} as Record<string, number>,
  errorSamples: [] as string[],
  notJson: 0,
  notJsonSamples: [] as string[],
  stderr: 0,
  stderrSamples: [] as string[],
}
const bumpIn = (record: Record<string, number>, key: string): void => {
  record[key] = (record[key] ?? 0) + 1
}
/** requestId → nothing yet: level ≥ 50 lines whose access line (logged right after) tells where they were. */
const pendingErrors = new Set<string>()
function onLogLine(line: string): void {
  if (!line) return
  logs.lines++
  let entry: {
    level?: number
    msg?: string
    event?: string
    status?: number
    requestId?: string
    api?: string
    path?: string
    err?: { code?: string; error?: string; message?: string }
  }
  try {
    entry = JSON.parse(line) as typeof entry
  } catch {
    logs.notJson++
    if (logs.notJsonSamples.length < 5) logs.notJsonSamples.push(line.slice(0, 500))
    return
  }
  const level = entry.level ?? 0
  bumpIn(logs.byLevel, String(level))
  if ((entry.msg === 'request' || entry.msg === 'proxy') && entry.status !== undefined) {
    bumpIn(logs.answersByStatus, String(entry.status))
    if (entry.requestId && pendingErrors.delete(entry.requestId))
      bumpIn(logs.errorsByWhere, entry.api ?? `/${(entry.path ?? '').split('/')[1] ?? ''}`)
  }
  // "GatehouseError(upstream_busy): …" → upstream_busy
  const code = entry.err?.code ?? /^\w+\((\w+)\)/.exec(entry.err?.error ?? '')?.[1]
  const key = [entry.event ?? entry.msg ?? '?', code].filter(Boolean).join(' ')
  if (level === 40) bumpIn(logs.warnings, key)
  if (level >= 50) {
    logs.errors++
    bumpIn(logs.errorKinds, `${key}${entry.status ? ` (${entry.status})` : ''}`)
    if (entry.requestId) {
      pendingErrors.add(entry.requestId)
      if (pendingErrors.size > 10_000) pendingErrors.delete(pendingErrors.values().next().value!)
    } else bumpIn(logs.errorsByWhere, 'no request')
    if (logs.errorSamples.length < 5) logs.errorSamples.push(line.slice(0, 2000))
  }
}
function onStderrLine(line: string): void {
  if (!line) return
  logs.stderr++
  if (logs.stderrSamples.length < 10) logs.stderrSamples.push(line.slice(0, 500))
}

// ---------------------------------------------------------------------------------------------
// Machine and source

function machine(): Record<string, unknown> {
  return {
    cpu: cpus()[0]?.model.trim(),
    nproc: availableParallelism(),
    memGiB: Math.round(totalmem() / 2 ** 30),
    platform: `${process.platform} ${process.arch}`,
    node: process.version,
    loadavgAtStart: loadavg().map((l) => round(l, 2)),
  }
}

function sourceState(): { commit: string; modified: string[] } | undefined {
  try {
    const git = (args: string[]) =>
      execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    const status = execFileSync('git', ['status', '--porcelain', '--untracked-files=all', '--', 'src'], {
      cwd: ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    })
    return {
      commit: git(['rev-parse', 'HEAD']),
      modified: status
        .split('\n')
        .filter(Boolean)
        .map((l) => l.slice(3)),
    }
  } catch {
    return undefined
  }
}

// ---------------------------------------------------------------------------------------------
// The run

interface Vu {
  id: number
  churn: boolean
  username: string
  pool: Pool
  cookie: string | undefined
  sid: string | undefined
  /** Bumped whenever the session is dropped: answers of requests sent under an older one are stale. */
  generation: number
  /** performance.now() when a back-channel logout of the current session was sent / answered 200. */
  bclSentAt: number | undefined
  bclDoneAt: number | undefined
  firstCookie: string | undefined
  logins: number
}

interface Sample {
  t: number
  rssMiB: number | undefined
  cpuS: number | undefined
  heapUsedMiB: number | undefined
  heapTotalMiB: number | undefined
  externalMiB: number | undefined
  openFds: number | undefined
  activeHandles: number | undefined
  eventLoopLagP99Ms: number | undefined
  activeSessions: number | undefined
  hostileOpen: Record<string, number> | undefined
  victimRps: number
}

const cleanups: Array<() => Promise<void> | void> = []
let cleaned = false
async function cleanUp(): Promise<void> {
  if (cleaned) return
  cleaned = true
  for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch(() => undefined)
  await Promise.all([...children].map((c) => c.stop()))
}

async function main(): Promise<void> {
  const env = machine()
  const source = sourceState()
  const tmp = mkdtempSync(join(tmpdir(), 'gatehouse-soak-'))
  cleanups.push(() => rmSync(tmp, { recursive: true, force: true }))
  print(
    `gatehouse soak — ${MINUTES} min; ${env.nproc}× ${env.cpu}, ${env.memGiB} GiB, Node ${env.node}; load average ${(env.loadavgAtStart as number[]).join(' ')}`,
  )
  if (source)
    print(
      `gatehouse at ${source.commit.slice(0, 12)}${source.modified.length ? ` with ${source.modified.length} modified path(s) in src/: ${source.modified.join(', ')}` : ''}`,
    )

  // Every request the soak makes through fetch (logins) is bounded too.
  setGlobalDispatcher(
    new Agent({ headersTimeout: REQUEST_TIMEOUT_MS, bodyTimeout: REQUEST_TIMEOUT_MS, keepAliveTimeout: 10_000 }),
  )

  const port = await freePort()
  const adminPort = await freePort()
  const origin = `http://127.0.0.1:${port}`
  const { ready: upstreamReady } = await startChild('upstream', join(ROOT, 'bench', 'soak-child.ts'), ['upstream'], {
    SOAK_CHILD: '{}',
  })
  const [usersApi, openApi] = (upstreamReady as { urls: string[] }).urls as [string, string]
  const { ready: idpReady } = await startChild('idp', join(ROOT, 'bench', 'soak-child.ts'), ['idp'], {
    SOAK_CHILD: JSON.stringify({
      accessTokenTtlSec: TOKEN_TTL_S,
      clients: [
        {
          client_id: CLIENT_ID,
          client_secret: CLIENT_SECRET,
          redirect_uris: [`${origin}/signin-oidc`],
          post_logout_redirect_uris: [`${origin}/signout-callback-oidc`],
          backchannel_logout_uri: `${origin}/bff/backchannel`,
        },
      ],
    }),
  })
  const idp = idpReady as { url: string; signingKey: Record<string, unknown> & { kid: string; alg: string } }
  const signingKey = await importJWK(idp.signingKey, idp.signingKey.alg)

  const base: Record<string, unknown> = {
    publicOrigin: origin,
    oidc: {
      authority: idp.url,
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      scopes: ['openid', 'profile', 'email', 'offline_access'],
      tokenRefreshSkew: `${REFRESH_SKEW_S}s`,
    },
    keys: [generateKey()],
    session: { store: STORE === 'memory' ? 'memory' : `sqlite:${join(tmp, 'sessions.db')}` },
    remoteApis: [
      { path: '/api', target: usersApi, token: 'user' },
      { path: '/open', target: flags['shared-upstream'] ? usersApi : openApi, token: 'none' },
    ],
    admin: { listen: { host: '127.0.0.1', port: adminPort }, token: ADMIN_TOKEN },
    log: { level: 'info' },
  }
  const gatehouseOptions = { ...base, ...(LIMITS ? { limits: LIMITS } : {}) }
  const checked = validateConfig(gatehouseOptions)
  if (!checked.config)
    throw new Error(`gatehouse options: ${checked.issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`)
  // The limits in effect (gatehouse's defaults unless --limits), as gatehouse read them; older
  // gatehouses without proxy limits have none.
  const effective = checked.config as unknown as {
    limits?: Record<string, unknown>
    remoteApis: Array<{ path: string; connections?: number; queue?: number }>
  }
  const limits = {
    limits: effective.limits,
    apis: Object.fromEntries(effective.remoteApis.map((a) => [a.path, { connections: a.connections, queue: a.queue }])),
  }
  const limitsNote = effective.limits
    ? `limits ${JSON.stringify(limits.limits)}; APIs ${JSON.stringify(limits.apis)}`
    : 'this gatehouse has no proxy limits (no "limits" config)'
  print(`store ${STORE}; access tokens ${TOKEN_TTL_S} s, refreshed ${REFRESH_SKEW_S} s before expiry; ${limitsNote}`)

  const uncaught: string[] = []
  let logsDone: Promise<void> = Promise.resolve()
  const { child: gatehouse } = await startChild(
    'gatehouse',
    join(ROOT, 'bench', 'target.ts'),
    ['gatehouse'],
    { BENCH_TARGET: JSON.stringify({ port, gatehouse: gatehouseOptions }) },
    (proc) => {
      const out = createInterface({ input: proc.stdout! })
      out.on('line', onLogLine)
      createInterface({ input: proc.stderr! }).on('line', onStderrLine)
      logsDone = new Promise((resolve) => out.once('close', () => resolve()))
      proc.on('message', (m: { uncaught?: string }) => {
        if (!m.uncaught) return
        uncaught.push(m.uncaught)
        print(`  !! gatehouse threw an uncaught error (a real gatehouse process would have exited): ${m.uncaught}`)
      })
    },
  )
  print(
    `gatehouse ${origin} (pid ${gatehouse.pid}), IdP ${idp.url}, APIs ${usersApi} (/api, token user) and ${flags['shared-upstream'] ? usersApi : openApi} (/open, token none)`,
  )

  // What a browser's fetch() from the SPA sends.
  const browserHeaders = (cookie: string): Record<string, string> => ({
    accept: 'application/json, text/plain, */*',
    'accept-language': 'en-US,en;q=0.9',
    'user-agent':
      'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
    referer: `${origin}/orders`,
    'sec-fetch-dest': 'empty',
    'sec-fetch-mode': 'cors',
    'sec-fetch-site': 'same-origin',
    'x-csrf': '1',
    cookie: `${COOKIE_NAME}=${cookie}`,
  })

  /** A full login through the IdP's form; counts gatehouse's answers (the IdP's are not counted). */
  const login = async (kind: string, username: string): Promise<{ jar: BrowserJar; cookie: string; ms: number }> => {
    const started = performance.now()
    const user = DEMO_USERS.find((u) => u.username === username)!
    const jar = new BrowserJar()
    const run = async (): Promise<string> => {
      const first = await jar.get(`${origin}/bff/login`)
      count(kind, 'GET /bff/login', first.status)
      const form = await jar.follow(first)
      if (!form.text.includes('name="password"'))
        throw new Error(`expected the IdP login form, got ${form.status} at ${form.url}`)
      let res: JarResponse = await jar.submitForm(form, { username: user.username, password: user.password })
      for (let i = 0; i < 15 && res.status >= 300 && res.status < 400; i++) {
        const next = new URL(res.headers.get('location')!, res.url).href
        res = await jar.get(next)
        if (next.startsWith(`${origin}/signin-oidc`)) {
          count(kind, 'GET /signin-oidc', res.status)
          break
        }
      }
      const cookie = jar.cookies.get(COOKIE_NAME)
      if (!cookie || res.status !== 302)
        throw new Error(`login did not end with a session: ${res.status} at ${res.url}`)
      return cookie
    }
    let timer: NodeJS.Timeout | undefined
    const cookie = await Promise.race([
      run(),
      new Promise<never>(
        (_, reject) => (timer = setTimeout(() => reject(new Error('login timed out')), LOGIN_TIMEOUT_MS)),
      ),
    ]).finally(() => clearTimeout(timer))
    return { jar, cookie, ms: performance.now() - started }
  }
  const loginTimes = new Latencies()
  let loginFailures = 0
  const loginFailureSamples: string[] = []
  const noteLoginFailure = (err: unknown): void => {
    loginFailures++
    if (loginFailureSamples.length < 5) loginFailureSamples.push(err instanceof Error ? err.message : String(err))
  }

  const userClaims = async (
    kind: string,
    pool: Pool,
    cookie: string,
  ): Promise<Array<{ type: string; value: unknown }> | undefined> => {
    const res = await pool.request({
      path: '/bff/user',
      method: 'GET',
      headers: browserHeaders(cookie),
      headersTimeout: REQUEST_TIMEOUT_MS,
      bodyTimeout: REQUEST_TIMEOUT_MS,
    })
    const text = await res.body.text()
    count(kind, 'GET /bff/user', res.statusCode)
    return res.statusCode === 200 ? (JSON.parse(text) as Array<{ type: string; value: unknown }>) : undefined
  }

  // ------------------------------------------------------------------
  // Logged-in virtual users

  const vus: Vu[] = []
  for (let i = 0; i < USERS + CHURN_USERS; i++) {
    vus.push({
      id: i,
      churn: i >= USERS,
      username: DEMO_USERS[i % DEMO_USERS.length]!.username,
      pool: new Pool(origin, {
        connections: 3,
        keepAliveTimeout: 30_000,
        headersTimeout: REQUEST_TIMEOUT_MS,
        bodyTimeout: REQUEST_TIMEOUT_MS,
      }),
      cookie: undefined,
      sid: undefined,
      generation: 0,
      bclSentAt: undefined,
      bclDoneAt: undefined,
      firstCookie: undefined,
      logins: 0,
    })
  }
  cleanups.push(async () => void (await Promise.all(vus.map((vu) => vu.pool.destroy().catch(() => undefined)))))
  const vuKind = (vu: Vu) => (vu.churn ? 'churn users' : 'steady users')

  const vuLogin = async (vu: Vu): Promise<void> => {
    const { cookie, ms } = await login(`${vuKind(vu)}: login`, vu.username)
    loginTimes.add(ms)
    const claims = await userClaims(`${vuKind(vu)}: login`, vu.pool, cookie)
    const sid = claims?.find((c) => c.type === 'sid')?.value
    if (typeof sid !== 'string') throw new Error('no sid claim after login')
    vu.cookie = cookie
    vu.sid = sid
    vu.bclSentAt = undefined
    vu.bclDoneAt = undefined
    vu.firstCookie ??= cookie
    vu.logins++
  }

  // Logs every user in before the clock starts (a few at a time, as the IdP is one process).
  print(`logging in ${vus.length} users …`)
  for (let i = 0; i < vus.length; i += 4) await Promise.all(vus.slice(i, i + 4).map(vuLogin))

  const latency = new Latencies()
  const perMinute: Latencies[] = []
  let victimCalls = 0
  const lost: Array<{ user: number; churn: boolean; atS: number; path: string }> = []
  let expectedLogouts = 0
  let servedAfterBackchannel = 0
  let start = 0
  let running = true

  const API_CALLS = [
    { weight: 85, method: 'GET' as const, path: '/api/small', what: 'GET /api/small' },
    { weight: 10, method: 'POST' as const, path: '/api/echo', what: 'POST /api/echo' },
    { weight: 5, method: 'GET' as const, path: '/bff/user?slide=false', what: 'GET /bff/user' },
  ]
  const ECHO_BODY = JSON.stringify({
    items: Array.from({ length: 20 }, (_, i) => ({ id: i, name: `item ${i}`, qty: i % 3 })),
  })

  const apiCall = async (vu: Vu): Promise<void> => {
    const generation = vu.generation
    const cookie = vu.cookie!
    let pick = Math.random() * 100
    const call = API_CALLS.find((c) => (pick -= c.weight) < 0) ?? API_CALLS[0]!
    const sentAt = performance.now()
    const kind = vuKind(vu)
    try {
      const headers = browserHeaders(cookie)
      const res = await vu.pool.request(
        call.method === 'POST'
          ? {
              path: call.path,
              method: 'POST',
              headers: { ...headers, 'content-type': 'application/json' },
              body: ECHO_BODY,
            }
          : { path: call.path, method: 'GET', headers },
      )
      await res.body.dump({ limit: 1 << 20 })
      const ms = performance.now() - sentAt
      count(kind, call.what, res.statusCode)
      victimCalls++
      latency.add(ms)
      // A call sent in the last moment of the run counts toward the last minute.
      const minute = Math.min(Math.floor((sentAt - start) / 60_000), Math.ceil(MINUTES) - 1)
      ;(perMinute[minute] ??= new Latencies()).add(ms)
      if (generation !== vu.generation) return
      if (res.statusCode === 401) {
        if (vu.bclSentAt !== undefined) expectedLogouts++
        else lost.push({ user: vu.id, churn: vu.churn, atS: round((sentAt - start) / 1000), path: call.what })
        vu.cookie = undefined
        vu.generation++
      } else if (res.statusCode < 300 && vu.bclDoneAt !== undefined && sentAt > vu.bclDoneAt) servedAfterBackchannel++
    } catch (err) {
      count(kind, call.what, errorCode(err))
    }
  }

  const vuLoop = async (vu: Vu): Promise<void> => {
    while (running) {
      if (!vu.cookie) {
        try {
          await vuLogin(vu)
        } catch (err) {
          noteLoginFailure(err)
          await sleep(1_000)
        }
        continue
      }
      const burst = 1 + Math.floor(Math.random() * 3)
      await Promise.all(Array.from({ length: burst }, () => apiCall(vu)))
      if (THINK_MS) await sleep(THINK_MS * (0.5 + Math.random()))
    }
  }

  // ------------------------------------------------------------------
  // Logins (and logouts) at a steady rate

  let loginsInFlight = 0
  let loginsSkipped = 0
  const loginFlows: Array<Promise<void>> = []
  let loginTurn = 0
  const loginFlow = async (): Promise<void> => {
    loginsInFlight++
    const kind = 'login flow'
    const pool = new Pool(origin, {
      connections: 1,
      headersTimeout: REQUEST_TIMEOUT_MS,
      bodyTimeout: REQUEST_TIMEOUT_MS,
    })
    try {
      const { jar, cookie, ms } = await login(kind, DEMO_USERS[loginTurn++ % DEMO_USERS.length]!.username)
      loginTimes.add(ms)
      const sid = (await userClaims(kind, pool, cookie))?.find((c) => c.type === 'sid')?.value
      const api = await pool.request({ path: '/api/small', method: 'GET', headers: browserHeaders(cookie) })
      await api.body.dump()
      count(kind, 'GET /api/small', api.statusCode)
      const out = await jar.get(`${origin}/bff/logout?sid=${encodeURIComponent(String(sid))}`, {
        'sec-fetch-site': 'same-origin',
        'sec-fetch-mode': 'navigate',
      })
      count(kind, 'GET /bff/logout', out.status)
      // The session has ended: the same cookie gets 401 now.
      const after = await pool.request({ path: '/bff/user', method: 'GET', headers: browserHeaders(cookie) })
      await after.body.dump()
      count(kind, 'GET /bff/user after logout', after.statusCode)
    } catch (err) {
      noteLoginFailure(err)
    } finally {
      loginsInFlight--
      await pool.destroy().catch(() => undefined)
    }
  }

  // ------------------------------------------------------------------
  // Back-channel logouts of churn users

  let bclTurn = 0
  const backchannel = async (): Promise<void> => {
    const churn = vus.filter((vu) => vu.churn)
    for (let i = 0; i < churn.length; i++) {
      const vu = churn[(bclTurn + i) % churn.length]!
      if (!vu.cookie || !vu.sid || vu.bclSentAt !== undefined) continue
      bclTurn = (bclTurn + i + 1) % churn.length
      const token = await new SignJWT({
        iss: idp.url,
        aud: CLIENT_ID,
        iat: Math.floor(Date.now() / 1000),
        jti: randomUUID(),
        events: BCL_EVENT,
        sid: vu.sid,
      })
        .setProtectedHeader({ alg: idp.signingKey.alg, kid: idp.signingKey.kid, typ: 'logout+jwt' })
        .sign(signingKey)
      vu.bclSentAt = performance.now()
      try {
        const res = await fetch(`${origin}/bff/backchannel`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ logout_token: token }).toString(),
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        })
        await res.arrayBuffer()
        count('back-channel logouts', 'POST /bff/backchannel', res.status)
        if (res.status === 200) vu.bclDoneAt = performance.now()
        else vu.bclSentAt = undefined
      } catch (err) {
        count('back-channel logouts', 'POST /bff/backchannel', errorCode(err))
        vu.bclSentAt = undefined
      }
      return
    }
  }

  // ------------------------------------------------------------------
  // Samples: RSS from /proc, heap and the rest from gatehouse's /metrics, every 5 s

  const samples: Sample[] = []
  let hostileOpen: Record<string, number> | undefined
  let lastVictimCalls = 0
  let lastSampleAt = 0
  const metricsText = async (): Promise<string | undefined> => {
    try {
      const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`, {
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        signal: AbortSignal.timeout(5_000),
      })
      const text = await res.text()
      return res.status === 200 ? text : undefined
    } catch {
      return undefined
    }
  }
  const metric = (text: string | undefined, name: string): number | undefined => {
    if (!text) return undefined
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([^ \\n]+)`, 'm').exec(text)
    return m ? Number(m[1]) : undefined
  }
  const mib = (bytes: number | undefined) =>
    bytes === undefined || !Number.isFinite(bytes) ? undefined : round(bytes / 2 ** 20, 1)
  const sample = async (): Promise<Sample> => {
    const now = performance.now()
    const text = await metricsText()
    const u = usage(gatehouse.pid)
    const lag = metric(text, 'nodejs_eventloop_lag_p99_seconds')
    const s: Sample = {
      t: round((now - start) / 1000),
      rssMiB: mib(u?.rss),
      cpuS: u ? round(u.cpuMs / 1000, 2) : undefined,
      heapUsedMiB: mib(metric(text, 'nodejs_heap_size_used_bytes')),
      heapTotalMiB: mib(metric(text, 'nodejs_heap_size_total_bytes')),
      externalMiB: mib(metric(text, 'nodejs_external_memory_bytes')),
      openFds: metric(text, 'process_open_fds'),
      activeHandles: metric(text, 'nodejs_active_handles_total'),
      eventLoopLagP99Ms: lag === undefined ? undefined : round(lag * 1000, 1),
      activeSessions: metric(text, 'gatehouse_active_sessions'),
      hostileOpen,
      victimRps: lastSampleAt ? round(((victimCalls - lastVictimCalls) * 1000) / (now - lastSampleAt), 1) : 0,
    }
    lastVictimCalls = victimCalls
    lastSampleAt = now
    samples.push(s)
    return s
  }

  // ------------------------------------------------------------------
  // Hostile clients

  let hostile: { child: Child; stats: Promise<HostileStats | undefined> } | undefined
  if (HOSTILE > 0 || MALFORMED_RATE > 0) {
    const hostileOptions: HostileOptions = {
      host: '127.0.0.1',
      port,
      hostHeader: `127.0.0.1:${port}`,
      apiPath: '/open',
      malformedApiPath: '/api',
      perKind: HOSTILE,
      holdMinMs: HOLD_MIN_MS,
      holdMaxMs: HOLD_MAX_MS,
      dripMs: DRIP_MS,
      malformedPerSecond: MALFORMED_RATE,
      malformedConcurrency: 20,
      sources: SOURCES,
    }
    let resolveStats!: (s: HostileStats | undefined) => void
    const stats = new Promise<HostileStats | undefined>((resolve) => (resolveStats = resolve))
    const { child } = await startChild('hostile', join(ROOT, 'bench', 'soak-child.ts'), ['hostile'], {
      SOAK_CHILD: JSON.stringify(hostileOptions),
    })
    child.process.on('message', (m: { open?: Record<string, number>; stats?: HostileStats }) => {
      if (m.open) hostileOpen = m.open
      if (m.stats) resolveStats(m.stats)
    })
    void child.exited.then(() => resolveStats(undefined))
    hostile = { child, stats }
  }

  // ------------------------------------------------------------------
  // Go

  print(
    `running ${MINUTES} min: ${USERS} steady + ${CHURN_USERS} churn users (1–3 parallel calls, ~${THINK_MS} ms think), a login every ${LOGIN_EVERY_MS / 1000} s, a back-channel logout every ${BACKCHANNEL_EVERY_MS / 1000} s, ${HOSTILE} hostile sockets of each of 4 kinds (each kind from ${HOSTILE_ADDRESSES} address(es)), ${MALFORMED_RATE} malformed requests/s`,
  )
  start = performance.now()
  const startedAt = new Date()
  await sample()
  const timers: NodeJS.Timeout[] = []
  timers.push(
    setInterval(() => {
      if (loginsInFlight >= LOGIN_CONCURRENCY) return void loginsSkipped++
      const p = loginFlow()
      loginFlows.push(p)
      void p.finally(() => loginFlows.splice(loginFlows.indexOf(p), 1))
    }, LOGIN_EVERY_MS),
  )
  const backchannels: Array<Promise<void>> = []
  if (CHURN_USERS > 0) {
    timers.push(
      setInterval(() => {
        const p = backchannel()
        backchannels.push(p)
        void p.finally(() => backchannels.splice(backchannels.indexOf(p), 1))
      }, BACKCHANNEL_EVERY_MS),
    )
  }
  let sampling: Promise<unknown> = Promise.resolve()
  timers.push(
    setInterval(() => {
      sampling = sample()
    }, SAMPLE_EVERY_MS),
  )
  let lastProgress = { at: start, n: 0 }
  timers.push(
    setInterval(() => {
      const s = samples.at(-1)
      const now = performance.now()
      const window = latency.n - lastProgress.n
      const recent = new Latencies()
      recent.values = latency.values.slice(lastProgress.n, latency.n)
      recent.n = window
      const r = recent.summary()
      lastProgress = { at: now, n: latency.n }
      const open = s?.hostileOpen ? Object.values(s.hostileOpen).join('/') : '—'
      print(
        `  ${String(Math.round((now - start) / 1000)).padStart(4)} s  users ${String(round((window * 1000) / PROGRESS_EVERY_MS, 0)).padStart(4)} req/s p50 ${r.p50 ?? '—'} p99 ${r.p99 ?? '—'} max ${r.max ?? '—'} ms | RSS ${s?.rssMiB ?? '—'} MiB heap ${s?.heapUsedMiB ?? '—'} MiB fds ${s?.openFds ?? '—'} | sessions ${s?.activeSessions ?? '—'} | lost ${lost.length} | hostile open ${open} | log ≥50: ${logs.errors}`,
      )
    }, PROGRESS_EVERY_MS),
  )
  cleanups.push(() => timers.forEach((t) => clearInterval(t)))

  const loops = vus.map(vuLoop)
  await sleep(DURATION_MS)

  // ------------------------------------------------------------------
  // Stop: traffic first, then the hostile child, then gatehouse (its last log lines), then the rest

  running = false
  timers.forEach((t) => clearInterval(t))
  const elapsedS = (performance.now() - start) / 1000
  // CPU time each process used (since it started: the set-up logins are a small part), in seconds.
  const self = process.cpuUsage()
  const cpuSeconds: Record<string, number | undefined> = { soak: round((self.user + self.system) / 1e6, 1) }
  for (const c of children) cpuSeconds[c.name] = round((usage(c.pid)?.cpuMs ?? NaN) / 1000, 1)
  const finishedAt = new Date()
  print('stopping …')
  const bounded = (p: Promise<unknown>, ms: number) => Promise.race([p, sleep(ms)])
  await bounded(Promise.all([...loops, ...loginFlows, ...backchannels]), REQUEST_TIMEOUT_MS + LOGIN_TIMEOUT_MS)
  await sampling
  let hostileStats: HostileStats | undefined
  if (hostile) {
    if (hostile.child.process.connected) hostile.child.process.send('stop')
    hostileStats = (await bounded(hostile.stats, 10_000)) as HostileStats | undefined
  }
  await hostile?.child.stop()
  await sample()
  const finalMetrics = await metricsText()
  // The steady users' sessions must all still be there: one last call each.
  let steadyStillIn = 0
  for (const vu of vus.filter((v) => !v.churn && v.cookie)) {
    const res = await vu.pool
      .request({ path: '/bff/user?slide=false', method: 'GET', headers: browserHeaders(vu.cookie!) })
      .catch(() => undefined)
    await res?.body.dump()
    if (res?.statusCode === 200) steadyStillIn++
  }
  await Promise.all(vus.map((vu) => vu.pool.close().catch(() => undefined)))
  await gatehouse.stop()
  await bounded(logsDone, 5_000)
  await cleanUp()
  const leftBehind = startedPids.filter(alive)

  // ------------------------------------------------------------------
  // Report

  const counts = Object.fromEntries(
    [...statuses].map(([kind, byWhat]) => [
      kind,
      Object.fromEntries([...byWhat].map(([what, byStatus]) => [what, Object.fromEntries([...byStatus].sort())])),
    ]),
  )
  const perMinuteSummary = perMinute.map((l, minute) => {
    const s = l.summary()
    const seconds = Math.max(1, Math.min(60, elapsedS - minute * 60))
    return { minute: minute + 1, ...s, rps: round(s.count / seconds, 1) }
  })
  const regression = (points: Array<[number, number]>): number | undefined => {
    if (points.length < 3) return undefined
    const n = points.length
    const mx = points.reduce((a, [x]) => a + x, 0) / n
    const my = points.reduce((a, [, y]) => a + y, 0) / n
    const sxx = points.reduce((a, [x]) => a + (x - mx) ** 2, 0)
    const sxy = points.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0)
    return sxx ? sxy / sxx : undefined
  }
  /** Warm-up excluded from the slopes: a fresh Node process grows its heap and code space at first. */
  const warmupS = Math.min(60, elapsedS / 5)
  const trend = (field: 'rssMiB' | 'heapUsedMiB' | 'openFds' | 'activeSessions') => {
    const values = samples
      .map((s) => [s.t, s[field]] as const)
      .filter((p): p is readonly [number, number] => typeof p[1] === 'number' && Number.isFinite(p[1]))
    if (!values.length) return undefined
    const after = values.filter(([t]) => t >= warmupS).map(([t, v]) => [t / 60, v] as [number, number])
    const secondHalf = values.filter(([t]) => t >= elapsedS / 2).map(([t, v]) => [t / 60, v] as [number, number])
    const slope = regression(after)
    const slope2 = regression(secondHalf)
    const byMinute: number[] = []
    for (const [t, v] of values) {
      const m = Math.min(Math.floor(t / 60), Math.ceil(MINUTES) - 1)
      byMinute[m] = Math.max(byMinute[m] ?? v, v)
    }
    return {
      maxByMinute: [...byMinute].map((v) => v ?? null),
      min: Math.min(...values.map(([, v]) => v)),
      max: Math.max(...values.map(([, v]) => v)),
      first: values[0]![1],
      last: values.at(-1)![1],
      slopePerMinAfterWarmup: slope === undefined ? undefined : round(slope, 2),
      slopePerMinSecondHalf: slope2 === undefined ? undefined : round(slope2, 2),
    }
  }
  const rss = trend('rssMiB')
  const heap = trend('heapUsedMiB')
  /**
   * "Flat": growing less than 2 MiB a minute over the second half of the run (a leak of 1 KB per request
   * at 400 req/s would be 23 MiB/min). Not the slope from the warm-up on: memory climbs to a plateau
   * until the hostile sockets have gone through their first recycling (30–90 s), and that climb is not a leak.
   */
  const FLAT_MIB_PER_MIN = 2
  /** Under 4 minutes the second half is too short to see past GC's sawtooth and the warm-up: no verdict. */
  const judged = elapsedS >= 240
  const flat = (t: ReturnType<typeof trend>) =>
    t?.slopePerMinSecondHalf === undefined || !judged ? undefined : t.slopePerMinSecondHalf < FLAT_MIB_PER_MIN
  const verdict = (v: boolean | undefined) =>
    !judged ? '  (run too short to judge the trend)' : v === undefined ? '' : v ? '  → flat' : '  → GROWING'
  const labelled = (name: string) => {
    const out: Record<string, number> = {}
    for (const m of (finalMetrics ?? '').matchAll(new RegExp(`^${name}\\{([^}]*)\\} ([^ \\n]+)`, 'gm'))) {
      const v = Number(m[2])
      if (v) out[m[1]!.replace(/"/g, '')] = v
    }
    return out
  }
  const steady = vus.filter((vu) => !vu.churn)
  const keptSession = steady.filter((vu) => vu.logins === 1 && vu.cookie === vu.firstCookie).length
  const report = {
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    seconds: round(elapsedS),
    machine: { ...env, loadavgAtEnd: loadavg().map((l) => round(l, 2)) },
    gatehouse: source,
    config: {
      minutes: MINUTES,
      store: STORE,
      steadyUsers: USERS,
      churnUsers: CHURN_USERS,
      thinkMs: THINK_MS,
      loginEveryS: LOGIN_EVERY_MS / 1000,
      backchannelEveryS: BACKCHANNEL_EVERY_MS / 1000,
      hostilePerKind: HOSTILE,
      holdS: [HOLD_MIN_MS / 1000, HOLD_MAX_MS / 1000],
      slowBodyByteEveryS: DRIP_MS / 1000,
      malformedPerSecond: MALFORMED_RATE,
      accessTokenTtlS: TOKEN_TTL_S,
      tokenRefreshSkewS: REFRESH_SKEW_S,
      sharedUpstream: Boolean(flags['shared-upstream']),
      hostileAddressesPerKind: HOSTILE_ADDRESSES,
      gatehouseLimits: limits,
    },
    requests: counts,
    users: {
      calls: latency.n,
      latencyMs: latency.summary(),
      perMinute: perMinuteSummary,
      sessionsLost: lost.length,
      lost: lost.slice(0, 20),
      steadyUsersKeptTheirSession: `${keptSession}/${steady.length}`,
      steadyUsersStillLoggedInAtEnd: `${steadyStillIn}/${steady.length}`,
      backchannelLogoutsThen401: expectedLogouts,
      answeredAfterBackchannelLogout: servedAfterBackchannel,
      logins: {
        ...loginTimes.summary(),
        failures: loginFailures,
        failureSamples: loginFailureSamples,
        skippedBusy: loginsSkipped,
      },
    },
    cpuSeconds,
    memory: {
      sampleEveryS: SAMPLE_EVERY_MS / 1000,
      warmupS: round(warmupS),
      flatBelowMiBPerMin: FLAT_MIB_PER_MIN,
      rssMiB: rss,
      rssFlat: flat(rss),
      heapUsedMiB: heap,
      heapFlat: flat(heap),
      openFds: trend('openFds'),
      activeSessions: trend('activeSessions'),
      cpuSeconds: samples.at(-1)?.cpuS,
    },
    logs,
    uncaught,
    gatehouseMetrics: {
      logins: labelled('gatehouse_logins_total'),
      refreshes: labelled('gatehouse_token_refreshes_total'),
      backchannelLogouts: labelled('gatehouse_backchannel_logouts_total'),
      logouts: metric(finalMetrics, 'gatehouse_logouts_total'),
    },
    hostile: hostileStats,
    cleanup: { childrenLeftBehind: leftBehind },
    samples,
  }

  // ---- print
  print(
    `\n=== soak: ${round(elapsedS, 0)} s, ${latency.n.toLocaleString('en')} calls by logged-in users (${round(latency.n / elapsedS, 0)}/s) ===`,
  )
  print('\nanswers by status')
  for (const [kind, byWhat] of Object.entries(counts)) {
    print(`  ${kind}`)
    for (const [what, byStatus] of Object.entries(byWhat))
      print(
        `    ${what.padEnd(34)} ${Object.entries(byStatus)
          .map(([s, n]) => `${s}×${n}`)
          .join('  ')}`,
      )
  }
  if (hostileStats) {
    print('  hostile (held sockets; status of the answer, then how the socket ended)')
    for (const [name, k] of Object.entries(hostileStats.held)) {
      print(
        `    ${name.padEnd(16)} opened ${k.opened}: ${Object.entries(k.statuses)
          .map(([s, n]) => `${s}×${n}`)
          .join('  ')} | ${Object.entries(k.endings)
          .map(([s, n]) => `${s} ${n}`)
          .join(
            ', ',
          )} | answer p50/max ${k.answerMsP50 ?? '—'}/${k.answerMsMax ?? '—'} ms, server close p50/max ${k.serverCloseMsP50 ?? '—'}/${k.serverCloseMsMax ?? '—'} ms`,
      )
    }
    print('  malformed requests')
    for (const [name, byStatus] of Object.entries(hostileStats.malformed))
      print(
        `    ${name.padEnd(34)} ${Object.entries(byStatus)
          .map(([s, n]) => `${s}×${n}`)
          .join('  ')}`,
      )
  }
  const l = report.users.latencyMs
  print(`\nlogged-in users' latency (ms): p50 ${l.p50}  p99 ${l.p99}  max ${l.max}  over ${l.count} calls`)
  for (const m of perMinuteSummary)
    print(`  minute ${m.minute}: ${String(m.rps).padStart(6)} req/s  p50 ${m.p50}  p99 ${m.p99}  max ${m.max}`)
  print(
    `  logins: ${report.users.logins.count} (p50 ${report.users.logins.p50} ms, p99 ${report.users.logins.p99} ms), ${loginFailures} failed${loginsSkipped ? `, ${loginsSkipped} skipped (2 already in flight)` : ''}`,
  )
  print(
    `\nsessions lost: ${lost.length} (expected 0)${
      lost.length
        ? `: ${lost
            .slice(0, 5)
            .map((x) => `user ${x.user} at ${x.atS} s (${x.path})`)
            .join('; ')}`
        : ''
    }`,
  )
  print(
    `  steady users that kept their first session all along: ${report.users.steadyUsersKeptTheirSession}; still logged in at the end: ${report.users.steadyUsersStillLoggedInAtEnd}`,
  )
  print(
    `  back-channel logouts followed by the expected 401: ${expectedLogouts}; calls answered 2xx after a back-channel logout was confirmed: ${servedAfterBackchannel} (expected 0)`,
  )
  const gm = report.gatehouseMetrics
  print(
    `  gatehouse counted: logins ${JSON.stringify(gm.logins)}, refreshes ${JSON.stringify(gm.refreshes)}, back-channel ${JSON.stringify(gm.backchannelLogouts)}, logouts ${gm.logouts}`,
  )
  const fmt = (t: ReturnType<typeof trend>, unit: string) =>
    t
      ? `min ${t.min} max ${t.max} (first ${t.first}, last ${t.last}) ${unit}; max by minute ${t.maxByMinute.join(', ')}; slope after ${round(warmupS, 0)} s ${t.slopePerMinAfterWarmup} ${unit}/min, over the second half ${t.slopePerMinSecondHalf} ${unit}/min`
      : 'no samples'
  print(`\ngatehouse memory (every ${SAMPLE_EVERY_MS / 1000} s)`)
  print(`  RSS:       ${fmt(rss, 'MiB')}${verdict(report.memory.rssFlat)}`)
  print(`  heap used: ${fmt(heap, 'MiB')}${verdict(report.memory.heapFlat)}`)
  const fds = report.memory.openFds
  if (fds)
    print(
      `  open fds:  min ${fds.min} max ${fds.max} (last ${fds.last}); sessions in the store: ${report.memory.activeSessions?.min}–${report.memory.activeSessions?.max}`,
    )
  print(
    `\ngatehouse log: ${logs.lines.toLocaleString('en')} lines; by level ${JSON.stringify(logs.byLevel)}; warnings ${JSON.stringify(logs.warnings)}`,
  )
  print(
    `  level ≥ 50: ${logs.errors} (expected 0)${logs.errors ? `; by kind ${JSON.stringify(logs.errorKinds)}; by where ${JSON.stringify(logs.errorsByWhere)}` : ''}`,
  )
  for (const line of logs.errorSamples) print(`    ${line}`)
  if (logs.notJson) print(`  lines that are not JSON: ${logs.notJson}: ${logs.notJsonSamples.join(' | ')}`)
  if (logs.stderr) print(`  stderr: ${logs.stderr} lines: ${logs.stderrSamples.join(' | ')}`)
  if (uncaught.length) print(`  !! ${uncaught.length} uncaught error(s): ${[...new Set(uncaught)].join('; ')}`)
  print(
    `\nCPU seconds used: ${Object.entries(cpuSeconds)
      .map(([n, v]) => `${n} ${v}`)
      .join(', ')} (over ${round(elapsedS, 0)} s, ${env.nproc} CPUs)`,
  )
  print(`\nchild processes left behind: ${leftBehind.length ? leftBehind.join(', ') : 'none'}`)

  mkdirSync(join(OUT, '..'), { recursive: true })
  writeFileSync(OUT, `${JSON.stringify(report, null, 1)}\n`)
  print(`JSON: ${relative(process.cwd(), OUT)}`)
}

let interrupted = false
const onSignal = (signal: string) => () => {
  if (interrupted) {
    killChildren()
    process.exit(130)
  }
  interrupted = true
  print(`\n${signal}: cleaning up`)
  cleanUp().finally(() => process.exit(130))
}
process.on('SIGINT', onSignal('interrupted'))
process.on('SIGTERM', onSignal('terminated'))

main().then(
  () => process.exit(0),
  async (err: unknown) => {
    if (interrupted) return
    console.error(err)
    await cleanUp()
    process.exit(1)
  },
)
