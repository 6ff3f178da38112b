import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { validateConfig } from '../../src/config/validate.ts'
import { endpointRoutes, probeRoutes } from '../../src/endpoints/endpoint-routes.ts'
import { Frontends } from '../../src/frontends/frontends.ts'
import type { Route } from '../../src/http/routes.ts'
import { generateKey } from '../../src/session/seal.ts'

// The checks the dispatcher makes before each of gatehouse's own endpoints runs (src/http/routes.ts),
// pinned as a table: a route added, or a check changed, shows up here in review. A route must state
// its checks (the route spec has no defaults), so nothing is left open by omission.

/** path, methods, antiForgery, session, slide — one endpoint route. */
type Row = [
  path: string,
  methods: string,
  antiForgery: Route['antiForgery'],
  session: Route['session'],
  slide: Route['slide'],
]

function rows(routes: Map<string, Route>): Row[] {
  return [...routes].map(([path, r]) => [path, r.methods.join(','), r.antiForgery, r.session, r.slide])
}

/** Every optional endpoint on: server mode (back-channel logout), diagnostics, three frontends (root, a path, a host). */
function everythingOn(overrides: Record<string, unknown> = {}) {
  const { config, issues } = validateConfig({
    publicOrigin: 'https://app.example.com',
    oidc: { authority: 'https://idp.example.com', clientId: 'spa-bff', clientSecret: 'spa-bff-secret' },
    keys: [generateKey()],
    session: { mode: 'server', store: 'memory' },
    diagnostics: true,
    frontends: [
      { name: 'main', path: '/', indexHtmlUrl: 'https://cdn.example.com/main/index.html' },
      { name: 'admin', path: '/admin', indexHtmlUrl: 'https://cdn.example.com/admin/index.html' },
      { name: 'partner', host: 'partner.example.com', indexHtmlUrl: 'https://cdn.example.com/partner/index.html' },
    ],
    ...overrides,
  })
  assert.deepEqual(issues, [])
  return config!
}

const PROBES: Row[] = [
  ['/healthz', 'GET,HEAD', 'none', 'none', 'never'],
  ['/readyz', 'GET,HEAD', 'none', 'none', 'never'],
]

/** A frontend's endpoints under `prefix` ('' for the root), with every optional one on. */
function frontendTable(prefix: string): Row[] {
  return [
    [`${prefix}/bff/login`, 'GET', 'none', 'none', 'never'],
    [`${prefix}/bff/user`, 'GET,HEAD', 'header', 'required', 'query'],
    [`${prefix}/bff/logout`, 'GET', 'none', 'none', 'never'],
    [`${prefix}/bff/silent-login`, 'GET', 'none', 'none', 'never'],
    [`${prefix}/bff/session-events`, 'GET', 'fetchMetadata', 'required', 'never'],
    [`${prefix}/bff/silent-login-callback`, 'GET,HEAD', 'none', 'optional', 'never'],
    [`${prefix}/signin-oidc`, 'GET', 'none', 'none', 'never'],
    [`${prefix}/signout-callback-oidc`, 'GET', 'none', 'none', 'never'],
    [`${prefix}/bff/backchannel`, 'POST', 'none', 'none', 'never'],
    [`${prefix}/bff/diagnostics`, 'GET,HEAD', 'header', 'required', 'never'],
  ]
}

describe('the endpoint route table', () => {
  test('the probes: no checks, no session read', () => {
    assert.deepEqual(rows(probeRoutes()), PROBES)
  })

  test('every endpoint of every frontend, with every optional endpoint on: its methods and checks', () => {
    const config = everythingOn()
    const frontends = new Frontends(config, Date.now)
    const byFrontend = Object.fromEntries(frontends.all.map((f) => [f.name, rows(endpointRoutes(config, f))]))
    assert.deepEqual(byFrontend, {
      main: frontendTable(''),
      admin: frontendTable('/admin'),
      // A host-based frontend's endpoints are at the root of its host.
      partner: frontendTable(''),
    })
  })

  test("every route that requires a session before it runs also checks that the request is the app's own", () => {
    const config = everythingOn()
    for (const frontend of new Frontends(config, Date.now).all) {
      for (const [path, route] of endpointRoutes(config, frontend)) {
        if (route.session === 'required')
          assert.notEqual(route.antiForgery, 'none', `${path} reads a required session: it needs an anti-forgery check`)
      }
    }
  })

  test("what the configuration changes: cookie mode has no back-channel logout; anonymousSessionResponse 200 makes /bff/user's session optional", () => {
    const config = everythingOn({
      session: { mode: 'cookie' },
      anonymousSessionResponse: 200,
      diagnostics: false,
      frontends: [],
    })
    const [frontend] = new Frontends(config, Date.now).all
    assert.deepEqual(rows(endpointRoutes(config, frontend!)), [
      ['/bff/login', 'GET', 'none', 'none', 'never'],
      ['/bff/user', 'GET,HEAD', 'header', 'optional', 'query'],
      ['/bff/logout', 'GET', 'none', 'none', 'never'],
      ['/bff/silent-login', 'GET', 'none', 'none', 'never'],
      ['/bff/session-events', 'GET', 'fetchMetadata', 'required', 'never'],
      ['/bff/silent-login-callback', 'GET,HEAD', 'none', 'optional', 'never'],
      ['/signin-oidc', 'GET', 'none', 'none', 'never'],
      ['/signout-callback-oidc', 'GET', 'none', 'none', 'never'],
    ])
  })
})
