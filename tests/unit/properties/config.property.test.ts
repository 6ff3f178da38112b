import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import fc from 'fast-check'
import { interpolateEnv, loadConfigFile } from '../../../src/config/load.ts'
import { formatKeyPath, validateConfig } from '../../../src/config/validate.ts'
import { generateKey } from '../../../src/session/seal.ts'
import { anyString, SEED } from './arbitraries.ts'

// Properties of config parsing (SPEC §2, §10, §11): no JSON value makes validateConfig throw; every
// issue names a dotted key path that is either somewhere in the input or a key the schema requires
// (always, or because of another key); a secret's value never appears in a message; ${NAME}
// interpolation changes nothing but the strings that hold a reference.

const KEY = generateKey()

/** Keys whose values are secrets: an issue message must never repeat them. */
const SECRET_PATHS = new Set(['oidc.clientSecret', 'admin.token', 'antiForgery.value'])

/**
 * Keys an issue may name although the input does not hold them: required keys, and keys a rule
 * across several keys asks for (clientSecret for client_secret_* auth, a callback path that clashes
 * with a default, and so on). `[]` stands for the index of an array element that is in the input.
 */
const REQUIRED = [
  'oidc',
  'oidc.authority',
  'oidc.clientId',
  'keys',
  'oidc.clientSecret',
  'oidc.privateKeyJwk',
  'oidc.redirectPath',
  'oidc.postLogoutRedirectPath',
  'session.absoluteLifetime',
  'remoteApis[].path',
  'remoteApis[].target',
  'frontends[].name',
  'frontends[].path',
  'frontends[].origin',
]

// ---- generators: JSON shaped like a config, with plausible, wrong-typed and unknown values ----

const json = fc.jsonValue({ maxDepth: 2 })
const leaves = {
  text: fc.oneof(anyString(20), fc.constantFrom('', ' ', '${UNSET_VAR}', 'x'.repeat(300))),
  bool: fc.boolean(),
  port: fc.oneof(fc.integer({ min: -5, max: 70_000 }), fc.double()),
  url: fc.constantFrom(
    'https://idp.example.com',
    'https://idp.example.com/realms/x/',
    'http://127.0.0.1:9',
    'http://[::1]:8080',
    'http://idp.example.com',
    'ftp://x',
    'https://',
    'not a url',
    'https://a.example/path?q#f',
    'javascript:alert(1)',
  ),
  path: fc.constantFrom(
    '/bff',
    '/signin-oidc',
    '/signout-callback-oidc',
    '/api',
    '/api/',
    '/',
    '//x',
    '/a/../b',
    'api',
    '/healthz',
    '/readyz',
    '/bff/x',
    '/x y',
    '/%2e%2e',
    '/api/orders',
  ),
  duration: fc.constantFrom('30s', '10m', '8h', '7d', '250ms', '0s', '-1m', '1x', '', ' 5m ', '9999999999d', '48h'),
  size: fc.constantFrom('10mb', '1gb', '512kb', '0b', 'lots', '-1kb', '5 MB'),
  key: fc.oneof(fc.constant(KEY), fc.constantFrom('', 'short', `${KEY}=`, `${KEY}x`, KEY.toUpperCase())),
  secret: fc
    .string({ unit: fc.constantFrom(...'abcdefXYZ0123456789'), minLength: 1, maxLength: 40 })
    .map((s) => `S3CR3T-${s}`),
  store: fc.constantFrom(
    'memory',
    'sqlite:/tmp/x.db',
    'sqlite:',
    'redis://127.0.0.1:6379',
    'rediss://r',
    'postgres://u@h/db',
    'postgresql://h',
    'mysql://h',
    '',
  ),
  scopes: fc.array(fc.constantFrom('openid', 'profile', 'offline_access', 'api', 'bad scope', '"', ''), {
    maxLength: 4,
  }),
} satisfies Record<string, fc.Arbitrary<unknown>>

type Shape = { [key: string]: Shape } | keyof typeof leaves | readonly unknown[] | [Shape]

