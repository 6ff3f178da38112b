import assert from 'node:assert/strict'
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { describeStore } from '../../src/cli/check-connect.ts'
import { decode, maskCredentials, maskUrlsIn } from '../../src/config/mask.ts'
import { interpolateEnv, loadConfigFile } from '../../src/config/load.ts'
import { resolveFilePaths } from '../../src/config/read-config.ts'
import type { ConfigIssue } from '../../src/config/types.ts'
import { formatKeyPath, validateConfig } from '../../src/config/validate.ts'
import { generateKey } from '../../src/session/seal.ts'

const KEY = generateKey()
const minimal = () => ({
  oidc: { authority: 'https://idp.example.com', clientId: 'spa-bff', clientSecret: 'spa-bff-secret' },
  keys: [KEY],
})

function issuesOf(raw: unknown): ConfigIssue[] {
  const result = validateConfig(raw)
  assert.equal(result.config, undefined, 'config is refused')
  return result.issues
}

function pathsOf(raw: unknown): string[] {
  return issuesOf(raw).map((i) => i.path)
}

function withSession(session: Record<string, unknown>) {
  return { ...minimal(), session }
}

describe('validateConfig', () => {
  test('a minimal config is accepted with every default filled in', () => {
    const { config, issues } = validateConfig(minimal())
    assert.deepEqual(issues, [])
    assert.ok(config)
    assert.deepEqual(config.listen, { host: '127.0.0.1', port: 8080 })
    assert.equal(config.publicOrigin, undefined)
    assert.equal(config.trustProxy, false)
    assert.equal(config.oidc.authority, 'https://idp.example.com')
    assert.equal(config.oidc.clientId, 'spa-bff')
    // With a secret and no clientAuth, the method is chosen from the IdP's discovery document.
    assert.equal(config.oidc.clientAuth, undefined)
    assert.equal(config.oidc.issuer, undefined)
    assert.equal(config.oidc.allowedIssuers, undefined)
    assert.equal(config.oidc.allowedTenants, undefined)
    assert.equal(config.oidc.endSessionEndpoint, undefined)
    assert.deepEqual(config.oidc.endSessionParams, {})
    assert.deepEqual(config.oidc.scopes, ['openid', 'profile', 'offline_access'])
    assert.equal(config.oidc.redirectPath, '/signin-oidc')
    assert.equal(config.oidc.postLogoutRedirectPath, '/signout-callback-oidc')
    assert.equal(config.oidc.timeoutMs, 10_000)
    assert.deepEqual(config.keys, [KEY])
    assert.deepEqual(config.session, {
      mode: 'server',
      store: 'sqlite:./gatehouse-sessions.db',
      cookieName: '__Host-gatehouse',
      sameSite: 'lax',
      sliding: true,
      lifetimeMs: 8 * 3_600_000,
      absoluteLifetimeMs: 24 * 3_600_000,
      cleanupIntervalMs: 10 * 60_000,
      cacheTtlMs: 1_000,
    })
    assert.equal(config.managementBasePath, '/bff')
    assert.deepEqual(config.antiForgery, { header: 'X-CSRF', value: '1' })
    assert.equal(config.anonymousSessionResponse, 401)
    assert.equal(config.revokeRefreshTokenOnLogout, true)
    assert.deepEqual(config.backchannelLogout, { allUserSessions: false })
    assert.deepEqual(config.remoteApis, [])
    assert.deepEqual(config.frontends, [])
    assert.equal(config.diagnostics, false)
    assert.equal(config.admin, undefined)
    assert.equal(config.log.level, 'info')
  })

  test('a partial session block keeps the defaults of the keys it leaves out', () => {
    const { config } = validateConfig(withSession({ store: 'memory', lifetime: '30m' }))
    assert.equal(config?.session.store, 'memory')
    assert.equal(config?.session.lifetimeMs, 30 * 60_000)
    assert.equal(config?.session.cookieName, '__Host-gatehouse')
    assert.equal(config?.session.absoluteLifetimeMs, 24 * 3_600_000)
  })

  test('durations in every unit are converted to milliseconds', () => {
    const { config } = validateConfig({
      ...minimal(),
      oidc: { ...minimal().oidc, timeout: '250ms' },
      session: { lifetime: '45s', absoluteLifetime: '7d', cleanupInterval: '2h' },
    })
    assert.equal(config?.oidc.timeoutMs, 250)
    assert.equal(config?.session.lifetimeMs, 45_000)
    assert.equal(config?.session.absoluteLifetimeMs, 7 * 86_400_000)
    assert.equal(config?.session.cleanupIntervalMs, 2 * 3_600_000)
  })

  test('a client secret without clientAuth leaves the method to discovery; a clientAuth given is kept; a key alone selects private_key_jwt', () => {
    const { config } = validateConfig({ ...minimal(), oidc: { ...minimal().oidc, clientSecret: 's3cret' } })
    assert.equal(config?.oidc.clientAuth, undefined)
    assert.equal(config?.oidc.clientSecret, 's3cret')
    const post = validateConfig({
      ...minimal(),
      oidc: { ...minimal().oidc, clientSecret: 's3cret', clientAuth: 'client_secret_post' },
    })
    assert.equal(post.config?.oidc.clientAuth, 'client_secret_post')
    const { clientSecret: _secret, ...withoutSecret } = minimal().oidc as Record<string, unknown>
    const key = validateConfig({
      ...minimal(),
      oidc: { ...withoutSecret, privateKeyJwk: { kty: 'EC', crv: 'P-256', x: 'x', y: 'y', d: 'd' } },
    })
    assert.equal(key.config?.oidc.clientAuth, 'private_key_jwt')
  })

  test('the issuer keys are accepted and kept as given', () => {
    const { config, issues } = validateConfig({
      ...minimal(),
      oidc: {
        ...minimal().oidc,
        authority: 'https://login.microsoftonline.com/organizations/v2.0',
        allowedIssuers: ['https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0'],
        allowedTenants: ['72f988bf-86f1-41af-91ab-2d7cd011db47'],
        endSessionEndpoint: 'https://tenant.auth0.com/v2/logout',
        endSessionParams: { returnTo: '{post_logout_redirect_uri}', client_id: '{client_id}' },
      },
    })
    assert.deepEqual(issues, [])
    assert.deepEqual(config?.oidc.allowedIssuers, [
      'https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0',
    ])
    const pinned = validateConfig({
      ...minimal(),
      oidc: { ...minimal().oidc, issuer: 'https://kc.example.com/realms/demo' },
    })
    assert.equal(pinned.config?.oidc.issuer, 'https://kc.example.com/realms/demo')
    assert.deepEqual(config?.oidc.allowedTenants, ['72f988bf-86f1-41af-91ab-2d7cd011db47'])
    assert.equal(config?.oidc.endSessionEndpoint, 'https://tenant.auth0.com/v2/logout')
    assert.deepEqual(config?.oidc.endSessionParams, {
      returnTo: '{post_logout_redirect_uri}',
      client_id: '{client_id}',
    })
  })

  test('hostile or malformed issuer and end-session keys are refused, each naming its key', () => {
    const { issues } = validateConfig({
      ...minimal(),
      oidc: {
        ...minimal().oidc,
        issuer: 'https://login.microsoftonline.com/{tenantid}/v2.0',
        allowedIssuers: ['has a space'],
        allowedTenants: ['../x', 'a/b', ''],
        endSessionEndpoint: 'javascript:alert(1)',
        endSessionParams: { returnTo: '{id_token_hint}', 'bad name': 'x' },
      },
    })
    const paths = issues.map((i) => i.path)
    for (const path of [
      'oidc.issuer',
      'oidc.allowedIssuers[0]',
      'oidc.allowedTenants[1]',
      'oidc.allowedTenants[2]',
      'oidc.endSessionEndpoint',
      'oidc.endSessionParams.returnTo',
    ]) {
      assert.ok(paths.includes(path), `${path} is reported (got ${paths.join(', ')})`)
    }
    assert.ok(
      paths.some((p) => p.startsWith('oidc.endSessionParams')),
      'a bad parameter name is reported',
    )
    assert.equal(
      validateConfig({ ...minimal(), oidc: { ...minimal().oidc, allowedTenants: [] } }).issues[0]?.path,
      'oidc.allowedTenants',
    )
    const both = validateConfig({
      ...minimal(),
      oidc: {
        ...minimal().oidc,
        issuer: 'https://kc.example.com/realms/demo',
        allowedTenants: ['a'],
        allowedIssuers: ['https://kc.example.com/x'],
      },
    })
    assert.deepEqual(
      both.issues.map((i) => i.path).sort(),
      ['oidc.allowedIssuers', 'oidc.allowedTenants'],
      'lists that oidc.issuer makes pointless are refused',
    )
  })

  test('the validated config is frozen all the way down', () => {
    const { config } = validateConfig(minimal())
    assert.ok(config)
    assert.ok(Object.isFrozen(config))
    assert.ok(Object.isFrozen(config.session))
    assert.ok(Object.isFrozen(config.oidc.scopes))
    assert.throws(() => {
      ;(config.session as { store: string }).store = 'memory'
    }, TypeError)
  })

  test('an empty or missing config names each required key', () => {
    for (const raw of [{}, undefined, null]) {
      const issues = issuesOf(raw)
      assert.deepEqual(issues, [
        { path: 'oidc', message: 'is required' },
        { path: 'keys', message: 'is required' },
      ])
    }
  })

  test('a config that is not an object is refused at the root', () => {
    for (const raw of ['text', 42, [1, 2]]) assert.deepEqual(pathsOf(raw), ['(root)'])
  })

  test('every problem of a bad config is reported at once, by dotted key path with array indexes', () => {
    const issues = issuesOf({
      oidc: { authority: 'ftp://idp', clientId: '' },
      keys: [KEY, 'not-a-key'],
      session: { cookieName: 'gatehouse', lifetime: 'forever' },
      remoteApis: [
        { path: '/api', target: 'http://127.0.0.1:5000' },
        { path: '/other', target: 'not a url' },
      ],
      managementBasePath: '/bff/',
    })
    const paths = issues.map((i) => i.path)
    for (const expected of [
      'oidc.authority',
      'oidc.clientId',
      'keys[1]',
      'session.cookieName',
      'session.lifetime',
      'remoteApis[1].target',
      'managementBasePath',
    ]) {
      assert.ok(paths.includes(expected), `${expected} in ${paths.join(', ')}`)
    }
    assert.ok(!paths.includes('keys[0]'), 'the valid key is not reported')
    assert.ok(!paths.includes('remoteApis[0].target'), 'the valid target is not reported')
    assert.equal(issues.find((i) => i.path === 'oidc.clientId')?.message, 'must not be empty')
    assert.match(issues.find((i) => i.path === 'keys[1]')!.message, /32-byte key/)
    for (const issue of issues) assert.ok(issue.message.length > 0)
  })

  test('a nested missing key is reported as required at its path', () => {
    assert.deepEqual(issuesOf({ oidc: { authority: 'https://idp.example.com', clientSecret: 's' }, keys: [KEY] }), [
      { path: 'oidc.clientId', message: 'is required' },
    ])
  })

  test('a wrong type is reported at its path', () => {
    assert.deepEqual(pathsOf({ ...minimal(), listen: { port: '8080' }, trustProxy: 'yes', keys: [KEY, 7] }).sort(), [
      'keys[1]',
      'listen.port',
      'trustProxy',
    ])
  })

  test('an empty key ring is refused', () => {
    assert.deepEqual(pathsOf({ ...minimal(), keys: [] }), ['keys'])
  })

  test('unknown keys are reported one by one, at any depth', () => {
    const issues = issuesOf({
      ...minimal(),
      sesion: {},
      oidc: { ...minimal().oidc, clientSecrett: 'x' },
      session: { lifetme: '1h' },
      remoteApis: [{ path: '/api', target: 'https://api.example.com', tokne: 'user' }],
    })
    assert.deepEqual(
      issues
        .filter((i) => i.message === 'unknown key')
        .map((i) => i.path)
        .sort(),
      ['oidc.clientSecrett', 'remoteApis[0].tokne', 'sesion', 'session.lifetme'],
    )
  })

  test('an http:// authority is refused unless it is a loopback host', () => {
    for (const authority of [
      'http://idp.example.com',
      'http://10.0.0.1',
      'http://localhost.example.com',
      'http://127.example.com',
      'idp.example.com',
      'ftp://idp.example.com',
    ]) {
      assert.deepEqual(pathsOf({ ...minimal(), oidc: { ...minimal().oidc, authority } }), ['oidc.authority'], authority)
    }
    for (const authority of [
      'https://idp.example.com/realms/x',
      'http://localhost:8443',
      'http://127.0.0.1:9000',
      'http://[::1]:9000',
    ]) {
      assert.deepEqual(validateConfig({ ...minimal(), oidc: { ...minimal().oidc, authority } }).issues, [], authority)
    }
  })

  test('publicOrigin must be an https origin without a path and is normalised', () => {
    assert.equal(
      validateConfig({ ...minimal(), publicOrigin: 'https://App.Example.com' }).config?.publicOrigin,
      'https://app.example.com',
    )
    for (const publicOrigin of [
      'http://app.example.com',
      'https://app.example.com/app',
      'https://app.example.com/?x=1',
    ]) {
      assert.deepEqual(pathsOf({ ...minimal(), publicOrigin }), ['publicOrigin'], publicOrigin)
    }
  })

  test('a cookie name without the __Host- prefix is refused', () => {
    for (const cookieName of ['gatehouse', '__Secure-gatehouse', '__host-gatehouse', 'Host-gatehouse']) {
      assert.deepEqual(
        issuesOf(withSession({ cookieName })),
        [{ path: 'session.cookieName', message: 'must start with "__Host-"' }],
        cookieName,
      )
    }
    assert.deepEqual(pathsOf(withSession({ cookieName: '__Host-bad name' })), ['session.cookieName'])
    assert.equal(validateConfig(withSession({ cookieName: '__Host-app' })).config?.session.cookieName, '__Host-app')
  })

  test("the __Host-Http- prefix of the July 2026 editor's copy (RFC 10017 §6.1.3.2) is accepted as the cookie name", () => {
    assert.deepEqual(validateConfig(withSession({ cookieName: '__Host-Http-gatehouse' })).issues, [])
    assert.equal(
      validateConfig(withSession({ cookieName: '__Host-Http-gatehouse' })).config?.session.cookieName,
      '__Host-Http-gatehouse',
    )
    assert.deepEqual(pathsOf(withSession({ cookieName: '__Http-gatehouse' })), ['session.cookieName'])
  })

  test('durations that are not a number with a unit, or not positive, are refused', () => {
    for (const lifetime of ['8', '8 hours', '1.5h', '-1h', '0s', '0ms', 'h', '', '8H', '1w', 3600]) {
      const issues = issuesOf(withSession({ lifetime }))
      assert.deepEqual(
        issues.map((i) => i.path),
        ['session.lifetime'],
        String(lifetime),
      )
    }
    assert.match(issuesOf(withSession({ lifetime: '8 hours' }))[0]!.message, /must be a duration/)
  })

  test('cross-field problems are reported together', () => {
    const issues = issuesOf({
      ...minimal(),
      oidc: {
        authority: 'https://idp.example.com',
        clientId: 'spa-bff',
        clientAuth: 'client_secret_post',
        scopes: ['profile'],
        postLogoutRedirectPath: '/signin-oidc',
      },
      session: { lifetime: '8h', absoluteLifetime: '1h' },
    })
    assert.deepEqual(issues.map((i) => i.path).sort(), [
      'oidc.clientSecret',
      'oidc.postLogoutRedirectPath',
      'oidc.scopes',
      'session.absoluteLifetime',
    ])
  })

  test('every store URL form is accepted, an unknown scheme is refused', () => {
    assert.equal(validateConfig(withSession({ mode: 'cookie' })).config?.session.mode, 'cookie')
    for (const store of [
      'redis://cache:6379',
      'rediss://cache:6380?prefix=app:',
      'postgres://db/gatehouse',
      'postgresql://u@db/g?schema=bff',
    ]) {
      assert.equal(validateConfig(withSession({ store })).config?.session.store, store)
    }
    assert.deepEqual(pathsOf(withSession({ store: 'mysql://db' })), ['session.store'])
  })

  test("a remote API gets defaults, and one overlapping gatehouse's own paths is refused", () => {
    const ok = validateConfig({ ...minimal(), remoteApis: [{ path: '/api', target: 'http://127.0.0.1:5000/v2' }] })
    assert.deepEqual(ok.config?.remoteApis, [
      {
        path: '/api',
        target: 'http://127.0.0.1:5000/v2',
        token: 'user',
        antiForgery: true,
        timeoutMs: 30_000,
        websockets: false,
        methods: undefined,
        maxBodyBytes: undefined,
        resource: undefined,
        scopes: [],
        connections: 128,
        queue: 256,
      },
    ])
    for (const path of ['/bff', '/signin-oidc', '/healthz', '/bff/user/x']) {
      assert.deepEqual(
        pathsOf({ ...minimal(), remoteApis: [{ path, target: 'http://127.0.0.1:5000' }] }),
        ['remoteApis[0].path'],
        path,
      )
    }
  })

  test('remoteApis[].methods: a list of upper-case HTTP methods is kept as written; leaving it out allows every method', () => {
    const withMethods = (methods: unknown, extra: Record<string, unknown> = {}) => ({
      ...minimal(),
      remoteApis: [{ path: '/api', target: 'http://127.0.0.1:5000', methods, ...extra }],
    })
    assert.deepEqual(validateConfig(withMethods(['GET', 'POST', 'DELETE'])).config?.remoteApis[0]?.methods, [
      'GET',
      'POST',
      'DELETE',
    ])
    assert.deepEqual(validateConfig(withMethods(['OPTIONS', 'PROPFIND'])).config?.remoteApis[0]?.methods, [
      'OPTIONS',
      'PROPFIND',
    ])
    assert.deepEqual(validateConfig(withMethods(['GET'], { websockets: true })).issues, [])
  })

  test('remoteApis[].methods: lower-case, unknown, empty, duplicate or non-list values are refused, each naming its key', () => {
    const withMethods = (methods: unknown, extra: Record<string, unknown> = {}) => ({
      ...minimal(),
      remoteApis: [
        { path: '/api', target: 'http://127.0.0.1:5000' },
        { path: '/x', target: 'http://127.0.0.1:5000', methods, ...extra },
      ],
    })
    assert.deepEqual(issuesOf(withMethods(['GET', 'post'])), [
      { path: 'remoteApis[1].methods[1]', message: 'methods are case-sensitive: write "POST", not "post"' },
    ])
    assert.deepEqual(issuesOf(withMethods(['Get'])), [
      { path: 'remoteApis[1].methods[0]', message: 'methods are case-sensitive: write "GET", not "Get"' },
    ])
    for (const bad of ['FETCH', 'GET ', ' GET', 'G ET', '', 'CONNECT', 'GET\r\nX-Injected: 1', '*']) {
      const issues = issuesOf(withMethods(['GET', bad]))
      assert.deepEqual(
        issues.map((i) => i.path),
        ['remoteApis[1].methods[1]'],
        JSON.stringify(bad),
      )
      assert.match(issues[0]!.message, /^must be an HTTP method such as "GET"/)
    }
    assert.deepEqual(issuesOf(withMethods([])), [
      {
        path: 'remoteApis[1].methods',
        message: 'must list at least one method (leave methods out to allow every method)',
      },
    ])
    assert.deepEqual(issuesOf(withMethods(['GET', 'POST', 'GET'])), [
      { path: 'remoteApis[1].methods', message: 'lists a method more than once' },
    ])
    assert.deepEqual(pathsOf(withMethods('GET')), ['remoteApis[1].methods'])
    assert.deepEqual(pathsOf(withMethods([1])), ['remoteApis[1].methods[0]'])
    assert.deepEqual(issuesOf(withMethods(['POST'], { websockets: true })), [
      {
        path: 'remoteApis[1].methods',
        message: 'must include "GET" when websockets is true (the WebSocket handshake is a GET)',
      },
    ])
  })

  test('limits and remoteApis[].connections/queue: defaults filled in (queue 2 × connections), durations in ms, "0s" turns an idle timeout off', () => {
    const { config } = validateConfig({
      ...minimal(),
      remoteApis: [
        { path: '/api', target: 'http://127.0.0.1:5000' },
        { path: '/b', target: 'http://127.0.0.1:5000', connections: 10 },
        { path: '/c', target: 'http://127.0.0.1:5000', connections: 4, queue: 0 },
      ],
    })
    assert.deepEqual(config?.limits, {
      perClient: 32,
      perClientStreams: 8,
      bodyIdleTimeoutMs: 10_000,
      writeIdleTimeoutMs: 30_000,
    })
    assert.deepEqual(
      config?.remoteApis.map((a) => [a.connections, a.queue]),
      [
        [128, 256],
        [10, 20],
        [4, 0],
      ],
    )
    const set = validateConfig({
      ...minimal(),
      limits: { perClient: 5, perClientStreams: 1, bodyIdleTimeout: '0s', writeIdleTimeout: '2m' },
    })
    assert.deepEqual(set.config?.limits, {
      perClient: 5,
      perClientStreams: 1,
      bodyIdleTimeoutMs: 0,
      writeIdleTimeoutMs: 120_000,
    })
  })

  test('limits and remoteApis[].connections/queue: out-of-range, fractional, mistyped or unknown values are refused, each naming its key', () => {
    const api = (extra: Record<string, unknown>) => ({
      ...minimal(),
      remoteApis: [{ path: '/api', target: 'http://127.0.0.1:5000', ...extra }],
    })
    assert.deepEqual(issuesOf(api({ connections: 0 })), [
      { path: 'remoteApis[0].connections', message: 'must be a whole number from 1 to 10000' },
    ])
    assert.deepEqual(pathsOf(api({ connections: 10_001 })), ['remoteApis[0].connections'])
    assert.deepEqual(pathsOf(api({ connections: 1.5 })), ['remoteApis[0].connections'])
    assert.deepEqual(pathsOf(api({ connections: '128' })), ['remoteApis[0].connections'])
    assert.deepEqual(issuesOf(api({ queue: -1 })), [
      { path: 'remoteApis[0].queue', message: 'must be a whole number from 0 to 100000' },
    ])
    const limits = (value: Record<string, unknown>) => ({ ...minimal(), limits: value })
    assert.deepEqual(issuesOf(limits({ perClient: 0 })), [
      { path: 'limits.perClient', message: 'must be a whole number from 1 to 1000000' },
    ])
    assert.deepEqual(pathsOf(limits({ perClientStreams: 2.5 })), ['limits.perClientStreams'])
    assert.deepEqual(pathsOf(limits({ bodyIdleTimeout: 'soon' })), ['limits.bodyIdleTimeout'])
    assert.deepEqual(pathsOf(limits({ writeIdleTimeout: 30 })), ['limits.writeIdleTimeout'])
    assert.deepEqual(issuesOf(limits({ perclient: 5 })), [{ path: 'limits.perclient', message: 'unknown key' }])
  })

  test('duplicate remote API prefixes are reported at the later index', () => {
    const paths = pathsOf({
      ...minimal(),
      remoteApis: [
        { path: '/api', target: 'https://a.example.com' },
        { path: '/api', target: 'https://b.example.com' },
      ],
    })
    assert.deepEqual(paths, ['remoteApis[1].path'])
  })

  test('a remote API resource is an absolute URI without a fragment, with scope tokens; errors name remoteApis[i].resource and .scopes', () => {
    const api = (extra: Record<string, unknown>) => ({
      ...minimal(),
      remoteApis: [
        { path: '/public', target: 'https://a.example.com', token: 'none' },
        { path: '/api', target: 'https://b.example.com', ...extra },
      ],
    })
    const ok = validateConfig(api({ resource: 'https://api.example.com/orders', scopes: ['orders:read'] }))
    assert.equal(ok.config?.remoteApis[1]?.resource, 'https://api.example.com/orders')
    assert.deepEqual(ok.config?.remoteApis[1]?.scopes, ['orders:read'])
    assert.equal(
      validateConfig(api({ resource: 'urn:example:orders', token: 'client' })).config?.remoteApis[1]?.resource,
      'urn:example:orders',
    )
    for (const resource of [
      '/orders',
      'api.example.com',
      'https://api.example.com/#x',
      'https://api.example.com/a b',
      '',
      42,
    ]) {
      assert.deepEqual(pathsOf(api({ resource })), ['remoteApis[1].resource'], String(resource))
    }
    assert.deepEqual(pathsOf(api({ resource: 'https://api.example.com', scopes: ['a b'] })), [
      'remoteApis[1].scopes[0]',
    ])
    const scopesAlone = issuesOf(api({ scopes: ['orders:read'] }))
    assert.deepEqual(
      scopesAlone.map((i) => i.path),
      ['remoteApis[1].scopes'],
    )
    assert.match(scopesAlone[0]!.message, /needs remoteApis\[1\]\.resource/)
    const noToken = issuesOf(api({ resource: 'https://api.example.com', token: 'none' }))
    assert.deepEqual(
      noToken.map((i) => i.path),
      ['remoteApis[1].resource'],
    )
    assert.match(noToken[0]!.message, /token "none"/)
  })
})

