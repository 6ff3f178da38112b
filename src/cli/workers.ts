import cluster, { type Worker } from 'node:cluster'
import { availableParallelism } from 'node:os'
import type { Logger } from 'pino'
import { AggregatorRegistry, Gauge, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client'
import type { Config } from '../config/types.ts'
import { createLogger } from '../log.ts'
import { isSqliteInMemory } from '../session/stores/sqlite-open.ts'
import { exitOnSignal, startServer, type RunningServer } from './serve.ts'

/**
 * `gatehouse serve --workers N`: a primary process that forks N workers (node:cluster), each a whole
 * gatehouse as `serve` runs it, sharing the public port. Sessions, refresh leases and session-end
 * notices go through the shared store, so any worker can serve any request. The primary reads the
 * configuration once and hands it to the workers; it serves nothing itself.
 */

/** A worker that served this long was not crashing in a loop: its next death is replaced at once. */
const STABLE_MS = 30_000
const MAX_RESTART_DELAY_MS = 30_000
/**
 * The workers' drain is bounded by its grace period (10 s) and closing the store; past this they are
 * killed. Under Kubernetes' default terminationGracePeriodSeconds (30 s, the preStop sleep inside it).
 */
const STOP_BACKSTOP_MS = 20_000
const METRICS_TIMEOUT_MS = 5_000
/** How long a forked worker waits for its configuration before it gives up. */
const START_TIMEOUT_MS = 10_000
/**
 * Set in the environment of the workers the primary forks, to the primary's pid: a process that is a
 * node:cluster worker without it (pm2's cluster mode) is a `serve` of its own, not waiting for a primary.
 */
const WORKER_OF = 'GATEHOUSE_WORKER_OF'

type MetricsJson = MetricObjectWithValues<MetricValue<string>>[]

/** What a worker contributes to the group's /metrics, and how the one with the admin listener reports the group's. */
export interface WorkerMetrics {
  metricsJson(): Promise<MetricsJson>
  reportFrom(source: () => Promise<string>): void
}

type ToWorker =
  | { kind: 'gatehouse:start'; config: Config; worker: number; admin: boolean }
  | { kind: 'gatehouse:stop'; signal: NodeJS.Signals }
  | { kind: 'gatehouse:metrics-json'; id: number }
  | { kind: 'gatehouse:metrics'; id: number; text?: string; error?: string }

type FromWorker =
  | { kind: 'gatehouse:listening'; url: string; admin: string | undefined }
  | { kind: 'gatehouse:failed'; text: string }
  | { kind: 'gatehouse:metrics-json'; id: number; metrics: MetricsJson }
  | { kind: 'gatehouse:metrics'; id: number }

function isMessage<M extends { kind: string }, K extends M['kind']>(
  value: unknown,
  kind: K,
): value is Extract<M, { kind: K }> {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === kind
}

/** Whether this process is a worker forked by `serve --workers` (not one of another cluster supervisor). */
export function isWorker(): boolean {
  return cluster.isWorker && process.env[WORKER_OF] === String(process.ppid)
}

/** Why the sessions of `config` live in one process and cannot be shared by workers, or undefined. */
function unsharedSessions(config: Config): string | undefined {
  if (config.session.mode === 'cookie') return undefined
  const store = config.session.store
  if (store === 'memory') return 'sessions in memory are not shared between workers'
  if (store.startsWith('sqlite:') && isSqliteInMemory(store.slice('sqlite:'.length)))
    return 'an in-memory SQLite database is not shared between workers'
  return undefined
}

/**
 * How many workers: `auto` is one per CPU this process may use (os.availableParallelism(): the
 * affinity mask and, on Linux, a cgroup CPU limit) when sessions and their refreshes are shared
 * between processes (server mode with a shared store), else 1; more than one with sessions in the
 * process is refused. In cookie mode refreshes are coordinated per process: more than one only when
 * asked for (the primary warns). A worker of another node:cluster supervisor cannot fork its own.
 */
export function workerCount(config: Config, requested: number | 'auto'): { count: number } | { refused: string } {
  const unshared = unsharedSessions(config)
  const supervised = cluster.isWorker
  if (requested === 'auto')
    return {
      count: unshared === undefined && config.session.mode !== 'cookie' && !supervised ? availableParallelism() : 1,
    }
  if (requested > 1 && unshared !== undefined)
    return { refused: `--workers ${requested}: ${unshared}; use --workers 1 or a shared store` }
  if (requested > 1 && supervised)
    return {
      refused: `--workers ${requested}: this process is a worker of another node:cluster supervisor (such as pm2's cluster mode), which cannot fork workers of its own; use --workers 1 and let the supervisor run the processes`,
    }
  return { count: requested }
}

interface Slot {
  /** The worker number, 1…N, kept by a replacement: the `worker` field of its log lines. */
  readonly n: number
  worker: Worker | undefined
  listening: boolean
  listeningSince: number
  /** Deaths in a row that came before STABLE_MS of serving: the restart back-off grows with them. */
  crashes: number
  /** The one-line error the worker sent before exiting, when it could not start. */
  failure: string | undefined
  restart: NodeJS.Timeout | undefined
  /** The metrics this worker last reported: its counters outlive it in the group's /metrics. */
  reported: MetricsJson | undefined
}

/**
 * The primary: forks `count` workers and resolves "running" once all listen, or with the exit code
 * of the first that fails to start (its error written to stderr once, the others stopped). Then it
 * replaces workers that die, and on SIGTERM/SIGINT asks each to drain and exits 0 when all have.
 */
export function startWorkers(config: Config, count: number): Promise<number | 'running'> {
  const log = createLogger(config.log.level, undefined, config.log.format)
  // Structured clone, not JSON: the configuration keeps its undefined keys, metrics their NaN.
  cluster.setupPrimary({ serialization: 'advanced' })
  return new Promise((resolve) => new Primary(config, count, log, resolve).start())
}

class Primary {
  readonly #config: Config
  readonly #log: Logger
  readonly #slots: Slot[]
  readonly #started: (result: number | 'running') => void
  #phase: 'starting' | 'running' | 'failed' | 'stopping' = 'starting'
  #exitCode = 0
  #stopStartedAt = 0
  #adminUrl: string | undefined
  #metricsRequests = 0
  readonly #metricsWaiting = new Map<
    string,
    { worker: Worker; resolve(metrics: MetricsJson): void; reject(err: Error): void }
  >()
  readonly #retired = new RetiredCounters()
  /** The primary's own metrics, about the group. */
  readonly #group = new Registry()
  readonly #reporting: Gauge

  constructor(config: Config, count: number, log: Logger, started: (result: number | 'running') => void) {
    this.#config = config
    this.#log = log
    this.#started = started
    new Gauge({
      name: 'gatehouse_workers',
      help: 'Worker processes of gatehouse serve --workers (as configured)',
      registers: [this.#group],
    }).set(count)
    this.#reporting = new Gauge({
      name: 'gatehouse_workers_reporting',
      help: 'Workers whose metrics this scrape added up as they are now: fewer than gatehouse_workers while one is starting, stuck or replaced',
      registers: [this.#group],
    })
    this.#slots = Array.from({ length: count }, (_, i) => ({
      n: i + 1,
      worker: undefined,
      listening: false,
      listeningSince: 0,
      crashes: 0,
      failure: undefined,
      restart: undefined,
      reported: undefined,
    }))
  }

  start(): void {
    const stop = (signal: NodeJS.Signals) => this.#stop(signal)
    process.once('SIGTERM', stop)
    process.once('SIGINT', stop)
    if (this.#config.session.mode === 'cookie')
      this.#log.warn(
        { event: 'workers_cookie_mode', workers: this.#slots.length },
        `session.mode "cookie" with ${this.#slots.length} workers: token refreshes are coordinated within each worker only; ` +
          'with refresh-token rotation at the IdP, calls of one session that reach different workers after its access ' +
          'token expires each redeem the same refresh token, all but one fail (invalid_grant) and the user is logged out: ' +
          'use --workers 1 or server mode with a shared store',
      )
    // Worker 1 alone first: it creates what the store lacks (a new SQLite file, its tables) with no
    // other process racing it, and a start-up error (a port in use, a store down) is met once.
    this.#fork(this.#slots[0]!)
  }

  #fork(slot: Slot): void {
    slot.restart = undefined
    slot.listening = false
    slot.failure = undefined
    slot.reported = undefined
    const worker = cluster.fork({ [WORKER_OF]: String(process.pid) })
    slot.worker = worker
    // A message to a worker that has just died fails with EPIPE; its exit is handled below.
    worker.on('error', () => {})
    worker.on('message', (message: unknown) => this.#onMessage(slot, worker, message))
    worker.on('exit', (code: number | null, signal: NodeJS.Signals | null) => this.#onExit(slot, worker, code, signal))
    // Worker 1 (and whoever replaces it) opens the admin listener: one port cannot be shared.
    send(worker, { kind: 'gatehouse:start', config: this.#config, worker: slot.n, admin: slot.n === 1 })
  }

  #onMessage(slot: Slot, worker: Worker, message: unknown): void {
    if (isMessage<FromWorker, 'gatehouse:listening'>(message, 'gatehouse:listening')) {
      slot.listening = true
      slot.listeningSince = Date.now()
      if (message.admin !== undefined) this.#adminUrl = message.admin
      if (this.#phase === 'stopping') return send(worker, { kind: 'gatehouse:stop', signal: 'SIGTERM' })
      if (this.#phase === 'running')
        return this.#log.info(
          { event: 'worker_restarted', worker: slot.n, pid: worker.process.pid },
          `worker ${slot.n} is serving again`,
        )
      if (this.#phase !== 'starting') return
      if (slot.n === 1) for (const other of this.#slots.slice(1)) if (!other.worker && !other.restart) this.#fork(other)
      if (this.#slots.every((s) => s.listening)) {
        this.#phase = 'running'
        this.#log.info(
          {
            event: 'workers_started',
            workers: this.#slots.length,
            pids: this.#slots.map((s) => s.worker?.process.pid),
            url: message.url,
            admin: this.#adminUrl,
          },
          `${this.#slots.length} workers listening on ${message.url}`,
        )
        this.#started('running')
      }
      return
    }
    if (isMessage<FromWorker, 'gatehouse:failed'>(message, 'gatehouse:failed')) {
      slot.failure = message.text
      return
    }
    if (isMessage<FromWorker, 'gatehouse:metrics'>(message, 'gatehouse:metrics')) {
      const { id } = message
      this.#gatherMetrics().then(
        (text) => send(worker, { kind: 'gatehouse:metrics', id, text }),
        (err: unknown) =>
          send(worker, { kind: 'gatehouse:metrics', id, error: err instanceof Error ? err.message : String(err) }),
      )
      return
    }
    if (isMessage<FromWorker, 'gatehouse:metrics-json'>(message, 'gatehouse:metrics-json')) {
      // Kept even when the scrape that asked has given up on it: it is this worker's latest count.
      if (slot.worker === worker) slot.reported = message.metrics
      const key = `${worker.id}:${message.id}`
      this.#metricsWaiting.get(key)?.resolve(message.metrics)
      this.#metricsWaiting.delete(key)
    }
  }

  #onExit(slot: Slot, worker: Worker, code: number | null, signal: NodeJS.Signals | null): void {
    if (slot.worker !== worker) return
    const wasListening = slot.listening
    slot.worker = undefined
    slot.listening = false
    this.#retired.add(slot.reported)
    slot.reported = undefined
    // A worker gone before answering a scrape is not waited for: what it last reported is retired above.
    for (const [key, waiting] of this.#metricsWaiting) {
      if (waiting.worker !== worker) continue
      this.#metricsWaiting.delete(key)
      waiting.reject(new Error(`worker ${slot.n} exited`))
    }
    if (this.#phase === 'stopping') {
      // One still starting was killed by #stop: that is no failure to drain.
      if (code !== 0 && wasListening) this.#exitCode = 1
      return this.#finishWhenAllExited()
    }
    if (this.#phase === 'failed') return this.#finishWhenAllExited()
    if (this.#phase === 'starting' && !wasListening) return this.#failToStart(slot, code, signal)
    this.#replace(slot, worker, wasListening, code, signal)
  }

  /** A worker could not start (a port in use, a store unreachable…): every other one would fail alike. */
  #failToStart(slot: Slot, code: number | null, signal: NodeJS.Signals | null): void {
    this.#phase = 'failed'
    this.#exitCode = code !== null && code > 0 ? code : 1
    process.stderr.write(slot.failure ?? `gatehouse: worker ${slot.n} exited (${how(code, signal)}) before listening\n`)
    for (const other of this.#slots) {
      clearTimeout(other.restart)
      other.worker?.process.kill('SIGTERM')
    }
    this.#finishWhenAllExited()
  }

  #replace(
    slot: Slot,
    worker: Worker,
    wasListening: boolean,
    code: number | null,
    signal: NodeJS.Signals | null,
  ): void {
    const served = wasListening ? Date.now() - slot.listeningSince : 0
    slot.crashes = served >= STABLE_MS ? 1 : slot.crashes + 1
    const delay = slot.crashes <= 1 ? 0 : Math.min(MAX_RESTART_DELAY_MS, 1000 * 2 ** (slot.crashes - 2))
    this.#log.warn(
      {
        event: 'worker_exited',
        worker: slot.n,
        pid: worker.process.pid,
        code,
        signal,
        cause: slot.failure?.trim(),
        restartInMs: delay,
      },
      `worker ${slot.n} exited (${how(code, signal)}); starting another${delay ? ` in ${delay / 1000} s` : ''}`,
    )
    slot.restart = setTimeout(() => this.#fork(slot), delay)
  }

  #stop(signal: NodeJS.Signals): void {
    if (this.#phase === 'stopping' || this.#phase === 'failed') return
    this.#phase = 'stopping'
    this.#stopStartedAt = performance.now()
    for (const slot of this.#slots) {
      clearTimeout(slot.restart)
      // One still starting has served nothing: it stops at once (it drains if it has just begun to listen).
      if (slot.listening) send(slot.worker!, { kind: 'gatehouse:stop', signal })
      else slot.worker?.process.kill('SIGTERM')
    }
    setTimeout(() => {
      const left = this.#slots.filter((s) => s.worker)
      this.#log.error(
        { event: 'workers_killed', workers: left.map((s) => s.n) },
        `${left.length} worker(s) still running ${STOP_BACKSTOP_MS / 1000} s after ${signal} were killed`,
      )
      for (const slot of left) slot.worker?.process.kill('SIGKILL')
    }, STOP_BACKSTOP_MS).unref()
    this.#finishWhenAllExited()
  }

  #finishWhenAllExited(): void {
    if (this.#slots.some((s) => s.worker)) return
    if (this.#phase === 'failed') return this.#started(this.#exitCode)
    this.#log.info(
      {
        event: 'workers_stopped',
        workers: this.#slots.length,
        ms: Math.round(performance.now() - this.#stopStartedAt),
      },
      `all ${this.#slots.length} workers stopped`,
    )
    process.exit(this.#exitCode)
  }

  /**
   * Every serving worker's metrics, added up (gauges of the shared store excepted: they carry their
   * own aggregator), as far as they answer within METRICS_TIMEOUT_MS. Counters never go down, which
   * Prometheus would read as a reset: one that did not answer adds its counters and histograms as it
   * last reported them, and those of the workers that died stay in (RetiredCounters).
   */
  async #gatherMetrics(): Promise<string> {
    const id = ++this.#metricsRequests
    const serving = this.#slots.filter((s) => s.listening && s.worker)
    const settled = await Promise.allSettled(serving.map((slot) => this.#metricsOf(slot, slot.worker!, id)))
    const silent = serving.filter((_, i) => settled[i]!.status === 'rejected')
    const reporting = serving.length - silent.length
    if (silent.length > 0)
      this.#log.warn(
        {
          event: 'workers_metrics_missing',
          workers: silent.map((s) => s.n),
          causes: settled.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : [])),
        },
        `/metrics without worker(s) ${silent.map((s) => s.n).join(', ')}: their counters are added as last reported, their gauges left out`,
      )
    this.#reporting.set(reporting)
    const group = await this.#group.getMetricsAsJSON()
    // From here to the aggregation nothing awaits: a worker's numbers are either its own or retired, never both.
    const parts: MetricsJson[] = [group]
    for (const slot of this.#slots) {
      if (!slot.worker || !slot.reported) continue
      parts.push(silent.includes(slot) ? counting(slot.reported) : slot.reported)
    }
    parts.push(...this.#retired.parts())
    return AggregatorRegistry.aggregate(parts.map(withGroupAggregators)).metrics()
  }

  #metricsOf(slot: Slot, worker: Worker, id: number): Promise<MetricsJson> {
    const key = `${worker.id}:${id}`
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#metricsWaiting.delete(key)
        reject(new Error(`worker ${slot.n} did not report its metrics within ${METRICS_TIMEOUT_MS / 1000} s`))
      }, METRICS_TIMEOUT_MS)
      this.#metricsWaiting.set(key, {
        worker,
        resolve: (metrics) => {
          clearTimeout(timer)
          resolve(metrics)
        },
        reject: (err) => {
          clearTimeout(timer)
          reject(err)
        },
      })
      send(worker, { kind: 'gatehouse:metrics-json', id })
    })
  }
}

