import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, test, type TestContext } from 'node:test'
import pg from 'pg'
import { hashSessionId } from '../../src/session/sessions.ts'
import {
  asUser,
  clearsCookie,
  COOKIE,
  failOnUnhandledRejections,
  loggedIn,
  logoutTokenSigner,
  postLogoutToken,
  refusedOn,
  request,
  servedFrom,
  serving,
  sleep,
  STORE_FAILING,
  summary,
  unacceptable,
  underLoad,
  until,
  type Origins,
} from '../helpers/failover.ts'
import { startFlow, type Flow } from '../helpers/flow.ts'
import {
  POSTGRES_URL,
  instanceOptions,
  startInstance,
  storeFixture,
  type Instance,
  type StoreFixture,
} from '../helpers/instances.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

// Issue 18 point 3: PostgreSQL failover. Two gatehouse instances A and B share one PostgreSQL store; the
// store's connections are cut with pg_terminate_backend, as a server restart cuts them. gatehouse keeps
// answering (200 or 503 store_unavailable, never 500, never hanging), its pool reconnects, its LISTEN
// connections (end notices) are re-established, and sessions keep working without a new login.
//
// Other test files use the same PostgreSQL at the same time, so only gatehouse's own backends may be
// terminated: A and B log in as a role of their own (random name), and every cut is
// `pg_terminate_backend` of that role's backends only. A restart's downtime is played by refusing that
// role's logins (ALTER ROLE … NOLOGIN) for a while: the server and everyone else's sessions stay up.

failOnUnhandledRejections()

const quoteIdent = (name: string): string => `"${name.replaceAll('"', '""')}"`

