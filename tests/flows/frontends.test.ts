import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import { NAVIGATE, rawRequest } from '../helpers/navigation.ts'
import { HostJar } from '../helpers/host-jar.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

type Claims = Array<{ type: string; value: unknown }>

/** GET over a raw socket, so that nothing normalises the path on the way. */
function rawGet(origin: string, target: string): Promise<{ status: number; text: string }> {
  const { hostname, port } = new URL(origin)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () =>
      socket.write(`GET ${target} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nConnection: close\r\n\r\n`),
    )
    let data = ''
    socket.on('data', (d) => (data += d))
    socket.on('end', () => resolve({ status: Number(data.slice(9, 12)), text: data }))
    socket.on('error', reject)
  })
}

describe('a frontend served from a folder', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-spa-'))
  const root = join(dir, 'dist')
  let flow: Flow
  before(async () => {
    mkdirSync(join(root, 'assets'), { recursive: true })
    writeFileSync(join(root, 'index.html'), '<!doctype html><title>app</title><div id="app"></div>')
    writeFileSync(join(root, 'assets', 'app.3f9a2b1c.js'), 'console.log("app")')
    writeFileSync(join(root, 'robots.txt'), 'User-agent: *')
    writeFileSync(join(root, '.env'), 'SECRET=in-the-folder')
    writeFileSync(join(dir, 'secret.txt'), 'SECRET=outside-the-folder')
    utimesSync(join(root, 'robots.txt'), new Date('2026-01-01T00:00:00Z'), new Date('2026-01-01T00:00:00Z'))
    flow = await startFlow({ gatehouse: { frontends: [{ name: 'app', path: '/', static: root }] } })
  })
  after(async () => {
    await flow.close()
    rmSync(dir, { recursive: true, force: true })
  })

  test('index.html is served at / with no-cache and validators', async () => {
    const res = await fetch(`${flow.origin}/`)
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8')
    assert.equal(res.headers.get('cache-control'), 'no-cache')
    assert.ok(res.headers.get('etag'))
    assert.ok(res.headers.get('last-modified'))
    assert.match(await res.text(), /<div id="app">/)
  })

  test('a content-hashed asset is cached for a year; other files are revalidated', async () => {
    const asset = await fetch(`${flow.origin}/assets/app.3f9a2b1c.js`)
    assert.equal(asset.headers.get('content-type'), 'text/javascript; charset=utf-8')
    assert.equal(asset.headers.get('cache-control'), 'public, max-age=31536000, immutable')
    const robots = await fetch(`${flow.origin}/robots.txt`)
    assert.equal(robots.headers.get('content-type'), 'text/plain; charset=utf-8')
    assert.equal(robots.headers.get('cache-control'), 'no-cache')
  })

  test('If-None-Match and If-Modified-Since answer 304', async () => {
    const first = await fetch(`${flow.origin}/robots.txt`)
    const etag = first.headers.get('etag')!
    assert.equal((await fetch(`${flow.origin}/robots.txt`, { headers: { 'if-none-match': etag } })).status, 304)
    assert.equal(
      (await fetch(`${flow.origin}/robots.txt`, { headers: { 'if-modified-since': 'Fri, 02 Jan 2026 00:00:00 GMT' } }))
        .status,
      304,
    )
    assert.equal(
      (await fetch(`${flow.origin}/robots.txt`, { headers: { 'if-modified-since': 'Wed, 31 Dec 2025 00:00:00 GMT' } }))
        .status,
      200,
    )
  })

  test('navigations to client-side routes get index.html; a missing asset is 404', async () => {
    const route = await rawRequest(`${flow.origin}/orders/42/edit`, 'GET', NAVIGATE)
    assert.equal(route.status, 200)
    assert.match(route.text, /<div id="app">/)
    assert.equal(
      (await fetch(`${flow.origin}/orders/42/edit`)).status,
      404,
      'fetch() is no navigation (tests/flows/spa-fallback.test.ts)',
    )
    assert.equal((await fetch(`${flow.origin}/assets/missing.js`)).status, 404)
    assert.equal((await fetch(`${flow.origin}/favicon.ico`)).status, 404)
  })

  test('HEAD answers headers only', async () => {
    const res = await fetch(`${flow.origin}/robots.txt`, { method: 'HEAD' })
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('content-length'), '13')
    assert.equal(await res.text(), '')
  })

  for (const target of [
    '/../secret.txt',
    '/%2e%2e/secret.txt',
    '/..%2fsecret.txt',
    '/assets/..%2f..%2fsecret.txt',
    '/%2e%2e%5csecret.txt',
    '/..\\secret.txt',
    '/.env',
    '/%2eenv',
    '/assets/%00.js',
    '/%c0%ae%c0%ae/secret.txt',
  ]) {
    test(`traversal attempt ${target} never serves a file outside the folder or a dotfile`, async () => {
      const res = await rawGet(flow.origin, target)
      assert.ok(
        res.status === 400 || res.status === 404 || (res.status === 200 && /<div id="app">/.test(res.text)),
        `${res.status}`,
      )
      assert.doesNotMatch(res.text, /SECRET=/)
    })
  }

  test('gatehouse endpoints still answer under the frontend', async () => {
    assert.equal((await fetch(`${flow.origin}/bff/user`, { headers: CSRF })).status, 401)
  })
})