describe('formatKeyPath', () => {
  test('joins keys with dots and writes array indexes in brackets', () => {
    assert.equal(formatKeyPath(['remoteApis', 0, 'target']), 'remoteApis[0].target')
    assert.equal(formatKeyPath(['keys', 2]), 'keys[2]')
    assert.equal(formatKeyPath(['oidc', 'clientId']), 'oidc.clientId')
    assert.equal(formatKeyPath([]), '(root)')
  })
})

describe('interpolateEnv', () => {
  test('${NAME} is replaced by the environment variable in every string, at any depth', () => {
    const issues: ConfigIssue[] = []
    const out = interpolateEnv(
      {
        oidc: { clientSecret: '${SECRET}', authority: 'https://${HOST}/realms/${REALM}' },
        keys: ['${KEY1}', 'literal'],
        listen: { port: 8080 },
        trustProxy: true,
        x: null,
      },
      { SECRET: 's3cret', HOST: 'idp.example.com', REALM: 'main', KEY1: KEY },
      '',
      issues,
    )
    assert.deepEqual(issues, [])
    assert.deepEqual(out, {
      oidc: { clientSecret: 's3cret', authority: 'https://idp.example.com/realms/main' },
      keys: [KEY, 'literal'],
      listen: { port: 8080 },
      trustProxy: true,
      x: null,
    })
  })

  test('an unset variable is reported at its key path, one issue per reference', () => {
    const issues: ConfigIssue[] = []
    interpolateEnv(
      { oidc: { clientSecret: '${MISSING_SECRET}' }, keys: ['${K0}', '${MISSING_KEY}'], admin: { token: '${A}-${B}' } },
      { K0: KEY },
      '',
      issues,
    )
    assert.deepEqual(issues, [
      { path: 'oidc.clientSecret', message: 'environment variable MISSING_SECRET is not set' },
      { path: 'keys[1]', message: 'environment variable MISSING_KEY is not set' },
      { path: 'admin.token', message: 'environment variable A is not set' },
      { path: 'admin.token', message: 'environment variable B is not set' },
    ])
  })

  test('a variable set to the empty string is used, not reported', () => {
    const issues: ConfigIssue[] = []
    assert.deepEqual(interpolateEnv({ a: 'x${EMPTY}y' }, { EMPTY: '' }, '', issues), { a: 'xy' })
    assert.deepEqual(issues, [])
  })

  test('replacement values are inserted literally, never re-expanded', () => {
    const issues: ConfigIssue[] = []
    const out = interpolateEnv({ a: '${V}' }, { V: "$& $1 $' ${OTHER}" }, '', issues)
    assert.deepEqual(out, { a: "$& $1 $' ${OTHER}" })
    assert.deepEqual(issues, [])
  })

  test('text that is not a ${NAME} reference is left alone', () => {
    const issues: ConfigIssue[] = []
    const text = '$NAME ${} ${1BAD} ${with-dash} $${ x'
    assert.equal(interpolateEnv(text, {}, '', issues), text)
    assert.deepEqual(issues, [])
  })

  test('a top-level string with an unset variable is reported at (root)', () => {
    const issues: ConfigIssue[] = []
    interpolateEnv('${NOPE}', {}, '', issues)
    assert.deepEqual(issues, [{ path: '(root)', message: 'environment variable NOPE is not set' }])
  })
})

