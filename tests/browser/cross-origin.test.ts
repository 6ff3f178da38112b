import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import {
  createServer,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
} from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import type { Claim } from '../../src/client/index.ts'
import { startFlow, type Flow } from '../helpers/flow.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

// Duende's split-host setup in real Chromium: the SPA is served by its own static server, gatehouse
// runs on another port — another origin. The SPA uses the built browser helper (dist/client/index.js)
// with `configure({ origin })`: credentialed CORS to /bff/user and the proxied API, and login/logout
// navigations that come back to the SPA through absolute returnUrls. A third page, on an origin
// gatehouse does not list, shows the browser refusing it what gatehouse did not grant.
//
// The main flow runs the SPA on http://127.0.0.1:PORT_S and gatehouse on http://127.0.0.1:PORT_G:
// cross-origin but same-site (sites ignore ports), the setup docs/frontends.md recommends. The
// cross-site variant (SPA on http://localhost:PORT_S, another site than 127.0.0.1) is checked
// separately at the end: headless Chromium blocks third-party cookies by default, so there the
// SameSite=None cookie is withheld by the browser's setting, whatever gatehouse does.

const CLIENT_JS = join(import.meta.dirname, '..', '..', 'dist', 'client', 'index.js')
const COOKIE = '__Host-gatehouse'

interface StaticServer {
  /** http://127.0.0.1:PORT: same site as gatehouse, another origin. */
  origin: string
  /** http://localhost:PORT, the same server: another site than gatehouse's 127.0.0.1. */
  localhostOrigin: string
  close(): Promise<void>
}

