// The configuration's defaults live once, in src/config/defaults.ts: the schema fills them in, the
// cross-checks assume them for keys left out, and the stores read their URL defaults from there.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { DEFAULTS } from '../../src/config/defaults.ts'
import { parseDuration } from '../../src/config/duration.ts'
import { validateConfig } from '../../src/config/validate.ts'
import { generateKey } from '../../src/session/seal.ts'

const minimal = () => ({
  oidc: { authority: 'https://idp.example.com', clientId: 'spa-bff', clientSecret: 's3cret' },
  keys: [generateKey()],
})
const ms = (text: string) => parseDuration(text)!

test('a configuration that sets nothing optional gets every default of DEFAULTS', () => {
  const { config, issues } = validateConfig({
    ...minimal(),
    admin: {},
    remoteApis: [{ path: '/api', target: 'https://api.example.com' }],
    frontends: [{ name: 'app', indexHtmlUrl: 'https://cdn.example.com/index.html' }],
  })
  assert.deepEqual(issues, [])
  assert.ok(config)
  assert.deepEqual(config.listen, DEFAULTS.listen)
  assert.deepEqual(config.admin?.listen, DEFAULTS.admin.listen)
  assert.equal(config.oidc.timeoutMs, ms(DEFAULTS.oidc.timeout))
  assert.equal(config.oidc.tokenRefreshSkewMs, ms(DEFAULTS.oidc.tokenRefreshSkew))
  assert.deepEqual(config.oidc.scopes, DEFAULTS.oidc.scopes)
  assert.equal(config.oidc.redirectPath, DEFAULTS.oidc.redirectPath)
  assert.equal(config.oidc.dpop, undefined, 'dpop false: Bearer tokens')
  assert.equal(config.session.store, DEFAULTS.session.store)
  assert.equal(config.session.cookieName, DEFAULTS.session.cookieName)
  assert.equal(config.session.lifetimeMs, ms(DEFAULTS.session.lifetime))
  assert.equal(config.session.cacheTtlMs, ms(DEFAULTS.session.cacheTtl))
  assert.deepEqual(config.antiForgery, DEFAULTS.antiForgery)
  assert.equal(config.anonymousSessionResponse, DEFAULTS.anonymousSessionResponse)
  assert.deepEqual(config.log, DEFAULTS.log)
  assert.equal(config.limits.perClient, DEFAULTS.limits.perClient)
  assert.equal(config.limits.writeIdleTimeoutMs, ms(DEFAULTS.limits.writeIdleTimeout))
  const api = config.remoteApis[0]!
  assert.equal(api.token, DEFAULTS.remoteApi.token)
  assert.equal(api.timeoutMs, ms(DEFAULTS.remoteApi.timeout))
  assert.equal(api.connections, DEFAULTS.remoteApi.connections)
  assert.equal(api.queue, DEFAULTS.remoteApi.queuePerConnection * DEFAULTS.remoteApi.connections)
  assert.equal(config.frontends[0]!.path, DEFAULTS.frontend.path)
  assert.equal(config.frontends[0]!.indexHtmlCacheTtlMs, ms(DEFAULTS.frontend.indexHtmlCacheTtl))
})

test('"dpop": true signs with the default algorithm', () => {
  const { config } = validateConfig({ ...minimal(), oidc: { ...minimal().oidc, dpop: true } })
  assert.deepEqual(config?.oidc.dpop, { signingAlg: DEFAULTS.oidc.dpopSigningAlg })
})

test('DEFAULTS cannot be changed, and no configuration shares a list or object with it', () => {
  assert.throws(() => {
    ;(DEFAULTS.listen as { port: number }).port = 1
  }, TypeError)
  assert.throws(() => (DEFAULTS.oidc.scopes as unknown as string[]).push('email'), TypeError)
  const a = validateConfig(minimal()).config!
  const b = validateConfig(minimal()).config!
  assert.notEqual(a.oidc.scopes, DEFAULTS.oidc.scopes)
  assert.notEqual(a.oidc.scopes, b.oidc.scopes)
  assert.notEqual(a.listen, DEFAULTS.listen)
  assert.ok(Object.isFrozen(a.oidc.scopes), 'a validated configuration is frozen too')
})

test('the cross-checks take a key left out at its default', () => {
  // Left out, oidc.redirectPath is its default: a post-logout path equal to it is refused.
  const same = validateConfig({
    ...minimal(),
    oidc: { ...minimal().oidc, postLogoutRedirectPath: DEFAULTS.oidc.redirectPath },
  })
  assert.deepEqual(same.issues, [
    { path: 'oidc.postLogoutRedirectPath', message: 'must differ from oidc.redirectPath' },
  ])
  // Left out, session.lifetime is its default (8h): an absolute lifetime below it is refused while sliding.
  const shorter = validateConfig({ ...minimal(), session: { absoluteLifetime: '1h' } })
  assert.deepEqual(shorter.issues, [
    { path: 'session.absoluteLifetime', message: 'must not be shorter than session.lifetime' },
  ])
  assert.deepEqual(validateConfig({ ...minimal(), session: { absoluteLifetime: '1h', sliding: false } }).issues, [])
  // Left out, managementBasePath is its default: a remote API under it is refused.
  const overlap = validateConfig({
    ...minimal(),
    remoteApis: [{ path: DEFAULTS.managementBasePath, target: 'https://api.example.com' }],
  })
  assert.deepEqual(
    overlap.issues.map((i) => i.path),
    ['remoteApis[0].path'],
  )
})