describe('loadConfigFile', () => {
  let dir: string
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'gatehouse-config-'))
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  const write = (name: string, text: string) => {
    const path = join(dir, name)
    writeFileSync(path, text)
    return path
  }

  test('a JSON file is parsed', async () => {
    const path = write('gatehouse.json', JSON.stringify(minimal()))
    assert.deepEqual(await loadConfigFile(path), { raw: minimal(), issues: [] })
  })

  test('a YAML file (.yaml or .yml) is parsed', async () => {
    const yaml = `oidc:\n  authority: https://idp.example.com\n  clientId: spa-bff\n  clientSecret: spa-bff-secret\nkeys:\n  - ${KEY}\n`
    for (const name of ['gatehouse.yaml', 'gatehouse.YML']) {
      assert.deepEqual(await loadConfigFile(write(name, yaml)), { raw: minimal(), issues: [] }, name)
    }
  })

  test('a missing file is an issue, not an exception', async () => {
    const path = join(dir, 'nope.json')
    const { raw, issues } = await loadConfigFile(path)
    assert.equal(raw, undefined)
    assert.deepEqual(issues, [{ path: '(file)', message: `${path}: file not found` }])
  })

  test('a path that cannot be read as a file is an issue', async () => {
    const path = join(dir, 'a-directory.json')
    mkdirSync(path)
    const { raw, issues } = await loadConfigFile(path)
    assert.equal(raw, undefined)
    assert.deepEqual(issues, [{ path: '(file)', message: `${path}: file cannot be read` }])
  })

  test("broken JSON is reported with the parser's reason, not thrown", async () => {
    for (const text of ['{"oidc": ', '', '{oidc: 1}', '// comment\n{}']) {
      const path = write('broken.json', text)
      const { raw, issues } = await loadConfigFile(path)
      assert.equal(raw, undefined)
      assert.equal(issues.length, 1)
      assert.equal(issues[0]!.path, '(file)')
      assert.match(issues[0]!.message, /not valid JSON \(.+\)$/)
      assert.ok(!issues[0]!.message.includes('\n'), 'one line')
    }
  })

  test('broken YAML is reported, not thrown', async () => {
    const path = write('broken.yaml', 'oidc:\n  authority: [unclosed\n  clientId: x\n')
    const { raw, issues } = await loadConfigFile(path)
    assert.equal(raw, undefined)
    assert.equal(issues.length, 1)
    assert.match(issues[0]!.message, /not valid YAML/)
  })

  test('a loaded, interpolated file validates end to end', async () => {
    const path = write(
      'env.json',
      JSON.stringify({
        oidc: { authority: 'https://idp.example.com', clientId: 'spa', clientSecret: '${SECRET}' },
        keys: ['${KEY}'],
      }),
    )
    const { raw } = await loadConfigFile(path)
    const issues: ConfigIssue[] = []
    const value = interpolateEnv(raw, { SECRET: 's', KEY }, '', issues)
    assert.deepEqual(issues, [])
    const { config } = validateConfig(value)
    assert.equal(config?.oidc.clientSecret, 's')
    assert.deepEqual(config?.keys, [KEY])
  })
})

