import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { afterEach } from 'node:test'
import { importJWK, SignJWT } from 'jose'
import { CLIENT_ID, CSRF, type Flow } from './flow.ts'

/**
 * For tests that cut a shared store away from gatehouse instances A and B (an outage, a failover): requests
 * that fail instead of hanging, load loops on A and B, what answers are acceptable meanwhile, and the probe
 * that tells whether an instance answers from its read cache.
 */

export const COOKIE = '__Host-gatehouse'
/** How long a single request may take before it counts as hanging (generous: not a timing assertion). */
export const REQUEST_LIMIT_MS = 20_000
/** How long until() waits by default: for gatehouse to notice a store fault, or to serve again once it is over. */
const WAIT_MS = 20_000
/** How long B may take to receive A's end notice before the test gives up (not a timing assertion). */
const NOTICE_WAIT_MS = 5_000

/** /readyz's body while the store fails. */
export const STORE_FAILING = { status: 'not_ready', checks: { store: 'failing', idp: 'ok' } }

/** Fails the test after which an unhandled rejection showed up anywhere in the file, naming it. */
export function failOnUnhandledRejections(): void {
  const unhandled: unknown[] = []
  process.on('unhandledRejection', (reason) => unhandled.push(reason))
  afterEach(() => assert.deepEqual(unhandled, [], 'no unhandled rejection'))
}

export interface Answer {
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
export async function request(url: string, init: RequestInit = {}): Promise<Answer> {
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

/** A request to `origin` with the session `cookie` (and the CSRF header). */
export const asUser = (origin: string, cookie: string, path = '/bff/user', init: RequestInit = {}): Promise<Answer> =>
  request(`${origin}${path}`, { ...init, headers: { ...CSRF, cookie: `${COOKIE}=${cookie}`, ...init.headers } })

export const clearsCookie = (answer: Answer): boolean =>
  answer.headers.getSetCookie().some((line) => line.startsWith(`${COOKIE}=;`))

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Polls `check` every 50 ms until it holds; fails naming `what` after `limit` ms. Returns the ms it took. */
export async function until(what: string, check: () => Promise<boolean>, limit = WAIT_MS): Promise<number> {
  const started = performance.now()
  for (;;) {
    if (await check()) return Math.round(performance.now() - started)
    if (performance.now() - started > limit) assert.fail(`${what}: not within ${limit} ms`)
    await sleep(50)
  }
}

/** Logs in on `flow`'s instance (A) through the IdP; the session cookie. */
export async function loggedIn(flow: Flow, username = 'alice'): Promise<string> {
  const browser = flow.browser()
  await flow.login(browser, { username })
  const cookie = browser.cookies.get(COOKIE)
  assert.ok(cookie, 'the login on A set the session cookie')
  return cookie
}

/** Signs back-channel logout tokens as `flow`'s IdP would, each ending the IdP session `sid` (a fresh jti, iat now). */
export async function logoutTokenSigner(flow: Flow): Promise<(sid: string) => Promise<string>> {
  const jwk = flow.idp.signingKey as { kid: string }
  const key = await importJWK(flow.idp.signingKey, 'RS256')
  const events = { 'http://schemas.openid.net/event/backchannel-logout': {} }
  return (sid) =>
    new SignJWT({
      iss: flow.idp.issuer,
      aud: CLIENT_ID,
      iat: Math.floor(Date.now() / 1000),
      jti: randomUUID(),
      events,
      sid,
    })
      .setProtectedHeader({ alg: 'RS256', kid: jwk.kid, typ: 'logout+jwt' })
      .sign(key)
}

/** POSTs a logout token to `origin`'s back-channel logout endpoint, as the IdP does. */
export const postLogoutToken = (origin: string, token: string): Promise<Answer> =>
  request(`${origin}/bff/backchannel`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ logout_token: token }),
  })

/** The first answer for `cookie` on `origin` that is not 200, polling up to NOTICE_WAIT_MS (the notice is asynchronous). */
export async function refusedOn(origin: string, cookie: string): Promise<{ answer: Answer; ms: number }> {
  const started = performance.now()
  for (;;) {
    const answer = await asUser(origin, cookie)
    const ms = Math.round(performance.now() - started)
    if (answer.status !== 200 || ms > NOTICE_WAIT_MS) return { answer, ms }
    await sleep(25)
  }
}

/** The origins of the two instances. */
export interface Origins {
  A: string
  B: string
}

/** What keeps A or B from serving `cookie` now (/readyz, the user endpoint, a proxied API: the first answer that is not 200), or undefined. */
export async function notServing(origins: Origins, cookie: string): Promise<string | undefined> {
  for (const name of ['A', 'B'] as const) {
    const origin = origins[name]
    const ready = await request(`${origin}/readyz`)
    if (ready.status !== 200) return `${name} /readyz ${ready.status} ${ready.body}`
    for (const path of ['/bff/user', '/api/user/echo']) {
      const res = await asUser(origin, cookie, path)
      if (res.status !== 200) return `${name} ${path} ${res.status} ${res.body}`
    }
  }
  return undefined
}