describe('a frontend whose index.html comes from a CDN', () => {
  let cdn: Server
  let served = 0
  let cdnUp = true
  let offsetMs = 0
  let flow: Flow
  before(async () => {
    cdn = createServer((_req, res) => {
      if (!cdnUp) return void res.writeHead(503).end()
      served++
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(`<!doctype html><p>version ${served}</p>`)
    })
    await new Promise<void>((resolve) => cdn.listen(0, '127.0.0.1', resolve))
    flow = await startFlow({
      gatehouse: {
        frontends: [
          {
            name: 'app',
            path: '/',
            indexHtmlUrl: `http://127.0.0.1:${(cdn.address() as AddressInfo).port}/index.html`,
          },
        ],
      },
      runtime: { now: () => Date.now() + offsetMs },
    })
  })
  after(async () => {
    await flow.close()
    cdn.closeAllConnections()
    await new Promise<void>((resolve) => cdn.close(() => resolve()))
  })

  test('index.html is fetched once and cached for 5 minutes, then refetched', async () => {
    assert.match(await (await fetch(`${flow.origin}/`)).text(), /version 1/)
    assert.match((await rawRequest(`${flow.origin}/some/route`, 'GET', NAVIGATE)).text, /version 1/)
    assert.equal(served, 1)
    offsetMs = 5 * 60_000 + 1_000
    assert.match(await (await fetch(`${flow.origin}/`)).text(), /version 2/)
    assert.equal(served, 2)
  })

  test('when the CDN fails, the stale copy is still served; asset paths are 404', async () => {
    cdnUp = false
    offsetMs += 10 * 60_000
    const res = await fetch(`${flow.origin}/`)
    assert.equal(res.status, 200)
    assert.match(await res.text(), /version 2/)
    assert.equal((await fetch(`${flow.origin}/assets/app.js`)).status, 404)
    cdnUp = true
  })
})

test('a CDN frontend whose first fetch fails answers 502 problem+json', async () => {
  const flow = await startFlow({
    gatehouse: { frontends: [{ name: 'app', path: '/', indexHtmlUrl: 'http://127.0.0.1:9/index.html' }] },
  })
  try {
    const res = await fetch(`${flow.origin}/`)
    assert.equal(res.status, 502)
    assert.match(res.headers.get('content-type')!, /problem\+json/)
  } finally {
    await flow.close()
  }
})

