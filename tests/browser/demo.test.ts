import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { chromium, type Browser } from 'playwright-core'
import { DatabaseSync } from 'node:sqlite'
import { readFileSync } from 'node:fs'
import { KeyRing } from '../../src/session/seal.ts'
import { sessionSealPurpose } from '../../src/session/sessions.ts'
import type { SessionData } from '../../src/session/session.ts'
import { createServer, type Server } from 'node:net'
import { runDemo } from '../../src/demo/demo.ts'
import { runCli, startCli } from '../helpers/cli.ts'

const CHROMIUM = '/usr/bin/chromium'

let demo: Awaited<ReturnType<typeof startCli>>
let browser: Browser
let url: string
const dir = mkdtempSync(join(tmpdir(), 'gatehouse-browser-'))

before(async () => {
  demo = await startCli(
    ['demo', '--port', '0', '--data-dir', join(dir, 'data')],
    /Open:\s+(http:\/\/localhost:\d+\/)/,
    { cwd: dir },
  )
  url = demo.match[1]!
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-gpu', '--no-first-run'],
  })
})

after(async () => {
  await browser?.close()
  if (demo && demo.child.exitCode === null) demo.child.kill('SIGTERM')
  rmSync(dir, { recursive: true, force: true })
})

test('in Chromium the demo logs in at the IdP form, shows the claims, calls the API and logs out', async () => {
  const page = await browser.newPage()
  // Everything the page received from gatehouse's origin, to prove afterwards that no token was among it.
  const seenByBrowser: string[] = []
  page.on('response', async (response) => {
    if (!response.url().startsWith(url)) return
    seenByBrowser.push(JSON.stringify(await response.allHeaders()))
    seenByBrowser.push(await response.text().catch(() => ''))
  })
  await page.goto(url)
  await page.getByText('You are not logged in.').waitFor()

  await page.getByRole('button', { name: 'Log in' }).click()
  await page.getByLabel('Username').fill('alice')
  await page.getByLabel('Password').fill('alice-demo-password')
  await page.getByRole('button', { name: 'Sign in' }).click()

  await page.getByText('Logged in as Alice Example.').waitFor()
  const claims = await page.locator('#claims').innerText()
  assert.match(claims, /sub\s+alice-0001/)
  assert.match(claims, /bff:logout_url\s+\/bff\/logout\?sid=/)
  assert.equal(await page.locator('#doc-cookie').innerText(), '""', 'the page cannot read its session cookie')
  const cookies = await page.context().cookies()
  const session = cookies.find((c) => c.name === '__Host-gatehouse')
  assert.ok(session?.httpOnly && session.secure, 'the session cookie is HttpOnly and Secure')

  await page.getByRole('button', { name: 'Call the API' }).click()
  await page.locator('#api-result').getByText('200 OK').waitFor()
  const api = JSON.parse((await page.locator('#api-result').innerText()).split('\n').slice(1).join('\n')) as {
    message: string
    tokenSeenByApi: { active: boolean; sub: string; scope: string }
    cookieSeenByApi: string | null
  }
  assert.equal(api.message, 'Hello from the demo API')
  assert.equal(
    api.tokenSeenByApi.sub,
    'alice-0001',
    'gatehouse attached the session access token; the IdP vouched for it',
  )
  assert.match(api.tokenSeenByApi.scope, /\bopenid\b/)
  assert.equal(api.cookieSeenByApi, null, 'the session cookie never reached the API')

  const { accessToken, refreshToken, idToken } = readDemoTokens(join(dir, 'data'))
  for (const token of [accessToken, refreshToken, idToken]) {
    assert.ok(token && token.length > 20)
    assert.ok(!seenByBrowser.some((text) => text.includes(token)), 'no token ever reached the browser')
  }

  await page.getByRole('button', { name: 'Log out' }).click()
  await page.getByRole('button', { name: 'Yes, sign me out' }).click()
  await page.getByText('You are not logged in.').waitFor()
  await page.getByText('You have been logged out.').waitFor()
  assert.equal(new URL(page.url()).pathname, '/')
  assert.equal(new URL(page.url()).search, '', 'the page tidies its address after saying so')
  assert.equal(
    (await page.context().cookies()).find((c) => c.name === '__Host-gatehouse'),
    undefined,
    'session cookie cleared',
  )
  // A reload says nothing about a logout any more.
  await page.reload()
  await page.getByText('You are not logged in.').waitFor()
  assert.equal(await page.locator('#notice').isHidden(), true)
  assert.doesNotMatch(demo.output(), /NOTICE/, "oidc-provider's development notices are not shown")
})

