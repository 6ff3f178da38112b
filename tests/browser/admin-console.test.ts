import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { chromium, type Browser, type BrowserContext, type Locator, type Page } from 'playwright-core'
import { pino } from 'pino'
import { hashSessionId } from '../../src/session/sessions.ts'
import type { BrowserJar } from '../helpers/browser-jar.ts'
import { CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import { storeFixture, type StoreFixture } from '../helpers/instances.ts'
import { logLines } from '../helpers/log-lines.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'
import { mountAdmin } from '../helpers/admin.ts'

// Issue #19: the admin console on the admin listener, driven in real Chromium against a real IdP
// login and each kind of session store. Sign-in with the admin token (a wrong one shows an error and
// no data), finding a user's sessions, revoking one and then all of them (the revoked cookies get 401
// at their next /bff/user), the health panel, an accessibility check of names and roles, and the
// page's strict CSP (no violation while it runs).

const TOKEN = 'admin-token-Vb7nQ2xK9pLm4RtZ'
const COOKIE = '__Host-gatehouse'
const ALICE = 'alice-0001'
const BOB = 'bob-0002'
const VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version
/** The state a forged callback carries: it must never be shown by the console. */
const FORGED_STATE = 'forged-state-4Tq9Zw'

type Claims = Array<{ type: string; value: unknown }>

/** The roles of nodes a user operates: each needs an accessible name. */
const INTERACTIVE = new Set([
  'button',
  'checkbox',
  'combobox',
  'link',
  'listbox',
  'menuitem',
  'radio',
  'searchbox',
  'slider',
  'spinbutton',
  'switch',
  'tab',
  'textbox',
])

let browser: Browser
const dirs: string[] = []

before(async () => {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-gpu', '--no-first-run'],
  })
})
after(async () => {
  await browser?.close()
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})
process.once('exit', () => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

interface Watched {
  context: BrowserContext
  page: Page
  /** CSP violations seen by the page (its own event) and by the console (Chromium's report). */
  violations(): Promise<string[]>
  consoleErrors: string[]
  pageErrors: string[]
  /** Every answer of the admin listener the page received: path and status. */
  answers: Array<{ path: string; status: number }>
  /** Every request the page sent to the admin listener: its URL and Authorization header. */
  requests: Array<{ url: string; authorization: string | undefined }>
}

/** A fresh browser context and page that record CSP violations, console errors and the admin listener's answers. */
async function openWatched(adminUrl: string): Promise<Watched> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } })
  // Runs before the page's own script (init scripts are not subject to the page's CSP). It keeps what it
  // sees in a global of its own, never in storage: the test asserts that storage stays as the page left it.
  await context.addInitScript(() => {
    const seen: string[] = []
    Object.defineProperty(window, '__cspViolations', { value: seen })
    document.addEventListener('securitypolicyviolation', (e) => {
      seen.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} (${e.sourceFile}:${e.lineNumber})`)
    })
  })
  const page = await context.newPage()
  const consoleErrors: string[] = []
  const pageErrors: string[] = []
  const answers: Watched['answers'] = []
  const requests: Watched['requests'] = []
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(message.text())
  })
  page.on('pageerror', (err) => pageErrors.push(String(err)))
  page.on('request', (req) => {
    if (req.url().startsWith(adminUrl)) requests.push({ url: req.url(), authorization: req.headers().authorization })
  })
  page.on('response', (res) => {
    if (res.url().startsWith(adminUrl)) answers.push({ path: new URL(res.url()).pathname, status: res.status() })
  })
  return {
    context,
    page,
    consoleErrors,
    pageErrors,
    answers,
    requests,
    async violations() {
      const fromPage = await page.evaluate(() => (window as unknown as { __cspViolations: string[] }).__cspViolations)
      const fromConsole = consoleErrors.filter((text) => /Content Security Policy/i.test(text))
      return [...fromPage, ...fromConsole]
    },
  }
}

/** Logs a fresh browser in as `username` through the IdP's login form; its cookie, sub and sid. */
async function loggedIn(
  flow: Flow,
  username: string,
): Promise<{ browser: BrowserJar; cookie: string; sub: string; sid: string }> {
  const jar = flow.browser()
  await flow.login(jar, { username })
  const res = await jar.get(`${flow.origin}/bff/user`, CSRF)
  assert.equal(res.status, 200, res.text)
  const claims = JSON.parse(res.text) as Claims
  const cookie = jar.cookies.get(COOKIE)
  assert.ok(cookie, 'the login set the session cookie')
  return {
    browser: jar,
    cookie,
    sub: claims.find((c) => c.type === 'sub')!.value as string,
    sid: claims.find((c) => c.type === 'sid')!.value as string,
  }
}

/** A table's body rows as records keyed by the column headers' text. */
async function tableRows(table: Locator): Promise<Array<Record<string, string>>> {
  const headers = (await table.locator('thead th').allTextContents()).map((h) => h.trim())
  const rows: Array<Record<string, string>> = []
  for (const row of await table.locator('tbody tr').all()) {
    const cells = (await row.locator('th, td').allTextContents()).map((c) => c.trim())
    rows.push(Object.fromEntries(headers.map((h, i) => [h, cells[i] ?? ''])))
  }
  return rows
}

const userStatus = async (flow: Flow, jar: BrowserJar): Promise<number> =>
  (await jar.get(`${flow.origin}/bff/user`, CSRF)).status

/** The accessibility problems of the page as Chromium's accessibility tree exposes it (empty: none). */
async function accessibilityProblems(page: Page): Promise<string[]> {
  const cdp = await page.context().newCDPSession(page)
  try {
    const { nodes } = (await cdp.send('Accessibility.getFullAXTree')) as {
      nodes: Array<{
        ignored: boolean
        role?: { value?: unknown }
        name?: { value?: unknown }
        properties?: Array<{ name: string; value: { value?: unknown } }>
      }>
    }
    const shown = nodes.filter((n) => !n.ignored)
    const role = (n: (typeof shown)[number]) => String(n.role?.value ?? '')
    const name = (n: (typeof shown)[number]) => String(n.name?.value ?? '').trim()
    const problems: string[] = []
    const interactive = shown.filter((n) => INTERACTIVE.has(role(n)))
    if (interactive.length === 0) problems.push('no interactive node at all (is the page shown?)')
    for (const n of interactive) if (name(n) === '') problems.push(`a ${role(n)} without an accessible name`)
    const tables = shown.filter((n) => role(n) === 'table')
    if (tables.length === 0) problems.push('no table at all')
    for (const n of tables) if (name(n) === '') problems.push('a table without a name (caption)')
    const mains = shown.filter((n) => role(n) === 'main').length
    if (mains !== 1) problems.push(`${mains} main landmarks, not 1`)
    const h1 = shown.filter(
      (n) => role(n) === 'heading' && n.properties?.some((p) => p.name === 'level' && p.value.value === 1),
    )
    if (h1.length !== 1) problems.push(`${h1.length} level-1 headings, not 1`)
    return problems
  } finally {
    await cdp.detach()
  }
}

const STORES = ['memory', 'sqlite', 'redis', 'postgres'] as const

for (const kind of STORES) {
  describe(`the admin console on a ${kind} store`, () => {
    let fixture: StoreFixture | undefined
    let upstream: Upstream
    let flow: Flow
    let admin: Awaited<ReturnType<typeof mountAdmin>>
    let watched: Watched
    let alice1: Awaited<ReturnType<typeof loggedIn>>
    let alice2: Awaited<ReturnType<typeof loggedIn>>
    let bob: Awaited<ReturnType<typeof loggedIn>>
    const log = logLines()
    let started = 0

    before(async () => {
      started = Date.now()
      let store: string
      if (kind === 'memory') store = 'memory'
      else if (kind === 'sqlite') {
        const dir = mkdtempSync(join(tmpdir(), 'gatehouse-console-'))
        dirs.push(dir)
        store = `sqlite:${join(dir, 'sessions.db')}`
      } else {
        fixture = await storeFixture(kind, 'gatehouse_console')
        store = fixture.url()
      }
      upstream = await startUpstream()
      flow = await startFlow({
        gatehouse: {
          session: { store },
          admin: { token: TOKEN },
          remoteApis: [{ path: '/api', target: upstream.url, token: 'user' }],
        },
        runtime: { logger: pino({ level: 'info' }, log.sink) },
      })
      admin = await mountAdmin(flow.gatehouse.adminHandler)
      // Alice in two browsers (two sessions), Bob in one.
      alice1 = await loggedIn(flow, 'alice')
      alice2 = await loggedIn(flow, 'alice')
      bob = await loggedIn(flow, 'bob')
      // One remote API call, so the APIs table has figures.
      assert.equal((await bob.browser.get(`${flow.origin}/api/echo`, CSRF)).status, 200)
      // One failed login: a callback whose state gatehouse never issued.
      const forged = await flow
        .browser()
        .get(
          `${flow.origin}/signin-oidc?code=forged-code&state=${FORGED_STATE}&iss=${encodeURIComponent(flow.idp.issuer)}`,
        )
      assert.ok(forged.status >= 400, `the forged callback is refused (${forged.status})`)
      watched = await openWatched(admin.url)
      console.log(`# ${kind}: set-up (IdP, gatehouse, 3 logins, Chromium page) took ${Date.now() - started} ms`)
    })
    after(async () => {
      await watched?.context.close()
      await admin?.close()
      await flow?.close()
      await upstream?.close()
      await fixture?.cleanup()
      console.log(`# ${kind}: ${Date.now() - started} ms in all`)
    })

    test('GET / serves the page with a CSP allowing no inline script or eval, and Cache-Control: no-store', async () => {
      const res = await watched.page.goto(`${admin.url}/`)
      assert.ok(res)
      assert.equal(res.status(), 200)
      const headers = res.headers()
      const csp = headers['content-security-policy'] ?? ''
      assert.match(csp, /(?:^|;)\s*script-src 'self'(?:;|$)/)
      assert.match(csp, /(?:^|;)\s*default-src 'none'/)
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/)
      assert.equal(headers['cache-control'], 'no-store')
      assert.match(headers['content-type'] ?? '', /^text\/html/)
      // The script and styles the page loads come with the same policy.
      for (const path of ['/console/app.js', '/console/app.css']) {
        const file = await fetch(`${admin.url}${path}`)
        assert.equal(file.status, 200, path)
        assert.equal(file.headers.get('content-security-policy'), csp, path)
        assert.equal(file.headers.get('cache-control'), 'no-store', path)
      }
    })

    test('a wrong token shows the alert and no data', async () => {
      const { page } = watched
      await page.getByLabel('Admin token').fill('wrong-token-0123456789')
      await page.getByRole('button', { name: 'Sign in' }).click()
      const alert = page.getByRole('alert')
      await alert.filter({ hasText: 'Sign-in failed: the admin token was not accepted.' }).waitFor()
      assert.equal(await alert.count(), 1)
      assert.equal(await page.locator('#console').isVisible(), false)
      assert.equal(await page.getByLabel('Admin token').isVisible(), true)
      for (const body of ['#sessions-body', '#apis-body', '#failures-body'])
        assert.equal(await page.locator(`${body} tr`).count(), 0, body)
      const html = await page.content()
      for (const datum of [ALICE, BOB, alice1.sid, bob.sid, flow.idp.issuer])
        assert.ok(!html.includes(datum), `the page holds no ${datum} (hidden or not)`)
      // The admin API answered nothing but refusals.
      const data = watched.answers.filter((a) => a.path.startsWith('/admin/') && a.path !== '/admin/console')
      assert.ok(data.length > 0, 'the page tried the token')
      assert.deepEqual(
        data.filter((a) => a.status !== 401),
        [],
      )
      assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'a refused token is not kept')
    })

    test('the right token signs in; the token is kept in sessionStorage only, no cookie, no localStorage', async () => {
      const { page } = watched
      assert.equal(await page.getByLabel('Admin token').getAttribute('type'), 'password')
      const before = watched.requests.length
      await page.getByLabel('Admin token').fill(TOKEN)
      await page.getByRole('button', { name: 'Sign in' }).click()
      await page.locator('#message').filter({ hasText: 'Signed in.' }).waitFor()
      assert.equal(await page.getByRole('alert').textContent(), '', 'the earlier error is gone')
      assert.equal(await page.getByRole('button', { name: 'Sign out' }).isVisible(), true)
      await page.locator('#sessions-body tr').first().waitFor()
      const storage = await page.evaluate(() => ({
        local: localStorage.length,
        cookie: document.cookie,
        session: Object.keys(sessionStorage).map((k) => sessionStorage.getItem(k)),
      }))
      assert.deepEqual(storage, { local: 0, cookie: '', session: [TOKEN] })
      assert.deepEqual(await watched.context.cookies(admin.url), [])
      // The token travels as a bearer token on the JSON calls, never in a URL.
      const calls = watched.requests.slice(before).filter((r) => new URL(r.url).pathname.startsWith('/admin/'))
      assert.ok(calls.some((r) => new URL(r.url).pathname === '/admin/sessions'))
      for (const call of calls) {
        assert.equal(call.authorization, `Bearer ${TOKEN}`, call.url)
        assert.ok(!call.url.includes(TOKEN), call.url)
      }
    })

    test(`health: IdP discovery and JWKS ok, the issuer, the store (${kind}, reachable, its session count), the version`, async () => {
      const { page } = watched
      const text = async (id: string) => ((await page.locator(`#${id}`).textContent()) ?? '').trim()
      await page.locator('#idp-discovery').filter({ hasText: 'ok' }).waitFor()
      assert.equal(await text('idp-discovery'), 'ok')
      assert.equal(await text('idp-jwks'), 'ok')
      assert.equal(await text('idp-issuer'), flow.idp.issuer)
      assert.notEqual(await text('idp-last-refresh'), 'never')
      assert.equal(await text('store-kind'), kind)
      assert.equal(await text('store-reachable'), 'yes')
      assert.equal(await text('store-sessions'), '3', 'Alice twice and Bob')
      assert.equal(await text('build-version'), VERSION)
      assert.match(await text('build-uptime'), /\d+ (?:s|min|h|d)\b/)
    })

    test("the Remote APIs table shows the API's path, its requests, errors and p95 latency", async () => {
      const apis = await tableRows(watched.page.getByRole('table', { name: 'Remote APIs' }))
      assert.equal(apis.length, 1, 'one remote API is configured')
      const [api] = apis
      assert.deepEqual(
        { path: api!.Path, requests: api!.Requests, errors: api!.Errors },
        { path: '/api', requests: '1', errors: '0' },
      )
      assert.match(api!['p95 latency']!, /^\d+\.\d ms$/)
    })

    test('the failures table shows the failed login with its cause and frontend, and no sub, state, code or cookie', async () => {
      const failures = watched.page.getByRole('table', { name: 'Recent login and refresh failures' })
      const rows = await tableRows(failures)
      assert.equal(rows.length, 1)
      const [failure] = rows
      assert.deepEqual(
        { kind: failure!.Kind, cause: failure!.Cause, frontend: failure!.Frontend },
        { kind: 'login', cause: 'state_missing', frontend: 'default' },
      )
      assert.equal(await failures.locator('tbody tr td time[datetime]').count(), 1, 'its time')
      const shown = (await failures.textContent()) ?? ''
      for (const secret of [ALICE, BOB, FORGED_STATE, 'forged-code', alice1.cookie, bob.cookie, alice1.sid])
        assert.ok(!shown.includes(secret), `the failures table shows no ${secret}`)
    })

    test('the page passes the accessibility check: every control named, tables captioned, one main, one h1', async () => {
      assert.deepEqual(await accessibilityProblems(watched.page), [])
    })

    test("search by sub with Enter, revoke one of Alice's sessions, then all of them; Bob's stays", async () => {
      const { page } = watched
      const table = page.getByRole('table', { name: 'Sessions' })
      const rows = page.locator('#sessions-body tr')
      // Unfiltered: every live session, newest first (Bob logged in last).
      await page.locator('#sessions-summary').filter({ hasText: '3 live sessions' }).waitFor()
      assert.equal(await rows.count(), 3)
      assert.equal(((await rows.first().locator('th').textContent()) ?? '').trim(), BOB)

      const search = page.getByRole('search', { name: 'Sessions by user' })
      await search.getByLabel('User (sub)').fill(ALICE)
      await search.getByLabel('User (sub)').press('Enter')
      await page
        .locator('#sessions-summary')
        .filter({ hasText: `2 live sessions of ${ALICE}` })
        .waitFor()
      assert.equal(await rows.count(), 2)
      const headers = (await table.locator('thead th').allTextContents()).map((s) => s.trim())
      assert.deepEqual(headers, [
        'User (sub)',
        'Session (sid)',
        'Frontend',
        'Created',
        'Last renewed',
        'Expires',
        'Actions',
      ])
      for (const sub of await rows.locator('th').allTextContents()) assert.equal(sub.trim(), ALICE)
      assert.equal(await rows.filter({ hasText: bob.sid }).count(), 0, "Bob's session is not in Alice's list")

      // Revoke the row of Alice's first browser (found by its sid, as an operator would).
      const row1 = rows.filter({ hasText: alice1.sid })
      assert.equal(await row1.count(), 1)
      assert.equal(((await row1.locator('td').nth(1).textContent()) ?? '').trim(), 'default')
      const revoke = row1.getByRole('button', { name: 'Revoke', exact: true })
      assert.equal(await revoke.getAttribute('data-id-hash'), hashSessionId(alice1.cookie))
      await revoke.click()
      await page.locator('#message').filter({ hasText: 'Session revoked.' }).waitFor()
      await row1.waitFor({ state: 'detached' })
      assert.equal(await rows.count(), 1)
      assert.equal(await rows.filter({ hasText: alice2.sid }).count(), 1)
      assert.equal(await userStatus(flow, alice1.browser), 401, 'the revoked session is refused')
      assert.equal(await userStatus(flow, alice2.browser), 200, "Alice's other session lives")

      // Revoke all of Alice's sessions, through the confirmation.
      await page.getByRole('button', { name: 'Revoke all sessions of this user' }).click()
      const confirm = page.getByRole('button', { name: `Confirm: revoke 1 session of ${ALICE}` })
      assert.equal(await page.getByRole('button', { name: 'Cancel' }).isVisible(), true)
      await confirm.click()
      await page.locator('#message').filter({ hasText: '1 session revoked' }).waitFor()
      await page
        .locator('#sessions-body')
        .filter({ hasText: `No live sessions of ${ALICE}.` })
        .waitFor()
      assert.equal(await page.locator('#sessions-body button').count(), 0)
      assert.equal(await userStatus(flow, alice2.browser), 401, "Alice's other session is refused now")
      assert.equal(await userStatus(flow, bob.browser), 200, 'Bob is unaffected')

      const revokes = log.entries().filter((e) => e.event === 'admin_revoke')
      assert.deepEqual(
        revokes.map((e) => [e.by, e.sessions]),
        [
          ['id', 1],
          ['sub', 1],
        ],
      )
    })

    test('signing out forgets the token and the data', async () => {
      const { page } = watched
      await page.getByRole('button', { name: 'Sign out' }).click()
      await page.getByLabel('Admin token').waitFor()
      assert.equal(await page.evaluate(() => sessionStorage.length + localStorage.length), 0)
      for (const body of ['#sessions-body', '#apis-body', '#failures-body'])
        assert.equal(await page.locator(`${body} tr`).count(), 0, body)
      assert.ok(!(await page.content()).includes(BOB))
      // A reload finds no token to sign in with.
      await page.reload()
      await page.getByLabel('Admin token').waitFor()
      assert.equal(await page.locator('#console').isVisible(), false)
    })

    test('no CSP violation and no script error while the console ran', async () => {
      assert.deepEqual(await watched.violations(), [])
      assert.deepEqual(watched.pageErrors, [])
    })
  })
}

