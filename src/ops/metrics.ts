import type { ServerResponse } from 'node:http'
import {
  collectDefaultMetrics,
  Counter,
  Gauge,
  Histogram,
  Registry,
  type MetricObjectWithValues,
  type MetricValue,
} from 'prom-client'
import { GatehouseError } from '../errors.ts'

export type LoginResult = 'ok' | 'invalid_state' | 'idp_error' | 'idp_unavailable' | 'bad_request' | 'error'
export type RefreshResult = 'ok' | 'invalid_grant' | 'unavailable' | 'session_ended' | 'resource_refused'
export type BackchannelResult = 'ok' | 'invalid' | 'error'
/** Why the proxy refused or ended a request to protect its upstream connections (docs/operations.md). */
export type ProxyRefusal = 'upstream_busy' | 'per_client' | 'per_client_streams' | 'body_idle' | 'write_idle'

const LOGIN_RESULTS: readonly LoginResult[] = [
  'ok',
  'invalid_state',
  'idp_error',
  'idp_unavailable',
  'bad_request',
  'error',
]
const REFRESH_RESULTS: readonly RefreshResult[] = [
  'ok',
  'invalid_grant',
  'unavailable',
  'session_ended',
  'resource_refused',
]
const BACKCHANNEL_RESULTS: readonly BackchannelResult[] = ['ok', 'invalid', 'error']
const PROXY_REFUSALS: readonly ProxyRefusal[] = [
  'upstream_busy',
  'per_client',
  'per_client_streams',
  'body_idle',
  'write_idle',
]

/** A failed login or token refresh, as the admin console lists them: never a token, a sub or a URL. */
export interface RecentFailure {
  /** When, in ms since the epoch. */
  at: number
  kind: 'login' | 'refresh'
  /** Why: the login error's cause as its log line names it (`state_missing`, `state_invalid`, `idp_error`…), or the refresh result (`invalid_grant`…). */
  cause: string
  /** The frontend (session partition) it happened on. */
  frontend: string
  /** How many times it happened while listed; `at` is the last. */
  count: number
}

/** One remote API's requests since start, as the admin console shows them. */
export interface ApiStats {
  api: string
  requests: number
  /** Answers of 500 and above (502 upstream down, 503 busy, 504 timeout…). */
  errors: number
  /** The 95th percentile of gatehouse_proxy_duration_seconds, in ms, interpolated in its buckets; null before any request. */
  p95Ms: number | null
}

/** How many failures the admin console keeps (the newest). */
const RECENT_FAILURES = 50

/** A wait for a free upstream connection is short or a sign of a pool too small; it never outlasts the API's timeout. */
const WAIT_BUCKETS_SEC = [0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

/** One remote API's connection pool at scrape time. */
export interface ProxyPoolState {
  api: string
  inFlight: number
  queued: number
}

/** Methods get their own label value; anything else is "other", so a client cannot mint label values. */
const METHOD_NAMES = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'other']
const OTHER_METHOD = METHOD_NAMES.length - 1
const METHOD_INDEX = new Map(METHOD_NAMES.slice(0, OTHER_METHOD).map((name, i) => [name, i]))

/** Answers of one route, method and status not yet handed to prom-client. */
interface AnsweredCount {
  labels: Record<'route' | 'method' | 'status', string>
  count: number
}

/** Upstream answers are usually fast; the top buckets catch slow APIs up to the default 30 s timeout. */
const PROXY_BUCKETS_SEC = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

/** A scrape never waits longer than this for the store's session count. */
const COUNT_TIMEOUT_MS = 2_000
/** A count this slow is reused: node:sqlite counts synchronously, holding every request meanwhile (31 ms at 1M sessions). */
const SLOW_COUNT_MS = 10
const SLOW_COUNT_REUSE_MS = 30_000
/** Below this many sessions a slow count was a busy moment (GC, a loaded machine), not the store's size: never reused. */
const LARGE_STORE = 10_000

