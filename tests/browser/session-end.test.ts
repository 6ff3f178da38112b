import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { chromium, type Browser, type Page } from 'playwright-core'
import { startCli } from '../helpers/cli.ts'

let demo: Awaited<ReturnType<typeof startCli>>
let browser: Browser
let url: string
let issuer: string
const dir = mkdtempSync(join(tmpdir(), 'gatehouse-tabs-'))

before(async () => {
  demo = await startCli(
    ['demo', '--port', '0', '--data-dir', join(dir, 'data')],
    /Open:\s+(http:\/\/localhost:\d+\/)[\s\S]*Identity provider: (http:\/\/localhost:\d+)/,
    { cwd: dir },
  )
  url = demo.match[1]!
  issuer = demo.match[2]!
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-gpu', '--no-first-run'],
  })
})

after(async () => {
  await browser?.close()
  if (demo && demo.child.exitCode === null) demo.child.kill('SIGTERM')
  rmSync(dir, { recursive: true, force: true })
})

async function loggedInTabs(): Promise<[Page, Page]> {
  const context = await browser.newContext()
  const first = await context.newPage()
  await first.goto(url)
  await first.getByRole('button', { name: 'Log in' }).click()
  await first.getByLabel('Username').fill('alice')
  await first.getByLabel('Password').fill('alice-demo-password')
  await first.getByRole('button', { name: 'Sign in' }).click()
  await first.getByText('Logged in as Alice Example.').waitFor()
  const second = await context.newPage()
  await second.goto(url)
  await second.getByText('Logged in as Alice Example.').waitFor()
  return [first, second]
}

test('logging out in one tab tells the other tab at once through onSessionEnd', async () => {
  const [first, second] = await loggedInTabs()
  await first.getByRole('button', { name: 'Log out' }).click()
  await first.getByRole('button', { name: 'Yes, sign me out' }).click()
  // The other tab learns within a second, without reloading or polling.
  await second.getByText('Your session ended (logout).').waitFor({ timeout: 1_000 })
  await first.context().close()
})

test('a back-channel logout from the IdP tells the open tab', async () => {
  const [first, second] = await loggedInTabs()
  // Sign out at the IdP directly: gatehouse hears of it only through the IdP's back-channel call.
  await first.goto(`${issuer}/session/end?client_id=gatehouse-demo`)
  await first.getByRole('button', { name: 'Yes, sign me out' }).click()
  await second.getByText('Your session ended (backchannel).').waitFor({ timeout: 3_000 })
  assert.equal(await second.getByRole('button', { name: 'Log in' }).isVisible(), true)
  await first.context().close()
})