/** The config schema's shape, for generating inputs; leaves name a generator, `[shape]` is an array of it, a readonly array an enum. */
const SHAPE: Record<string, Shape> = {
  listen: { host: 'text', port: 'port' },
  publicOrigin: 'url',
  trustProxy: 'bool',
  oidc: {
    authority: 'url',
    clientId: 'text',
    clientSecret: 'secret',
    clientAuth: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none', 'other'] as const,
    privateKeyJwk: { kty: 'text', alg: 'text' },
    scopes: 'scopes',
    redirectPath: 'path',
    postLogoutRedirectPath: 'path',
    extraAuthParams: { audience: 'text' },
    getClaimsFromUserInfo: 'bool',
    timeout: 'duration',
    tokenRefreshSkew: 'duration',
    clientCredentialsScopes: 'scopes',
    pushedAuthorizationRequests: 'bool',
    dpop: [
      true,
      false,
      'yes',
      { signingAlg: 'ES384' },
      { signingAlg: 'HS256' },
      { signingAlg: 'ES256', extra: 1 },
    ] as const,
  },
  keys: ['key'],
  session: {
    mode: ['server', 'cookie', 'disk'] as const,
    store: 'store',
    cookieName: ['__Host-gatehouse', '__Host-x', 'plain', '__Host-a b', ''] as const,
    sameSite: ['lax', 'strict', 'none'] as const,
    lifetime: 'duration',
    sliding: 'bool',
    absoluteLifetime: 'duration',
    cleanupInterval: 'duration',
  },
  managementBasePath: 'path',
  antiForgery: { header: ['X-CSRF', 'x y', ''] as const, value: 'secret' },
  anonymousSessionResponse: [401, 200, 204, '401'] as const,
  revokeRefreshTokenOnLogout: 'bool',
  backchannelLogout: { allUserSessions: 'bool' },
  remoteApis: [
    {
      path: 'path',
      target: 'url',
      token: ['none', 'user', 'client', 'userOrClient', 'userOrNone', 'admin'] as const,
      antiForgery: 'bool',
      timeout: 'duration',
      websockets: 'bool',
      maxBodySize: 'size',
    },
  ],
  frontends: [
    {
      name: ['app', 'admin', 'APP', 'a b', ''] as const,
      path: 'path',
      host: ['app.example', 'app.example:8443', 'bad host'] as const,
      origin: [
        'https://app.example',
        'https://other.example',
        'http://app.example:8443',
        'https://app.example/x',
      ] as const,
      static: ['/definitely/not/here', '.', ''] as const,
      indexHtmlUrl: 'url',
      indexHtmlCacheTtl: 'duration',
      oidc: { clientId: 'text', clientSecret: 'secret', scopes: 'scopes' },
    },
  ],
  diagnostics: 'bool',
  admin: { listen: { host: 'text', port: 'port' }, token: 'secret' },
  log: { level: ['info', 'debug', 'silent', 'loud'] as const },
}

/** Keys that are not in the schema, some of them names every JavaScript object inherits. */
const unknownKey = fc.oneof(
  fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'unknownKey', 'a.b', 'x[0]', ''),
  anyString(8),
)

/** An object with own, enumerable properties only (also for "__proto__"), like JSON.parse makes. */
function objectOf(entries: Array<[string, unknown]>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [key, value] of entries)
    Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true })
  return out
}

function shaped(shape: Shape, depth = 0): fc.Arbitrary<unknown> {
  let plausible: fc.Arbitrary<unknown>
  if (typeof shape === 'string') plausible = leaves[shape]
  else if (
    (Array.isArray(shape) && shape.length === 1 && typeof shape[0] === 'object' && shape[0] !== null) ||
    (Array.isArray(shape) && shape.length === 1 && typeof shape[0] === 'string' && shape[0] in leaves)
  ) {
    plausible = fc.array(shaped(shape[0] as Shape, depth + 1), { maxLength: 3 })
  } else if (Array.isArray(shape)) plausible = fc.constantFrom(...shape)
  else {
    const fields = Object.entries(shape as Record<string, Shape>)
    plausible = fc
      .tuple(
        fc
          .subarray(fields, { minLength: 0 })
          .chain((chosen) =>
            fc.tuple(
              ...chosen.map(([key, sub]) => shaped(sub, depth + 1).map((value) => [key, value] as [string, unknown])),
            ),
          ),
        fc.array(fc.tuple(unknownKey, json), { maxLength: depth === 0 ? 2 : 1 }),
      )
      .map(([known, extra]) => objectOf([...known, ...extra]))
  }
  return fc.oneof({ weight: 6, arbitrary: plausible }, { weight: 1, arbitrary: json })
}

/** A config whose required keys are usually there, so that validation goes deep. */
const configish = fc.oneof(
  { weight: 4, arbitrary: shaped(SHAPE) },
  {
    weight: 3,
    arbitrary: shaped(SHAPE).map((raw) =>
      raw !== null && typeof raw === 'object' && !Array.isArray(raw)
        ? {
            oidc: { authority: 'https://idp.example.com', clientId: 'c', clientSecret: 'S3CR3T-baseline-secret' },
            keys: [KEY],
            ...raw,
          }
        : raw,
    ),
  },
  { weight: 1, arbitrary: json },
)

