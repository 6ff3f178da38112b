import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { chromium, type Browser } from 'playwright-core'
import { startCli } from '../helpers/cli.ts'

const CHROMIUM = '/usr/bin/chromium'

let demo: Awaited<ReturnType<typeof startCli>>
let browser: Browser
let url: string
const dir = mkdtempSync(join(tmpdir(), 'gatehouse-browser-'))

before(async () => {
  demo = await startCli(['demo', '--port', '0', '--data-dir', join(dir, 'data')], /Open:\s+(http:\/\/localhost:\d+\/)/, { cwd: dir })
  url = demo.match[1]!
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-gpu', '--no-first-run'] })
})

after(async () => {
  await browser?.close()
  if (demo && demo.child.exitCode === null) demo.child.kill('SIGTERM')
  rmSync(dir, { recursive: true, force: true })
})

test('in Chromium the demo logs in at the IdP form, shows the claims, calls the API and logs out', async () => {
  const page = await browser.newPage()
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
  const api = JSON.parse((await page.locator('#api-result').innerText()).split('\n').slice(1).join('\n')) as { message: string; accessTokenCheckedAt: { sub: string } }
  assert.equal(api.message, 'Hello Alice Example from the demo API')
  assert.equal(api.accessTokenCheckedAt.sub, 'alice-0001', 'the API used the session access token server-side')

  await page.getByRole('button', { name: 'Log out' }).click()
  await page.getByRole('button', { name: 'Yes, sign me out' }).click()
  await page.getByText('You are not logged in.').waitFor()
  assert.equal(new URL(page.url()).pathname, '/')
  assert.equal((await page.context().cookies()).find((c) => c.name === '__Host-gatehouse'), undefined, 'session cookie cleared')
})

test('the demo exits 0 on SIGTERM', async () => {
  demo.child.kill('SIGTERM')
  assert.equal(await demo.exited, 0)
})
