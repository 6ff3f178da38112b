/**
 * `npm run bench`: gatehouse's proxy overhead against a bare undici reverse proxy, in one run on one
 * machine (docs/performance.md, "Proxy overhead").
 *
 * Starts on loopback, each in its own child process (bench/target.ts): a fast upstream, the embedded
 * IdP, the bare proxy (the baseline) and gatehouse as `gatehouse serve` runs it — one gatehouse child
 * per session store. Logs in once per store through the real flow (IdP login form, callback), then
 * drives every target at max load, one after the other: a fixed number of connections for a fixed
 * time after a warm-up (longer for a fresh process, which keeps speeding up for 10–15 s), with wrk
 * when it is on PATH (--load wrk|autocannon), else with autocannon from this process. Latency has
 * sub-millisecond resolution (wrk's --latency percentiles; with autocannon, taken from every
 * response, as its own histogram is in whole milliseconds). RSS and CPU time are read from /proc for
 * the measured child only, never for the load generator. The fixed-rate rows use an evenly paced
 * undici load instead (see paced()), never wrk.
 *
 *   node bench/run.ts [--duration 8] [--warmup 1] [--warmup-fresh 8] [--connections 50]
 *                     [--stores memory,sqlite,redis,postgres] [--login-concurrency 4]
 *                     [--rate-mode paced|autocannon] [--load wrk|autocannon] [--soak 0] [--profile] [--profile-store memory]
 *                     [--no-costs] [--no-pin] [--out bench/results/…json]
 *
 * On Linux with taskset and ≥ 2 CPUs the measured proxy runs alone on the last CPU (--no-pin: off).
 * --soak N     also runs gatehouse (memory store) for N seconds and samples its RSS every second
 * --profile    also runs the bare proxy and the proxied GET (--profile-store, default memory) under
 *              `node --cpu-prof` and summarises both profiles
 *              (the .cpuprofile files are kept under bench/results/, git-ignored; open them in
 *              Chrome DevTools or speedscope for the flame graph)
 *
 * Env: GATEHOUSE_BENCH_REDIS_URL (default redis://127.0.0.1:6379), GATEHOUSE_BENCH_POSTGRES_URL
 * (default postgres://postgres@127.0.0.1:5432/test). A store that cannot be reached is skipped and
 * its row says why. Everything created (SQLite file, Postgres schema gh_proxybench_<rand>, Redis keys
 * under ghproxybench<rand>:) is removed at the end, also on failure or Ctrl-C.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { createRequire } from 'node:module'
import { createServer } from 'node:net'
import { cpus, loadavg, tmpdir, totalmem } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { DEMO_USERS } from '../src/demo/idp.ts'
import { generateKey } from '../src/session/seal.ts'
import { BrowserJar } from '../tests/helpers/browser-jar.ts'
import { measureCosts, type Costs, type StoreUnderTest } from './costs.ts'
import { extraPerRequest, extraPerRequestByArea, summarizeProfile, type ProfileSummary } from './cpu-profile.ts'
import { Pool } from 'undici'

const ROOT = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '')
const TARGET_SCRIPT = join(ROOT, 'bench', 'target.ts')
const require = createRequire(import.meta.url)

// ---------------------------------------------------------------------------------------------
// Options

/** A bad flag: one line naming it, no stack trace. */
function bad(message: string): never {
  console.error(message)
  process.exit(2)
}

const { values: flags } = parseArgs({
  options: {
    duration: { type: 'string' },
    warmup: { type: 'string' },
    'warmup-fresh': { type: 'string' },
    connections: { type: 'string' },
    stores: { type: 'string' },
    'login-concurrency': { type: 'string' },
    soak: { type: 'string' },
    'rate-mode': { type: 'string' },
    load: { type: 'string' },
    profile: { type: 'boolean' },
    'profile-store': { type: 'string' },
    'no-costs': { type: 'boolean' },
    'no-pin': { type: 'boolean' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
})
if (flags.help) {
  console.log(
    'usage: node bench/run.ts [--duration 8] [--warmup 1] [--warmup-fresh 8] [--connections 50] [--stores memory,sqlite,redis,postgres] [--login-concurrency 4] [--rate-mode paced|autocannon] [--load wrk|autocannon] [--soak SECONDS] [--profile] [--profile-store memory] [--no-costs] [--no-pin] [--out FILE]',
  )
  process.exit(0)
}
const positive = (name: string, text: string | undefined, fallback: number, min = 1): number => {
  const value = text === undefined ? fallback : Number(text)
  if (!Number.isFinite(value) || value < min) bad(`--${name}: "${text}" is not a number >= ${min}`)
  return value
}
const DURATION_S = positive('duration', flags.duration, 8)
/** Warm-up before a row on a process that has already served load, and before its first row. */
const WARMUP_S = positive('warmup', flags.warmup, 1, 0)
const WARMUP_FRESH_S = positive('warmup-fresh', flags['warmup-fresh'], 8, 0)
const CONNECTIONS = positive('connections', flags.connections, 50)
const LOGIN_CONCURRENCY = positive('login-concurrency', flags['login-concurrency'], 4)
const SOAK_S = positive('soak', flags.soak, 0, 0)
/** paced: requests evenly spaced (an open-loop load); autocannon: its overallRate, which sends each second's quota in a burst. */
const RATE_MODE = (flags['rate-mode'] ?? 'paced') as 'paced' | 'autocannon'
if (RATE_MODE !== 'paced' && RATE_MODE !== 'autocannon') bad('--rate-mode: paced or autocannon')
/** wrk's version when it is on PATH (`wrk -v` prints it and exits 1). */
const WRK_VERSION = (() => {
  const run = spawnSync('wrk', ['-v'], { encoding: 'utf8' })
  return run.error ? undefined : (/^wrk (\S+)/.exec(run.stdout)?.[1] ?? 'unknown version')
})()
/**
 * The generator of the max-load rows. wrk (C) gets ~40% more requests per second out of one core than
 * autocannon (Node), so with autocannon the generator, not the proxy, can be the bottleneck and every
 * ratio is pressed toward 1. The fixed-rate rows never use wrk: they need an open-loop generator.
 */
const LOAD = (flags.load ?? (WRK_VERSION ? 'wrk' : 'autocannon')) as 'wrk' | 'autocannon'
if (LOAD !== 'wrk' && LOAD !== 'autocannon') bad('--load: wrk or autocannon')
if (LOAD === 'wrk' && !WRK_VERSION) bad('--load wrk: wrk is not on PATH')
const STORE_NAMES = ['memory', 'sqlite', 'redis', 'postgres'] as const
type StoreName = (typeof STORE_NAMES)[number]
const STORES = (flags.stores ?? STORE_NAMES.join(',')).split(',').map((s) => s.trim()) as StoreName[]
for (const s of STORES) if (!STORE_NAMES.includes(s)) bad(`--stores: unknown store "${s}" (${STORE_NAMES.join(', ')})`)
if (!STORES.includes('memory')) bad('--stores must include memory (the 64 KB, /bff/user and login rows run on it)')
/** The store of the profiled gatehouse (--profile). */
const PROFILE_STORE = (flags['profile-store'] ?? 'memory') as StoreName
if (!STORE_NAMES.includes(PROFILE_STORE)) bad(`--profile-store: unknown store "${PROFILE_STORE}"`)
const REDIS_URL = process.env.GATEHOUSE_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379'
const POSTGRES_URL = process.env.GATEHOUSE_BENCH_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

const RUN = Math.random().toString(16).slice(2, 10)
const T0 = performance.now()
const STAMP = new Date()
  .toISOString()
  .replace(/[:.]/g, '')
  .replace(/\d{2}\d{3}Z$/, 'Z')
const OUT = flags.out ?? join(ROOT, 'bench', 'results', `bench-${STAMP}.json`)
const CLIENT_ID = 'bench-bff'
const CLIENT_SECRET = 'bench-bff-secret-0123456789'
const COOKIE_NAME = '__Host-gatehouse'
const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  } catch {
    return 100
  }
})()

/**
 * CPU pinning (Linux, taskset, ≥ 2 CPUs): the measured proxy (bare or gatehouse) gets the last CPU to
 * itself; the load generator, the upstream and the IdP share the others. Without it the three take
 * turns on the same CPUs and the proxy's throughput depends on how the scheduler splits them.
 */