test('schema problems and cross-key problems are reported together in one run', () => {
  const result = validateConfig({
    oidc: { authority: 'https://idp.example.com', clientId: '', clientSecret: 's', scopes: ['profile'] },
    keys: [generateKey()],
    session: { mode: 'cookie', lifetime: '48h' },
  })
  assert.equal(result.config, undefined)
  const paths = result.issues.map((i) => i.path).sort()
  assert.deepEqual(paths, ['oidc.clientId', 'oidc.scopes', 'session.absoluteLifetime'])
})

test('a callback path that would shadow a management or health endpoint is refused', () => {
  const base = {
    oidc: { authority: 'https://idp.example.com', clientId: 'c', clientSecret: 's' },
    keys: [generateKey()],
  }
  const shadow = validateConfig({
    ...base,
    oidc: { ...base.oidc, redirectPath: '/bff/user', postLogoutRedirectPath: '/healthz' },
  })
  assert.deepEqual(shadow.issues.map((i) => i.path).sort(), ['oidc.postLogoutRedirectPath', 'oidc.redirectPath'])
  const custom = validateConfig({
    ...base,
    managementBasePath: '/auth',
    oidc: { ...base.oidc, redirectPath: '/auth/callback' },
  })
  assert.deepEqual(
    custom.issues.map((i) => i.path),
    ['oidc.redirectPath'],
  )
})