// ---- oracles ----

/** Every location of the input as a formatted key path: "(root)", "oidc", "oidc.scopes[0]"… */
function locations(value: unknown, path: PropertyKey[] = [], out = new Set<string>()): Set<string> {
  out.add(formatKeyPath(path))
  if (Array.isArray(value)) value.forEach((item, i) => locations(item, [...path, i], out))
  else if (value !== null && typeof value === 'object')
    for (const key of Object.keys(value)) locations((value as Record<string, unknown>)[key], [...path, key], out)
  return out
}

/** REQUIRED with `[]` replaced by the indexes of the input's array elements. */
function requiredPaths(raw: unknown): Set<string> {
  const root = raw !== null && typeof raw === 'object' && !Array.isArray(raw) ? (raw as Record<string, unknown>) : {}
  const out = new Set<string>()
  for (const template of REQUIRED) {
    const [array, rest] = template.split('[]')
    if (rest === undefined) out.add(template)
    else {
      const items = Object.hasOwn(root, array!) ? root[array!] : undefined
      if (Array.isArray(items)) items.forEach((_, i) => out.add(`${array}[${i}]${rest}`))
    }
  }
  return out
}

function secretsIn(raw: unknown): string[] {
  const found: string[] = []
  for (const path of SECRET_PATHS) {
    let value: unknown = raw
    for (const key of path.split('.'))
      value =
        value !== null && typeof value === 'object' && Object.hasOwn(value, key)
          ? (value as Record<string, unknown>)[key]
          : undefined
    if (typeof value === 'string' && value.length >= 8) found.push(value)
  }
  // The key ring and per-frontend client secrets too.
  const root = raw !== null && typeof raw === 'object' && !Array.isArray(raw) ? (raw as Record<string, unknown>) : {}
  for (const key of Array.isArray(root.keys) ? root.keys : [])
    if (typeof key === 'string' && key.length >= 8) found.push(key)
  for (const frontend of Array.isArray(root.frontends) ? root.frontends : []) {
    const secret =
      frontend !== null && typeof frontend === 'object'
        ? (frontend as { oidc?: { clientSecret?: unknown } }).oidc?.clientSecret
        : undefined
    if (typeof secret === 'string' && secret.length >= 8) found.push(secret)
  }
  return found
}

function checkIssues(raw: unknown): void {
  const result = validateConfig(raw)
  if (result.config) {
    assert.deepEqual(result.issues, [])
    return
  }
  assert.ok(result.issues.length > 0, 'a refused config names at least one problem')
  const where = locations(raw)
  const required = requiredPaths(raw)
  const secrets = secretsIn(raw)
  for (const issue of result.issues) {
    assert.equal(typeof issue.path, 'string')
    assert.ok(
      issue.message.length > 0 && !issue.message.includes('\n'),
      `one line per problem: ${JSON.stringify(issue)}`,
    )
    assert.ok(
      where.has(issue.path) || required.has(issue.path),
      `issue path ${JSON.stringify(issue.path)} (${issue.message}) is neither in the input nor a required key`,
    )
    for (const secret of secrets)
      assert.ok(!issue.message.includes(secret), `${issue.path}: the message repeats a secret`)
  }
  // One issue per key path and message: the list is for humans.
  const lines = result.issues.map((i) => `${i.path}: ${i.message}`)
  assert.equal(new Set(lines).size, lines.length, `duplicate lines: ${lines.join(' | ')}`)
}

const hasReference = (value: unknown): boolean => JSON.stringify(value)?.includes('${') ?? false