const PIN = (() => {
  const n = cpus().length
  if (flags['no-pin'] || process.platform !== 'linux' || n < 2) return undefined
  try {
    const load = n === 2 ? '0' : `0-${n - 2}`
    execFileSync('taskset', ['-a', '-pc', load, String(process.pid)], { stdio: 'ignore' })
    return { target: String(n - 1), load }
  } catch {
    return undefined
  }
})()

// ---------------------------------------------------------------------------------------------
// Child processes and their resource use

interface Target {
  name: string
  url: string
  pid: number
  child: ChildProcess
  /** Has served a warm-up already: a fresh Node process needs ~10 s of load to reach its steady speed. */
  warm: boolean
  stop(): Promise<void>
}

const children = new Set<Target>()
/** Uncaught errors in gatehouse children, with the row that was running. */
const uncaught: Array<{ target: string; row: string; error: string }> = []
let currentRow = 'start-up'

async function startTarget(
  kind: 'upstream' | 'idp' | 'bare' | 'gatehouse',
  name: string,
  options: Record<string, unknown>,
  nodeFlags: string[] = [],
): Promise<Target> {
  const args = [...nodeFlags, TARGET_SCRIPT, kind]
  const measured = kind === 'bare' || kind === 'gatehouse'
  // taskset execs node in place: the child's pid is node's.
  const child = spawn(
    PIN ? 'taskset' : process.execPath,
    PIN ? ['-c', measured ? PIN.target : PIN.load, process.execPath, ...args] : args,
    {
      cwd: ROOT,
      env: { ...process.env, BENCH_TARGET: JSON.stringify(options) },
      // gatehouse logs at its default level (info): one JSON line per request, written to /dev/null.
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    },
  )
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.on('message', (m: { uncaught?: string }) => {
    if (!m.uncaught) return
    uncaught.push({ target: name, row: currentRow, error: m.uncaught })
    print(`  !! ${name} threw an uncaught error (a real gatehouse process would have exited): ${m.uncaught}`)
  })
  const url = await new Promise<string>((resolve, reject) => {
    child.once('message', (m: { ready?: string; error?: string }) =>
      m.ready ? resolve(m.ready) : reject(new Error(`${name}: ${m.error}`)),
    )
    child.once('exit', (code) => reject(new Error(`${name} exited with ${code} before listening`)))
  })
  const target: Target = {
    name,
    url,
    pid: child.pid!,
    child,
    warm: false,
    async stop() {
      children.delete(target)
      if (child.exitCode !== null || child.signalCode !== null) return
      if (child.connected) child.send('stop')
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
      await exited
      clearTimeout(timer)
    },
  }
  children.add(target)
  return target
}

/** RSS (bytes) and CPU time (ms, user + system) of a process, from /proc; undefined elsewhere. */
function usage(pid: number): { rss: number; cpuMs: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN)
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const ticks = Number(fields[11]) + Number(fields[12])
    return { rss: rssKb * 1024, cpuMs: (ticks * 1000) / CLK_TCK }
  } catch {
    return undefined
  }
}

/** CPU ms per thread group of a process: JS main thread, V8 helpers (GC, compiler), libuv thread pool, other. */
function threadCpu(pid: number): Map<string, number> {
  const out = new Map<string, number>()
  let tasks: string[] = []
  try {
    tasks = readdirSync(`/proc/${pid}/task`)
  } catch {
    return out
  }
  for (const tid of tasks) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      const group =
        comm === 'MainThread' || comm === 'node'
          ? 'main'
          : comm.startsWith('V8') || comm.startsWith('DelayedTask')
            ? 'v8'
            : comm.startsWith('libuv')
              ? 'libuv'
              : 'other'
      // Threads that ended keep no entry: their time is in the process total only.
      out.set(group, (out.get(group) ?? 0) + ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK)
    } catch {
      // the thread ended meanwhile
    }
  }
  return out
}

/** Busy and total CPU time of the whole machine (ms summed over CPUs), from /proc/stat. */
function machineCpu(): { busyMs: number; totalMs: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!
    const t = line.trim().split(/\s+/).slice(1, 9).map(Number) // user nice system idle iowait irq softirq steal
    const total = t.reduce((a, b) => a + b, 0)
    return { busyMs: ((total - t[3]! - t[4]!) * 1000) / CLK_TCK, totalMs: (total * 1000) / CLK_TCK }
  } catch {
    return undefined
  }
}

/** CPU ms used so far by this process and every child the bench started (wrk runs included, once they ended). */
function benchCpuMs(): number {
  let ms = (usage(process.pid)?.cpuMs ?? 0) + endedChildrenCpuMs()
  for (const target of children) ms += usage(target.pid)?.cpuMs ?? 0
  return ms
}

/** CPU ms of this process's children that have ended and been waited for (cutime + cstime). */
function endedChildrenCpuMs(): number {
  try {
    const stat = readFileSync(`/proc/${process.pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return ((Number(fields[13]) + Number(fields[14])) * 1000) / CLK_TCK
  } catch {
    return 0
  }
}

/**
 * Samples a process's RSS every 200 ms; `end()` gives the maximum, the CPU time it used meanwhile,
 * and how many cores other programs on the machine kept busy meanwhile (noise in the numbers).
 */
function watch(pid: number): {
  end(): {
    maxRss: number | undefined
    cpuMs: number | undefined
    samples: number[]
    otherCores: number | undefined
    threads: Record<string, number>
  }
} {
  const threadsBefore = threadCpu(pid)
  const machineBefore = machineCpu()
  const benchBefore = benchCpuMs()
  const startedAt = performance.now()
  const first = usage(pid)
  const samples: number[] = first ? [first.rss] : []
  const timer = setInterval(() => {
    const u = usage(pid)
    if (u) samples.push(u.rss)
  }, 200)
  return {
    end() {
      clearInterval(timer)
      const last = usage(pid)
      if (last) samples.push(last.rss)
      const machineAfter = machineCpu()
      const seconds = (performance.now() - startedAt) / 1000
      const otherCores =
        machineBefore && machineAfter
          ? Math.max(
              0,
              round((machineAfter.busyMs - machineBefore.busyMs - (benchCpuMs() - benchBefore)) / 1000 / seconds, 2),
            )
          : undefined
      const threads: Record<string, number> = {}
      for (const [group, ms] of threadCpu(pid)) threads[group] = ms - (threadsBefore.get(group) ?? 0)
      return {
        maxRss: samples.length ? Math.max(...samples) : undefined,
        cpuMs: first && last ? last.cpuMs - first.cpuMs : undefined,
        samples,
        otherCores,
        threads,
      }
    },
  }
}

// ---------------------------------------------------------------------------------------------
// Load

interface AutocannonResult {
  duration: number
  errors: number
  timeouts: number
  non2xx: number
  requests: { total: number }
}
type Autocannon = (
  options: Record<string, unknown>,
  done: (err: Error | null, result: AutocannonResult) => void,
) => {
  on(event: 'response', listener: (client: unknown, status: number, bytes: number, ms: number) => void): void
  stop(): void
}
const autocannon = require('autocannon') as Autocannon

interface LoadResult {
  requests: number
  rps: number
  p50: number
  p99: number
  max: number
  errors: number
  non2xx: number
  maxRssMiB: number | undefined
  /** CPU time of the measured process per request. */
  cpuUsPerReq: number | undefined
  /** CPU use of the measured process over the run, in cores (1 = one core busy all the time). */
  cores: number | undefined
  /** Cores kept busy by programs other than the bench meanwhile: above ~0.1 the row is disturbed. */
  otherCores: number | undefined
  /** The measured process's event-loop delay and GC pauses during the run (bare proxy and gatehouse only). */
  process: ProcessStats | undefined
  /** CPU µs per request by thread: main (JavaScript), v8 (GC and compiler helpers), libuv (thread pool: async fs writes, crypto, DNS), other. */
  cpuUsPerReqByThread: Record<string, number> | undefined
}

function drive(
  url: string,
  headers: Record<string, string>,
  seconds: number,
  overallRate?: number,
): Promise<{ result: AutocannonResult; latencies: Float64Array; ok: number }> {
  let latencies = new Float64Array(1 << 16)
  let ok = 0
  return new Promise((resolve, reject) => {
    const tracker = autocannon(
      { url, connections: CONNECTIONS, duration: seconds, headers, ...(overallRate ? { overallRate } : {}) },
      (err, result) => {
        if (err) return reject(err)
        resolve({ result, latencies: latencies.subarray(0, ok), ok })
      },
    )
    tracker.on('response', (_client, status, _bytes, ms) => {
      if (status < 200 || status > 299) return
      if (ok === latencies.length) {
        const bigger = new Float64Array(latencies.length * 2)
        bigger.set(latencies)
        latencies = bigger
      }
      latencies[ok++] = ms
    })
  })
}

/** What wrk reports for a run; latencies in ms. */
interface WrkResult {
  duration: number
  requests: number
  rps: number
  p50: number
  p99: number
  max: number
  errors: number
  non2xx: number
}

/** A Lua string literal: printable ASCII as is, every other byte as a three-digit decimal escape. */
function luaString(text: string): string {
  let out = '"'
  for (const byte of Buffer.from(text, 'utf8'))
    out +=
      byte >= 0x20 && byte < 0x7f && byte !== 0x22 && byte !== 0x5c
        ? String.fromCharCode(byte)
        : `\\${String(byte).padStart(3, '0')}`
  return `${out}"`
}

/** A wrk time (850.00us, 1.23ms, 2.00s, 1.00m, 1.00h) in ms. */
function wrkMs(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text)
  if (!m) throw new Error(`wrk: unreadable time "${text}"`)
  return Number(m[1]) * { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'us']
}

/** Reads `wrk --latency` output. wrk counts 3xx answers as fine; the bench's targets never send one. */
function parseWrk(output: string): WrkResult {
  const find = (re: RegExp, what: string): string => {
    const m = re.exec(output)
    if (!m) throw new Error(`wrk: no ${what} in its output:\n${output}`)
    return m[1]!
  }
  const requests = Number(find(/(\d+) requests in /, 'request count'))
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output)
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0)
  const answered = requests > non2xx
  return {
    duration: wrkMs(find(/ requests in (\S+?),/, 'duration')) / 1000,
    requests,
    // Requests/sec counts every answer; the table counts 2xx answers only, as for autocannon.
    rps: requests ? (Number(find(/Requests\/sec:\s+([\d.]+)/, 'Requests/sec')) * (requests - non2xx)) / requests : 0,
    p50: answered ? wrkMs(find(/^\s*50%\s+(\S+)/m, '50% latency')) : NaN,
    p99: answered ? wrkMs(find(/^\s*99%\s+(\S+)/m, '99% latency')) : NaN,
    max: answered ? wrkMs(find(/^\s*Latency\s+\S+\s+\S+\s+(\S+)/m, 'Latency Max')) : NaN,
    errors: socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0,
    non2xx,
  }
}