describe('PostgreSQL failover: two instances, their store connections terminated', () => {
  let fixture: StoreFixture
  let admin: pg.Pool
  let upstream: Upstream
  let flow: Flow
  let b: Instance
  /** The login role of A and B (nobody else's backends are ever terminated). */
  let role: string
  /** `"schema".gatehouse_sessions`, for the probe that hides a row from gatehouse. */
  let sessionsTable: string
  /** A session logged in before any test: must survive every cut. */
  let main: string
  /** A session only used to observe whether an instance serves from its read cache (servedFrom). */
  let probe: string
  let sign: (sid: string) => Promise<string>

  /** Terminates every backend of A's and B's role (only theirs); waits until each has exited. */
  async function terminateGatehouseBackends(): Promise<number> {
    const { rows } = await admin.query<{ gone: boolean }>(
      'SELECT pg_terminate_backend(pid, 5000) AS gone FROM pg_stat_activity WHERE usename = $1',
      [role],
    )
    assert.ok(
      rows.every((r) => r.gone),
      'every backend of the gatehouse role exited',
    )
    return rows.length
  }

  /** How many connections of instance `app` (its application_name) are LISTENing now. */
  async function listening(app: 'a' | 'b'): Promise<number> {
    const { rows } = await admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1 AND application_name = $2 AND query LIKE 'LISTEN %'`,
      [role, `${role}_${app}`],
    )
    return rows[0]!.n
  }

  /** Whether `origin` answers the probe session from its read cache, its row renamed for one request (see servedFrom). */
  const probed = (origin: string): Promise<'cache' | 'store'> =>
    servedFrom(origin, probe, async () => {
      const idHash = hashSessionId(probe)
      const hidden = await admin.query(`UPDATE ${sessionsTable} SET id_hash = $2 WHERE id_hash = $1`, [
        idHash,
        `hidden:${idHash}`,
      ])
      assert.equal(hidden.rowCount, 1, 'the probe row was hidden')
      return () =>
        admin.query(`UPDATE ${sessionsTable} SET id_hash = $1 WHERE id_hash = $2`, [idHash, `hidden:${idHash}`])
    })

  /**
   * Cuts every gatehouse connection and waits for B's end-notice link to go down and come back, as
   * B's read cache shows it: first B stops serving the probe from its cache (onLink(false) cleared
   * it), then serves it from the cache again (onLink(true): LISTEN succeeded on a new connection).
   */
  async function cutAndWaitForB(t: TestContext): Promise<void> {
    // A cut in an earlier test may still be healing (the link retries every second).
    await until(
      'before the cut, B serves the probe from its read cache (its end-notice link is listening)',
      async () => (await probed(b.origin)) === 'cache',
    )
    const started = performance.now()
    const terminated = await terminateGatehouseBackends()
    const offMs = await until('after the cut, B stops serving from its read cache (onLink(false))', async () => {
      return (await probed(b.origin)) === 'store'
    })
    const backMs = await until(
      "B's read cache serves again (its LISTEN is re-established and onLink(true) was called)",
      async () => (await probed(b.origin)) === 'cache',
    )
    const listeners = { a: await listening('a'), b: await listening('b') }
    t.diagnostic(
      `terminated ${terminated} backends; B's cache off after ${offMs} ms, back after ${Math.round(performance.now() - started)} ms (${backMs} ms after off); LISTEN connections now A ${listeners.a}, B ${listeners.b}`,
    )
    assert.ok(listeners.b > 0, 'B has a LISTEN connection again (pg_stat_activity)')
  }

  async function loggedInOnA(username = 'alice'): Promise<{ cookie: string; sid: string; logoutUrl: string }> {
    const cookie = await loggedIn(flow, username)
    const res = await asUser(flow.origin, cookie)
    assert.equal(res.status, 200, res.body)
    const claims = JSON.parse(res.body) as Array<{ type: string; value: unknown }>
    const value = (type: string) => claims.find((c) => c.type === type)?.value as string
    return { cookie, sid: value('sid'), logoutUrl: value('bff:logout_url') }
  }

  before(async () => {
    fixture = await storeFixture('postgres', 'gatehouse_failover')
    admin = new pg.Pool({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 3000, max: 3 })
    admin.on('error', () => {})
    role = `gh_failover_${randomBytes(6).toString('hex')}`
    // Letters and digits only: safe in a literal. A password too, in case the server does not trust loopback.
    const password = randomBytes(18).toString('hex')
    await admin.query(`CREATE ROLE ${quoteIdent(role)} LOGIN PASSWORD '${password}'`)
    const { rows } = await admin.query<{ db: string }>('SELECT current_database() AS db')
    // gatehouse creates its schema (and owns it) when it opens the store.
    await admin.query(`GRANT CREATE ON DATABASE ${quoteIdent(rows[0]!.db)} TO ${quoteIdent(role)}`)
    const storeUrl = (app: 'a' | 'b'): string => {
      const url = new URL(fixture.url())
      url.username = role
      url.password = password
      // Tells A's connections from B's in pg_stat_activity.
      url.searchParams.set('application_name', `${role}_${app}`)
      return url.toString()
    }
    const schema = new URL(fixture.url()).searchParams.get('schema')!
    sessionsTable = `${quoteIdent(schema)}.gatehouse_sessions`
    upstream = await startUpstream()
    const remoteApis = [{ path: '/api/user', target: upstream.url, token: 'user' as const }]
    // A session-read cache far longer than any test: an instance that refuses an ended session was
    // told by the store's notice (or read the store), never merely saw its copy age out.
    flow = await startFlow({ gatehouse: { session: { store: storeUrl('a'), cacheTtl: '60s' }, remoteApis } })
    b = await startInstance(instanceOptions(flow, { session: { store: storeUrl('b'), cacheTtl: '60s' }, remoteApis }))
    main = (await loggedInOnA()).cookie
    probe = (await loggedInOnA('bob')).cookie
    sign = await logoutTokenSigner(flow)
  })

  after(async () => {
    await b?.close()
    await flow?.close()
    await upstream?.close()
    if (admin && role) {
      await admin.query(`ALTER ROLE ${quoteIdent(role)} LOGIN`).catch(() => {})
      await terminateGatehouseBackends().catch(() => {})
    }
    await fixture?.cleanup()
    if (admin && role) {
      // Also revokes the database privilege granted above.
      await admin.query(`DROP OWNED BY ${quoteIdent(role)}`).catch(() => {})
      await admin.query(`DROP ROLE IF EXISTS ${quoteIdent(role)}`)
    }
    await admin?.end()
  })

  const origins = (): Origins => ({ A: flow.origin, B: b.origin })

  /** Waits until A and B both serve the probe from their read caches again; the ms it took. */
  const cachesServeAgain = (): Promise<number> =>
    until(
      "A's and B's read caches serve again (their LISTEN is re-established and onLink(true) was called)",
      async () => (await probed(flow.origin)) === 'cache' && (await probed(b.origin)) === 'cache',
    )

  /** Both instances ready and serving the main session (user endpoint and proxied API) with the same cookie. */
  const servingMain = (): Promise<boolean> => serving(origins(), main)

  test('backends terminated under load: every answer on A and B is 200 or 503 store_unavailable (no 500, no hang), /readyz 200 again, the same cookie works on both without a new login, both read caches (LISTEN) come back', async (t) => {
    assert.ok(await servingMain(), 'A and B serve the session before the cut')
    let terminated = 0
    let resumedMs = 0
    let cutAt = 0
    const samples = await underLoad(origins(), main, async () => {
      cutAt = performance.now()
      terminated = await terminateGatehouseBackends()
      resumedMs = await until('A and B serve again (/readyz 200, the same cookie 200 on both)', servingMain)
    })
    await cachesServeAgain()
    const cachesMs = Math.round(performance.now() - cutAt)
    t.diagnostic(
      `terminated ${terminated} backends; service resumed ${resumedMs} ms after the cut, read caches (LISTEN) back by ${cachesMs} ms after it; load: ${summary(samples)}`,
    )
    assert.deepEqual(
      unacceptable(samples),
      [],
      'only 200 or 503 store_unavailable (cookie kept) while the connections were cut',
    )
  })

  test('a restart (backends terminated, connections refused for a while): A and B answer 503 store_unavailable though their caches are fresh, /readyz 503; once connections are allowed again /readyz 200, the same cookie works on both, both read caches (LISTEN) come back', async (t) => {
    assert.ok(await servingMain(), 'A and B serve the session before the cut')
    let downMs = 0
    let resumedMs = 0
    let terminated = 0
    let cutAt = 0
    let backAt = 0
    const samples = await underLoad(origins(), main, async () => {
      cutAt = performance.now()
      await admin.query(`ALTER ROLE ${quoteIdent(role)} NOLOGIN`)
      try {
        terminated = await terminateGatehouseBackends()
        // Both read caches hold the session (cacheTtl 60 s): a 503 on /bff/user means the instance saw
        // its notice link go down and stopped serving copies, as it must (a missed notice is possible).
        downMs = await until('A and B answer 503 store_unavailable and /readyz 503', async () => {
          for (const origin of [flow.origin, b.origin]) {
            const user = await asUser(origin, main)
            // 200 until the instance sees its link down; anything else than 503 then is wrong (a 500, a 401).
            if (user.status === 200) return false
            assert.equal(user.status, 503, user.body)
            assert.equal(user.code, 'store_unavailable', user.body)
            assert.equal(clearsCookie(user), false, 'a store fault does not log the user out')
            const ready = await request(`${origin}/readyz`)
            if (ready.status === 200) return false
            assert.equal(ready.status, 503, ready.body)
            assert.deepEqual(JSON.parse(ready.body), STORE_FAILING)
          }
          return true
        })
        // The server stays "down" a little longer, as a restart would.
        await sleep(500)
      } finally {
        await admin.query(`ALTER ROLE ${quoteIdent(role)} LOGIN`)
      }
      backAt = performance.now()
      await until('A and B serve again (/readyz 200, the same cookie 200 on both)', servingMain)
      resumedMs = Math.round(performance.now() - backAt)
    })
    const downForMs = Math.round(backAt - cutAt)
    await cachesServeAgain()
    const cachesMs = Math.round(performance.now() - backAt)
    t.diagnostic(
      `terminated ${terminated} backends; both instances 503 ${downMs} ms after the cut; connections refused for ${downForMs} ms; service resumed ${resumedMs} ms after they were allowed again, read caches (LISTEN) back by ${cachesMs} ms after that; load: ${summary(samples)}`,
    )
    assert.deepEqual(unacceptable(samples), [], 'only 200 or 503 store_unavailable (cookie kept) during the restart')
    assert.ok(
      samples.some((s) => s.status === 503),
      'the load saw the store away',
    )
  })

  // Why this fails when LISTEN is not re-established: with cacheTtl 60 s, B answers from its in-process
  // copy of the session as long as its end-notice link says it is listening, and that copy can only be
  // dropped by a notice. cutAndWaitForB proves B is serving from its cache again after the cut (so
  // onLink(true) was called); B then reads the session (its copy is fresh) and A logs it out. If B's
  // new connection were not LISTENing, B would answer 200 from its copy for the next 60 s and the
  // 401 below would not come. (If onLink(true) were never called, cutAndWaitForB fails instead.)
  test("after the cut, B's LISTEN is back: a logout on A is refused (401) by B, which held a fresh cached copy", async (t) => {
    const session = await loggedInOnA()
    await cutAndWaitForB(t)
    const onB = await asUser(b.origin, session.cookie)
    assert.equal(onB.status, 200, `B reads (and caches) the session after the reconnect: ${onB.body}`)
    const logout = await request(`${flow.origin}${session.logoutUrl}`, {
      headers: { cookie: `${COOKIE}=${session.cookie}` },
    })
    assert.equal(logout.status, 302, logout.body)
    const { answer, ms } = await refusedOn(b.origin, session.cookie)
    t.diagnostic(`B refused the logged-out session ${ms} ms after A answered the logout`)
    assert.equal(answer.status, 401, `B still serves the ended session (its cached copy): ${answer.body}`)
    assert.equal(answer.code, 'session_required')
    assert.equal((await asUser(b.origin, session.cookie, '/api/user/echo')).status, 401)
    assert.equal((await asUser(b.origin, main)).status, 200, 'other sessions still work on B')
  })

  // Fails for the same reason as above when LISTEN is not back: the back-channel logout's notice names a
  // sid (a filter), and only that notice can drop B's fresh copy within its 60 s cacheTtl.
  test('after the cut, a back-channel logout by sid posted to A is refused on B (which held a fresh cached copy); another sid of the same user is untouched', async (t) => {
    const ended = await loggedInOnA()
    const other = await loggedInOnA()
    assert.notEqual(ended.sid, other.sid, 'two IdP sessions')
    await cutAndWaitForB(t)
    for (const s of [ended, other]) assert.equal((await asUser(b.origin, s.cookie)).status, 200, 'B caches both')
    const res = await postLogoutToken(flow.origin, await sign(ended.sid))
    assert.equal(res.status, 200, res.body)
    assert.deepEqual(JSON.parse(res.body), { sessionsEnded: 1 })
    const { answer, ms } = await refusedOn(b.origin, ended.cookie)
    t.diagnostic(`B refused the back-channel-ended session ${ms} ms after A answered the logout token`)
    assert.equal(answer.status, 401, `B still serves the ended session (its cached copy): ${answer.body}`)
    assert.equal(
      (await asUser(b.origin, other.cookie)).status,
      200,
      "the user's other session (another sid) works on B",
    )
  })
})