/** The counters and histograms of a worker's metrics: what only grows. Its gauges are no longer true once it stops answering. */
function counting(metrics: MetricsJson): MetricsJson {
  // prom-client's typings give `type` as a numeric enum; at run time it is 'counter', 'gauge'…
  return metrics.filter((m) => ['counter', 'histogram'].includes(String(m.type)))
}

/**
 * The counters and histograms of the workers that died, as each last reported them, added into
 * every later /metrics: without them the group's sums would drop when a replacement starts from 0.
 * What a worker counted after its last report is lost (an undercount, never a decrease). Merged into
 * one baseline in the background; until a merge is done, its inputs are reported as they are.
 */
class RetiredCounters {
  #baseline: MetricsJson = []
  readonly #unmerged: MetricsJson[] = []
  #merging = false

  add(reported: MetricsJson | undefined): void {
    if (!reported) return
    this.#unmerged.push(counting(reported))
    void this.#merge()
  }

  parts(): MetricsJson[] {
    return [this.#baseline, ...this.#unmerged]
  }

  async #merge(): Promise<void> {
    if (this.#merging) return
    this.#merging = true
    try {
      while (this.#unmerged.length > 0) {
        const taken = this.#unmerged.length
        this.#baseline = await AggregatorRegistry.aggregate([this.#baseline, ...this.#unmerged]).getMetricsAsJSON()
        this.#unmerged.splice(0, taken)
      }
    } catch {
      // Left unmerged: still reported as they are.
    } finally {
      this.#merging = false
    }
  }
}

function send(worker: Worker, message: ToWorker): void {
  if (worker.isConnected()) worker.send(message)
}

function how(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `signal ${signal}` : `code ${code}`
}

/**
 * A worker: waits for its configuration from the primary (exits 1 with one line if none comes within
 * START_TIMEOUT_MS), starts gatehouse as `serve` does (its log lines carry `worker`), tells the
 * primary it listens — or sends it the one-line error and exits 1 — then drains on SIGTERM/SIGINT,
 * whether the signal came to it or through the primary.
 */
export async function runWorker(
  describe: (err: unknown) => string,
  metricsOf: (running: RunningServer) => WorkerMetrics | undefined,
): Promise<'running'> {
  const start = await new Promise<Extract<ToWorker, { kind: 'gatehouse:start' }>>((resolve) => {
    const timer = setTimeout(() => {
      process.stderr.write(
        `gatehouse: a worker of gatehouse serve --workers (${WORKER_OF}=${process.env[WORKER_OF]}) got no start message from its primary within ${START_TIMEOUT_MS / 1000} s\n`,
      )
      process.exit(1)
    }, START_TIMEOUT_MS)
    const onMessage = (message: unknown) => {
      if (!isMessage<ToWorker, 'gatehouse:start'>(message, 'gatehouse:start')) return
      process.off('message', onMessage)
      clearTimeout(timer)
      resolve(message)
    }
    process.on('message', onMessage)
  })
  let running: RunningServer
  const stop = exitOnSignal()
  try {
    running = await startServer(start.config, { worker: start.worker, admin: start.admin })
  } catch (err) {
    toPrimary({ kind: 'gatehouse:failed', text: describe(err) }, () => process.exit(1))
    return 'running'
  }
  stop.closeWith(running.close)
  const metrics = metricsOf(running)
  if (metrics && running.admin) metrics.reportFrom(groupMetrics)
  process.on('message', (message: unknown) => {
    if (isMessage<ToWorker, 'gatehouse:stop'>(message, 'gatehouse:stop')) return stop(message.signal)
    if (isMessage<ToWorker, 'gatehouse:metrics-json'>(message, 'gatehouse:metrics-json')) {
      const { id } = message
      void (metrics?.metricsJson() ?? Promise.resolve([])).then(
        (json) => toPrimary({ kind: 'gatehouse:metrics-json', id, metrics: json }),
        () => toPrimary({ kind: 'gatehouse:metrics-json', id, metrics: [] }),
      )
    }
  })
  toPrimary({ kind: 'gatehouse:listening', url: running.url, admin: running.admin?.url })
  return 'running'
}

let groupRequests = 0

/** Asks the primary for every worker's metrics, added up (the admin listener's /metrics in worker 1). */
function groupMetrics(): Promise<string> {
  const id = ++groupRequests
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      process.off('message', onMessage)
      reject(new Error(`the primary did not gather the metrics within ${(2 * METRICS_TIMEOUT_MS) / 1000} s`))
    }, 2 * METRICS_TIMEOUT_MS)
    const onMessage = (message: unknown) => {
      if (!isMessage<ToWorker, 'gatehouse:metrics'>(message, 'gatehouse:metrics') || message.id !== id) return
      process.off('message', onMessage)
      clearTimeout(timer)
      if (message.text !== undefined) resolve(message.text)
      else reject(new Error(message.error ?? 'no metrics'))
    }
    process.on('message', onMessage)
    toPrimary({ kind: 'gatehouse:metrics', id })
  })
}

function toPrimary(message: FromWorker, sent?: () => void): void {
  process.send?.(message, undefined, undefined, sent)
}

/**
 * How process metrics add up over workers where prom-client's own choice misreads a group: a limit
 * every worker has alike is not summed, and the group started when its first worker did (prom-client
 * leaves the start time out of an aggregate).
 */
const GROUP_AGGREGATORS: ReadonlyMap<string, 'max' | 'min'> = new Map([
  ['process_max_fds', 'max'],
  ['process_start_time_seconds', 'min'],
])

function withGroupAggregators(part: MetricsJson): MetricsJson {
  return part.map((metric) => {
    const aggregator = GROUP_AGGREGATORS.get(metric.name)
    return aggregator ? { ...metric, aggregator } : metric
  })
}