/** A closed-loop max load with wrk (one thread, CONNECTIONS connections); the headers go in through a Lua script. */
async function wrk(url: string, headers: Record<string, string>, seconds: number): Promise<WrkResult> {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-wrk-'))
  try {
    const script = join(dir, 'headers.lua')
    writeFileSync(
      script,
      Object.entries(headers)
        .map(([name, value]) => `wrk.headers[${luaString(name)}] = ${luaString(value)}\n`)
        .join(''),
    )
    // wrk takes whole seconds only.
    const args = ['-t1', `-c${CONNECTIONS}`, `-d${Math.max(1, Math.round(seconds))}s`, '--latency', '-s', script, url]
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject)
      child.once('close', resolve)
    })
    if (code !== 0) throw new Error(`wrk exited with ${code}: ${(stderr || stdout).trim()}`)
    return parseWrk(stdout)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/**
 * An open-loop load at `rate` requests/s, evenly spaced (a timer every millisecond sends what is
 * due), over at most CONNECTIONS keep-alive connections of an undici Pool; latency from send to the
 * last byte of the answer. autocannon's overallRate instead lets each connection send its quota for
 * the second back to back and then wait for the next second: bursts at full speed, not half load.
 */
async function paced(
  url: string,
  headers: Record<string, string>,
  seconds: number,
  rate: number,
): Promise<{ duration: number; latencies: Float64Array; ok: number; errors: number; non2xx: number }> {
  const target = new URL(url)
  const pool = new Pool(target.origin, { connections: CONNECTIONS, keepAliveTimeout: 30_000 })
  const total = Math.floor(seconds * rate)
  const latencies = new Float64Array(total)
  let ok = 0
  let errors = 0
  let non2xx = 0
  const inflight = new Set<Promise<void>>()
  const send = (): void => {
    const started = performance.now()
    const done = pool
      .request({ path: target.pathname + target.search, method: 'GET', headers })
      .then(async ({ statusCode, body }) => {
        for await (const _ of body) {
          // the whole answer, as a browser reads it
        }
        if (statusCode < 200 || statusCode > 299) return void non2xx++
        latencies[ok++] = performance.now() - started
      })
      .catch(() => void errors++)
      .finally(() => inflight.delete(done))
    inflight.add(done)
  }
  const start = performance.now()
  let sent = 0
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000))
      while (sent < due) {
        sent++
        send()
      }
      if (sent < total) setTimeout(tick, 1)
      else resolve()
    }
    tick()
  })
  await Promise.all(inflight)
  const duration = (performance.now() - start) / 1000
  await pool.close()
  return { duration, latencies: latencies.subarray(0, ok), ok, errors, non2xx }
}

interface ProcessStats {
  eventLoopDelayP99Ms: number
  eventLoopDelayMaxMs: number
  gcCount: number
  gcTotalMs: number
  gcMaxMs: number
}

/** Asks a bare-proxy or gatehouse child for its event-loop delay and GC pauses since 'stats-reset'. */
function processStats(target: Target): Promise<ProcessStats | undefined> {
  if (!target.child.connected || (!target.name.startsWith('bare') && !target.name.startsWith('gatehouse')))
    return Promise.resolve(undefined)
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      target.child.off('message', onMessage)
      resolve(undefined)
    }, 2_000)
    const onMessage = (m: { stats?: ProcessStats }) => {
      if (!m.stats) return
      clearTimeout(timer)
      target.child.off('message', onMessage)
      resolve(m.stats)
    }
    target.child.on('message', onMessage)
    target.child.send('stats')
  })
}

/** Warm-up (not measured), then the measured run against `pid`'s server; `window` in µs of the monotonic clock. */
async function measure(
  url: string,
  headers: Record<string, string>,
  target: Target,
  overallRate?: number,
): Promise<LoadResult & { window: { startUs: number; endUs: number } }> {
  const load = async (
    seconds: number,
  ): Promise<{
    duration: number
    ok: number
    errors: number
    non2xx: number
    /** Every 2xx answer's latency (ms), or wrk's own figures. */
    latencies: Float64Array | WrkResult
  }> => {
    if (overallRate && RATE_MODE === 'paced') return paced(url, headers, seconds, overallRate)
    if (!overallRate && LOAD === 'wrk') {
      const r = await wrk(url, headers, seconds)
      return { duration: r.duration, ok: r.requests - r.non2xx, errors: r.errors, non2xx: r.non2xx, latencies: r }
    }
    const { result, latencies, ok } = await drive(url, headers, seconds, overallRate)
    return { duration: result.duration, latencies, ok, errors: result.errors, non2xx: result.non2xx }
  }
  const warmup = target.warm ? WARMUP_S : WARMUP_FRESH_S
  target.warm = true
  if (warmup > 0) await load(warmup)
  if (target.child.connected) target.child.send('stats-reset')
  const watcher = watch(target.pid)
  const startUs = Number(process.hrtime.bigint() / 1000n)
  const { duration, latencies, ok, errors, non2xx } = await load(DURATION_S)
  const endUs = Number(process.hrtime.bigint() / 1000n)
  const { maxRss, cpuMs, otherCores, threads } = watcher.end()
  const stats = await processStats(target)
  let figures: { rps: number; p50: number; p99: number; max: number }
  if (latencies instanceof Float64Array) {
    latencies.sort()
    const at = (q: number) => (ok ? round(latencies[Math.min(ok - 1, Math.floor(q * ok))]!, 3) : NaN)
    figures = { rps: ok / duration, p50: at(0.5), p99: at(0.99), max: ok ? latencies[ok - 1]! : NaN }
  } else figures = latencies
  return {
    requests: ok,
    rps: Math.round(figures.rps),
    p50: round(figures.p50, 3),
    p99: round(figures.p99, 3),
    max: round(figures.max, 2),
    errors,
    non2xx,
    maxRssMiB: maxRss === undefined ? undefined : round(maxRss / 2 ** 20, 1),
    cpuUsPerReq: cpuMs === undefined || ok === 0 ? undefined : round((cpuMs * 1000) / ok, 1),
    cores: cpuMs === undefined ? undefined : round(cpuMs / 1000 / duration, 2),
    otherCores,
    process: stats,
    cpuUsPerReqByThread:
      ok === 0 || Object.keys(threads).length === 0
        ? undefined
        : Object.fromEntries(Object.entries(threads).map(([group, ms]) => [group, round((ms * 1000) / ok, 1)])),
    window: { startUs, endUs },
  }
}

