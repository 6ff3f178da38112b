/**
 * What each step of a proxied GET costs, measured one at a time in the bench's own process (no load
 * running), with gatehouse's real functions and the real session the bench logged in with:
 * the numbers behind docs/performance.md's "what each overhead costs". Synchronous steps are timed
 * in loops (mean ns per call); store reads one at a time, awaited (p50/p99 µs of a single call, which
 * includes the loopback round trip for Redis and PostgreSQL).
 */
import { randomUUID } from 'node:crypto'
import { EventEmitter } from 'node:events'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { performance } from 'node:perf_hooks'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { pino } from 'pino'
import { validateConfig } from '../src/config/validate.ts'
import { isAntiForgeryValid } from '../src/http/antiforgery.ts'
import { parseCookies } from '../src/http/cookies.ts'
import { hasUsableHostHeader } from '../src/http/origin.ts'
import { Telemetry } from '../src/ops/metrics.ts'
import { span } from '../src/ops/tracing.ts'
import { downstreamResponseHeaders, upstreamRequestHeaders } from '../src/proxy/headers.ts'
import { RemoteApiRoutes } from '../src/proxy/routes.ts'
import { KeyRing } from '../src/session/seal.ts'
import type { SessionData } from '../src/session/session.ts'
import { hashSessionId, Sessions, sessionSealPurpose } from '../src/session/sessions.ts'
import type { SessionRecord, SessionStore } from '../src/session/store.ts'
import { MemoryStore } from '../src/session/stores/memory.ts'
import { openStore } from '../src/session/stores/open-store.ts'

export interface StoreUnderTest {
  name: string
  /** For openStore(); 'memory' gets a fresh MemoryStore holding a copy of the real record. */
  location: string
  /** The session cookie's value the bench logged in with against this store. */
  cookie: string
}

export interface CostsInput {
  stores: StoreUnderTest[]
  keys: string[]
  cookieName: string
  origin: string
  /** The request headers as node:http hands them to gatehouse (lower-case names). */
  requestHeaders: Record<string, string>
  /** The upstream's response headers as undici hands them over. */
  upstreamHeaders: Record<string, string>
}

export interface StepCost {
  step: string
  /** Mean per call. */
  ns: number
  note?: string
}

export interface StoreCost {
  store: string
  /** store.get(idHash): one awaited call, µs. */
  getP50Us: number
  getP99Us: number
  /** Sessions.resolve (hash + get + unseal + JSON.parse + partition/expiry checks), µs. */
  resolveP50Us: number
  resolveP99Us: number
}

export interface MemoryPerSession {
  sessions: number
  /** Heap growth per session in the memory store, after GC. */
  heapBytesPerSession: number
  /** The sealed blob (the tokens and claims, encrypted) each record holds: one byte per character. */
  sealedChars: number
  /** Heap per session beyond its sealed tokens: what the goal "≤ 2 KB per idle session" measures. */
  beyondTokensBytes: number
}

export interface Costs {
  steps: StepCost[]
  stores: StoreCost[]
  memoryPerSession: MemoryPerSession | undefined
  sealedChars: number | undefined
}

const SYNC_ITERATIONS = 20_000
const STORE_CALLS = 2_000