export interface TelemetryOptions {
  /** Live sessions now (SessionStore.count); without it `gatehouse_active_sessions` is not exported. */
  activeSessions?: (() => Promise<number>) | undefined
  /** Access lines dropped so far because the log output could not keep up. */
  droppedLogLines?: (() => number) | undefined
  /** Times so far the store's link carrying other instances' session endings was lost (stores with notices only). */
  noticeLinkLosses?: (() => number) | undefined
}

/**
 * The Prometheus metrics of one gatehouse (SPEC §7), in its own registry: several gatehouses in one
 * process never share or clash over a series. Handlers record through the verbs below; labels only
 * ever take values from config or from the fixed unions here, never from the request.
 */
export class Telemetry {
  readonly registry = new Registry()
  /**
   * Answers not yet added to gatehouse_http_requests_total, by label set: per request one Map update
   * instead of prom-client's label validation and hashing; the counter takes them at scrape time.
   */
  readonly #answered = new Map<string, Map<number, AnsweredCount>>()
  readonly #proxyDuration: Histogram<'api'>
  readonly #logins: Counter<'result'>
  readonly #logouts: Counter
  readonly #refreshes: Counter<'result'>
  readonly #backchannel: Counter<'result'>
  readonly #proxyRefused: Counter<'api' | 'reason'>
  readonly #proxyWait: Histogram<'api'>
  readonly #failures: RecentFailure[] = []
  #countSessions: (() => Promise<number>) | undefined
  #processMetrics = false
  #reportFrom: (() => Promise<string>) | undefined