describe('two frontends with separate partitions and separate clients at one IdP', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-two-'))
  let flow: Flow
  before(async () => {
    for (const name of ['app', 'admin']) {
      mkdirSync(join(dir, name), { recursive: true })
      writeFileSync(join(dir, name, 'index.html'), `<!doctype html><p>${name} spa</p>`)
    }
    flow = await startFlow({
      extraClients: (origin) => [
        {
          client_id: 'admin-bff',
          client_secret: 'admin-bff-secret-0123456789',
          redirect_uris: [`${origin}/admin/signin-oidc`],
          post_logout_redirect_uris: [`${origin}/admin/signout-callback-oidc`],
          backchannel_logout_uri: `${origin}/admin/bff/backchannel`,
        },
      ],
      gatehouse: {
        frontends: [
          { name: 'app', path: '/', static: join(dir, 'app') },
          {
            name: 'admin',
            path: '/admin',
            static: join(dir, 'admin'),
            oidc: { clientId: 'admin-bff', clientSecret: 'admin-bff-secret-0123456789' },
          },
        ],
      },
    })
  })
  after(async () => {
    await flow.close()
    rmSync(dir, { recursive: true, force: true })
  })

  async function loginAt(prefix: string) {
    const browser = flow.browser()
    const start = await browser.get(`${flow.origin}${prefix}/bff/login`)
    const authorize = new URL(start.headers.get('location')!)
    const form = await browser.follow(await browser.get(authorize.href))
    let res = await browser.submitForm(form, { username: 'alice', password: 'alice-demo-password' })
    while (res.status >= 300 && res.status < 400 && !res.url.includes('/signin-oidc'))
      res = await browser.get(new URL(res.headers.get('location')!, res.url).href)
    return { browser, authorize, callback: res }
  }

  test('each frontend serves its own SPA', async () => {
    assert.match(await (await fetch(`${flow.origin}/`)).text(), /app spa/)
    assert.match(await (await fetch(`${flow.origin}/admin/`)).text(), /admin spa/)
    assert.match((await rawRequest(`${flow.origin}/admin/users/7`, 'GET', NAVIGATE)).text, /admin spa/)
  })

  test("logging in at /admin uses the admin client and sets only the admin partition's cookie", async () => {
    const { browser, authorize, callback } = await loginAt('/admin')
    assert.equal(authorize.searchParams.get('client_id'), 'admin-bff')
    assert.equal(authorize.searchParams.get('redirect_uri'), `${flow.origin}/admin/signin-oidc`)
    assert.equal(callback.status, 302)
    assert.ok(browser.cookies.has('__Host-gatehouse-admin'))
    assert.ok(!browser.cookies.has('__Host-gatehouse'))
    const admin = JSON.parse((await browser.get(`${flow.origin}/admin/bff/user`, CSRF)).text) as Claims
    assert.equal(admin.find((c) => c.type === 'sub')?.value, 'alice-0001')
    assert.match(admin.find((c) => c.type === 'bff:logout_url')?.value as string, /^\/admin\/bff\/logout\?sid=/)
    assert.equal(
      (await browser.get(`${flow.origin}/bff/user`, CSRF)).status,
      401,
      'an /admin session is not a / session',
    )
  })

  test('a session of one partition is refused by the other, even under its cookie name', async () => {
    const { browser } = await loginAt('')
    assert.equal(browser.cookies.has('__Host-gatehouse'), true)
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200)
    const moved = await fetch(`${flow.origin}/admin/bff/user`, {
      headers: { ...CSRF, cookie: `__Host-gatehouse-admin=${browser.cookies.get('__Host-gatehouse')}` },
    })
    assert.equal(moved.status, 401)
  })

  test("a login started at / cannot be finished at /admin's callback", async () => {
    const browser = flow.browser()
    const start = await browser.get(`${flow.origin}/bff/login`)
    const form = await browser.follow(await browser.get(start.headers.get('location')!))
    let res = await browser.submitForm(form, { username: 'alice', password: 'alice-demo-password' })
    while (res.status >= 300 && res.status < 400) {
      const next = new URL(res.headers.get('location')!, res.url)
      if (next.pathname === '/signin-oidc') {
        res = await browser.get(`${flow.origin}/admin/signin-oidc${next.search}`)
        break
      }
      res = await browser.get(next.href)
    }
    assert.equal(res.status, 400)
  })
})