describe('config properties', () => {
  test('validateConfig never throws on arbitrary JSON, and every issue path is a dotted path in the input or a required key', () => {
    fc.assert(
      fc.property(json, (raw) => checkIssues(raw)),
      { seed: SEED, numRuns: 500 },
    )
  })

  test('the same for config-shaped JSON (plausible, wrong-typed and unknown values at every key), and secrets never appear in messages', () => {
    let accepted = 0
    fc.assert(
      fc.property(configish, (raw) => {
        checkIssues(raw)
        if (validateConfig(raw).config) accepted++
      }),
      { seed: SEED, numRuns: 1_000 },
    )
    assert.ok(accepted > 10, `the generator also makes valid configs (${accepted})`)
  })

  test('issue paths survive a JSON round-trip of the input (what loadConfigFile hands over)', () => {
    fc.assert(
      fc.property(configish, (raw) => {
        const parsed: unknown = JSON.parse(JSON.stringify(raw) ?? 'null')
        assert.deepEqual(validateConfig(parsed).issues, validateConfig(raw).issues)
      }),
      { seed: SEED, numRuns: 300 },
    )
  })

  test('interpolateEnv leaves input without ${NAME} unchanged (own keys included, "__proto__" too) and does not change what validateConfig says', () => {
    fc.assert(
      fc.property(
        configish.filter((raw) => !hasReference(raw)),
        (raw) => {
          const issues: Array<{ path: string; message: string }> = []
          const out = interpolateEnv(raw, {}, '', issues)
          assert.deepEqual(issues, [])
          assert.deepEqual(locations(out), locations(raw), 'the same key paths')
          assert.equal(JSON.stringify(out), JSON.stringify(raw))
          assert.deepEqual(validateConfig(out).issues, validateConfig(raw).issues)
        },
      ),
      { seed: SEED, numRuns: 500 },
    )
  })

  test('interpolateEnv: each unset ${NAME} is one issue at the dotted path of the string that holds it; set ones are replaced', () => {
    const name = fc.constantFrom('A', 'B_2', 'SECRET', '_X')
    const text = fc
      .array(
        fc.oneof(
          fc.string({ maxLength: 5 }).map((s) => s.replace(/\$/g, '')),
          name.map((n) => `\${${n}}`),
        ),
        { maxLength: 4 },
      )
      .map((parts) => parts.join(''))
    const tree = fc.letrec<{ node: unknown }>((tie) => ({
      node: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        text,
        fc.integer(),
        fc.array(tie('node'), { maxLength: 3 }),
        fc
          .array(fc.tuple(fc.oneof(unknownKey, fc.constantFrom('oidc', 'keys')), tie('node')), { maxLength: 3 })
          .map(objectOf),
      ),
    })).node
    const env = { A: 'alpha', SECRET: 's3cr3t-value' } as NodeJS.ProcessEnv
    fc.assert(
      fc.property(tree, (raw) => {
        const issues: Array<{ path: string; message: string }> = []
        const out = interpolateEnv(raw, env, '', issues)
        const expected: string[] = []
        const walk = (value: unknown, path: PropertyKey[]): void => {
          if (typeof value === 'string')
            for (const m of value.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g))
              if (env[m[1]!] === undefined) expected.push(formatKeyPath(path))
          if (Array.isArray(value)) value.forEach((item, i) => walk(item, [...path, i]))
          else if (value !== null && typeof value === 'object')
            for (const key of Object.keys(value)) walk((value as Record<string, unknown>)[key], [...path, key])
        }
        walk(raw, [])
        assert.deepEqual(
          issues.map((i) => i.path),
          expected,
        )
        for (const issue of issues) assert.doesNotMatch(issue.message, /alpha|s3cr3t/)
        const left = JSON.stringify(out) ?? ''
        assert.ok(!left.includes('${A}') && !left.includes('${SECRET}'), 'set variables are replaced')
        assert.deepEqual(locations(out), locations(raw), 'the same key paths')
      }),
      { seed: SEED, numRuns: 800 },
    )
  })

  test('found by the properties: a "__proto__" key in a config file is reported as an unknown key, its members are not read as config', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-proto-'))
    try {
      const file = join(dir, 'gatehouse.json')
      writeFileSync(
        file,
        JSON.stringify({
          oidc: { authority: 'https://idp.example.com', clientId: 'c', clientSecret: 'secret-value' },
          keys: [KEY],
        }).replace(/^\{/, '{"__proto__": {"diagnostics": true, "session": {"store": "memory"}},'),
      )
      const { raw, issues } = await loadConfigFile(file)
      assert.deepEqual(issues, [])
      const result = validateConfig(interpolateEnv(raw, {}))
      assert.equal(result.config, undefined)
      assert.deepEqual(result.issues, [{ path: '__proto__', message: 'unknown key' }])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  describe('loadConfigFile', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-config-prop-'))
    after(() => rmSync(dir, { recursive: true, force: true }))

    test('never throws on arbitrary file contents (JSON or YAML); bad content is one "(file)" issue', async () => {
      let n = 0
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            anyString(80),
            json.map((v) => JSON.stringify(v) ?? ''),
            configish.map((v) => JSON.stringify(v) ?? ''),
          ),
          fc.constantFrom('json', 'yaml', 'yml'),
          async (content, ext) => {
            const file = join(dir, `c${n++}.${ext}`)
            writeFileSync(file, content)
            const { raw, issues } = await loadConfigFile(file)
            if (issues.length) {
              assert.equal(issues.length, 1)
              assert.equal(issues[0]!.path, '(file)')
              assert.equal(raw, undefined)
            } else checkIssues(raw)
          },
        ),
        { seed: SEED, numRuns: 200 },
      )
    })
  })
})