  constructor(options: TelemetryOptions = {}) {
    const registers = [this.registry]
    const answered = this.#answered
    new Counter({
      name: 'gatehouse_http_requests_total',
      help: 'Requests answered by gatehouse, by route (endpoint name, "api:<path>", "frontend" or "other"), method and status; 499 = the client left before an answer',
      labelNames: ['route', 'method', 'status'],
      registers,
      collect() {
        for (const byRoute of answered.values())
          for (const entry of byRoute.values()) {
            if (entry.count === 0) continue
            this.inc(entry.labels, entry.count)
            entry.count = 0
          }
      },
    })
    this.#proxyDuration = new Histogram({
      name: 'gatehouse_proxy_duration_seconds',
      help: 'Time from sending a request to a remote API until its response headers arrived (or the call failed), by API path',
      labelNames: ['api'],
      buckets: PROXY_BUCKETS_SEC,
      registers,
    })
    this.#logins = new Counter({
      name: 'gatehouse_logins_total',
      help: 'Login callbacks, by result',
      labelNames: ['result'],
      registers,
    })
    this.#logouts = new Counter({
      name: 'gatehouse_logouts_total',
      help: 'Sessions ended by the user logging out',
      registers,
    })
    this.#refreshes = new Counter({
      name: 'gatehouse_token_refreshes_total',
      help: 'Access-token refresh grants, by result',
      labelNames: ['result'],
      registers,
    })
    this.#backchannel = new Counter({
      name: 'gatehouse_backchannel_logouts_total',
      help: 'Back-channel logout requests from the IdP, by result',
      labelNames: ['result'],
      registers,
    })
    this.#proxyRefused = new Counter({
      name: 'gatehouse_proxy_refused_total',
      help: 'Proxied requests refused or ended to protect upstream connections, by API path and reason: upstream_busy (503: no connection free in time, or the wait queue full), per_client / per_client_streams (429: the client holds all its places), body_idle (the request body stalled), write_idle (the client stopped reading the answer)',
      labelNames: ['api', 'reason'],
      registers,
    })
    this.#proxyWait = new Histogram({
      name: 'gatehouse_proxy_queue_wait_seconds',
      help: "Time proxied requests waited for a free connection of their API's pool, by API path (requests that found one free at once are not observed)",
      labelNames: ['api'],
      buckets: WAIT_BUCKETS_SEC,
      registers,
    })
    // Every known series exists from the start, so rate() and increase() see the first event.
    for (const result of LOGIN_RESULTS) this.#logins.inc({ result }, 0)
    for (const result of REFRESH_RESULTS) this.#refreshes.inc({ result }, 0)
    for (const result of BACKCHANNEL_RESULTS) this.#backchannel.inc({ result }, 0)

    if (options.droppedLogLines)
      counterOf(
        registers,
        'gatehouse_log_dropped_lines_total',
        'Access log lines dropped because the log output did not keep up (its buffer was full) or failed; security events are never dropped',
        options.droppedLogLines,
      )
    if (options.noticeLinkLosses)
      counterOf(
        registers,
        'gatehouse_session_notice_link_losses_total',
        "Times the session store's pub/sub link that carries other instances' session endings was lost; until it is back, endings elsewhere reach this instance by the periodic check and its read cache is off",
        options.noticeLinkLosses,
      )
    const count = options.activeSessions
    if (count) {
      // Counting is O(sessions) in SQL stores (31 ms on SQLite, up to ~0.5 s on PostgreSQL at a million
      // rows): a count that took long is reused for a while instead of repeating that work on every scrape.
      let last: { value: number; at: number; tookMs: number } | undefined
      // A scrape and a console poll at the same moment share one count.
      let running: Promise<number> | undefined
      const fresh = async () => {
        const started = Date.now()
        const value = await withTimeout(count(), COUNT_TIMEOUT_MS).catch(() => Number.NaN)
        last = { value, at: started, tookMs: Date.now() - started }
        return value
      }
      this.#countSessions = async () => {
        if (
          last &&
          last.tookMs > SLOW_COUNT_MS &&
          last.value >= LARGE_STORE &&
          Date.now() - last.at < SLOW_COUNT_REUSE_MS
        )
          return last.value
        running ??= fresh().finally(() => (running = undefined))
        return running
      }
      const countSessions = this.#countSessions
      new Gauge({
        name: 'gatehouse_active_sessions',
        help: 'Live (unexpired) sessions in the session store, counted at scrape time (a slow count is reused for up to 30 s); NaN when the store did not answer',
        registers,
        // With `serve --workers`, every worker counts the same shared store: not added up.
        aggregator: 'max',
        async collect() {
          this.set(await countSessions())
        },
      })
    }
  }

  /**
   * Live sessions in the store, as the gauge counts them (a slow count reused for up to 30 s, NaN
   * when the store did not answer within 2 s); undefined when the store cannot count.
   */
  async activeSessions(): Promise<number | undefined> {
    return this.#countSessions?.()
  }

  /** Counts the response once it is over (finished, or abandoned by the client). */
  response(res: ServerResponse, route: string): void {
    // 'close' comes once per response: `on`, not `once`, spares a wrapper and its removal.
    res.on('close', () => {
      const method = METHOD_INDEX.get(res.req.method ?? '') ?? OTHER_METHOD
      const status = res.headersSent ? res.statusCode : 499
      let byRoute = this.#answered.get(route)
      if (byRoute === undefined) this.#answered.set(route, (byRoute = new Map()))
      // A status is 100–999: one number keys the pair without building a string per request.
      const key = method * 1000 + status
      const entry = byRoute.get(key)
      if (entry) entry.count++
      else byRoute.set(key, { labels: { route, method: METHOD_NAMES[method]!, status: String(status) }, count: 1 })
    })
  }

  proxied(api: string, durationMs: number): void {
    this.#proxyDuration.observe({ api }, durationMs / 1000)
  }

  /**
   * Exports the remote APIs' pools, read at scrape time (nothing is recorded per request): requests
   * holding a connection and requests waiting for one. Every API's refusal series starts at 0.
   */
  watchProxyPools(apis: readonly string[], read: () => Iterable<ProxyPoolState>): void {
    const registers = [this.registry]
    const states = () => {
      const byApi = new Map<string, ProxyPoolState>(apis.map((api) => [api, { api, inFlight: 0, queued: 0 }]))
      for (const state of read()) byApi.set(state.api, state)
      return byApi.values()
    }
    new Gauge({
      name: 'gatehouse_proxy_in_flight',
      help: "Proxied requests holding one of their API's upstream connections now, by API path (at most remoteApis[].connections)",
      labelNames: ['api'],
      registers,
      collect() {
        for (const state of states()) this.set({ api: state.api }, state.inFlight)
      },
    })
    new Gauge({
      name: 'gatehouse_proxy_queue_length',
      help: "Proxied requests waiting for a free connection of their API's pool now, by API path (at most remoteApis[].queue)",
      labelNames: ['api'],
      registers,
      collect() {
        for (const state of states()) this.set({ api: state.api }, state.queued)
      },
    })
    for (const api of apis) for (const reason of PROXY_REFUSALS) this.#proxyRefused.inc({ api, reason }, 0)
  }

  proxyRefused(api: string, reason: ProxyRefusal): void {
    this.#proxyRefused.inc({ api, reason })
  }

  proxyWaited(api: string, durationMs: number): void {
    this.#proxyWait.observe({ api }, durationMs / 1000)
  }

  login(result: LoginResult): void {
    this.#logins.inc({ result })
  }

  /**
   * A login callback that failed with `err`: unknown or replayed state, the IdP refusing (access_denied
   * included) or unreachable, another refused request, or a fault of gatehouse's own (store down…).
   */
  loginFailed(err: unknown, frontend?: string): void {
    if (frontend !== undefined)
      this.#recordFailure('login', err instanceof GatehouseError ? (err.report?.cause ?? err.code) : 'error', frontend)
    if (!(err instanceof GatehouseError)) return this.login('error')
    const { code } = err
    this.login(
      code === 'login_state_invalid'
        ? 'invalid_state'
        : code === 'idp_error' || code === 'idp_unavailable'
          ? code
          : err.status < 500
            ? 'bad_request'
            : 'error',
    )
  }

  logout(): void {
    this.#logouts.inc()
  }

  refresh(result: RefreshResult, frontend?: string): void {
    this.#refreshes.inc({ result })
    if (result !== 'ok' && frontend !== undefined) this.#recordFailure('refresh', result, frontend)
  }

  /**
   * A failure already listed (same kind, cause and frontend) is counted into its entry, which moves
   * to the newest place, instead of taking another: causes are fixed codes and frontends come from
   * the config, so forged callbacks, whatever they alternate, cannot push other failures out.
   */
  #recordFailure(kind: RecentFailure['kind'], cause: string, frontend: string): void {
    const at = Date.now()
    const index = this.#failures.findIndex((f) => f.kind === kind && f.cause === cause && f.frontend === frontend)
    if (index !== -1) {
      const [listed] = this.#failures.splice(index, 1)
      this.#failures.push({ ...listed!, at, count: listed!.count + 1 })
      return
    }
    this.#failures.push({ at, kind, cause, frontend, count: 1 })
    if (this.#failures.length > RECENT_FAILURES) this.#failures.shift()
  }

  /** The last 50 kinds of failed logins and token refreshes of this process, newest first (repeats counted in one). */
  recentFailures(): RecentFailure[] {
    return this.#failures.toReversed().map((failure) => ({ ...failure }))
  }

  /**
   * Each remote API's requests, server errors and p95 upstream latency since start, from the series
   * gatehouse_http_requests_total (route "api:<path>") and gatehouse_proxy_duration_seconds: this
   * registry's, or, with `serve --workers`, every worker's added up (what metrics() reports).
   */
  async apiStats(apis: readonly string[]): Promise<ApiStats[]> {
    if (this.#reportFrom) return apiStatsOf(samplesOf(await this.#reportFrom()), apis)
    const answered = await this.registry.getSingleMetric('gatehouse_http_requests_total')!.get()
    const durations = await this.#proxyDuration.get()
    const sample = (name: string, v: { labels: object; value: number }): Sample => ({
      name,
      labels: Object.fromEntries(Object.entries(v.labels).map(([k, l]) => [k, String(l)])),
      value: v.value,
    })
    const samples = [
      ...answered.values.map((v) => sample(answered.name, v)),
      ...durations.values.map((v) => sample(v.metricName ?? durations.name, v)),
    ]
    return apiStatsOf(samples, apis)
  }

  backchannelLogout(result: BackchannelResult): void {
    this.#backchannel.inc({ result })
  }

  /** A back-channel logout that failed with `err`: refused (4xx) or not done (5xx, the IdP retries). */
  backchannelFailed(err: unknown): void {
    this.backchannelLogout(err instanceof GatehouseError && err.status < 500 ? 'invalid' : 'error')
  }

  /** The Prometheus text exposition. Process and Node.js metrics start with the first scrape. */
  async metrics(): Promise<string> {
    if (this.#reportFrom) return this.#reportFrom()
    this.#startProcessMetrics()
    return this.registry.metrics()
  }

  /** From now on metrics() reports what `source` gives: with `serve --workers`, every worker's metrics added up. */
  reportFrom(source: () => Promise<string>): void {
    this.#reportFrom = source
  }

  /** The same as prom-client JSON, which `gatehouse serve --workers` adds up over the workers (AggregatorRegistry.aggregate). */
  async metricsJson(): Promise<MetricObjectWithValues<MetricValue<string>>[]> {
    this.#startProcessMetrics()
    return this.registry.getMetricsAsJSON()
  }

  #startProcessMetrics(): void {
    if (this.#processMetrics) return
    this.#processMetrics = true
    collectDefaultMetrics({ register: this.registry })
  }

  get contentType(): string {
    return this.registry.contentType
  }
}

/** `promise`, or a rejection when it takes longer than `ms` (the timer never holds the process open). */
export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)
    timer.unref()
    promise.then(resolve, reject).finally(() => clearTimeout(timer))
  })
}

