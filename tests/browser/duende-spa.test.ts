import assert from 'node:assert/strict'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import { CLIENT_ID, CLIENT_SECRET, startFlow, type Flow } from '../helpers/flow.ts'
import { introspect } from '../helpers/upstream.ts'

// A SPA written the way Duende.BFF's JavaScript samples are (tests/browser/duende-spa: plain JS, no
// gatehouse client library), served by gatehouse as its frontend, driven in real Chromium against
// a real IdP login form and a real todo API behind gatehouse's proxy. It is the drop-in promise:
// a front-end written for Duende.BFF works unchanged.

const SPA_FOLDER = join(import.meta.dirname, 'duende-spa')

interface Todo {
  id: number
  name: string
  date: string
}

interface TodoApi {
  url: string
  /** Every request that reached the API, in order. */
  received: Array<{
    method: string
    url: string
    authorization: string | undefined
    cookie: string | undefined
    csrf: string | undefined
  }>
  todos: Todo[]
  close(): Promise<void>
}

/** An in-memory todo API under /todos that, like any resource server, refuses calls without a bearer token. */
async function startTodoApi(): Promise<TodoApi> {
  const received: TodoApi['received'] = []
  const todos: Todo[] = []
  let nextId = 1
  const server: Server = createServer((req, res) => {
    const headers: IncomingHttpHeaders = req.headers
    received.push({
      method: req.method ?? '',
      url: req.url ?? '',
      authorization: headers.authorization,
      cookie: headers.cookie,
      csrf: headers['x-csrf'] as string | undefined,
    })
    const send = (status: number, body?: unknown) => {
      if (body === undefined) return void res.writeHead(status).end()
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(body))
    }
    const chunks: Buffer[] = []
    req.on('data', (d: Buffer) => chunks.push(d))
    req.on('end', () => {
      if (!/^Bearer \S+$/.test(headers.authorization ?? '')) return send(401, { error: 'a bearer token is required' })
      const path = new URL(req.url ?? '/', 'http://todo-api.invalid').pathname
      const match = /^\/todos(?:\/(\d+))?$/.exec(path)
      if (!match) return send(404, { error: 'not found' })
      let body: Partial<Todo> = {}
      if (chunks.length) {
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Partial<Todo>
        } catch {
          return send(400, { error: 'the body is not JSON' })
        }
      }
      if (match[1] === undefined) {
        if (req.method === 'GET') return send(200, todos)
        if (req.method === 'POST') {
          const todo = { id: nextId++, name: String(body.name ?? ''), date: String(body.date ?? '') }
          todos.push(todo)
          return send(201, todo)
        }
        return send(405, { error: 'method not allowed' })
      }
      const index = todos.findIndex((t) => t.id === Number(match[1]))
      if (index < 0) return send(404, { error: 'no such todo' })
      if (req.method === 'GET') return send(200, todos[index])
      if (req.method === 'PUT') {
        todos[index] = { id: todos[index]!.id, name: String(body.name ?? ''), date: String(body.date ?? '') }
        return send(200, todos[index])
      }
      if (req.method === 'DELETE') {
        todos.splice(index, 1)
        return send(204)
      }
      send(405, { error: 'method not allowed' })
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    todos,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

let api: TodoApi
let flow: Flow
let browser: Browser
let context: BrowserContext
let page: Page

before(async () => {
  api = await startTodoApi()
  flow = await startFlow({
    gatehouse: {
      frontends: [{ name: 'app', path: '/', static: SPA_FOLDER }],
      // A target with a base path: /todos/7 goes to <api>/todos/7.
      remoteApis: [{ path: '/todos', target: `${api.url}/todos`, token: 'user' }],
    },
  })
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-gpu', '--no-first-run'],
  })
  context = await browser.newContext()
  context.setDefaultTimeout(15_000)
  page = await context.newPage()
})

after(async () => {
  await context?.close()
  await browser?.close()
  await flow?.close()
  await api?.close()
})

/** Waits until the todo list shows exactly these names, in order; then asserts it (for a readable failure). */
async function expectTodoNames(expected: string[]): Promise<void> {
  const names = () => page.locator('#todos .todo-name').allInnerTexts()
  await page
    .waitForFunction(
      (want) =>
        JSON.stringify(
          Array.from(document.querySelectorAll('#todos .todo-name'), (e) => (e as HTMLElement).innerText),
        ) === want,
      JSON.stringify(expected),
    )
    .catch(() => undefined)
  assert.deepEqual(await names(), expected)
}

/** Clicks the SPA's login link and signs in as alice at the IdP's form; resolves once the app shows her. */
async function logInAsAlice(): Promise<void> {
  await page.getByRole('link', { name: 'Login' }).click()
  await page.getByLabel('Username').fill('alice')
  await page.getByLabel('Password').fill('alice-demo-password')
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.locator('#status').getByText('logged in as Alice Example').waitFor()
  assert.equal(new URL(page.url()).origin, flow.origin, 'back in the app after the IdP')
}

/** What /bff/user answers the page now (with the anti-forgery header, as the SPA sends it). */
function bffUserStatus(): Promise<number> {
  return page.evaluate(async () => (await fetch('/bff/user', { headers: { 'x-csrf': '1' } })).status)
}

/** Confirms the sign-out at the IdP; resolves once the app, back at its own origin, shows nobody. */
async function confirmSignOutAtIdp(): Promise<void> {
  await page.getByRole('button', { name: 'Yes, sign me out' }).click()
  await page.locator('#status').getByText('not logged in').waitFor()
  assert.equal(new URL(page.url()).origin, flow.origin)
}

test('the SPA served by gatehouse at / shows "not logged in" and a login link before anyone logs in', async () => {
  const res = await page.goto(`${flow.origin}/`)
  assert.equal(res?.status(), 200)
  await page.locator('#status').getByText('not logged in').waitFor()
  assert.equal(await page.getByRole('link', { name: 'Login' }).getAttribute('href'), '/bff/login')
  assert.equal(await bffUserStatus(), 401)
})

test('logging in through the /bff/login link shows alice with her claims as Duende-style strings', async () => {
  await logInAsAlice()
  assert.equal(await page.locator('#userName').innerText(), 'Alice Example')
  assert.equal(await page.locator('#userSub').innerText(), 'alice-0001')
  assert.notEqual(
    await page.locator('#userSid').innerText(),
    'undefined',
    'the IdP issued a sid claim and /bff/user passes it on',
  )
  assert.ok((await page.locator('#userSid').innerText()).length > 0)
  // The app compares email_verified with the string "true": "yes" proves the value is a string.
  assert.equal(await page.locator('#emailVerified').innerText(), 'yes')
  const verified = await page.evaluate(async () => {
    const claims = (await (await fetch('/bff/user', { headers: { 'x-csrf': '1' } })).json()) as Array<{
      type: string
      value: unknown
    }>
    return claims.find((c) => c.type === 'email_verified')?.value
  })
  assert.equal(verified, 'true')

  const session = (await context.cookies()).find((c) => c.name === '__Host-gatehouse')
  assert.ok(session?.httpOnly && session.secure, 'the session cookie is HttpOnly and Secure')
  assert.equal(
    await page.evaluate(() => document.cookie.includes('__Host-gatehouse')),
    false,
    'the page cannot read its session cookie',
  )
})

test("todos are listed, created, renamed and deleted through the proxied /todos API, which gets alice's bearer token", async () => {
  await page.waitForFunction(() => document.getElementById('todos')?.dataset.loaded === 'true')
  await expectTodoNames([])

  await page.getByLabel('What').fill('buy milk')
  await page.getByLabel('When').fill('2026-05-01')
  await page.getByRole('button', { name: 'Add' }).click()
  await expectTodoNames(['buy milk'])
  await page.getByLabel('What').fill('write the report')
  await page.getByLabel('When').fill('2026-05-02')
  await page.getByRole('button', { name: 'Add' }).click()
  await expectTodoNames(['buy milk', 'write the report'])

  // Editing replaces the name with an input, so the row is held by its id, not its text.
  const milkId = await page.locator('#todos tr', { hasText: 'buy milk' }).getAttribute('data-id')
  const milk = page.locator(`#todos tr[data-id="${milkId}"]`)
  await milk.getByRole('button', { name: 'Edit' }).click()
  await milk.getByLabel('New name').fill('buy oat milk')
  await milk.getByRole('button', { name: 'Save' }).click()
  await expectTodoNames(['buy oat milk', 'write the report'])

  await page.locator('#todos tr', { hasText: 'write the report' }).getByRole('button', { name: 'Delete' }).click()
  await expectTodoNames(['buy oat milk'])

  // A reload lists what the API kept, not what the page remembered.
  await page.reload()
  await page.waitForFunction(() => document.getElementById('todos')?.dataset.loaded === 'true')
  await expectTodoNames(['buy oat milk'])
  assert.equal(
    await page.locator('#todos tr', { hasText: 'buy oat milk' }).locator('td').nth(1).innerText(),
    '2026-05-01',
  )
  assert.deepEqual(api.todos, [{ id: 1, name: 'buy oat milk', date: '2026-05-01' }])

  // What the API saw: every CRUD call, each with a bearer token, none with the browser's cookie or CSRF header.
  assert.deepEqual(
    api.received.map((r) => `${r.method} ${r.url}`),
    ['GET /todos', 'POST /todos', 'POST /todos', 'PUT /todos/1', 'DELETE /todos/2', 'GET /todos'],
  )
  for (const r of api.received) {
    assert.match(r.authorization ?? '', /^Bearer \S+$/, `${r.method} ${r.url} carried a bearer token`)
    assert.ok(!(r.cookie ?? '').includes('__Host-gatehouse'), 'the session cookie never reached the API')
    assert.equal(r.csrf, undefined, 'the anti-forgery header is not forwarded')
  }
  // The token is alice's, issued by the IdP to gatehouse: the IdP vouches for it.
  const token = api.received.at(-1)!.authorization!.slice('Bearer '.length)
  const info = await introspect(flow.idp.issuer, token, CLIENT_ID, CLIENT_SECRET)
  assert.equal(info.active, true)
  assert.equal(info.sub, 'alice-0001')
})

test('a fetch from the page to an unknown API path with x-csrf gets 404 problem+json, not index.html', async () => {
  const answer = await page.evaluate(async () => {
    const res = await fetch('/api/does-not-exist', { headers: { 'x-csrf': '1' } })
    return { status: res.status, contentType: res.headers.get('content-type'), body: await res.text() }
  })
  assert.equal(answer.status, 404, `got ${answer.status} ${answer.contentType}: ${answer.body.slice(0, 120)}`)
  assert.match(answer.contentType ?? '', /^application\/problem\+json\b/)
  assert.doesNotMatch(answer.body, /<html|<!DOCTYPE/i)
  assert.equal((JSON.parse(answer.body) as { status?: number }).status, 404)
})

test('logging out with /bff/logout?sid=<the sid claim> ends the session: the app shows "not logged in" and /bff/user is 401', async () => {
  const sid = await page.locator('#userSid').innerText()
  assert.ok(sid.length > 0)
  const seenByApi = api.received.length
  // The app builds the logout URL itself from the sid claim (Duende's documented way).
  const logoutRequest = page.waitForRequest(
    (req) => req.url() === `${flow.origin}/bff/logout?sid=${encodeURIComponent(sid)}`,
  )
  await page.getByRole('button', { name: 'Logout', exact: true }).click()
  await logoutRequest
  await confirmSignOutAtIdp()
  assert.equal(await bffUserStatus(), 401)
  assert.equal(
    (await context.cookies()).find((c) => c.name === '__Host-gatehouse'),
    undefined,
    'session cookie cleared',
  )
  // The API is out of reach too, and is not even asked.
  const todos = await page.evaluate(async () => (await fetch('/todos', { headers: { 'x-csrf': '1' } })).status)
  assert.equal(todos, 401)
  assert.equal(api.received.length, seenByApi, 'no call reached the API after logout')
})

test('after logging in again, following the bff:logout_url claim logs out as well', async () => {
  await logInAsAlice()
  await page.waitForFunction(() => document.getElementById('todos')?.dataset.loaded === 'true')
  await expectTodoNames(['buy oat milk'])
  const logoutUrl = await page.evaluate(async () => {
    const claims = (await (await fetch('/bff/user', { headers: { 'x-csrf': '1' } })).json()) as Array<{
      type: string
      value: string
    }>
    return claims.find((c) => c.type === 'bff:logout_url')?.value
  })
  const sid = await page.locator('#userSid').innerText()
  assert.equal(logoutUrl, `/bff/logout?sid=${encodeURIComponent(sid)}`)
  const logoutRequest = page.waitForRequest((req) => req.url() === `${flow.origin}${logoutUrl}`)
  await page.getByRole('button', { name: 'Logout (bff:logout_url)' }).click()
  await logoutRequest
  await confirmSignOutAtIdp()
  assert.equal(await bffUserStatus(), 401)
  await page.getByRole('link', { name: 'Login' }).waitFor()
})
