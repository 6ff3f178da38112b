/**
 * Makes docs/images/admin-console.png, the admin console as the README shows it: a real gatehouse in
 * front of the embedded oidc-provider IdP, two frontends ("web" and "partners"), two remote APIs with
 * a few calls (one answered 502), two failed logins, and the console signed in at 1280x800 in Chromium
 * (/usr/bin/chromium, or CHROMIUM_PATH).
 *
 * The embedded IdP knows two users (subs alice-0001 and bob-0002), who log in for real. So that the
 * table looks like a deployment's, a few more sessions are written straight into the store with subs
 * as IdPs issue them (UUIDs, e-mail addresses, Auth0-style ids): metadata only, no tokens.
 *
 *   node scripts/console-screenshot.ts [--out PATH] [--full-page]
 */
import { randomBytes, randomUUID } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { chromium } from 'playwright-core'
import { hashSessionId } from '../src/session/sessions.ts'
import { MemoryStore } from '../src/session/stores/memory.ts'
import type { BrowserJar } from '../tests/helpers/browser-jar.ts'
import { CSRF, startFlow } from '../tests/helpers/flow.ts'
import { startUpstream } from '../tests/helpers/upstream.ts'

const { values } = parseArgs({
  options: {
    out: { type: 'string', default: join(import.meta.dirname, '..', 'docs', 'images', 'admin-console.png') },
    /** The whole page (remote APIs and failures too) rather than the 1280x800 window. */
    'full-page': { type: 'boolean', default: false },
  },
})
const out = resolve(values.out!)
const TOKEN = randomBytes(24).toString('base64url')
const PARTNERS = { id: 'partners-bff', secret: 'partners-bff-secret-0123456789' }
const MINUTE = 60_000
const HOUR = 60 * MINUTE

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-screenshot-'))
for (const name of ['web', 'partners']) {
  mkdirSync(join(dir, name))
  writeFileSync(join(dir, name, 'index.html'), `<!doctype html><title>${name}</title>`)
}
const store = new MemoryStore()
const upstream = await startUpstream()
const flow = await startFlow({
  extraClients: (origin) => [
    {
      client_id: PARTNERS.id,
      client_secret: PARTNERS.secret,
      redirect_uris: [`${origin}/partners/signin-oidc`],
      post_logout_redirect_uris: [`${origin}/partners/signout-callback-oidc`],
      backchannel_logout_uri: `${origin}/partners/bff/backchannel`,
    },
  ],
  // A Keycloak-style issuer path, as most deployments' issuers have one.
  idp: { issuerPath: '/realms/acme' },
  runtime: { store },
  gatehouse: {
    session: { store: 'memory' },
    admin: { token: TOKEN },
    frontends: [
      { name: 'web', path: '/', static: join(dir, 'web') },
      {
        name: 'partners',
        path: '/partners',
        static: join(dir, 'partners'),
        oidc: { clientId: PARTNERS.id, clientSecret: PARTNERS.secret },
      },
    ],
    remoteApis: [
      { path: '/api/orders', target: upstream.url, token: 'user' },
      { path: '/api/catalog', target: upstream.url, token: 'user' },
    ],
  },
})
const adminServer = createServer((req, res) => flow.gatehouse.adminHandler(req, res))
await new Promise<void>((done) => adminServer.listen(0, '127.0.0.1', done))
const adminUrl = `http://127.0.0.1:${(adminServer.address() as AddressInfo).port}`

try {
  /** Logs a fresh browser in at the frontend under `prefix` ('' or '/partners') through the IdP's form. */
  async function login(username: string, prefix = ''): Promise<BrowserJar> {
    const browser = flow.browser()
    if (prefix === '') {
      await flow.login(browser, { username })
      return browser
    }
    const start = await browser.get(`${flow.origin}${prefix}/bff/login`)
    const form = await browser.follow(await browser.get(new URL(start.headers.get('location')!).href))
    let res = await browser.submitForm(form, { username, password: `${username}-demo-password` })
    for (let i = 0; i < 15 && res.status >= 300 && res.status < 400; i++) {
      const next = new URL(res.headers.get('location')!, res.url).href
      res = await browser.get(next)
      if (next.includes('/signin-oidc')) break
    }
    return browser
  }

  const alice = await login('alice')
  await login('alice', '/partners')
  const bob = await login('bob')
  for (let i = 0; i < 14; i++) await alice.get(`${flow.origin}/api/orders/echo`, CSRF)
  for (let i = 0; i < 6; i++) await bob.get(`${flow.origin}/api/catalog/echo`, CSRF)
  await bob.get(`${flow.origin}/api/catalog/status/502`, CSRF)
  // Failed logins: callbacks with a state gatehouse never issued (a replayed or forged link).
  await flow.browser().get(`${flow.origin}/signin-oidc?code=x&state=${randomUUID()}`)
  await flow.browser().get(`${flow.origin}/partners/signin-oidc?code=x&state=${randomUUID()}`)

  const now = Date.now()
  const seeded: Array<[sub: string, partition: string, ageMs: number, idleMs: number]> = [
    ['3f2b8c1e-9d47-4a6b-b0e5-7c19a2d4f806', 'web', 7 * HOUR, 4 * MINUTE],
    ['maria.garcia@example.com', 'partners', 5 * HOUR, 22 * MINUTE],
    ['auth0|64f1c2a9e8b7d6c5b4a3f201', 'web', 3 * HOUR + 12 * MINUTE, 2 * MINUTE],
    ['9a0d5e7f-1c3b-4f28-8e6a-b4c2d1f09e37', 'web', 2 * HOUR + 40 * MINUTE, 51 * MINUTE],
    ['maria.garcia@example.com', 'web', 95 * MINUTE, 6 * MINUTE],
    ['k.tanaka@example.org', 'partners', 48 * MINUTE, 48 * MINUTE],
    ['e61c0b94-2a7d-4d3f-9b18-5f0e83c7a2d6', 'web', 17 * MINUTE, 1 * MINUTE],
  ]
  for (const [sub, partition, ageMs, idleMs] of seeded) {
    const createdAt = now - ageMs
    await store.set({
      idHash: hashSessionId(randomBytes(32).toString('base64url')),
      sub,
      sid: randomUUID(),
      partition,
      createdAt,
      renewedAt: now - idleMs,
      expiresAt: now - idleMs + 8 * HOUR,
      version: 1,
      sealed: 'screenshot',
    })
  }

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-gpu', '--no-first-run'],
  })
  try {
    const context = await browser.newContext({
      viewport: { width: 1280, height: 800 },
      locale: 'en-GB',
      timezoneId: 'UTC',
    })
    const page = await context.newPage()
    await page.goto(`${adminUrl}/`)
    await page.getByLabel('Admin token').fill(TOKEN)
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.locator('#idp-discovery').filter({ hasText: 'ok' }).waitFor()
    await page.locator('#sessions-body button').first().waitFor()
    // No focus ring and no caret in the picture.
    await page.evaluate(() => (document.activeElement as HTMLElement | null)?.blur())
    mkdirSync(dirname(out), { recursive: true })
    await page.screenshot({ path: out, fullPage: values['full-page'] })
    console.log(`wrote ${out}`)
  } finally {
    await browser.close()
  }
} finally {
  adminServer.closeAllConnections()
  adminServer.close()
  await flow.close()
  await upstream.close()
  rmSync(dir, { recursive: true, force: true })
}