/** A tiny static server on 127.0.0.1; `pages` maps a pathname to an HTML page, /client/index.js is the built helper. */
async function startStatic(pages: (path: string) => string | undefined): Promise<StaticServer> {
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://static.invalid').pathname
    const send = (status: number, type: string, body: string | Buffer) =>
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' }).end(body)
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', 'method not allowed')
    // The browser helper as the build emits it, from this origin (an SPA ships its own copy).
    if (path === '/client/index.js') return send(200, 'text/javascript; charset=utf-8', readFileSync(CLIENT_JS))
    const page = pages(path)
    if (page !== undefined) return send(200, 'text/html; charset=utf-8', page)
    send(404, 'text/plain', 'not found')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    origin: `http://127.0.0.1:${port}`,
    localhostOrigin: `http://localhost:${port}`,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/** The SPA: shows who is logged in, has Log in / Log out buttons, and exposes the helper's functions for the test. */
function spaPage(gatehouseOrigin: string): string {
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Cross-origin SPA</title></head>
<body>
  <h1>Cross-origin SPA</h1>
  <p id="status">loading</p>
  <button id="login" type="button">Log in</button>
  <button id="logout" type="button">Log out</button>
  <script type="module">
    import { bffFetch, claimValue, configure, getUser, login, logout } from '/client/index.js'
    configure({ origin: ${JSON.stringify(gatehouseOrigin)} })
    window.gatehouse = { bffFetch, getUser, login, logout }
    document.getElementById('login').addEventListener('click', () => login())
    document.getElementById('logout').addEventListener('click', () => void logout())
    const status = document.getElementById('status')
    try {
      const user = await getUser()
      status.textContent = user ? 'logged in as ' + claimValue(user, 'name') : 'not logged in'
    } catch (err) {
      status.textContent = 'error: ' + err
    }
  </script>
</body>
</html>`
}

const OTHER_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Another app</title></head>
<body><h1>Another app, on an origin gatehouse does not list</h1></body></html>`

/** What the SPA page exposes as `window.gatehouse`. */
interface SpaWindow {
  gatehouse: {
    getUser(): Promise<Claim[] | null>
    bffFetch(input: string, init?: RequestInit): Promise<Response>
  }
}

/** One request gatehouse answered, as its server saw it. */
interface Seen {
  method: string
  url: string
  origin: string | undefined
  /** Whether the browser sent gatehouse's session cookie with it. */
  withSessionCookie: boolean
  readonly status: number
  readonly headers: OutgoingHttpHeaders
}

let upstream: Upstream
let flow: Flow
let spa: StaticServer
let other: StaticServer
let browser: Browser
let context: BrowserContext
let page: Page
const seen: Seen[] = []

before(async () => {
  upstream = await startUpstream()
  // The SPA's origin must be known before gatehouse starts (it goes into cors.allowedOrigins), and
  // gatehouse's goes into the SPA page: the page is rendered per request, once flow exists.
  let gatehouseOrigin = ''
  spa = await startStatic((path) => (path === '/' ? spaPage(gatehouseOrigin) : undefined))
  other = await startStatic((path) => (path === '/' ? OTHER_PAGE : undefined))
  flow = await startFlow({
    gatehouse: {
      session: { store: 'memory', sameSite: 'none' },
      cors: { allowedOrigins: [spa.origin, spa.localhostOrigin] },
      remoteApis: [{ path: '/api', target: upstream.url, token: 'user' }],
    },
  })
  gatehouseOrigin = flow.origin
  // Watches what reaches gatehouse (alongside its own handler): which requests carried the cookie, what
  // they got. Recorded as the request arrives, read when asserted: by the time the browser has an
  // answer, gatehouse has set its status and headers (all through setHeader, so getHeaders() has them).
  flow.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    seen.push({
      method: req.method ?? '',
      url: req.url ?? '',
      origin: req.headers.origin,
      withSessionCookie: (req.headers.cookie ?? '').split(/;\s*/).some((c) => c.startsWith(`${COOKIE}=`)),
      get status() {
        return res.statusCode
      },
      get headers() {
        return res.getHeaders()
      },
    })
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
  await spa?.close()
  await other?.close()
  await upstream?.close()
})

/** What gatehouse saw of requests to `path` (query ignored) from `origin`, in order. */
function seenAt(path: string, origin: string): Seen[] {
  return seen.filter((s) => s.url.split('?')[0] === path && s.origin === origin)
}

function getUserInPage(p: Page = page): Promise<Claim[] | null> {
  return p.evaluate(() => (window as unknown as SpaWindow).gatehouse.getUser())
}

test('before login the SPA on another origin gets null from getUser(): gatehouse answers its CORS preflight and then 401', async () => {
  const res = await page.goto(`${spa.origin}/?from=test`)
  assert.equal(res?.status(), 200)
  await page.waitForFunction(() => document.getElementById('status')?.textContent === 'not logged in')
  assert.equal(await getUserInPage(), null)

  const preflight = seenAt('/bff/user', spa.origin).find((s) => s.method === 'OPTIONS')
  assert.ok(preflight, 'Chromium preflighted the anti-forgery header')
  assert.equal(preflight.status, 204)
  assert.equal(preflight.headers['access-control-allow-origin'], spa.origin)
  assert.equal(preflight.headers['access-control-allow-credentials'], 'true')
  const get = seenAt('/bff/user', spa.origin).find((s) => s.method === 'GET')
  assert.ok(get)
  assert.equal(get.status, 401)
  assert.equal(get.headers['access-control-allow-origin'], spa.origin, 'the 401 is readable by the SPA')
})

test('login() goes to gatehouse /bff/login with an absolute returnUrl on the SPA origin, and after the IdP form the browser is back on the SPA page', async () => {
  const loginRequest = page.waitForRequest((req) => req.url().startsWith(`${flow.origin}/bff/login?`))
  await page.getByRole('button', { name: 'Log in' }).click()
  const url = new URL((await loginRequest).url())
  assert.equal(url.searchParams.get('returnUrl'), `${spa.origin}/?from=test`)

  await page.getByLabel('Username').fill('alice')
  await page.getByLabel('Password').fill('alice-demo-password')
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.waitForURL(`${spa.origin}/?from=test`)
  assert.equal(new URL(page.url()).origin, spa.origin)

  const session = (await context.cookies(flow.origin)).find((c) => c.name === COOKIE)
  assert.ok(session, 'gatehouse set its session cookie on 127.0.0.1')
  assert.equal(session.sameSite, 'None')
  assert.ok(session.secure && session.httpOnly, 'the session cookie is Secure and HttpOnly')
})

test("back on the SPA origin, getUser() returns alice's claims: the credentialed CORS fetch carries the session cookie", async () => {
  await page.waitForFunction(() => document.getElementById('status')?.textContent !== 'loading')
  assert.equal(await page.locator('#status').innerText(), 'logged in as Alice Example')
  const claims = await getUserInPage()
  assert.ok(claims, 'getUser() returned claims')
  assert.equal(claims.find((c) => c.type === 'sub')?.value, 'alice-0001')
  assert.equal(claims.find((c) => c.type === 'name')?.value, 'Alice Example')
  assert.match(String(claims.find((c) => c.type === 'bff:logout_url')?.value), /^\/bff\/logout\?sid=/)

  const answered = seenAt('/bff/user', spa.origin).filter((s) => s.method === 'GET' && s.status === 200)
  assert.ok(answered.length > 0)
  for (const s of answered) {
    assert.equal(s.withSessionCookie, true, 'the cross-origin fetch carried the session cookie')
    assert.equal(s.headers['access-control-allow-origin'], spa.origin)
    assert.equal(s.headers['access-control-allow-credentials'], 'true')
  }
  assert.equal(await page.evaluate(() => document.cookie), '', 'the SPA cannot read any gatehouse cookie')
})

test("bffFetch('/api/echo') from the SPA origin answers 200 through gatehouse, and the upstream gets alice's Bearer token, not her cookie", async () => {
  const before = upstream.received.length
  const answer = await page.evaluate(async () => {
    const res = await (window as unknown as SpaWindow).gatehouse.bffFetch('/api/echo?from=spa')
    return { status: res.status, body: (await res.json()) as { method: string; url: string } }
  })
  assert.equal(answer.status, 200)
  assert.deepEqual({ method: answer.body.method, url: answer.body.url }, { method: 'GET', url: '/echo?from=spa' })

  const reached = upstream.received.slice(before)
  assert.equal(reached.length, 1, 'one call reached the upstream (the preflight was answered by gatehouse)')
  assert.equal(reached[0]!.url, '/echo?from=spa')
  assert.match(reached[0]!.headers.authorization ?? '', /^Bearer \S+$/)
  assert.ok(!(reached[0]!.headers.cookie ?? '').includes(COOKIE), 'the session cookie did not reach the upstream')
  assert.equal(reached[0]!.headers['x-csrf'], undefined, 'the anti-forgery header is not forwarded')

  const proxied = seenAt('/api/echo', spa.origin).find((s) => s.method === 'GET')
  assert.ok(proxied)
  assert.equal(proxied.withSessionCookie, true)
  assert.equal(proxied.headers['access-control-allow-origin'], spa.origin)
})

test('a page on a third origin that gatehouse does not list cannot read /bff/user with credentials: fetch rejects with a TypeError', async () => {
  const third = await context.newPage()
  try {
    await third.goto(`${other.origin}/`)
    assert.equal(new URL(third.url()).origin, other.origin)
    const outcome = await third.evaluate(async (gatehouseOrigin) => {
      /** The error name a fetch rejects with, or what it read when it was not blocked. */
      const attempt = async (run: () => Promise<unknown>) => {
        try {
          return { read: JSON.stringify(await run()) }
        } catch (err) {
          return { rejected: (err as Error).name }
        }
      }
      // With the anti-forgery header: preflighted, and gatehouse refuses the preflight.
      const preflighted = await attempt(
        async () =>
          (await fetch(`${gatehouseOrigin}/bff/user`, { credentials: 'include', headers: { 'X-CSRF': '1' } })).status,
      )
      // Without it: a "simple" request that does reach gatehouse, whose answer carries no CORS grant.
      const simple = await attempt(
        async () => (await fetch(`${gatehouseOrigin}/bff/user`, { credentials: 'include' })).status,
      )
      // The browser helper itself, configured for gatehouse from this origin.
      const viaClient = await attempt(async () => {
        const client = (await import('/client/index.js' as string)) as {
          configure(o: { origin: string }): void
          getUser(): Promise<unknown>
        }
        client.configure({ origin: gatehouseOrigin })
        return client.getUser()
      })
      return { preflighted, simple, viaClient }
    }, flow.origin)
    assert.deepEqual(outcome, {
      preflighted: { rejected: 'TypeError' },
      simple: { rejected: 'TypeError' },
      viaClient: { rejected: 'TypeError' },
    })

    // What gatehouse did: refused the preflights, and granted nothing on the request that reached it.
    const fromThird = seenAt('/bff/user', other.origin)
    const preflights = fromThird.filter((s) => s.method === 'OPTIONS')
    assert.ok(preflights.length >= 1)
    for (const s of preflights) {
      assert.equal(s.status, 403)
      assert.equal(s.headers['access-control-allow-origin'], undefined)
    }
    const gets = fromThird.filter((s) => s.method === 'GET')
    assert.equal(gets.length, 1, 'only the simple request got past the browser')
    assert.equal(gets[0]!.headers['access-control-allow-origin'], undefined)
    assert.equal(gets[0]!.headers['access-control-allow-credentials'], undefined)
    assert.equal(
      gets[0]!.withSessionCookie,
      true,
      'same site: the browser did send the cookie, only CORS kept the answer from the page',
    )
    assert.equal(gets[0]!.status, 401, 'without the anti-forgery header gatehouse refuses it anyway')
  } finally {
    await third.close()
  }
})

test('logout() signs out at gatehouse and the IdP and comes back to the SPA origin, where getUser() is null', async () => {
  const sid = (await getUserInPage())?.find((c) => c.type === 'sid')?.value
  assert.ok(typeof sid === 'string' && sid.length > 0)
  const logoutRequest = page.waitForRequest((req) => req.url().startsWith(`${flow.origin}/bff/logout?`))
  await page.getByRole('button', { name: 'Log out' }).click()
  const url = new URL((await logoutRequest).url())
  assert.equal(url.searchParams.get('sid'), sid)
  assert.equal(url.searchParams.get('returnUrl'), `${spa.origin}/`)

  await page.getByRole('button', { name: 'Yes, sign me out' }).click()
  await page.waitForURL(`${spa.origin}/`)
  assert.equal(new URL(page.url()).origin, spa.origin)
  await page.waitForFunction(() => document.getElementById('status')?.textContent !== 'loading')
  assert.equal(await page.locator('#status').innerText(), 'not logged in')
  assert.equal(await getUserInPage(), null)
  assert.equal(
    (await context.cookies(flow.origin)).find((c) => c.name === COOKIE),
    undefined,
    'the session cookie is cleared',
  )

  // The proxied API is out of reach too, and the upstream is not asked.
  const before = upstream.received.length
  const status = await page.evaluate(
    async () => (await (window as unknown as SpaWindow).gatehouse.bffFetch('/api/echo')).status,
  )
  assert.equal(status, 401)
  assert.equal(upstream.received.length, before)
})

test(
  "for a SPA on another site (localhost), login comes back to it and gatehouse's SameSite=None cookie is withheld from its fetches only by Chromium's third-party-cookie setting",
  { timeout: 120_000 },
  async (t) => {
    const crossSite = await browser.newContext()
    crossSite.setDefaultTimeout(15_000)
    try {
      const p = await crossSite.newPage()
      // Chromium says, per request, which cookies it sent or withheld and why (DevTools protocol).
      const cdp = await crossSite.newCDPSession(p)
      await cdp.send('Network.enable')
      const requests = new Map<string, string>()
      const verdicts: Array<{ requestId: string; blockedReasons: string[] }> = []
      cdp.on('Network.requestWillBeSent', (e) => requests.set(e.requestId, `${e.request.method} ${e.request.url}`))
      cdp.on('Network.requestWillBeSentExtraInfo', (e) => {
        for (const c of e.associatedCookies)
          if (c.cookie.name === COOKIE) verdicts.push({ requestId: e.requestId, blockedReasons: c.blockedReasons })
      })
      /** Chromium's verdicts on the session cookie for GET /bff/user; the two events of a request come in either order. */
      const userVerdicts = () => verdicts.filter((v) => requests.get(v.requestId) === `GET ${flow.origin}/bff/user`)
      /** Resolves once Chromium has reported its verdict for `count` /bff/user calls (event-driven, no polling). */
      const verdictsFor = (count: number) =>
        new Promise<void>((resolve) => {
          const check = () => {
            if (userVerdicts().length < count) return
            cdp.off('Network.requestWillBeSent', check)
            cdp.off('Network.requestWillBeSentExtraInfo', check)
            resolve()
          }
          cdp.on('Network.requestWillBeSent', check)
          cdp.on('Network.requestWillBeSentExtraInfo', check)
          check()
        })

      await p.goto(`${spa.localhostOrigin}/?from=cross-site`)
      await p.waitForFunction(() => document.getElementById('status')?.textContent === 'not logged in')
      const loginRequest = p.waitForRequest((req) => req.url().startsWith(`${flow.origin}/bff/login?`))
      await p.getByRole('button', { name: 'Log in' }).click()
      assert.equal(
        new URL((await loginRequest).url()).searchParams.get('returnUrl'),
        `${spa.localhostOrigin}/?from=cross-site`,
      )
      await p.getByLabel('Username').fill('alice')
      await p.getByLabel('Password').fill('alice-demo-password')
      await p.getByRole('button', { name: 'Sign in' }).click()
      await p.waitForURL(`${spa.localhostOrigin}/?from=cross-site`)
      await p.waitForFunction(() => document.getElementById('status')?.textContent !== 'loading')

      const session = (await crossSite.cookies(flow.origin)).find((c) => c.name === COOKIE)
      assert.ok(session, 'the login (top-level navigations) set the session cookie')
      assert.equal(session.sameSite, 'None')
      assert.ok(session.secure && session.httpOnly)

      // The page's own getUser() after login, and this one: Chromium reports a verdict on the cookie for both.
      const userResponse = p.waitForResponse(
        (res) => res.url() === `${flow.origin}/bff/user` && res.request().method() === 'GET',
      )
      const claims = await getUserInPage(p)
      const sentCookie = ((await (await userResponse).request().allHeaders()).cookie ?? '')
        .split(/;\s*/)
        .some((c) => c.startsWith(`${COOKIE}=`))
      await verdictsFor(2)
      const userCalls = userVerdicts()
      for (const v of userCalls) {
        // Never for SameSite, Secure, the __Host- prefix or the domain: only the user-preference block may apply.
        assert.ok(
          v.blockedReasons.every((r) => r === 'UserPreferences'),
          `withheld for ${v.blockedReasons.join(', ')}`,
        )
      }
      const withheld = userCalls.some((v) => v.blockedReasons.length > 0)
      assert.equal(sentCookie, !withheld, 'the request headers Chromium sent agree with its verdict')
      t.diagnostic(
        withheld
          ? 'Chromium withheld the SameSite=None cookie from the cross-site fetches (third-party cookies blocked: UserPreferences)'
          : 'Chromium sent the SameSite=None cookie on the cross-site fetches',
      )
      if (withheld) {
        assert.equal(claims, null, 'without its cookie the cross-site SPA has no session')
        assert.equal(await p.locator('#status').innerText(), 'not logged in')
      } else {
        assert.equal(claims?.find((c) => c.type === 'sub')?.value, 'alice-0001')
        assert.equal(await p.locator('#status').innerText(), 'logged in as Alice Example')
      }
      // gatehouse saw the same: the calls from the localhost origin came with or without the cookie as Chromium said.
      const gets = seenAt('/bff/user', spa.localhostOrigin).filter((s) => s.method === 'GET')
      assert.ok(gets.length >= 2)
      assert.equal(gets.at(-1)!.withSessionCookie, !withheld)
      assert.equal(
        gets.at(-1)!.headers['access-control-allow-origin'],
        spa.localhostOrigin,
        'the answer is granted to the listed cross-site origin',
      )
    } finally {
      await crossSite.close()
    }
  },
)