/**
 * A quantile of a cumulative histogram, interpolated linearly within its bucket as Prometheus'
 * histogram_quantile does; in ms. Past the last finite bound: that bound. Null for an empty histogram.
 */
export function quantileMs(buckets: ReadonlyArray<{ le: number; count: number }>, q: number): number | null {
  const total = buckets.at(-1)?.count ?? 0
  if (total === 0) return null
  const rank = q * total
  let lower = 0
  let below = 0
  for (const { le, count } of buckets) {
    if (count >= rank) {
      if (le === Infinity) return lower * 1000
      const within = count - below
      return (lower + (le - lower) * (within === 0 ? 0 : (rank - below) / within)) * 1000
    }
    lower = le
    below = count
  }
  return lower * 1000
}

/** A counter that follows a running total kept elsewhere (`read`), taken at scrape time. */
function counterOf(registers: Registry[], name: string, help: string, read: () => number): void {
  let counted = 0
  new Counter({
    name,
    help,
    registers,
    collect() {
      const now = read()
      this.inc(now - counted)
      counted = now
    },
  })
}

/** One sample of a metric: its series name (`…_bucket` for a histogram bucket), labels and value. */
interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

function apiStatsOf(samples: readonly Sample[], apis: readonly string[]): ApiStats[] {
  return apis.map((api) => {
    let requests = 0
    let errors = 0
    const buckets: Array<{ le: number; count: number }> = []
    for (const { name, labels, value } of samples) {
      if (name === 'gatehouse_http_requests_total' && labels.route === `api:${api}`) {
        requests += value
        if (Number(labels.status) >= 500) errors += value
      } else if (name === 'gatehouse_proxy_duration_seconds_bucket' && labels.api === api) {
        buckets.push({ le: labels.le === '+Inf' ? Infinity : Number(labels.le), count: value })
      }
    }
    return {
      api,
      requests,
      errors,
      p95Ms: quantileMs(
        buckets.sort((a, b) => a.le - b.le),
        0.95,
      ),
    }
  })
}

const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/
const LABEL_PAIR = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g

/** The samples of a Prometheus text exposition (comments skipped, label values unescaped). */
export function samplesOf(text: string): Sample[] {
  const samples: Sample[] = []
  for (const line of text.split('\n')) {
    const match = SAMPLE_LINE.exec(line)
    if (!match) continue
    const labels: Record<string, string> = {}
    for (const [, key, raw] of (match[2] ?? '').matchAll(LABEL_PAIR))
      labels[key!] = raw!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c))
    samples.push({ name: match[1]!, labels, value: Number(match[3]) })
  }
  return samples
}