describe('the admin console without admin.token', () => {
  let flow: Flow
  let admin: Awaited<ReturnType<typeof mountAdmin>>
  let watched: Watched

  before(async () => {
    flow = await startFlow({ gatehouse: { session: { store: 'memory' } } })
    admin = await mountAdmin(flow.gatehouse.adminHandler)
    watched = await openWatched(admin.url)
  })
  after(async () => {
    await watched?.context.close()
    await admin?.close()
    await flow?.close()
  })

  test('says how to set a token and offers no sign-in field', async () => {
    const { page } = watched
    const res = await page.goto(`${admin.url}/`)
    assert.equal(res?.status(), 200)
    const noToken = page.locator('#no-token')
    await noToken.waitFor({ state: 'visible' })
    assert.match((await noToken.textContent()) ?? '', /admin\.token/)
    assert.equal(await page.locator('#sign-in').isVisible(), false)
    assert.equal(await page.getByLabel('Admin token').isVisible(), false)
    assert.equal(await page.getByRole('button', { name: 'Sign in' }).isVisible(), false)
    assert.equal(await page.locator('#console').isVisible(), false)
    assert.deepEqual(await watched.violations(), [])
    assert.deepEqual(watched.pageErrors, [])
  })
})

test('the accessibility check finds an unnamed control, an uncaptioned table, a missing main and h1', async () => {
  // The check above is only worth something if it can fail.
  const context = await browser.newContext()
  try {
    const page = await context.newPage()
    await page.setContent(
      '<button></button><input type="search"><a href="#x"><img src="data:," alt=""></a>' +
        '<table><tr><th>a</th></tr><tr><td>1</td></tr></table>',
    )
    const problems = await accessibilityProblems(page)
    for (const expected of [
      'a button without an accessible name',
      'a searchbox without an accessible name',
      'a link without an accessible name',
      'a table without a name (caption)',
      '0 main landmarks, not 1',
      '0 level-1 headings, not 1',
    ])
      assert.ok(problems.includes(expected), `${expected} in ${JSON.stringify(problems)}`)
  } finally {
    await context.close()
  }
})
