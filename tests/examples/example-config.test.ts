// gatehouse.example.json, copied as the README's "Run it in front of your SPA" says (publicOrigin,
// oidc.authority and oidc.clientId set; the secret and the key in the environment), logs a user in
// at a real IdP that knows nothing of the example's APIs (no resource indicators registered).
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { DEMO_USERS, startIdp, type RunningIdp } from '../../src/demo/idp.ts'
import { generateKey } from '../../src/session/seal.ts'
import { BrowserJar } from '../helpers/browser-jar.ts'
import { runCli, startCli } from '../helpers/cli.ts'
import { NAVIGATE } from '../helpers/navigation.ts'

const EXAMPLE = new URL('../../gatehouse.example.json', import.meta.url).pathname
const CLIENT_ID = 'my-spa-bff'
const SECRET = 'example-client-secret-0123456789'

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-example-'))
let idp: RunningIdp
let gatehouse: Awaited<ReturnType<typeof startCli>> | undefined
let origin: string
let configFile: string

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

before(async () => {
  const port = await freePort()
  origin = `http://127.0.0.1:${port}`
  idp = await startIdp({
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: SECRET,
        redirect_uris: [`${origin}/signin-oidc`],
        post_logout_redirect_uris: [`${origin}/signout-callback-oidc`],
      },
    ],
  })
  const config = JSON.parse(readFileSync(EXAMPLE, 'utf8')) as Record<string, any>
  // The three keys the README tells a user to set.
  config.publicOrigin = origin
  config.oidc.authority = idp.issuer
  config.oidc.clientId = CLIENT_ID
  // Only what cannot work in a test: a free port instead of 8080 (it may be taken; publicOrigin names
  // it), the SQLite file in the temp dir instead of the working directory, and the SPA's build folder
  // (the example's ./dist is the user's own build) as a temp folder with an index.html.
  config.listen.port = port
  config.session.store = `sqlite:${join(dir, 'sessions.db')}`
  mkdirSync(join(dir, 'dist'))
  writeFileSync(join(dir, 'dist', 'index.html'), '<!doctype html><title>my spa</title><p>my spa</p>')
  config.frontends[0].static = join(dir, 'dist')
  configFile = join(dir, 'gatehouse.json')
  writeFileSync(configFile, JSON.stringify(config, null, 2))
  // Secrets through the environment, as the example's ${OIDC_CLIENT_SECRET} and ${GATEHOUSE_KEY} expect.
  process.env.OIDC_CLIENT_SECRET = SECRET
  process.env.GATEHOUSE_KEY = generateKey()
})

after(async () => {
  if (gatehouse && gatehouse.child.exitCode === null) {
    gatehouse.child.kill('SIGTERM')
    await gatehouse.exited
  }
  await idp?.close()
  rmSync(dir, { recursive: true, force: true })
})

test('gatehouse.example.json starts with "$schema" and lists no API that needs a resource indicator', () => {
  const config = JSON.parse(readFileSync(EXAMPLE, 'utf8')) as Record<string, any>
  assert.equal(Object.keys(config)[0], '$schema')
  assert.equal(config.$schema, './gatehouse.schema.json')
  for (const api of config.remoteApis)
    assert.equal(
      api.resource,
      undefined,
      `${api.path}: a resource makes logins fail (invalid_target) at an IdP that does not know it`,
    )
  assert.ok(
    config.frontends?.some((f: { static?: string }) => f.static),
    'the example serves the SPA from a folder',
  )
})

test('the copied example passes check-config', async () => {
  const res = await runCli(['check-config', '--config', configFile], { cwd: dir })
  assert.equal(res.stderr, '')
  assert.equal(res.code, 0)
})

test('the copied example, run with `gatehouse serve --config`, logs a user in and serves the SPA', async () => {
  gatehouse = await startCli(['serve', '--config', configFile], /"event":"listening"/, { cwd: dir })
  const browser = new BrowserJar()
  const form = await browser.follow(await browser.get(`${origin}/bff/login?returnUrl=/`, NAVIGATE))
  assert.match(
    form.text,
    /name="password"/,
    `expected the IdP login form, got ${form.status} at ${form.url}: ${form.text.slice(0, 300)}`,
  )
  const user = DEMO_USERS[0]!
  let res = await browser.submitForm(form, { username: user.username, password: user.password })
  for (let i = 0; i < 15 && res.status >= 300 && res.status < 400; i++) {
    const next = new URL(res.headers.get('location')!, res.url).href
    res = await browser.get(next, NAVIGATE)
    if (next.startsWith(`${origin}/signin-oidc`)) break
  }
  assert.equal(res.status, 302, `the callback redirects back: ${res.status} ${res.text.slice(0, 300)}`)
  assert.equal(res.headers.get('location'), '/')

  const me = await browser.get(`${origin}/bff/user`, { 'x-csrf': '1' })
  assert.equal(me.status, 200)
  const claims = JSON.parse(me.text) as Array<{ type: string; value: unknown }>
  assert.equal(claims.find((c) => c.type === 'sub')?.value, user.sub)

  const spa = await browser.get(`${origin}/`, NAVIGATE)
  assert.equal(spa.status, 200)
  assert.match(spa.text, /my spa/)
})