export async function measureCosts(input: CostsInput): Promise<Costs> {
  const keyRing = new KeyRing(input.keys)
  const policy = { lifetimeMs: 8 * 3_600_000, sliding: true, absoluteLifetimeMs: 24 * 3_600_000 }
  const cookieHeader = input.requestHeaders.cookie ?? ''
  const cookies = parseCookies(cookieHeader)
  const cookieValue = input.stores[0]?.cookie ?? cookies.get(input.cookieName) ?? ''

  // The real record: from the first persistent store (the memory store lived in the child process).
  let realRecord: SessionRecord | undefined
  for (const s of input.stores) {
    if (s.location === 'memory') continue
    const store = await openStore(s.location)
    try {
      realRecord = await store.get(hashSessionId(s.cookie), Date.now())
    } finally {
      await store.close()
    }
    if (realRecord) break
  }

  const steps: StepCost[] = []
  const time = (step: string, fn: () => unknown, note?: string): void => {
    for (let i = 0; i < 2_000; i++) fn()
    const started = performance.now()
    for (let i = 0; i < SYNC_ITERATIONS; i++) fn()
    steps.push({
      step,
      ns: Math.round(((performance.now() - started) * 1e6) / SYNC_ITERATIONS),
      ...(note ? { note } : {}),
    })
  }

  // Step 0: the request context (http/context.ts createContext).
  const rawHeaders = Object.entries(input.requestHeaders).flatMap(([name, value]) => [name, String(value)])
  const fakeReq = { headers: input.requestHeaders, rawHeaders } as unknown as IncomingMessage
  time('request id (randomUUID)', () => randomUUID())
  time('Host header check (hasUsableHostHeader)', () => hasUsableHostHeader(fakeReq))
  time('parse request URL (new URL)', () => new URL('/api/small', input.origin))
  time('cookie parse (parseCookies)', () => parseCookies(cookieHeader), `${cookieHeader.length}-char Cookie header`)
  // The remote API entry as config validation completes it (defaults included).
  const { config } = validateConfig({
    oidc: { authority: 'http://127.0.0.1:1', clientId: 'bench', clientSecret: 'bench-secret' },
    keys: input.keys,
    remoteApis: [{ path: '/api', target: 'http://127.0.0.1:1', token: 'user' }],
  } as never)
  if (!config) throw new Error("the bench's remoteApis entry does not validate")
  const apis = new RemoteApiRoutes(config.remoteApis)
  time('route match (RemoteApiRoutes.match)', () => apis.match('/api/small'))
  time('anti-forgery check', () => isAntiForgeryValid(input.requestHeaders, { header: 'X-CSRF', value: '1' }))
  time('session id hash (sha256)', () => hashSessionId(cookieValue))
  if (realRecord) {
    const purpose = sessionSealPurpose(realRecord)
    const plain = keyRing.unseal(realRecord.sealed, purpose)!
    time(
      'unseal (AES-256-GCM open)',
      () => keyRing.unseal(realRecord.sealed, sessionSealPurpose(realRecord)),
      `${realRecord.sealed.length}-char sealed blob`,
    )
    time('session JSON.parse', () => JSON.parse(plain))
    time('seal (AES-256-GCM; login and refresh only)', () => keyRing.seal(plain, purpose))
  }
  const headerOptions = {
    antiForgeryHeader: 'x-csrf',
    bearer: 'x'.repeat(43),
    clientIp: '127.0.0.1',
    origin: input.origin,
    trustProxy: false,
    websocket: false,
  }
  time(
    'header hygiene, request (upstreamRequestHeaders)',
    () => upstreamRequestHeaders(input.requestHeaders, headerOptions),
    `${Object.keys(input.requestHeaders).length} headers in`,
  )
  time('header hygiene, response (downstreamResponseHeaders)', () =>
    downstreamResponseHeaders(input.upstreamHeaders, '__Host-gatehouse'),
  )
  const telemetry = new Telemetry()
  time('metrics (request counter + proxy histogram)', () => {
    const res = Object.assign(new EventEmitter(), {
      req: { method: 'GET' },
      headersSent: true,
      statusCode: 200,
    }) as unknown as ServerResponse
    telemetry.response(res, 'api:/api')
    telemetry.proxied('/api', 1.2)
    ;(res as unknown as EventEmitter).emit('close')
  })
  const log = pino({ level: 'info', base: { name: 'gatehouse' } }, pino.destination({ dest: '/dev/null', sync: true }))
  time('access log line (pino, info, to /dev/null)', () =>
    log.info({ requestId: randomUUID(), method: 'GET', path: '/api/small', api: '/api', status: 200, ms: 1 }, 'proxy'),
  )
  // Async steps: awaited one after the other, so the time includes the promise machinery.
  const spanCost = await timeAsync(
    () => span('gatehouse.proxy', { 'gatehouse.api': '/api', 'http.request.method': 'GET' }, async () => undefined),
    SYNC_ITERATIONS,
  )
  steps.push({ step: 'tracing span (no SDK registered: no-op)', ns: Math.round(spanCost.meanUs * 1000) })

  const stores: StoreCost[] = []
  for (const s of input.stores) {
    let store: SessionStore
    if (s.location === 'memory') {
      if (!realRecord) continue
      store = new MemoryStore()
      await store.set({ ...realRecord, idHash: hashSessionId(s.cookie) })
    } else store = await openStore(s.location)
    try {
      const idHash = hashSessionId(s.cookie)
      const record = await store.get(idHash, Date.now())
      if (!record) continue
      const sessions = new Sessions({ store, keyRing, policy })
      const get = await timeAsync(() => store.get(idHash, Date.now()), STORE_CALLS)
      const resolve = await timeAsync(() => sessions.resolve(s.cookie, record.partition, { slide: false }), STORE_CALLS)
      stores.push({
        store: s.name,
        getP50Us: get.p50Us,
        getP99Us: get.p99Us,
        resolveP50Us: resolve.p50Us,
        resolveP99Us: resolve.p99Us,
      })
    } finally {
      await store.close()
    }
  }

  const memoryPerSession = realRecord ? await measureMemoryPerSession(realRecord, keyRing, policy) : undefined
  return { steps, stores, memoryPerSession, sealedChars: realRecord?.sealed.length }
}