// ---------------------------------------------------------------------------------------------
// Login through the real flow: gatehouse → IdP login form → callback → session cookie

async function login(origin: string): Promise<{ cookie: string; ms: number }> {
  const started = performance.now()
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
  const cookie = browser.cookies.get(COOKIE_NAME)
  if (!cookie || res.status !== 302) throw new Error(`login did not end with a session: ${res.status} at ${res.url}`)
  return { cookie, ms: performance.now() - started }
}

interface LoginResult {
  logins: number
  failures: number
  perSecond: number
  p50: number
  p99: number
  maxRssMiB: number | undefined
  gatehouseCpuMsPerLogin: number | undefined
  idpCpuMsPerLogin: number | undefined
}

async function loginLoop(origin: string, gatehousePid: number, idpPid: number): Promise<LoginResult> {
  const gatehouse = watch(gatehousePid)
  const idp = watch(idpPid)
  const times: number[] = []
  let failures = 0
  const started = performance.now()
  const deadline = started + DURATION_S * 1000
  await Promise.all(
    Array.from({ length: LOGIN_CONCURRENCY }, async () => {
      while (performance.now() < deadline) {
        try {
          times.push((await login(origin)).ms)
        } catch {
          failures++
        }
      }
    }),
  )
  const seconds = (performance.now() - started) / 1000
  const g = gatehouse.end()
  const i = idp.end()
  times.sort((a, b) => a - b)
  const at = (q: number) =>
    times.length ? round(times[Math.min(times.length - 1, Math.floor(q * times.length))]!, 1) : NaN
  return {
    logins: times.length,
    failures,
    perSecond: round(times.length / seconds, 1),
    p50: at(0.5),
    p99: at(0.99),
    maxRssMiB: g.maxRss === undefined ? undefined : round(g.maxRss / 2 ** 20, 1),
    gatehouseCpuMsPerLogin: g.cpuMs === undefined || !times.length ? undefined : round(g.cpuMs / times.length, 2),
    idpCpuMsPerLogin: i.cpuMs === undefined || !times.length ? undefined : round(i.cpuMs / times.length, 2),
  }
}

// ---------------------------------------------------------------------------------------------
// Stores: where each gatehouse child keeps its sessions, and how to remove them afterwards

const sqliteDir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-'))
const redisPrefix = `ghproxybench${RUN}:`
const pgSchema = `gh_proxybench_${RUN}`

function storeLocation(store: StoreName): string {
  if (store === 'memory') return 'memory'
  if (store === 'sqlite') return `sqlite:${join(sqliteDir, 'sessions.db')}`
  const url = new URL(store === 'redis' ? REDIS_URL : POSTGRES_URL)
  url.searchParams.set(store === 'redis' ? 'prefix' : 'schema', store === 'redis' ? redisPrefix : pgSchema)
  return url.toString()
}

/** Why a store cannot be benched here, or undefined when it can. */
async function unavailable(store: StoreName): Promise<string | undefined> {
  try {
    if (store === 'redis') {
      const { Redis } = await import('ioredis')
      const client = new Redis(REDIS_URL, { lazyConnect: true, connectTimeout: 2_000, maxRetriesPerRequest: 0 })
      client.on('error', () => {})
      try {
        await client.connect()
        await client.ping()
      } finally {
        client.disconnect()
      }
    }
    if (store === 'postgres') {
      const { default: pg } = await import('pg')
      const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 2_000 })
      await client.connect()
      await client.end()
    }
    return undefined
  } catch (err) {
    return `cannot reach ${store === 'redis' ? REDIS_URL : POSTGRES_URL.replace(/\/\/[^@/]*@/, '//')}: ${(err as Error).message}`
  }
}

const used = new Set<StoreName>()
async function cleanUp(): Promise<void> {
  for (const target of [...children]) await target.stop().catch(() => {})
  rmSync(sqliteDir, { recursive: true, force: true })
  if (used.has('redis')) {
    try {
      const { Redis } = await import('ioredis')
      const client = new Redis(REDIS_URL, { connectTimeout: 2_000, maxRetriesPerRequest: 1 })
      client.on('error', () => {})
      let cursor = '0'
      do {
        const [next, keys] = await client.scan(cursor, 'MATCH', `${redisPrefix}*`, 'COUNT', 1000)
        if (keys.length) await client.del(...keys)
        cursor = next
      } while (cursor !== '0')
      client.disconnect()
    } catch (err) {
      console.error(`could not remove the Redis keys ${redisPrefix}*: ${(err as Error).message}`)
    }
  }
  if (used.has('postgres')) {
    try {
      const { default: pg } = await import('pg')
      const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 2_000 })
      await client.connect()
      await client.query(`DROP SCHEMA IF EXISTS "${pgSchema}" CASCADE`)
      await client.end()
    } catch (err) {
      console.error(`could not drop the PostgreSQL schema ${pgSchema}: ${(err as Error).message}`)
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The run

interface Row {
  row: string
  target: 'upstream' | 'bare' | 'gatehouse'
  store?: StoreName
  path: string
  /** The bare-proxy row this row's req/s is compared with. */
  baseline?: string
  result?: LoadResult
  ratio?: number
  skipped?: string
}

interface RateRow {
  row: string
  /** Set on the rows the goal is measured on (half the bare proxy's maximum). */
  store?: StoreName
  offeredRps: number
  /** Whose maximum the offered rate is half of; default the bare proxy's. */
  basis?: 'bare' | 'gatehouse'
  result?: LoadResult
  /** The bare proxy at the same offered rate, which addedP99 is measured against. */
  baselineResult?: LoadResult
  /** p99 minus the bare proxy's p99 at the same offered rate, ms. */
  addedP99?: number
  addedP50?: number
  /** The target answered less than 95% of the offered rate: its latency is queueing, not service time. */
  overloaded?: boolean
  skipped?: string
}

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/**
 * Which gatehouse was measured: the commit, and the src/ files that differ from it. Read-only git
 * (rev-parse, ls-tree, hash-object without -w); undefined outside a git checkout.
 */
function sourceState(): { commit: string; modified: string[] } | undefined {
  try {
    const git = (args: string[], input?: string) =>
      execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'ignore'] }).trim()
    const commit = git(['rev-parse', 'HEAD'])
    const committed = new Map(
      git(['ls-tree', '-r', 'HEAD', '--', 'src'])
        .split('\n')
        .filter(Boolean)
        .map((line) => {
          const [meta, path] = line.split('\t') as [string, string]
          return [path, meta.split(' ')[2]!] as const
        }),
    )
    const files = (function walk(dir: string): string[] {
      return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? walk(`${dir}/${e.name}`) : [`${dir}/${e.name}`],
      )
    })('src')
    const hashes = git(['hash-object', '--stdin-paths'], files.join('\n')).split('\n')
    const modified = files.filter((f, i) => committed.get(f) !== hashes[i])
    for (const f of committed.keys()) if (!files.includes(f)) modified.push(`${f} (deleted)`)
    return { commit, modified }
  } catch {
    return undefined
  }
}