test('frontends: a missing static folder, both or neither source, duplicate names and places are reported', () => {
  const base = {
    oidc: { authority: 'https://idp.example.com', clientId: 'c', clientSecret: 's' },
    keys: [generateKey()],
  }
  const result = validateConfig({
    ...base,
    frontends: [
      { name: 'app', path: '/', static: '/definitely/not/here' },
      { name: 'app', path: '/', indexHtmlUrl: 'https://cdn.example.com/index.html' },
      { name: 'both', path: '/b', static: '.', indexHtmlUrl: 'https://cdn.example.com/index.html' },
      { name: 'bad name!', path: '/c/', static: '.' },
    ],
  })
  assert.deepEqual(
    result.issues.map((i) => i.path).sort(),
    [
      'frontends[0].static',
      'frontends[1].name',
      'frontends[1].path',
      'frontends[2]',
      'frontends[3].name',
      'frontends[3].path',
    ].sort(),
  )
  const ok = validateConfig({
    ...base,
    frontends: [
      { name: 'app', static: '.' },
      { name: 'admin', path: '/admin', indexHtmlUrl: 'https://cdn.example.com/i.html', oidc: { clientId: 'admin' } },
    ],
  })
  assert.equal(ok.config?.frontends[1]?.indexHtmlCacheTtlMs, 300_000)
  assert.equal(ok.config?.frontends[0]?.path, '/')
})