test('the demo exits 0 on SIGTERM', async () => {
  demo.child.kill('SIGTERM')
  assert.equal(await demo.exited, 0)
})

/** Holds a loopback port (any free one, or `port`) until closed. */
async function holdPort(port = 0): Promise<Server & { port: number }> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', () => resolve()))
  return Object.assign(server, { port: (server.address() as { port: number }).port })
}

function release(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()))
}

test("demo: gatehouse's port in use gives one line naming it and --port, and exit code 1", async () => {
  const held = await holdPort()
  try {
    const res = await runCli(['demo', '--port', String(held.port), '--data-dir', join(dir, 'busy-1')], { cwd: dir })
    assert.equal(res.code, 1)
    assert.equal(res.stdout, '')
    assert.equal(
      res.stderr,
      `gatehouse: port ${held.port} (gatehouse) is already in use; choose another with --port N, or stop what is using it\n`,
    )
  } finally {
    await release(held)
  }
})

test("demo: the IdP's port (gatehouse's + 1) in use gives one line naming it and --idp-port, and exit code 1", async () => {
  // A held port whose predecessor is free, for gatehouse itself.
  let held: Server & { port: number }
  for (;;) {
    held = await holdPort()
    const before = await holdPort(held.port - 1).catch(() => undefined)
    if (before) {
      await release(before)
      break
    }
    await release(held)
  }
  try {
    const res = await runCli(['demo', '--port', String(held.port - 1), '--data-dir', join(dir, 'busy-2')], { cwd: dir })
    assert.equal(res.code, 1)
    assert.equal(
      res.stderr,
      `gatehouse: port ${held.port} (the demo identity provider) is already in use; choose another with --idp-port N, or stop what is using it\n`,
    )
    assert.doesNotMatch(res.stderr, /\n\s+at /, 'no stack trace')
  } finally {
    await release(held)
  }
})

test("demo: idpPort and apiPort choose the IdP's and the API's ports; a busy one is named and the rest is closed again", async () => {
  const [idpHeld, apiHeld] = [await holdPort(), await holdPort()]
  await release(idpHeld)
  const output: string[] = []
  await assert.rejects(
    runDemo({
      port: 0,
      idpPort: idpHeld.port,
      apiPort: apiHeld.port,
      dataDir: join(dir, 'busy-3'),
      print: (t) => output.push(t),
    }),
    new Error(
      `port ${apiHeld.port} (the demo API) is already in use; choose another with --api-port N, or stop what is using it`,
    ),
  )
  // The IdP that did start on idpPort was closed again: its port is free.
  await release(await holdPort(idpHeld.port))
  await release(apiHeld)
  const running = await runDemo({
    port: 0,
    idpPort: idpHeld.port,
    apiPort: apiHeld.port,
    dataDir: join(dir, 'busy-3'),
    print: (t) => output.push(t),
  })
  try {
    assert.equal(new URL(running.issuer).port, String(idpHeld.port))
    assert.match(output.join(''), new RegExp(`Demo API:\\s+http://127\\.0\\.0\\.1:${apiHeld.port}\\b`))
  } finally {
    await running.close()
  }
})

/** The demo's one session's tokens, read from its SQLite file with its key (what only gatehouse holds). */
function readDemoTokens(dataDir: string): SessionData['tokens'] {
  const db = new DatabaseSync(join(dataDir, 'sessions.db'), { readOnly: true })
  try {
    const row = db.prepare('SELECT * FROM gatehouse_sessions').get() as {
      id_hash: string
      sub: string
      sid: string | null
      partition: string
      created_at: number
      sealed: string
    }
    const ring = new KeyRing([readFileSync(join(dataDir, 'key'), 'utf8').trim()])
    const purpose = sessionSealPurpose({
      idHash: row.id_hash,
      sub: row.sub,
      sid: row.sid ?? undefined,
      partition: row.partition,
      createdAt: Number(row.created_at),
    })
    return (JSON.parse(ring.unseal(row.sealed, purpose)!) as SessionData).tokens
  } finally {
    db.close()
  }
}