function machine(): Record<string, unknown> {
  const cpu = cpus()
  const version = (pkg: string) =>
    (JSON.parse(readFileSync(join(ROOT, 'node_modules', pkg, 'package.json'), 'utf8')) as { version: string }).version
  return {
    cpu: cpu[0]?.model.trim(),
    logicalCpus: cpu.length,
    memGiB: Math.round(totalmem() / 2 ** 30),
    platform: `${process.platform} ${process.arch}`,
    node: process.version,
    undici: version('undici'),
    autocannon: version('autocannon'),
    wrk: WRK_VERSION,
    loadavgAtStart: loadavg().map((l) => round(l, 2)),
    pinning: PIN ? `measured proxy on CPU ${PIN.target}; load generator, upstream and IdP on CPU ${PIN.load}` : 'none',
  }
}

function print(text = ''): void {
  process.stdout.write(`${text}\n`)
}

async function main(): Promise<void> {
  const env = machine()
  const sourceAtStart = sourceState()
  if (sourceAtStart)
    print(
      `measuring gatehouse at ${sourceAtStart.commit.slice(0, 12)}${sourceAtStart.modified.length ? ` with ${sourceAtStart.modified.length} modified file(s) in src/: ${sourceAtStart.modified.join(', ')}` : ''}`,
    )
  print(
    `gatehouse proxy bench — ${env.logicalCpus}× ${env.cpu}, ${env.memGiB} GiB, Node ${env.node}, undici ${env.undici}, autocannon ${env.autocannon}${WRK_VERSION ? `, wrk ${WRK_VERSION}` : ''}`,
  )
  print(
    `${CONNECTIONS} connections, ${DURATION_S} s per row after a warm-up (${WARMUP_FRESH_S} s on a fresh process, else ${WARMUP_S} s); ${env.pinning === 'none' ? 'no CPU pinning' : env.pinning}; load average at start ${(env.loadavgAtStart as number[]).join(' ')}`,
  )
  if ((env.loadavgAtStart as number[])[0]! > 0.5 * (env.logicalCpus as number))
    print('warning: the machine is busy; numbers will be noisy')

  const skip = new Map<StoreName, string>()
  for (const store of STORES) {
    const why = await unavailable(store)
    if (why) {
      skip.set(store, why)
      print(`skipping ${store}: ${why}`)
    }
  }

  const gatehousePort = await freePort()
  const gatehouseOrigin = `http://127.0.0.1:${gatehousePort}`
  const upstream = await startTarget('upstream', 'upstream', {})
  const idp = await startTarget('idp', 'idp', {
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        redirect_uris: [`${gatehouseOrigin}/signin-oidc`],
        post_logout_redirect_uris: [`${gatehouseOrigin}/signout-callback-oidc`],
      },
    ],
  })
  const bare = await startTarget('bare', 'bare proxy', { target: upstream.url })
  const keys = [generateKey()]
  const gatehouseOptions = (store: StoreName, logLevel = 'info') => ({
    publicOrigin: gatehouseOrigin,
    oidc: {
      authority: idp.url,
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      scopes: ['openid', 'profile', 'email', 'offline_access'],
    },
    keys,
    session: { store: storeLocation(store) },
    remoteApis: [{ path: '/api', target: upstream.url, token: 'user' }],
    // Every load connection replays one session: the per-session cap (default 32) must not turn the overhead bench into a 429 bench.
    limits: { perClient: Math.max(32, CONNECTIONS) },
    log: { level: logLevel },
  })

  // What a browser's fetch() from the SPA sends (Chromium, same-origin XHR); the same for every target.
  const browserHeaders = (cookie: string): Record<string, string> => ({
    accept: 'application/json, text/plain, */*',
    'accept-encoding': 'gzip, deflate, br, zstd',
    'accept-language': 'en-US,en;q=0.9',
    'user-agent':
      'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36',
    referer: `${gatehouseOrigin}/orders`,
    'sec-ch-ua': '"Chromium";v="131", "Not_A Brand";v="24"',
    'sec-ch-ua-mobile': '?0',
    'sec-ch-ua-platform': '"Linux"',
    'sec-fetch-dest': 'empty',
    'sec-fetch-mode': 'cors',
    'sec-fetch-site': 'same-origin',
    'x-csrf': '1',
    cookie: `${COOKIE_NAME}=${cookie}`,
  })
  const anonymous = browserHeaders('0'.repeat(43))

  const loadGenerator =
    LOAD === 'wrk'
      ? `wrk ${WRK_VERSION} (1 thread, ${CONNECTIONS} connections)`
      : `autocannon ${env.autocannon} (${CONNECTIONS} connections)`
  // The fixed-rate rows need an open-loop generator, which wrk is not: they never use it.
  const rateGenerator =
    RATE_MODE === 'paced'
      ? `evenly paced undici load from this process (open loop; not ${LOAD})`
      : `autocannon ${env.autocannon} overallRate (not ${LOAD})`
  const rows: Row[] = []
  const rateRows: RateRow[] = []
  const cookies = new Map<StoreName, string>()
  let loginResult: LoginResult | undefined
  let soak:
    | {
        seconds: number
        requests: number
        rssMiB: number[]
        middleThirdMaxMiB: number
        lastThirdMaxMiB: number
        flat: boolean
      }
    | undefined
  const progress = (name: string, r: LoadResult | undefined, extra = '') =>
    print(
      `  ${name.padEnd(44)} ${r ? `${String(r.rps).padStart(7)} req/s  p50 ${r.p50.toFixed(2)}  p99 ${r.p99.toFixed(2)} ms${r.errors || r.non2xx ? `  (${r.errors} errors, ${r.non2xx} non-2xx)` : ''}` : ''}${extra}`,
    )
  const run = async (row: Row, url: string, headers: Record<string, string>, target: Target): Promise<void> => {
    currentRow = row.row
    const { window: _window, ...result } = await measure(url, headers, target)
    row.result = result
    rows.push(row)
    progress(row.row, row.result)
    if (row.result.non2xx || row.result.errors)
      throw new Error(
        `${row.row}: ${row.result.non2xx} non-2xx answers, ${row.result.errors} errors — the bench is not measuring what it claims`,
      )
  }
  const rateRun = async (
    row: RateRow,
    url: string,
    headers: Record<string, string>,
    target: Target,
    bareAtRate?: LoadResult,
  ): Promise<void> => {
    currentRow = row.row
    const { window: _window, ...result } = await measure(url, headers, target, row.offeredRps)
    row.result = result
    if (row.result.rps < 0.95 * row.offeredRps) row.overloaded = true
    if (bareAtRate) {
      row.baselineResult = bareAtRate
      row.addedP99 = round(row.result.p99 - bareAtRate.p99, 3)
      row.addedP50 = round(row.result.p50 - bareAtRate.p50, 3)
    }
    rateRows.push(row)
    progress(row.row, row.result, row.addedP99 === undefined ? '' : `  (+${row.addedP99.toFixed(3)} ms p99)`)
  }

  print('\nthroughput (max load)')
  print(`  load generator: ${loadGenerator}`)
  await run(
    { row: 'direct upstream', target: 'upstream', path: '/small' },
    `${upstream.url}/small`,
    anonymous,
    upstream,
  )
  await run({ row: 'bare proxy', target: 'bare', path: '/api/small' }, `${bare.url}/api/small`, anonymous, bare)
  await run(
    { row: 'bare proxy, 64 KB response', target: 'bare', path: '/api/big' },
    `${bare.url}/api/big`,
    anonymous,
    bare,
  )
  const bareMax = rows.find((r) => r.row === 'bare proxy')!.result!.rps
  const halfRate = Math.round(bareMax / 2)

  let bareAtRate: LoadResult | undefined
  for (const store of STORES) {
    if (skip.has(store)) {
      rows.push({
        row: `gatehouse GET, ${store} store`,
        target: 'gatehouse',
        store,
        path: '/api/small',
        skipped: skip.get(store)!,
      })
      rateRows.push({
        row: `gatehouse GET, ${store} store, at half rate`,
        store,
        offeredRps: halfRate,
        skipped: skip.get(store)!,
      })
      continue
    }
    used.add(store)
    const gatehouse = await startTarget('gatehouse', `gatehouse (${store})`, {
      port: gatehousePort,
      gatehouse: gatehouseOptions(store),
    })
    try {
      const { cookie } = await login(gatehouseOrigin)
      cookies.set(store, cookie)
      const headers = browserHeaders(cookie)
      await run(
        {
          row: `gatehouse GET, ${store} store`,
          target: 'gatehouse',
          store,
          path: '/api/small',
          baseline: 'bare proxy',
        },
        `${gatehouseOrigin}/api/small`,
        headers,
        gatehouse,
      )
      if (store === 'memory') {
        await run(
          {
            row: 'gatehouse GET, 64 KB response (memory)',
            target: 'gatehouse',
            store,
            path: '/api/big',
            baseline: 'bare proxy, 64 KB response',
          },
          `${gatehouseOrigin}/api/big`,
          headers,
          gatehouse,
        )
        await run(
          {
            row: 'gatehouse GET /bff/user (memory)',
            target: 'gatehouse',
            store,
            path: '/bff/user',
            baseline: 'bare proxy',
          },
          `${gatehouseOrigin}/bff/user`,
          headers,
          gatehouse,
        )
        print(
          `\nlatency at half the bare proxy's max throughput (${halfRate} req/s offered, ${RATE_MODE === 'paced' ? 'evenly paced' : 'autocannon overallRate'})`,
        )
        print(`  load generator: ${rateGenerator}`)
        await rateRun(
          { row: 'bare proxy at half rate', offeredRps: halfRate },
          `${bare.url}/api/small`,
          anonymous,
          bare,
        )
        bareAtRate = rateRows.at(-1)!.result
      }
      await rateRun(
        { row: `gatehouse GET, ${store} store, at half rate`, store, offeredRps: halfRate },
        `${gatehouseOrigin}/api/small`,
        headers,
        gatehouse,
        bareAtRate,
      )
      if (store === 'memory') {
        // When gatehouse's own maximum is below the rate above, that row measures a growing queue. The
        // added latency of a gatehouse that is not overloaded: both at half of gatehouse's own maximum.
        const ownHalf = Math.round(rows.find((r) => r.row === 'gatehouse GET, memory store')!.result!.rps / 2)
        if (ownHalf < halfRate * 0.9) {
          print(`  at half of gatehouse's own max throughput (${ownHalf} req/s offered):`)
          await rateRun(
            { row: "bare proxy at half gatehouse's max", offeredRps: ownHalf, basis: 'gatehouse' },
            `${bare.url}/api/small`,
            anonymous,
            bare,
          )
          const bareAtOwnHalf = rateRows.at(-1)!.result
          await rateRun(
            { row: 'gatehouse GET, memory, at half its own max', offeredRps: ownHalf, basis: 'gatehouse' },
            `${gatehouseOrigin}/api/small`,
            headers,
            gatehouse,
            bareAtOwnHalf,
          )
        }
        print('\nlogin round trips (real flow against the embedded IdP)')
        currentRow = 'login round trips'
        loginResult = await loginLoop(gatehouseOrigin, gatehouse.pid, idp.pid)
        print(
          `  ${`${LOGIN_CONCURRENCY} browsers in parallel`.padEnd(44)} ${String(loginResult.perSecond).padStart(7)} logins/s  p50 ${loginResult.p50} ms  p99 ${loginResult.p99} ms${loginResult.failures ? `  (${loginResult.failures} failed)` : ''}`,
        )
        print('')
      }
    } finally {
      await gatehouse.stop()
    }
  }

  // gatehouse with logging off: what the access log line costs under load.
  {
    const gatehouse = await startTarget('gatehouse', 'gatehouse (memory, log silent)', {
      port: gatehousePort,
      gatehouse: gatehouseOptions('memory', 'silent'),
    })
    try {
      const { cookie } = await login(gatehouseOrigin)
      await run(
        {
          row: 'gatehouse GET, memory store, logging off',
          target: 'gatehouse',
          store: 'memory',
          path: '/api/small',
          baseline: 'bare proxy',
        },
        `${gatehouseOrigin}/api/small`,
        browserHeaders(cookie),
        gatehouse,
      )
    } finally {
      await gatehouse.stop()
    }
  }
  // The baseline once more, last: the drift of a shared machine over the run shows here.
  await run(
    { row: 'bare proxy (again, last)', target: 'bare', path: '/api/small' },
    `${bare.url}/api/small`,
    anonymous,
    bare,
  )

  // The small-body baseline is the mean of the two bare-proxy rows (first and last): the drift of the
  // machine over the run then weighs on both sides alike.
  const bareFirst = rows.find((r) => r.row === 'bare proxy')!.result!
  const bareLast = rows.find((r) => r.row === 'bare proxy (again, last)')!.result!
  const bareMean = (bareFirst.rps + bareLast.rps) / 2
  for (const row of rows) {
    const base =
      row.baseline === 'bare proxy'
        ? bareMean
        : row.baseline
          ? rows.find((r) => r.row === row.baseline)?.result?.rps
          : undefined
    if (base && row.result) row.ratio = round(row.result.rps / base, 3)
  }

  if (SOAK_S > 0) {
    print(`\nsoak: gatehouse GET, memory store, ${SOAK_S} s`)
    const gatehouse = await startTarget('gatehouse', 'gatehouse (soak)', {
      port: gatehousePort,
      gatehouse: gatehouseOptions('memory'),
    })
    try {
      const { cookie } = await login(gatehouseOrigin)
      const rss: number[] = []
      const timer = setInterval(() => {
        const u = usage(gatehouse.pid)
        if (u) rss.push(round(u.rss / 2 ** 20, 1))
      }, 1_000)
      const { ok } = await drive(`${gatehouseOrigin}/api/small`, browserHeaders(cookie), SOAK_S)
      clearInterval(timer)
      // The first third is warm-up (JIT, pools, heap growing to its working size); flat means the
      // last third's peak is within 5% of the middle third's.
      const third = Math.max(1, Math.floor(rss.length / 3))
      const middle = Math.max(...rss.slice(third, 2 * third))
      const last = Math.max(...rss.slice(2 * third))
      soak = {
        seconds: SOAK_S,
        requests: ok,
        rssMiB: rss,
        middleThirdMaxMiB: middle,
        lastThirdMaxMiB: last,
        flat: last <= middle * 1.05,
      }
      print(
        `  ${ok} requests; RSS peak ${middle} MiB in the middle third, ${last} MiB in the last third: ${soak.flat ? 'flat' : 'growing'}`,
      )
    } finally {
      await gatehouse.stop()
    }
  }

  let profile:
    | {
        gatehouse: ProfileSummary
        bare: ProfileSummary
        gatehouseRequests: number
        bareRequests: number
        extraPerRequest: ReturnType<typeof extraPerRequest>
        extraPerRequestByArea: ReturnType<typeof extraPerRequestByArea>
      }
    | undefined
  if (flags.profile) {
    print(`\nprofiles: the bare proxy and gatehouse (${PROFILE_STORE} store) under --cpu-prof, same load`)
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-prof-'))
    try {
      const profiled = async (kind: 'bare' | 'gatehouse'): Promise<{ summary: ProfileSummary; requests: number }> => {
        if (kind === 'gatehouse') used.add(PROFILE_STORE)
        const target = await startTarget(
          kind,
          `${kind} (profiled)`,
          kind === 'bare'
            ? { target: upstream.url }
            : { port: gatehousePort, gatehouse: gatehouseOptions(PROFILE_STORE) },
          ['--cpu-prof', `--cpu-prof-dir=${join(dir, kind)}`],
        )
        let measured: Awaited<ReturnType<typeof measure>>
        try {
          currentRow = `${kind} (profiled)`
          const url = kind === 'bare' ? `${target.url}/api/small` : `${gatehouseOrigin}/api/small`
          const headers = kind === 'bare' ? anonymous : browserHeaders((await login(gatehouseOrigin)).cookie)
          measured = await measure(url, headers, target)
          progress(`${kind === 'bare' ? 'bare proxy' : `gatehouse GET, ${PROFILE_STORE} store`} (profiled)`, measured)
        } finally {
          await target.stop()
        }
        const written = readdirSync(join(dir, kind)).find((f) => f.endsWith('.cpuprofile'))
        if (!written) throw new Error(`the profiled ${kind} wrote no .cpuprofile`)
        const kept = join(dirname(OUT), `profile-${kind}-${STAMP}.cpuprofile`)
        mkdirSync(dirname(kept), { recursive: true })
        renameSync(join(dir, kind, written), kept)
        const summary = summarizeProfile(kept, ROOT, measured.window)
        summary.file = relative(ROOT, kept)
        return { summary, requests: measured.requests }
      }
      const b = await profiled('bare')
      const g = await profiled('gatehouse')
      profile = {
        gatehouse: g.summary,
        bare: b.summary,
        gatehouseRequests: g.requests,
        bareRequests: b.requests,
        extraPerRequest: extraPerRequest(g.summary, g.requests, b.summary, b.requests),
        extraPerRequestByArea: extraPerRequestByArea(g.summary, g.requests, b.summary, b.requests),
      }
      delete g.summary.allSelf
      delete b.summary.allSelf
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }

  let costs: Costs | undefined
  if (!flags['no-costs']) {
    const stores: StoreUnderTest[] = STORES.filter((s) => cookies.has(s)).map((s) => ({
      name: s,
      location: storeLocation(s),
      cookie: cookies.get(s)!,
    }))
    costs = await measureCosts({
      stores,
      keys,
      cookieName: COOKIE_NAME,
      origin: gatehouseOrigin,
      requestHeaders: {
        host: `127.0.0.1:${gatehousePort}`,
        connection: 'keep-alive',
        ...browserHeaders(cookies.get('memory')!),
      },
      upstreamHeaders: {
        'content-type': 'application/json',
        'content-length': '56',
        'cache-control': 'private, max-age=0',
        date: new Date().toUTCString(),
        connection: 'keep-alive',
        'keep-alive': 'timeout=65',
      },
    })
  }

  await cleanUp()
  const totalMs = Math.round(performance.now() - T0)
  const goals = evaluateGoals(rows, rateRows, costs, soak)
  const storeScale = latestStoreScale()
  const sourceAtEnd = sourceState()
  const sourceChanged = JSON.stringify(sourceAtStart) !== JSON.stringify(sourceAtEnd)
  if (sourceChanged) print('\n!! src/ changed while the bench ran: rows may have measured different code')
  const report = {
    date: new Date().toISOString(),
    totalMs,
    source: { ...sourceAtStart, changedDuringRun: sourceChanged },
    machine: env,
    options: {
      durationS: DURATION_S,
      warmupS: WARMUP_S,
      warmupFreshS: WARMUP_FRESH_S,
      connections: CONNECTIONS,
      stores: STORES,
      loginConcurrency: LOGIN_CONCURRENCY,
      halfRate,
      rateMode: RATE_MODE,
      load: LOAD,
    },
    loadGenerator: { maxLoad: loadGenerator, fixedRate: rateGenerator },
    rows,
    rateRows,
    login: loginResult,
    uncaught,
    goals,
    costs,
    soak,
    profile,
    backchannelLogout: storeScale,
  }
  mkdirSync(dirname(OUT), { recursive: true })
  writeFileSync(OUT, `${JSON.stringify(report, null, 2)}\n`)
  printReport(report)
  print(
    `\n"others": cores kept busy by programs other than the bench during the row (above ~0.1 the row was disturbed)`,
  )
  print(`written: ${relative(ROOT, OUT)} — total ${(totalMs / 1000).toFixed(1)} s`)
}