describe('frontends[].origin and the hosts gatehouse answers for', () => {
  const base = () => ({ oidc: { authority: 'https://idp.example.com', clientId: 'c', clientSecret: 's' }, keys: [KEY] })
  const app = { name: 'app', static: '.' }
  const issues = (raw: Record<string, unknown>) =>
    validateConfig({ ...base(), ...raw }).issues.map((i) => `${i.path}: ${i.message}`)

  test("a host-based frontend defaults to publicOrigin's scheme with its host (and publicOrigin's port when the host has none)", () => {
    const ok = validateConfig({
      ...base(),
      publicOrigin: 'https://app.example.com',
      frontends: [
        app,
        { name: 'admin', host: 'Admin.Example.com', static: '.' },
        { name: 'ops', host: 'ops.example.com:8443', static: '.' },
      ],
    })
    assert.deepEqual(ok.issues, [])
    assert.deepEqual(
      ok.config!.frontends.map((f) => f.origin),
      [undefined, 'https://admin.example.com', 'https://ops.example.com:8443'],
    )
    const local = validateConfig({
      ...base(),
      publicOrigin: 'http://127.0.0.1:8080',
      frontends: [app, { name: 'admin', host: 'localhost', static: '.' }],
    })
    assert.equal(local.config!.frontends[1]!.origin, 'http://localhost:8080')
  })

  test('an explicit origin is normalised and used; without publicOrigin a host-based frontend has none', () => {
    const ok = validateConfig({
      ...base(),
      publicOrigin: 'https://app.example.com',
      frontends: [
        app,
        { name: 'admin', host: 'admin.example.com', origin: 'HTTPS://admin.example.com:443/', static: '.' },
      ],
    })
    assert.deepEqual(ok.issues, [])
    assert.equal(ok.config!.frontends[1]!.origin, 'https://admin.example.com')
    const other = validateConfig({
      ...base(),
      publicOrigin: 'https://app.example.com',
      frontends: [
        app,
        { name: 'admin', host: 'admin.example.com', origin: 'https://admin.example.com:8443', static: '.' },
      ],
    })
    assert.equal(
      other.config!.frontends[1]!.origin,
      'https://admin.example.com:8443',
      'a host without a port takes an origin on any port',
    )
    const none = validateConfig({
      ...base(),
      frontends: [app, { name: 'admin', host: 'admin.example.com', static: '.' }],
    })
    assert.equal(none.config!.frontends[1]!.origin, undefined)
  })

  test("an origin must be https (loopback excepted), an origin only, and of the frontend's host", () => {
    for (const origin of [
      'http://admin.example.com',
      'https://admin.example.com/app',
      'https://admin.example.com/?x',
      'https://admin.example.com/#x',
      'https://u@admin.example.com',
      'https://admin.example.com.',
      'admin.example.com',
    ]) {
      assert.deepEqual(
        pathsOf({
          ...base(),
          publicOrigin: 'https://app.example.com',
          frontends: [app, { name: 'admin', host: 'admin.example.com', origin, static: '.' }],
        }),
        ['frontends[1].origin'],
        origin,
      )
    }
    assert.deepEqual(
      issues({
        publicOrigin: 'https://app.example.com',
        frontends: [
          app,
          { name: 'admin', host: 'admin.example.com', origin: 'https://other.example.com', static: '.' },
        ],
      }),
      [
        'frontends[1].origin: must be an origin of frontends[1].host "admin.example.com" (got https://other.example.com)',
      ],
    )
    assert.deepEqual(
      pathsOf({
        ...base(),
        frontends: [
          app,
          { name: 'admin', host: 'admin.example.com:8443', origin: 'https://admin.example.com', static: '.' },
        ],
      }),
      ['frontends[1].origin'],
      'the host names port 8443',
    )
  })

  test('an origin without a host is refused', () => {
    assert.deepEqual(
      issues({ publicOrigin: 'https://app.example.com', frontends: [{ ...app, origin: 'https://app.example.com' }] }),
      [
        'frontends[0].origin: needs frontends[0].host: an origin belongs to a host-based frontend (path-based ones use publicOrigin)',
      ],
    )
  })

  test('a derived origin that would be http:// off loopback is refused at the host, naming the fix', () => {
    const found = issues({
      publicOrigin: 'http://127.0.0.1:8080',
      frontends: [app, { name: 'admin', host: 'admin.example.com', static: '.' }],
    })
    assert.equal(found.length, 1)
    assert.match(
      found[0]!,
      /^frontends\[1\]\.host: would be served at http:\/\/admin\.example\.com:8080 .* set frontends\[1\]\.origin/,
    )
  })

  test('two frontends with the same origin and path are refused, also when their hosts are spelt differently', () => {
    assert.deepEqual(
      pathsOf({
        ...base(),
        publicOrigin: 'https://app.example.com',
        frontends: [
          app,
          { name: 'a', host: 'admin.example.com', static: '.' },
          { name: 'b', host: 'admin.example.com:443', static: '.' },
        ],
      }),
      ['frontends[2].host'],
    )
    assert.deepEqual(
      issues({
        publicOrigin: 'https://app.example.com',
        frontends: [
          app,
          { name: 'a', host: 'admin.example.com', static: '.' },
          { name: 'b', host: 'admin.example.com', path: '/b', static: '.' },
        ],
      }),
      [],
      'other paths are fine',
    )
    // Identical hosts are reported once, by the host-and-path rule.
    assert.deepEqual(
      pathsOf({
        ...base(),
        publicOrigin: 'https://app.example.com',
        frontends: [
          app,
          { name: 'a', host: 'admin.example.com', static: '.' },
          { name: 'b', host: 'admin.example.com', static: '.' },
        ],
      }),
      ['frontends[2].path'],
    )
  })

  test('the same host under two schemes is refused: a Host header cannot tell them apart', () => {
    const found = issues({
      publicOrigin: 'http://localhost:8080',
      frontends: [app, { name: 'admin', host: 'localhost', origin: 'https://localhost:8080', static: '.' }],
    })
    assert.deepEqual(found, [
      "frontends[1].origin: is https://localhost:8080, and publicOrigin is http://localhost:8080: the same host under another scheme (a request's Host cannot tell them apart)",
    ])
    assert.deepEqual(
      pathsOf({
        ...base(),
        frontends: [
          app,
          { name: 'a', host: 'localhost', origin: 'https://localhost', static: '.' },
          { name: 'b', host: 'localhost', path: '/b', origin: 'http://localhost', static: '.' },
        ],
      }),
      ['frontends[2].origin'],
    )
  })

  test('without publicOrigin, once one frontend sets origin every host-based frontend needs one', () => {
    assert.deepEqual(
      pathsOf({
        ...base(),
        frontends: [
          app,
          { name: 'a', host: 'a.example.com', origin: 'https://a.example.com', static: '.' },
          { name: 'b', host: 'b.example.com', static: '.' },
        ],
      }),
      ['frontends[2].origin'],
    )
  })

  test('publicOrigin and frontend hosts with a trailing dot, user info or a fragment are refused', () => {
    for (const publicOrigin of [
      'https://app.example.com.',
      'https://u:p@app.example.com',
      'https://app.example.com/#x',
      'https://app.example.com#',
    ]) {
      assert.deepEqual(pathsOf({ ...base(), publicOrigin }), ['publicOrigin'], publicOrigin)
    }
    for (const host of ['admin.example.com.', '.admin.example.com', 'admin.example.com:99999']) {
      assert.deepEqual(
        pathsOf({ ...base(), frontends: [app, { name: 'admin', host, static: '.' }] }),
        ['frontends[1].host'],
        host,
      )
    }
  })
})

test('a BFF without client credentials is refused: it must be a confidential client unless clientAuth "none" is chosen', () => {
  const base = { oidc: { authority: 'https://idp.example.com', clientId: 'spa-bff' }, keys: [KEY] }
  assert.deepEqual(
    validateConfig(base).issues.map((i) => i.path),
    ['oidc.clientSecret'],
  )
  assert.equal(validateConfig({ ...base, oidc: { ...base.oidc, clientAuth: 'none' } }).config?.oidc.clientAuth, 'none')
})

test('oidc.dpop: off by default; true means ES256; an object names the algorithm', () => {
  assert.equal(validateConfig(minimal()).config?.oidc.dpop, undefined)
  const withDpop = (dpop: unknown) => ({ ...minimal(), oidc: { ...minimal().oidc, dpop } })
  assert.equal(validateConfig(withDpop(false)).config?.oidc.dpop, undefined)
  assert.deepEqual(validateConfig(withDpop(true)).config?.oidc.dpop, { signingAlg: 'ES256' })
  assert.deepEqual(validateConfig(withDpop({})).config?.oidc.dpop, { signingAlg: 'ES256' })
  assert.deepEqual(validateConfig(withDpop({ signingAlg: 'ES384' })).config?.oidc.dpop, { signingAlg: 'ES384' })
  assert.deepEqual(issuesOf(withDpop('yes')), [
    { path: 'oidc.dpop', message: 'must be true, false or an object such as { "signingAlg": "ES256" }' },
  ])
  assert.deepEqual(issuesOf(withDpop(1)), [
    { path: 'oidc.dpop', message: 'must be true, false or an object such as { "signingAlg": "ES256" }' },
  ])
  assert.deepEqual(issuesOf(withDpop({ signingAlg: 'HS256' })), [
    { path: 'oidc.dpop.signingAlg', message: 'must be one of "ES256", "ES384", "ES512"' },
  ])
  assert.deepEqual(issuesOf(withDpop({ signingAlg: 'ES256', key: {} })), [
    { path: 'oidc.dpop.key', message: 'unknown key' },
  ])
})

