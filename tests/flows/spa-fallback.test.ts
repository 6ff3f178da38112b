import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import { NAVIGATE, OLD_BROWSER_NAVIGATE, rawRequest, SPA_FETCH, type RawResponse } from '../helpers/navigation.ts'

// SPEC §6: an unknown path under a SPA frontend answers index.html to navigations only. The SPA's own
// API calls (fetch(), the anti-forgery header, Accept: application/json, other methods) get 404
// problem+json — Duende's DPoP sample fetched an unknown API path, got 200 + index.html and failed
// to parse it as JSON.

function assertNotFound(res: RawResponse, what: string): void {
  assert.equal(res.status, 404, `${what}: ${res.status} ${res.text.slice(0, 80)}`)
  assert.match(String(res.headers['content-type']), /^application\/problem\+json/, what)
  assert.equal((JSON.parse(res.text) as { code: string }).code, 'not_found', what)
  assert.equal(res.headers['cache-control'], 'no-store', what)
}

function assertPage(res: RawResponse, marker: RegExp, what: string): void {
  assert.equal(res.status, 200, `${what}: ${res.status} ${res.text.slice(0, 80)}`)
  assert.match(String(res.headers['content-type']), /^text\/html/, what)
  assert.match(res.text, marker, what)
}

/** A SPA folder with index.html and app.js. */
function spaFolder(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-spa-fallback-'))
  mkdirSync(join(dir, 'assets'))
  writeFileSync(join(dir, 'index.html'), `<!doctype html><title>${label}</title><div id="${label}-spa"></div>`)
  writeFileSync(join(dir, 'app.js'), `console.log(${JSON.stringify(label)})`)
  return dir
}