// ---------------------------------------------------------------------------------------------
// Goals (issue 7) and the printed table

interface Goal {
  goal: string
  measured: string
  met: boolean | undefined
}

function evaluateGoals(
  rows: Row[],
  rateRows: RateRow[],
  costs: Costs | undefined,
  soak: { seconds: number; middleThirdMaxMiB: number; lastThirdMaxMiB: number; flat: boolean } | undefined,
): Goal[] {
  const goals: Goal[] = []
  const baseline = disturbedBaseline(rows)
  for (const [store, min] of [
    ['memory', 0.85],
    ['sqlite', 0.85],
    ['redis', 0.7],
    ['postgres', 0.7],
  ] as const) {
    const row = rows.find((r) => r.row === `gatehouse GET, ${store} store`)
    if (!row) continue
    const goal = `proxied GET, ${store} store ≥ ${min}× bare proxy req/s`
    if (row.ratio === undefined) {
      goals.push({ goal, measured: `skipped (${row.skipped})`, met: undefined })
      continue
    }
    const disturbed = baseline ?? disturbedRow(row.result)
    goals.push(
      disturbed
        ? { goal, measured: `not measured: ${disturbed} (${row.ratio}×)`, met: undefined }
        : { goal, measured: `${row.ratio}×`, met: row.ratio >= min },
    )
  }
  for (const row of rateRows) {
    if (!row.store) continue
    const goal = `added p99 ≤ 1 ms at half the bare proxy's max rate, ${row.store} store`
    if (row.addedP99 === undefined) {
      goals.push({ goal, measured: `skipped (${row.skipped})`, met: undefined })
      continue
    }
    const measured = `${row.addedP99 >= 0 ? '+' : ''}${row.addedP99} ms${row.overloaded ? ` (could not sustain ${row.offeredRps} req/s: ${row.result!.rps})` : ''}`
    const disturbed =
      baseline ??
      disturbedRow(row.baselineResult, 'the bare proxy at this rate') ??
      disturbedRow(row.result) ??
      (row.addedP99 < 0 ? `gatehouse's p99 came out below the bare proxy's` : undefined)
    goals.push(
      disturbed
        ? { goal, measured: `not measured: ${disturbed} (${measured})`, met: undefined }
        : { goal, measured, met: row.addedP99 <= 1 && !row.overloaded },
    )
  }
  const m = costs?.memoryPerSession
  if (soak)
    goals.push({
      goal: `RSS flat over a ${soak.seconds} s run (memory store, max load)`,
      measured: `peak ${soak.middleThirdMaxMiB} MiB in the middle third, ${soak.lastThirdMaxMiB} MiB in the last`,
      met: soak.flat,
    })
  else
    goals.push({ goal: 'RSS flat over a 60 s run', measured: 'not run (npm run bench -- --soak 60)', met: undefined })
  if (m)
    goals.push({
      goal: '≤ 2 KB per idle session in the memory store beyond its tokens',
      measured: `${m.beyondTokensBytes} B (${m.heapBytesPerSession} B heap per session, ${m.sealedChars} B of it the sealed tokens and claims)`,
      met: m.beyondTokensBytes <= 2048,
    })
  return goals
}