describe('silent login', () => {
  let flow: Flow
  before(async () => {
    flow = await startFlow()
  })
  after(() => flow.close())

  test('without an IdP session the iframe page reports isLoggedIn false to the app origin only', async () => {
    const browser = flow.browser()
    const start = await browser.get(`${flow.origin}/bff/silent-login`)
    assert.equal(new URL(start.headers.get('location')!).searchParams.get('prompt'), 'none')
    const page = await browser.follow(start)
    assert.equal(new URL(page.url).pathname, '/bff/silent-login-callback')
    assert.match(page.text, /"source":"bff-silent-login","isLoggedIn":false/)
    assert.ok(page.text.includes(`, ${JSON.stringify(flow.origin)})`), 'posted to the app origin only')
    const csp = page.headers.get('content-security-policy')!
    const nonce = /'nonce-([^']+)'/.exec(csp)![1]
    assert.ok(page.text.includes(`nonce="${nonce}"`))
    assert.match(csp, /frame-ancestors 'self'/)
    assert.equal(page.headers.get('cache-control'), 'no-store')
  })

  test('with an IdP session the silent login creates a session and reports isLoggedIn true', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    for (const name of [...browser.cookies.keys()])
      if (name.startsWith('__Host-gatehouse')) browser.cookies.delete(name)
    const page = await browser.follow(await browser.get(`${flow.origin}/bff/login?prompt=none`))
    assert.equal(new URL(page.url).pathname, '/bff/silent-login-callback')
    assert.match(page.text, /"isLoggedIn":true/)
    assert.equal((await browser.get(`${flow.origin}/bff/user`, CSRF)).status, 200)
  })
})