/** A fake CDN answering every GET with the page of `label`. */
async function startCdn(label: string): Promise<{ server: Server; url: string }> {
  const server = createServer((_req: IncomingMessage, res: ServerResponse) => {
    res
      .writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
      .end(`<!doctype html><div id="${label}-spa"></div>`)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/index.html` }
}

interface Spa {
  label: string
  /** The frontend's path prefix: '' for "/". */
  prefix: string
  marker: RegExp
  /** A file of the SPA that gatehouse serves; undefined for a CDN frontend (its assets come from the CDN). */
  asset: string | undefined
  flow: () => Flow
}

const dirs: string[] = []
const cdns: Server[] = []
let staticRootFlow: Flow
let cdnRootFlow: Flow

before(async () => {
  // One flow with a folder SPA at "/" and a CDN SPA at "/shop"; another the other way round.
  const app = spaFolder('app')
  const admin = spaFolder('admin')
  dirs.push(app, admin)
  const shop = await startCdn('shop')
  const cdnApp = await startCdn('cdn-app')
  cdns.push(shop.server, cdnApp.server)
  staticRootFlow = await startFlow({
    gatehouse: {
      frontends: [
        { name: 'app', path: '/', static: app },
        { name: 'shop', path: '/shop', indexHtmlUrl: shop.url },
      ],
    },
  })
  cdnRootFlow = await startFlow({
    gatehouse: {
      frontends: [
        { name: 'app', path: '/', indexHtmlUrl: cdnApp.url },
        { name: 'admin', path: '/admin', static: admin },
      ],
    },
  })
})

after(async () => {
  await staticRootFlow?.close()
  await cdnRootFlow?.close()
  for (const cdn of cdns) {
    cdn.closeAllConnections()
    await new Promise<void>((resolve) => cdn.close(() => resolve()))
  }
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

const SPAS: Spa[] = [
  { label: 'a folder SPA at /', prefix: '', marker: /id="app-spa"/, asset: '/app.js', flow: () => staticRootFlow },
  {
    label: 'a folder SPA at /admin',
    prefix: '/admin',
    marker: /id="admin-spa"/,
    asset: '/app.js',
    flow: () => cdnRootFlow,
  },
  { label: 'a CDN index.html at /', prefix: '', marker: /id="cdn-app-spa"/, asset: undefined, flow: () => cdnRootFlow },
  {
    label: 'a CDN index.html at /shop',
    prefix: '/shop',
    marker: /id="shop-spa"/,
    asset: undefined,
    flow: () => staticRootFlow,
  },
]

for (const spa of SPAS) {
  describe(spa.label, () => {
    const url = (path: string) => `${spa.flow().origin}${spa.prefix}${path}`

    test('a browser navigation to a client-side route gets index.html, marked as varying with the navigation headers', async () => {
      const res = await rawRequest(url('/orders/7'), 'GET', NAVIGATE)
      assertPage(res, spa.marker, 'navigate')
      assert.equal(res.headers['cache-control'], 'no-cache')
      const vary = String(res.headers.vary).toLowerCase()
      for (const name of ['sec-fetch-mode', 'accept', 'x-csrf'])
        assert.ok(vary.split(/\s*,\s*/).includes(name), `Vary: ${vary}`)
    })

    test('a navigation from a browser without Sec-Fetch headers (Accept: text/html) gets index.html', async () => {
      assertPage(await rawRequest(url('/orders/7'), 'GET', OLD_BROWSER_NAVIGATE), spa.marker, 'old browser')
      assertPage(
        await rawRequest(url('/orders/7?tab=items'), 'GET', { accept: 'text/html' }),
        spa.marker,
        'text/html only',
      )
    })

    test("the SPA's fetch() of an unknown path gets 404 problem+json, never index.html", async () => {
      const res = await fetch(url('/orders/7'))
      assertNotFound(
        {
          status: res.status,
          headers: {
            'content-type': res.headers.get('content-type') ?? undefined,
            'cache-control': res.headers.get('cache-control') ?? undefined,
          },
          text: await res.text(),
        },
        'node fetch()',
      )
      assertNotFound(await rawRequest(url('/orders/7'), 'GET', SPA_FETCH), 'Sec-Fetch-Mode: cors')
      for (const mode of ['same-origin', 'no-cors']) {
        assertNotFound(await rawRequest(url('/orders/7'), 'GET', { 'sec-fetch-mode': mode, accept: 'text/html' }), mode)
      }
      assertNotFound(await rawRequest(url('/api/orders/7'), 'GET', { accept: '*/*' }), 'curl-like, no Sec-Fetch-Mode')
      assertNotFound(await rawRequest(url('/api/orders/7')), 'no headers at all')
    })

    test('a request with the anti-forgery header gets 404 problem+json even when it asks for text/html', async () => {
      assertNotFound(await rawRequest(url('/orders/7'), 'GET', { ...CSRF, accept: 'text/html' }), 'X-CSRF + text/html')
      assertNotFound(await rawRequest(url('/orders/7'), 'GET', { ...NAVIGATE, ...CSRF }), 'X-CSRF + navigate')
      assertNotFound(
        await rawRequest(url('/orders/7'), 'GET', { 'x-csrf': 'anything', accept: 'text/html' }),
        'X-CSRF with another value',
      )
    })

    test('a request that prefers JSON gets 404 problem+json', async () => {
      assertNotFound(await rawRequest(url('/orders/7'), 'GET', { accept: 'application/json' }), 'application/json')
      assertNotFound(
        await rawRequest(url('/orders/7'), 'GET', { 'sec-fetch-mode': 'navigate', accept: 'application/json' }),
        'navigate + application/json',
      )
      assertNotFound(
        await rawRequest(url('/orders/7'), 'GET', { accept: 'application/json, text/html;q=0.5' }),
        'JSON preferred over HTML',
      )
      assertNotFound(await rawRequest(url('/orders/7'), 'GET', { accept: 'text/html;q=0, */*' }), 'HTML refused')
    })

    test('POST, PUT, PATCH and DELETE to an unknown path get 404 problem+json, navigation headers or not', async () => {
      for (const method of ['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) {
        assertNotFound(await rawRequest(url('/orders/7'), method, NAVIGATE), `${method} navigate`)
        assertNotFound(await rawRequest(url('/orders/7'), method, { ...SPA_FETCH, ...CSRF }), `${method} fetch`)
      }
    })

    test("a HEAD navigation gets index.html's headers without a body; a HEAD that is no navigation gets 404 without a body", async () => {
      const page = await rawRequest(url('/orders/7'), 'HEAD', NAVIGATE)
      assert.equal(page.status, 200)
      assert.match(String(page.headers['content-type']), /^text\/html/)
      assert.ok(Number(page.headers['content-length']) > 0)
      assert.equal(page.text, '')
      const miss = await rawRequest(url('/orders/7'), 'HEAD', SPA_FETCH)
      assert.equal(miss.status, 404)
      assert.match(String(miss.headers['content-type']), /^application\/problem\+json/)
      assert.equal(miss.text, '')
    })

    test("the frontend's root is its index.html, to fetch() too", async () => {
      for (const path of ['/', ...(spa.prefix ? [''] : [])]) {
        assertPage(await rawRequest(url(path), 'GET', SPA_FETCH), spa.marker, `fetch ${spa.prefix}${path}`)
        assertPage(await rawRequest(url(path), 'GET', NAVIGATE), spa.marker, `navigate ${spa.prefix}${path}`)
      }
    })

    test('a missing asset (a path with a file extension) is 404 problem+json, even to a navigation', async () => {
      assertNotFound(await rawRequest(url('/assets/missing.js'), 'GET', NAVIGATE), 'navigate')
      assertNotFound(
        await rawRequest(url('/assets/missing.js'), 'GET', { 'sec-fetch-mode': 'no-cors', accept: '*/*' }),
        'script',
      )
    })

    test('a conditional fetch() of a client-side route gets 404, not the 304 that would let a cached index.html through', async () => {
      const page = await rawRequest(url('/orders/7'), 'GET', NAVIGATE)
      const etag = String(page.headers.etag)
      assert.ok(etag.length > 2)
      assert.equal(
        (await rawRequest(url('/orders/7'), 'GET', { ...NAVIGATE, 'if-none-match': etag })).status,
        304,
        'the navigation revalidates',
      )
      assertNotFound(
        await rawRequest(url('/orders/7'), 'GET', { ...SPA_FETCH, 'if-none-match': etag }),
        'fetch with the page etag',
      )
    })

    if (spa.asset !== undefined) {
      const asset = spa.asset
      test('an existing file is served to any GET or HEAD: fetch(), a script load, the anti-forgery header', async () => {
        const requests: Record<string, string>[] = [
          SPA_FETCH,
          { 'sec-fetch-mode': 'no-cors', accept: '*/*' },
          { ...SPA_FETCH, ...CSRF },
          { accept: 'application/json' },
          {},
        ]
        for (const headers of requests) {
          const res = await rawRequest(url(asset), 'GET', headers)
          assert.equal(res.status, 200, JSON.stringify(headers))
          assert.equal(res.headers['content-type'], 'text/javascript; charset=utf-8')
          assert.equal(res.headers.vary, undefined, 'a file does not vary with the request')
        }
        const head = await rawRequest(url(asset), 'HEAD', SPA_FETCH)
        assert.equal(head.status, 200)
        assert.equal(head.text, '')
        assertPage(await rawRequest(url('/index.html'), 'GET', SPA_FETCH), spa.marker, 'index.html by name')
      })
    }
  })
}

test("a path that only starts like a frontend's (/shopping, not /shop) falls back to the root SPA's index.html, by the same rule", async () => {
  assertPage(
    await rawRequest(`${staticRootFlow.origin}/shopping/cart`, 'GET', NAVIGATE),
    /id="app-spa"/,
    '/shopping navigate',
  )
  assertNotFound(await rawRequest(`${staticRootFlow.origin}/shopping/cart`, 'GET', SPA_FETCH), '/shopping fetch')
})

describe('gatehouse as middleware with frontendFallback', () => {
  const dir = spaFolder('lib')
  let withNext: Flow
  let withoutNext: Flow
  before(async () => {
    const frontends = [{ name: 'app', path: '/', static: dir }]
    withNext = await startFlow({
      gatehouse: { frontends },
      // The app's own route, then the fallback, then the app's own 404.
      app: (gatehouse) => (req, res) => {
        if (req.url === '/local') return void res.writeHead(200, { 'content-type': 'text/plain' }).end('local route')
        gatehouse.frontendFallback(req, res, () => res.writeHead(404, { 'content-type': 'text/plain' }).end('app 404'))
      },
    })
    withoutNext = await startFlow({
      gatehouse: { frontends },
      app: (gatehouse) => (req, res) => gatehouse.frontendFallback(req, res),
    })
  })
  after(async () => {
    await withNext?.close()
    await withoutNext?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  test("a navigation to a client-side route gets index.html from frontendFallback; the app's own routes come first", async () => {
    for (const flow of [withNext, withoutNext])
      assertPage(await rawRequest(`${flow.origin}/orders/7`, 'GET', NAVIGATE), /id="lib-spa"/, 'navigate')
    assert.equal((await rawRequest(`${withNext.origin}/local`, 'GET', NAVIGATE)).text, 'local route')
  })

  test('a request that is no navigation goes on to next(), or gets 404 problem+json without one', async () => {
    for (const headers of [SPA_FETCH, { ...CSRF, accept: 'text/html' }, { accept: 'application/json' }]) {
      const passed = await rawRequest(`${withNext.origin}/orders/7`, 'GET', headers)
      assert.equal(passed.status, 404)
      assert.equal(passed.text, 'app 404', JSON.stringify(headers))
      assertNotFound(await rawRequest(`${withoutNext.origin}/orders/7`, 'GET', headers), JSON.stringify(headers))
    }
    assert.equal((await rawRequest(`${withNext.origin}/orders/7`, 'POST', NAVIGATE)).text, 'app 404')
    assertNotFound(await rawRequest(`${withoutNext.origin}/orders/7`, 'DELETE', NAVIGATE), 'DELETE')
  })

  test('existing files are served to fetch() before the app sees the request', async () => {
    const res = await rawRequest(`${withNext.origin}/app.js`, 'GET', SPA_FETCH)
    assert.equal(res.status, 200)
    assert.equal(res.text, 'console.log("lib")')
  })
})