/**
 * A goal is only met or missed against an undisturbed baseline: the two bare-proxy rows (first and
 * last of the run) within 10 % of each other and neither row busy with other programs. Otherwise the
 * reason, and the goal reads "not measured" — never met.
 */
function disturbedBaseline(rows: Row[]): string | undefined {
  const first = rows.find((r) => r.row === 'bare proxy')?.result
  const last = rows.find((r) => r.row === 'bare proxy (again, last)')?.result
  if (!first || !last) return 'the bare proxy was not measured twice'
  const spread = Math.abs(first.rps - last.rps) / Math.max(first.rps, last.rps)
  if (spread > 0.1)
    return `the two bare-proxy rows are ${Math.round(spread * 100)} % apart (${first.rps} and ${last.rps} req/s)`
  return disturbedRow(first, 'the first bare-proxy row') ?? disturbedRow(last, 'the last bare-proxy row')
}

function disturbedRow(result: LoadResult | undefined, what = 'this row'): string | undefined {
  if (!result) return `${what} was not measured`
  if (result.otherCores !== undefined && result.otherCores > 0.1)
    return `other programs kept ${result.otherCores} cores busy during ${what}`
  return undefined
}

/** The newest store-scale result (bench/store-scale.ts), for the back-channel logout goal. */
function latestStoreScale(): unknown {
  const dir = join(ROOT, 'bench', 'results')
  if (!existsSync(dir)) return undefined
  const newest = readdirSync(dir)
    .filter((f) => /^store-scale-.*\.json$/.test(f))
    .sort()
    .at(-1)
  if (!newest)
    return {
      note: 'run npm run bench:stores (bench/store-scale.ts): back-channel logout by sid at 1,000,000 sessions per store',
    }
  const data = JSON.parse(readFileSync(join(dir, newest), 'utf8')) as { goal?: unknown; date?: string }
  return { source: `bench/results/${newest}`, date: data.date, goal: data.goal }
}