describe('a host-based frontend gets its own origin (publicOrigin names another host)', () => {
  // startFlow's publicOrigin is http://127.0.0.1:PORT; the admin frontend lives on host "localhost",
  // so its origin is http://localhost:PORT (publicOrigin's scheme and port with its host).
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-hosts-'))
  const ADMIN_SECRET = 'admin-host-secret-0123456789'
  let upstream: Upstream
  let flow: Flow
  let adminOrigin: string
  before(async () => {
    for (const name of ['app', 'admin']) {
      mkdirSync(join(dir, name), { recursive: true })
      writeFileSync(join(dir, name, 'index.html'), `<!doctype html><p>${name} spa</p>`)
    }
    upstream = await startUpstream()
    flow = await startFlow({
      extraClients: (origin) => {
        const admin = origin.replace('127.0.0.1', 'localhost')
        return [
          {
            client_id: 'admin-host',
            client_secret: ADMIN_SECRET,
            redirect_uris: [`${admin}/signin-oidc`],
            post_logout_redirect_uris: [`${admin}/signout-callback-oidc`],
          },
        ]
      },
      gatehouse: {
        frontends: [
          { name: 'app', path: '/', static: join(dir, 'app') },
          {
            name: 'admin',
            host: 'localhost',
            static: join(dir, 'admin'),
            oidc: { clientId: 'admin-host', clientSecret: ADMIN_SECRET },
          },
        ],
        remoteApis: [{ path: '/live', target: upstream.url, token: 'none', antiForgery: false, websockets: true }],
      },
    })
    adminOrigin = flow.origin.replace('127.0.0.1', 'localhost')
  })
  after(async () => {
    await flow.close()
    await upstream.close()
    rmSync(dir, { recursive: true, force: true })
  })

  /** Logs in at `origin` through the IdP's form; returns the callback's answer. */
  async function loginAt(browser: HostJar, origin: string) {
    const start = await browser.get(`${origin}/bff/login`)
    assert.equal(start.status, 302)
    const authorize = new URL(browser.location(start))
    const form = await browser.follow(await browser.get(authorize.href))
    assert.match(form.text, /name="password"/)
    const afterForm = await browser.submitForm(form, { username: 'alice', password: 'alice-demo-password' })
    const atCallback = await browser.follow(afterForm, (url) => new URL(url).pathname === '/signin-oidc')
    const callbackUrl = browser.location(atCallback)
    return { authorize, callbackUrl, callback: await browser.get(callbackUrl) }
  }

  test('each host serves its own SPA', async () => {
    const browser = new HostJar()
    assert.match((await browser.get(`${flow.origin}/`)).text, /app spa/)
    assert.match((await browser.get(`${adminOrigin}/`)).text, /admin spa/)
  })

  test("a login through the second host completes: redirect_uri, callback and cookie are on that host's origin", async () => {
    const browser = new HostJar()
    const { authorize, callbackUrl, callback } = await loginAt(browser, adminOrigin)
    assert.equal(authorize.searchParams.get('client_id'), 'admin-host')
    assert.equal(authorize.searchParams.get('redirect_uri'), `${adminOrigin}/signin-oidc`)
    assert.ok(callbackUrl.startsWith(`${adminOrigin}/signin-oidc?`), callbackUrl)
    assert.equal(callback.status, 302, callback.text)
    assert.equal(callback.headers.location, '/')
    assert.ok(browser.cookiesOf(adminOrigin).has('__Host-gatehouse-admin'))
    assert.equal(browser.cookiesOf(flow.origin).size, 0, "nothing was set for publicOrigin's host")
    const user = await browser.get(`${adminOrigin}/bff/user`, CSRF)
    assert.equal(user.status, 200)
    assert.equal((JSON.parse(user.text) as Claims).find((c) => c.type === 'sub')?.value, 'alice-0001')
  })

  test('the main host still logs in on publicOrigin with the top-level client', async () => {
    const browser = new HostJar()
    const { authorize, callback } = await loginAt(browser, flow.origin)
    assert.equal(authorize.searchParams.get('client_id'), 'test-bff')
    assert.equal(authorize.searchParams.get('redirect_uri'), `${flow.origin}/signin-oidc`)
    assert.equal(callback.status, 302)
    assert.ok(browser.cookiesOf(flow.origin).has('__Host-gatehouse'))
  })

  test("logout on the second host sends the IdP back to that host's post-logout redirect URI", async () => {
    const browser = new HostJar()
    await loginAt(browser, adminOrigin)
    const claims = JSON.parse((await browser.get(`${adminOrigin}/bff/user`, CSRF)).text) as Claims
    const logoutUrl = claims.find((c) => c.type === 'bff:logout_url')!.value as string
    const res = await browser.get(`${adminOrigin}${logoutUrl}`)
    assert.equal(res.status, 302)
    assert.equal(
      new URL(browser.location(res)).searchParams.get('post_logout_redirect_uri'),
      `${adminOrigin}/signout-callback-oidc`,
    )
  })

  test("the silent-login page on the second host posts to that host's origin only", async () => {
    const page = await new HostJar().get(`${adminOrigin}/bff/silent-login-callback`)
    assert.equal(page.status, 200)
    assert.ok(page.text.includes(`, ${JSON.stringify(adminOrigin)})`), page.text)
    const main = await new HostJar().get(`${flow.origin}/bff/silent-login-callback`)
    assert.ok(main.text.includes(`, ${JSON.stringify(flow.origin)})`))
  })

  test("a WebSocket handshake on each host needs that host's own Origin", async () => {
    const { port } = new URL(flow.origin)
    const before = upstream.received.length
    assert.equal(
      await rawHandshakeAt(port, `localhost:${port}`, `Origin: ${flow.origin}`),
      403,
      "publicOrigin is not the admin host's origin",
    )
    assert.equal(
      await rawHandshakeAt(port, `127.0.0.1:${port}`, `Origin: ${adminOrigin}`),
      403,
      'nor the other way round',
    )
    assert.equal(upstream.received.length, before, 'the refused handshakes never reached the upstream')
    assert.equal(await rawHandshakeAt(port, `localhost:${port}`, `Origin: ${adminOrigin}`), 101)
    assert.equal(await rawHandshakeAt(port, `127.0.0.1:${port}`, `Origin: ${flow.origin}`), 101)
  })
})

/** A WebSocket handshake to /live/ws with the given Host and extra header line; resolves with the status code. */
function rawHandshakeAt(port: string, host: string, header: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1')
    let data = ''
    socket.setEncoding('latin1')
    socket.on('data', (chunk: string) => {
      data += chunk
      const match = /^HTTP\/1\.1 (\d{3})/.exec(data)
      if (match) {
        socket.destroy()
        resolve(Number(match[1]))
      }
    })
    socket.on('error', reject)
    socket.on('end', () => resolve(0))
    socket.write(
      [
        'GET /live/ws HTTP/1.1',
        `Host: ${host}`,
        'Connection: Upgrade',
        'Upgrade: websocket',
        'Sec-WebSocket-Version: 13',
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
        header,
        '',
        '',
      ].join('\r\n'),
    )
  })
}