async function timeAsync(
  fn: () => Promise<unknown>,
  calls: number,
): Promise<{ meanUs: number; p50Us: number; p99Us: number }> {
  for (let i = 0; i < Math.min(calls, 500); i++) await fn()
  const samples = new Float64Array(calls)
  for (let i = 0; i < calls; i++) {
    const started = performance.now()
    await fn()
    samples[i] = performance.now() - started
  }
  samples.sort()
  const mean = samples.reduce((a, b) => a + b, 0) / calls
  const at = (q: number) => round(samples[Math.min(calls - 1, Math.floor(q * calls))]! * 1000, 1)
  return { meanUs: round(mean * 1000, 2), p50Us: at(0.5), p99Us: at(0.99) }
}

/**
 * Heap per idle session in the memory store: N sessions created the way a login creates them
 * (Sessions.create: fresh id, sealed data of the real session's size, its own sub and sid, so the
 * sub/sid indexes grow as in production), measured as heap growth after full GCs.
 */
async function measureMemoryPerSession(
  real: SessionRecord,
  keyRing: KeyRing,
  policy: { lifetimeMs: number; sliding: boolean; absoluteLifetimeMs: number },
): Promise<MemoryPerSession> {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const data = JSON.parse(keyRing.unseal(real.sealed, sessionSealPurpose(real))!) as SessionData
  const count = 20_000
  const settle = async (): Promise<number> => {
    for (let i = 0; i < 3; i++) {
      gc()
      await new Promise((resolve) => setImmediate(resolve))
    }
    return process.memoryUsage().heapUsed
  }
  const store = new MemoryStore()
  const sessions = new Sessions({ store, keyRing, policy })
  const before = await settle()
  for (let i = 0; i < count; i++) {
    // Same sub shape and sid length as the real one, unique per session.
    await sessions.create({
      sub: `${real.sub}-${i}`,
      sid: `${(real.sid ?? 'sid').slice(0, 24)}-${i}`,
      partition: real.partition,
      data,
    })
  }
  const after = await settle()
  const heapBytesPerSession = Math.round((after - before) / count)
  const sealedChars = real.sealed.length
  await store.close()
  return { sessions: count, heapBytesPerSession, sealedChars, beyondTokensBytes: heapBytesPerSession - sealedChars }
}

function round(value: number, digits: number): number {
  const f = 10 ** digits
  return Math.round(value * f) / f
}