function printReport(report: {
  loadGenerator: { maxLoad: string; fixedRate: string }
  rows: Row[]
  rateRows: RateRow[]
  login: LoginResult | undefined
  uncaught: typeof uncaught
  goals: Goal[]
  costs: Costs | undefined
  profile:
    | {
        gatehouse: ProfileSummary
        bare: ProfileSummary
        gatehouseRequests: number
        bareRequests: number
        extraPerRequest: ReturnType<typeof extraPerRequest>
        extraPerRequestByArea: ReturnType<typeof extraPerRequestByArea>
      }
    | undefined
  backchannelLogout: unknown
}): void {
  const cell = (v: number | string | undefined, width: number) => String(v ?? '—').padStart(width)
  print(
    `\n${'target'.padEnd(44)} ${'req/s'.padStart(7)} ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)} ${'RSS MiB'.padStart(8)} ${'CPU µs/req'.padStart(10)} ${'× bare'.padStart(7)} ${'others'.padStart(6)}  ${'CPU µs/req: main v8 libuv'}`,
  )
  print(`max load by ${report.loadGenerator.maxLoad}`)
  for (const r of report.rows) {
    if (r.skipped) {
      print(`${r.row.padEnd(44)} skipped: ${r.skipped}`)
      continue
    }
    const x = r.result!
    const t = x.cpuUsPerReqByThread
    print(
      `${r.row.padEnd(44)} ${cell(x.rps, 7)} ${cell(x.p50.toFixed(2), 7)} ${cell(x.p99.toFixed(2), 7)} ${cell(x.maxRssMiB, 8)} ${cell(x.cpuUsPerReq, 10)} ${cell(r.ratio?.toFixed(3), 7)} ${cell(x.otherCores, 6)}  ${t ? `${cell(t.main, 10)} ${cell(t.v8 ?? 0, 5)} ${cell(t.libuv ?? 0, 5)}` : ''}`,
    )
  }
  const l = report.login
  if (l)
    print(
      `${'login round trips (full flow, memory)'.padEnd(44)} ${cell(l.perSecond, 7)} ${cell(l.p50.toFixed(1), 7)} ${cell(l.p99.toFixed(1), 7)} ${cell(l.maxRssMiB, 8)} ${cell(l.gatehouseCpuMsPerLogin === undefined ? undefined : `${l.gatehouseCpuMsPerLogin} ms`, 10)}   logins/s; IdP ${l.idpCpuMsPerLogin} ms CPU/login`,
    )
  print(`${'back-channel logout at 1M sessions'.padEnd(44)} see bench/store-scale.ts (npm run bench:stores)`)

  print(
    `\n${'at a fixed offered rate'.padEnd(44)} ${'offered'.padStart(7)} ${'req/s'.padStart(7)} ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)} ${'+p99 ms'.padStart(8)} ${'others'.padStart(6)}  loop delay p99/max ms, GCs, longest GC ms`,
  )
  print(`load: ${report.loadGenerator.fixedRate}`)
  for (const r of report.rateRows) {
    if (r.skipped) {
      print(`${r.row.padEnd(44)} skipped`)
      continue
    }
    const x = r.result!
    const st = x.process
    print(
      `${r.row.padEnd(44)} ${cell(r.offeredRps, 7)} ${cell(x.rps, 7)} ${cell(x.p50.toFixed(3), 7)} ${cell(x.p99.toFixed(3), 7)} ${cell(r.addedP99?.toFixed(3), 8)} ${cell(x.otherCores, 6)}  ${st ? `${cell(st.eventLoopDelayP99Ms, 6)} ${cell(st.eventLoopDelayMaxMs, 7)} ${cell(st.gcCount, 6)} ${cell(st.gcMaxMs, 6)}` : ''}${r.overloaded ? '  overloaded: could not keep up' : ''}`,
    )
  }

  print('\ngoals (issue 7)')
  for (const g of report.goals) print(`  ${g.met === undefined ? '–' : g.met ? '✓' : '✗'} ${g.goal}: ${g.measured}`)
  const scale = report.backchannelLogout as
    | { source?: string; goal?: { results?: Array<{ store: string; sessions: number; p99: number; met: boolean }> } }
    | undefined
  for (const r of scale?.goal?.results ?? [])
    print(
      `  ${r.met ? '✓' : '✗'} back-channel logout by sid at ${r.sessions.toLocaleString('en')} sessions < 10 ms, ${r.store}: p99 ${r.p99} ms (${scale!.source})`,
    )

  const c = report.costs
  if (c) {
    print('\nwhat each step costs (one call, no load)')
    for (const s of c.steps)
      print(`  ${s.step.padEnd(56)} ${String(s.ns).padStart(7)} ns${s.note ? `  (${s.note})` : ''}`)
    for (const s of c.stores)
      print(
        `  ${`session lookup, ${s.store}: store.get / Sessions.resolve`.padEnd(56)} p50 ${s.getP50Us} / ${s.resolveP50Us} µs, p99 ${s.getP99Us} / ${s.resolveP99Us} µs`,
      )
  }
  const p = report.profile
  if (p) {
    const g = p.gatehouse
    print(
      `\nprofile of gatehouse (${g.file}, measured window only): ${g.busyMs} ms busy of ${g.totalMs} ms, ${p.gatehouseRequests} requests; top self time`,
    )
    for (const f of g.topSelf.slice(0, 15))
      print(
        `  ${`${f.percent}%`.padStart(6)} ${`${round((f.ms * 1000) / p.gatehouseRequests, 2)} µs/req`.padStart(12)}  ${f.name.slice(0, 36).padEnd(36)} ${f.where}${f.via ? `  via ${f.via}` : ''}`,
      )
    print('  by area:')
    for (const a of g.byArea.slice(0, 12))
      print(
        `  ${`${a.percent}%`.padStart(6)} ${`${round((a.ms * 1000) / p.gatehouseRequests, 2)} µs/req`.padStart(12)}  ${a.area}`,
      )
    print('  inclusive (the area and everything it calls), per request:')
    for (const a of g.inclusiveByArea.slice(0, 16))
      print(
        `  ${`${a.percent}%`.padStart(6)} ${`${round((a.ms * 1000) / p.gatehouseRequests, 2)} µs/req`.padStart(12)}  ${a.area}`,
      )
    print('  inclusive, gatehouse functions, per request:')
    for (const f of g.gatehouseInclusive.slice(0, 16))
      print(
        `  ${`${f.percent}%`.padStart(6)} ${`${round((f.ms * 1000) / p.gatehouseRequests, 2)} µs/req`.padStart(12)}  ${f.name.slice(0, 36).padEnd(36)} ${f.where}`,
      )
    print(`  CPU per request beyond the bare proxy (${p.bare.file}), by function:`)
    for (const f of p.extraPerRequest.slice(0, 15))
      print(
        `  ${`+${f.usPerRequest} µs`.padStart(12)}  ${f.name.slice(0, 36).padEnd(36)} ${f.where}${f.via ? `  via ${f.via}` : ''}`,
      )
    print(
      `  by area (gatehouse ${round((g.busyMs * 1000) / p.gatehouseRequests, 1)} µs/req, bare ${round((p.bare.busyMs * 1000) / p.bareRequests, 1)} µs/req of CPU):`,
    )
    for (const a of p.extraPerRequestByArea.filter((x) => Math.abs(x.usPerRequest) >= 1))
      print(`  ${`${a.usPerRequest >= 0 ? '+' : ''}${a.usPerRequest} µs`.padStart(12)}  ${a.area}`)
  }
  if (report.uncaught.length) {
    print(
      `\n!! ${report.uncaught.length} uncaught error(s) in gatehouse: each would have ended a real gatehouse process`,
    )
    const kinds = new Map<string, number>()
    for (const u of report.uncaught) kinds.set(u.error, (kinds.get(u.error) ?? 0) + 1)
    for (const [error, count] of kinds) print(`   ${count}× ${error}`)
  }
}

function round(value: number, digits = 1): number {
  const f = 10 ** digits
  return Math.round(value * f) / f
}

let interrupted = false
process.once('SIGINT', () => {
  interrupted = true
  print('\ninterrupted: cleaning up')
  cleanUp().finally(() => process.exit(130))
})

main().then(
  () => process.exit(0),
  async (err: unknown) => {
    if (interrupted) return
    console.error(err)
    await cleanUp()
    process.exit(1)
  },
)