describe('session.store URLs that a password broke are refused, never echoed (issue #15 review F1, F6)', () => {
  const SECRET = 'Zm9vSECRET'
  const refused = (store: string, expected: RegExp) => {
    const issues = issuesOf(withSession({ store }))
    assert.deepEqual(
      issues.map((i) => i.path),
      ['session.store'],
      store,
    )
    assert.match(issues[0]!.message, expected, store)
    assert.ok(!issues[0]!.message.includes(SECRET), `${store}: the message repeats the password`)
    return issues[0]!.message
  }

  test('a password with "/" (base64) that does not parse: refused with the percent-encoding hint', () => {
    refused(
      `redis://gatehouse:${SECRET}/YmFy+=@127.0.0.1:6379/0`,
      /^is not a valid URL .*percent-encode the user name and password \(encodeURIComponent\)/,
    )
    refused(`postgres://gatehouse:${SECRET}/YmFy@127.0.0.1:5432/app`, /^is not a valid URL/)
  })

  test('a password with "/" that parses as port and path (6379/...): refused, the "@" after the host named', () => {
    refused(
      `redis://gatehouse:6379/${SECRET}@127.0.0.1:6379/0`,
      /^has "@" after the host: a password holding "\/", "\?" or "#" ends the host early; percent-encode/,
    )
    refused(`postgres://gatehouse:5432/${SECRET}@127.0.0.1:5432/test`, /^has "@" after the host/)
    refused(`postgres://gatehouse:5432?${SECRET}@127.0.0.1:5432/test`, /^has "@" after the host/)
    refused(`redis://gatehouse:12#${SECRET}@127.0.0.1:6379/0`, /^has "@" after the host/)
  })

  test('a "%" that starts no escape in the user info: refused (the driver would fail to decode it)', () => {
    refused(
      `postgres://u:100%zz${SECRET}@127.0.0.1:5432/db`,
      /^has a "%" that starts no percent-escape in its user name or password: .*\(% is %25\)$/,
    )
  })

  test('a Redis path that is not a database number is refused without repeating it', () => {
    refused(`redis://127.0.0.1:6379/${SECRET}`, /^the path must be a database number such as \/0 or \/3/)
    refused('redis://127.0.0.1:6379/-1', /^the path must be a database number/)
    refused('redis://127.0.0.1:6379/99999999999999999999', /^the path must be a database number/)
  })

  test('a Redis query parameter gatehouse does not read (?db=, driver options) is refused: it would override what was checked', () => {
    refused(
      'redis://127.0.0.1:6379?db=5',
      /^has the query parameter "db", which gatehouse does not read \(the database is the path: redis:\/\/host:6379\/5; a Redis URL takes only \?prefix=\)$/,
    )
    refused(
      'redis://127.0.0.1:6379/0?prefix=a:&connectTimeout=60000',
      /^has the query parameter "connectTimeout", which gatehouse does not read \(gatehouse sets the driver's options itself/,
    )
    refused(`rediss://127.0.0.1:6380/0?password=${SECRET}`, /query parameter "password"/)
    refused(`redis://127.0.0.1:6379/0?${SECRET}%20x=1`, /^has the query parameter a parameter, /)
  })

  test('percent-encoded passwords, a plain "@" in the password and the documented forms are accepted', () => {
    const encoded = `redis://gatehouse:${encodeURIComponent('Zm9v/YmFy+SECRET=')}@127.0.0.1:6379/0`
    for (const store of [
      encoded,
      'redis://:p@ss@127.0.0.1:6379/0',
      'redis://127.0.0.1:6379/3?prefix=app:',
      'rediss://u:p%25x@cache:6380',
      `postgres://u:${encodeURIComponent('a/b?c#d@e')}@db:5432/app?schema=gh&sslmode=require`,
      'postgres:///app?host=/var/run/postgresql',
    ]) {
      assert.deepEqual(validateConfig(withSession({ store })).issues, [], store)
    }
  })
})

describe('URLs gatehouse logs and prints hold no user info (issue #15 review F2)', () => {
  test('oidc.authority, oidc.issuer, oidc.endSessionEndpoint, frontends[].indexHtmlUrl and publicOrigin with user:password@ are refused, one line each', () => {
    const userInfo = 'https://user:AUTHPW-SECRET@idp.example.com'
    const cases: Array<[string, Record<string, unknown>]> = [
      ['oidc.authority', { oidc: { ...minimal().oidc, authority: userInfo } }],
      ['oidc.issuer', { oidc: { ...minimal().oidc, issuer: userInfo } }],
      ['oidc.endSessionEndpoint', { oidc: { ...minimal().oidc, endSessionEndpoint: `${userInfo}/logout` } }],
      [
        'frontends[0].indexHtmlUrl',
        { frontends: [{ name: 'app', indexHtmlUrl: 'https://token@cdn.example.com/index.html' }] },
      ],
      ['publicOrigin', { publicOrigin: userInfo }],
    ]
    for (const [path, change] of cases) {
      const issues = issuesOf({ ...minimal(), ...change })
      assert.deepEqual(
        issues.map((i) => i.path),
        [path],
        path,
      )
      assert.match(issues[0]!.message, /^must not hold a user name or password \("user:password@"\)/, path)
      assert.ok(!issues[0]!.message.includes('AUTHPW-SECRET'))
    }
  })
})

describe('--explain masking (issue #15 review F1, F4)', () => {
  test('maskCredentials masks the password up to the last "@", shows scheme://*** when the URL does not parse', () => {
    const cases: Array<[string, string]> = [
      ['redis://:p@ss-word-SECRET@127.0.0.1:6379/0', 'redis://:***@127.0.0.1:6379/0'],
      ['redis://gatehouse:6379/Zm9vSECRET@127.0.0.1:6379/0', 'redis://gatehouse:***@127.0.0.1:6379/0'],
      ['redis://gatehouse:Zm9v/YmFy+SECRET=@127.0.0.1:6379/0', 'redis://***'],
      ['postgres://u:SEC:RET@[::1]:5432/db', 'postgres://u:***@[::1]:5432/db'],
      ['redis://gatehouse@127.0.0.1:6379/0', 'redis://gatehouse@127.0.0.1:6379/0'],
      ['https://idp.example.com/realms/x', 'https://idp.example.com/realms/x'],
      ['not a url', 'not a url'],
    ]
    for (const [text, shown] of cases) assert.equal(maskCredentials(text), shown, text)
  })

  test('every query value is masked but known-safe ones, the names compared decoded', () => {
    assert.equal(
      maskCredentials(
        'postgres://u@h/db?schema=gh&sslmode=require&password=S1&pass%77ord=S2&%70assword=S3&sslpassword=S4',
      ),
      'postgres://u@h/db?schema=gh&sslmode=require&password=***&pass%77ord=***&%70assword=***&sslpassword=***',
    )
    assert.equal(
      maskCredentials('https://cdn.example.com/index.html?sig=S5&api_key=S6#token=S7'),
      'https://cdn.example.com/index.html?sig=***&api_key=***#***',
    )
    assert.equal(maskCredentials('rediss://cache:6380/2?prefix=app:'), 'rediss://cache:6380/2?prefix=app:')
  })

  test('maskUrlsIn masks every URL inside a message; decode never throws', () => {
    assert.equal(
      maskUrlsIn(
        'discovery failed: https://u:PW@idp.example.com/.well-known/openid-configuration could not be fetched',
      ),
      'discovery failed: https://u:***@idp.example.com/.well-known/openid-configuration could not be fetched',
    )
    assert.equal(decode('100%zz'), '100%zz')
    assert.equal(decode('p%40ss'), 'p@ss')
    // check-config --connect's description of the store decodes the same way (it threw URIError).
    assert.deepEqual(describeStore('postgres://us%zzer:100%zzpw@db.internal:5432/a%zzb').details.slice(0, 2), [
      'server: postgres://db.internal:5432 (user us%zzer)',
      'database: a%zzb',
    ])
  })
})

describe('Redis Cluster and Sentinel locations: masked, described and validated without their secrets', () => {
  test('maskCredentials keeps the host list and masks the password and ?sentinelPassword=', () => {
    assert.equal(
      maskCredentials('redis-cluster://u:pw-Secret1@10.0.0.1:7000,10.0.0.2:7000/?prefix=gh:'),
      'redis-cluster://u:***@10.0.0.1:7000,10.0.0.2:7000/?prefix=gh:',
    )
    assert.equal(
      maskCredentials('rediss-sentinel://:pw-Secret2@s1:26379,s2:26379/mymaster?db=2&sentinelPassword=pw-Secret3'),
      'rediss-sentinel://:***@s1:26379,s2:26379/mymaster?db=2&sentinelPassword=***',
    )
    assert.equal(
      maskUrlsIn('session store redis-cluster://10.0.0.1:7000,10.0.0.2:7000: no seed node can be used'),
      'session store redis-cluster://10.0.0.1:7000,10.0.0.2:7000: no seed node can be used',
    )
    assert.equal(maskCredentials('redis-cluster://u:pw/Secret4@h1:1,h2:2'), 'redis-cluster://***')
  })

  test('describeStore names the kind, the nodes, the master and the database, never a password', () => {
    assert.deepEqual(describeStore('redis-cluster://gh:pw-Secret5@10.0.0.1:7000,10.0.0.2:7001?prefix=a:'), {
      kind: 'redis cluster',
      details: ['seed nodes: 10.0.0.1:7000,10.0.0.2:7001 (user gh)', 'key prefix: "a:"'],
    })
    assert.deepEqual(describeStore('rediss-sentinel://s1,s2:26380/mymaster?db=3&sentinelPassword=pw-Secret6'), {
      kind: 'redis sentinel (TLS)',
      details: ['sentinels: s1:26379,s2:26380', 'master: mymaster', 'database: 3', 'key prefix: "gatehouse:"'],
    })
  })

  test('a PostgreSQL URL listing several hosts is refused with what to do instead; a comma in the password is not a host list', () => {
    const store = (location: string) => validateConfig({ ...minimal(), session: { store: location } })
    for (const location of ['postgres://gh:pw-Secret7@db1:5432,db2:5432/app', 'postgresql://db1,db2/app']) {
      const { config, issues } = store(location)
      assert.equal(config, undefined, location)
      assert.match(issues[0]!.message, /^lists several hosts: gatehouse connects to one/)
      assert.doesNotMatch(issues[0]!.message, /pw-Secret7/)
    }
    assert.ok(store('postgres://gh:p%2Cw@db/app').config)
    assert.ok(store('postgres://gh:p,w@db/app').config)
  })

  test('validation accepts both schemes and refuses a broken one naming session.store, never its secret', () => {
    const store = (location: string) => validateConfig({ ...minimal(), session: { store: location } })
    assert.ok(store('redis-cluster://10.0.0.1:7000,10.0.0.2:7000').config)
    assert.ok(store('redis-sentinel://10.0.0.1:26379/mymaster?sentinelPassword=x%26y').config)
    const refused = store('redis-sentinel://10.0.0.1:26379/mymaster?sentinelPassword=Xy7&TailSecret9')
    assert.equal(refused.config, undefined)
    const message = refused.issues.map((i) => `${i.path}: ${i.message}`).join('\n')
    assert.match(message, /^session\.store: has a query parameter gatehouse does not read/)
    assert.doesNotMatch(message, /TailSecret9|Xy7/)
  })
})

describe('a file that does not parse: line and column, never its text (issue #15 review F3)', () => {
  let dir: string
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'gatehouse-config-parse-'))
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  const messageOf = async (name: string, text: string) => {
    const path = join(dir, name)
    writeFileSync(path, text)
    const { raw, issues } = await loadConfigFile(path)
    assert.equal(raw, undefined)
    assert.equal(issues.length, 1)
    assert.ok(!issues[0]!.message.includes('SECRET'), `the message quotes the file: ${issues[0]!.message}`)
    return issues[0]!.message.slice(path.length + 2)
  }

  test('JSON: an unquoted secret, a tab in a string, a stray character: the reason and where', async () => {
    assert.equal(
      await messageOf('a.json', '{"oidc": {"clientId": "c",\n  "clientSecret": SUPERSECRETVALUE-123}}'),
      'not valid JSON (unexpected character at line 2, column 19)',
    )
    assert.equal(
      await messageOf('b.json', '{"a": "SUPER\tSECRET"}'),
      'not valid JSON (bad control character in string literal at line 1, column 13)',
    )
    assert.equal(
      await messageOf('c.json', '\n\n  {"a": tru, "b": "SECRET"}'),
      'not valid JSON (unexpected character at line 3, column 12)',
    )
    assert.equal(
      await messageOf('d.json', '[1, 2,, "SECRET"]'),
      'not valid JSON (unexpected character at line 1, column 7)',
    )
    assert.equal(
      await messageOf('e.json', '{"a": "SECRET"'),
      "not valid JSON (expected ',' or '}' after property value at line 1, column 15)",
    )
    assert.equal(await messageOf('f.json', ''), 'not valid JSON (unexpected end of input at line 1, column 1)')
    assert.equal(await messageOf('g.json', 'SECRETSECRET'), 'not valid JSON (unexpected character at line 1, column 1)')
  })

  test('YAML: the reason and where, without the source lines, an alias name or an escape', async () => {
    assert.equal(
      await messageOf('a.yaml', 'oidc:\n  clientSecret: "SUPERSECRET\n  x: [\n'),
      'not valid YAML (missing closing "quote at line 4, column 1)',
    )
    assert.equal(
      await messageOf('b.yaml', 'a: *SECRETALIAS'),
      'not valid YAML (unresolved alias (the anchor must be set before the alias))',
    )
    assert.equal(
      await messageOf('c.yaml', 'a: "x\\qSECRET"'),
      'not valid YAML (invalid escape sequence at line 1, column 6)',
    )
  })

  test('YAML warnings (an unknown tag) are not printed with the source line', async () => {
    const path = join(dir, 'tag.yaml')
    writeFileSync(path, 'a: !SECRETTAG x\n')
    const warnings: string[] = []
    const listen = (w: Error) => warnings.push(w.message)
    process.on('warning', listen)
    try {
      assert.deepEqual(await loadConfigFile(path), { raw: { a: 'x' }, issues: [] })
      await new Promise((resolve) => setImmediate(resolve))
    } finally {
      process.off('warning', listen)
    }
    assert.deepEqual(warnings, [])
  })
})

describe('SQLite file: URIs and :memory: go to SQLite as written (issue #15 review F10)', () => {
  test('resolveFilePaths resolves a relative path but leaves file: URIs and :memory: alone', () => {
    const folder = join(tmpdir(), 'conf')
    const storeOf = (store: string) =>
      (resolveFilePaths({ session: { store } }, folder) as { session: { store: string } }).session.store
    assert.equal(storeOf('sqlite:./data/s.db'), `sqlite:${join(folder, 'data', 's.db')}`)
    for (const store of [
      'sqlite:file:x.db?mode=memory',
      'sqlite:file:data/s.db',
      'sqlite::memory:',
      'sqlite:file::memory:',
    ])
      assert.equal(storeOf(store), store)
  })
})