/** Both instances ready and serving `cookie` (user endpoint and proxied API). */
export async function serving(origins: Origins, cookie: string): Promise<boolean> {
  return (await notServing(origins, cookie)) === undefined
}

export interface Sample {
  target: string
  /** performance.now() when the request was sent. */
  at: number
  status: number
  code: string | undefined
  clears: boolean
  ms: number
  error?: string
}

/** Runs each of `steps` in a loop of its own (`pauseMs` apart) until stop() is called; stop() resolves with every result. */
export function repeatUntilStopped<S>(steps: Array<() => Promise<S>>, pauseMs: number): { stop: () => Promise<S[]> } {
  const results: S[] = []
  let stopped = false
  const loops = steps.map(async (step) => {
    while (!stopped) {
      results.push(await step())
      await sleep(pauseMs)
    }
  })
  return {
    async stop() {
      stopped = true
      await Promise.all(loops)
      return results
    },
  }
}

/**
 * Requests `targets` in a loop (one loop each, a few ms apart) until stop() is called; stop() resolves
 * with every answer. A request with no answer within REQUEST_LIMIT_MS is kept as status 0.
 */
export function load(targets: Array<{ name: string; send: () => Promise<Answer> }>): {
  stop: () => Promise<Sample[]>
} {
  return repeatUntilStopped(
    targets.map(({ name, send }) => async (): Promise<Sample> => {
      const at = performance.now()
      try {
        const a = await send()
        const ms = Math.round(performance.now() - at)
        return { target: name, at, status: a.status, code: a.code, clears: clearsCookie(a), ms }
      } catch (err) {
        const ms = Math.round(performance.now() - at)
        return { target: name, at, status: 0, code: undefined, clears: false, ms, error: String(err) }
      }
    }),
    5,
  )
}

/**
 * Runs `during` (a store fault and the wait for the service to recover) while loadTargets(origins, cookie) runs:
 * the load starts 300 ms before and stops 300 ms after (the first moments after a recovery count too).
 * Resolves with every answer of the load.
 */
export async function underLoad(origins: Origins, cookie: string, during: () => Promise<void>): Promise<Sample[]> {
  const running = load(loadTargets(origins, cookie))
  await sleep(300)
  let samples: Sample[] = []
  try {
    await during()
    await sleep(300)
  } finally {
    samples = await running.stop()
  }
  return samples
}

/** The four requests the load runs: the session `cookie` and a proxied API on A and on B. */
export const loadTargets = (origins: Origins, cookie: string) =>
  (['A', 'B'] as const).flatMap((name) => [
    { name: `${name} /bff/user`, send: () => asUser(origins[name], cookie) },
    { name: `${name} /api/user/echo`, send: () => asUser(origins[name], cookie, '/api/user/echo') },
  ])

/** Anything but what gatehouse may answer while its store is away: served, or 503 store_unavailable keeping the cookie. */
export const unacceptable = (samples: Sample[]): Sample[] =>
  samples.filter((s) => !(s.status === 200 || (s.status === 503 && s.code === 'store_unavailable' && !s.clears)))

/** The load's answers by status, the slowest; with `killedAt`, when the 503s were sent relative to it. */
export function summary(samples: Sample[], killedAt?: number): string {
  const byStatus = new Map<number, number>()
  for (const s of samples) byStatus.set(s.status, (byStatus.get(s.status) ?? 0) + 1)
  const statuses = [...byStatus].map(([status, n]) => `${status}×${n}`).join(', ')
  const slowest = `slowest ${Math.max(0, ...samples.map((s) => s.ms))} ms`
  if (killedAt === undefined) return `${samples.length} requests (${statuses}), ${slowest}`
  const refused = samples.filter((s) => s.status === 503)
  const window =
    refused.length === 0
      ? 'no 503'
      : `503s sent from ${Math.round(Math.min(...refused.map((s) => s.at)) - killedAt)} to ${Math.round(Math.max(...refused.map((s) => s.at)) - killedAt)} ms after the kill`
  return `${samples.length} requests (${statuses}), ${window}, ${slowest}`
}

/**
 * How `origin` answers for the `probe` session while its record is hidden from the store (`hide` hides it and
 * returns what puts it back, after one request): 'cache' when it still answers 200 — only its in-process read
 * cache can have answered, which it does only while its end-notice link reports listening (CachedStore) —
 * 'store' when it answers 401 (it read the store) or 503 (it tried to).
 */
export async function servedFrom(
  origin: string,
  probe: string,
  hide: () => Promise<() => Promise<unknown>>,
): Promise<'cache' | 'store'> {
  const warm = await asUser(origin, probe, '/bff/user?slide=false')
  if (warm.status === 503 && warm.code === 'store_unavailable') return 'store'
  assert.equal(warm.status, 200, `the probe session works: ${warm.body}`)
  const putBack = await hide()
  try {
    const res = await asUser(origin, probe, '/bff/user?slide=false')
    if (res.status === 200) return 'cache'
    assert.ok(
      res.status === 401 || (res.status === 503 && res.code === 'store_unavailable'),
      `${res.status} ${res.body}`,
    )
    return 'store'
  } finally {
    await putBack()
  }
}
