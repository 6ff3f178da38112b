// `gatehouse check-config` tells the whole truth (issue #15): the warnings serve would log, --strict,
// --explain (where each value came from, secrets masked), --connect (the IdP's discovery and keys,
// the session store), and relative paths resolved against the configuration file's folder.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createServer as createHttpServer, request } from 'node:http'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { after, before, describe, test } from 'node:test'
import { exportJWK, generateKeyPair } from 'jose'
import pg from 'pg'
import { startIdp, type RunningIdp } from '../../src/demo/idp.ts'
import { generateKey } from '../../src/session/seal.ts'
import { CLI } from '../helpers/cli.ts'
import { storeFixture, type StoreFixture } from '../helpers/instances.ts'

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-check-config-'))
after(() => rmSync(dir, { recursive: true, force: true }))

const KEY = generateKey()
const SECRET = 'file-client-secret-0123456789'

/** A configuration that has nothing to warn about: https origin, loopback listener, SQLite sessions. */
const production = {
  publicOrigin: 'https://app.example.com',
  oidc: { authority: 'https://idp.example.com', clientId: 'spa', clientSecret: SECRET },
  keys: [KEY],
  session: { store: `sqlite:${join(dir, 'sessions.db')}` },
}

let counter = 0
function configFile(content: unknown, name = `config-${++counter}.json`, folder = dir): string {
  const path = join(folder, name)
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content, null, 2))
  return path
}

/** The parent's environment without GATEHOUSE_* variables (the test runner's own are not configuration), plus `extra`. */
function envWith(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('GATEHOUSE_'))), ...extra }
}

function run(
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: options.cwd ?? dir,
      env: envWith(options.env),
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

const warningLines = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('warning: '))

async function closedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

describe('check-config prints the warnings serve would log', () => {
  test('a production-like configuration: exit 0, no warning, the valid line alone', async () => {
    const res = await run(['check-config', configFile(production)])
    assert.equal(res.code, 0, res.stderr)
    assert.equal(res.stderr, '')
    assert.match(res.stdout, /configuration is valid\n$/)
    assert.doesNotMatch(res.stdout, /warning/)
  })

  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    [
      'no publicOrigin',
      { publicOrigin: undefined },
      /^warning: publicOrigin is not set: redirect URIs are built from the Host header/,
    ],
    [
      'a public bind address (0.0.0.0)',
      { listen: { host: '0.0.0.0', port: 8080 } },
      /^warning: listen\.host is "0\.0\.0\.0" \(every interface\), not a loopback address: .*only the TLS-terminating proxy should reach this port/,
    ],
    [
      'a bind address that is a host name',
      { listen: { host: 'gatehouse.internal', port: 8080 } },
      /^warning: listen\.host is "gatehouse\.internal", not a loopback address/,
    ],
    ['diagnostics on', { diagnostics: true }, /^warning: diagnostics is on: \/bff\/diagnostics shows access tokens/],
    [
      'an admin listener without a token',
      { admin: {} },
      /^warning: admin\.token is not set: \/metrics on the admin listener is open/,
    ],
    [
      'an admin listener on a public address',
      { admin: { listen: { host: '0.0.0.0', port: 9464 }, token: 'admin-token-0123456789' } },
      /^warning: admin\.listen\.host is "0\.0\.0\.0" \(every interface\), not a loopback address: whoever reaches that port gets \/metrics and the admin session API/,
    ],
    [
      'SameSite=None',
      { session: { ...production.session, sameSite: 'none' }, cors: { allowedOrigins: ['https://spa.example.net'] } },
      /^warning: session\.sameSite is "none": the session cookie goes with cross-site requests/,
    ],
    [
      'an http upstream that gets tokens',
      { remoteApis: [{ path: '/api', target: 'http://api.internal:5000', token: 'user' }] },
      /^warning: remoteApis\[0\]\.target is http:\/\/ to api\.internal: access tokens travel unencrypted/,
    ],
    [
      'the memory store',
      { session: { store: 'memory' } },
      /^warning: session\.store is "memory": sessions are lost on restart/,
    ],
    [
      'cookie sessions',
      { session: { mode: 'cookie' } },
      /^warning: session\.mode is "cookie": sessions cannot be revoked on the server/,
    ],
    [
      'a public client',
      { oidc: { ...production.oidc, clientSecret: undefined, clientAuth: 'none' } },
      /^warning: oidc\.clientAuth is "none": gatehouse is a public client/,
    ],
    [
      'an http loopback CORS origin beside a public origin',
      { cors: { allowedOrigins: ['http://localhost:5173'] } },
      /^warning: cors\.allowedOrigins lists http:\/\/ loopback origins while publicOrigin is a public host/,
    ],
  ]
  for (const [name, change, expected] of cases) {
    test(`${name}: exactly that warning, exit 0; --strict: exit 1`, async () => {
      const path = configFile({ ...production, ...change })
      const res = await run(['check-config', path])
      assert.equal(res.code, 0, res.stderr)
      const lines = warningLines(res.stderr)
      assert.equal(lines.length, 1, res.stderr)
      assert.match(lines[0]!, expected)
      assert.match(res.stdout, /configuration is valid \(1 warning\)\n$/)
      const strict = await run(['check-config', '--strict', path])
      assert.equal(strict.code, 1)
      assert.deepEqual(warningLines(strict.stderr), lines)
      assert.match(
        strict.stderr,
        /^gatehouse: .*: configuration is valid but has 1 warning, and --strict accepts none$/m,
      )
      assert.doesNotMatch(strict.stdout, /configuration is valid/)
    })
  }

  test('an http upstream without tokens (token "none") is no warning', async () => {
    const res = await run([
      'check-config',
      '--strict',
      configFile({
        ...production,
        remoteApis: [{ path: '/status', target: 'http://status.internal:5001', token: 'none' }],
      }),
    ])
    assert.equal(res.code, 0, res.stderr)
    assert.equal(res.stderr, '')
  })

  test('notes (what serve logs at info) go to stdout and do not fail --strict', async () => {
    const res = await run([
      'check-config',
      '--strict',
      configFile({ ...production, cors: { allowedOrigins: ['https://spa.example.net'] } }),
    ])
    assert.equal(res.code, 0, res.stderr)
    assert.match(res.stdout, /^note: CORS is on for cors\.allowedOrigins.*: https:\/\/spa\.example\.net$/m)
    assert.match(
      res.stdout,
      /^note: requests are answered only for these origins' hosts .*: https:\/\/app\.example\.com$/m,
    )
  })

  test('serve logs at warn exactly what check-config prints', { timeout: 60_000 }, async () => {
    const everything = {
      ...production,
      publicOrigin: undefined,
      listen: { host: '0.0.0.0', port: 0 },
      diagnostics: true,
      admin: { listen: { host: '127.0.0.1', port: 0 } },
      session: { store: 'memory' },
      remoteApis: [{ path: '/api', target: 'http://api.internal:5000' }],
      oidc: { ...production.oidc, authority: `http://127.0.0.1:${await closedPort()}` },
    }
    const path = configFile(everything)
    const checked = warningLines((await run(['check-config', path])).stderr).map((l) => l.slice('warning: '.length))
    assert.equal(checked.length, 6, checked.join('\n'))
    const child = spawn(process.execPath, [CLI, 'serve', path], {
      cwd: dir,
      env: envWith(),
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const exited = new Promise<void>((resolve) => child.on('close', () => resolve()))
    let out = ''
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d
        if (/"event":"admin_listening"/.test(out)) resolve()
      })
      child.stderr.on('data', (d: Buffer) => (out += d))
      child.on('close', () => reject(new Error(`serve exited: ${out}`)))
    })
    child.kill('SIGTERM')
    await exited
    const logged = out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: number; msg: string; event?: string })
      .filter((e) => e.level === 40 && e.event !== 'discovery_failed')
      .map((e) => e.msg)
    assert.deepEqual(logged, checked)
  })
})

describe('check-config --explain', () => {
  const secrets = {
    substituted: 'substituted-client-secret-ABCDEFGH',
    adminToken: 'admin-token-from-a-file-0123456789',
    envKey: generateKey(),
    password: 'store-pass-w0rd-XYZ',
    frontendSecret: 'frontend-secret-QWERTYUIOP',
  }
  let jwk: Record<string, unknown>
  let path: string
  const tokenFile = join(dir, 'admin-token.txt')

  before(async () => {
    jwk = {
      ...(await exportJWK((await generateKeyPair('ES256', { extractable: true })).privateKey)),
      kid: 'k1',
      alg: 'ES256',
    }
    writeFileSync(tokenFile, `${secrets.adminToken}\n`)
    path = configFile(
      {
        publicOrigin: 'https://app.example.com',
        oidc: { authority: 'https://idp.example.com', clientId: '${CLIENT_ID}', clientSecret: '${OIDC_SECRET}' },
        keys: [KEY],
        session: { store: `postgres://gatehouse:${secrets.password}@127.0.0.1:5432/test?schema=explain_test` },
        admin: {},
        frontends: [
          {
            name: 'app',
            path: '/',
            indexHtmlUrl: 'https://cdn.example.com/index.html',
            oidc: {
              clientId: 'app',
              clientSecret: secrets.frontendSecret,
              privateKeyJwk: jwk,
              clientAuth: 'private_key_jwt',
            },
          },
        ],
      },
      'explain.json',
    )
  })

  const env = () => ({
    CLIENT_ID: 'spa-bff',
    OIDC_SECRET: secrets.substituted,
    GATEHOUSE_LISTEN__PORT: '9001',
    GATEHOUSE_ADMIN__TOKEN_FILE: tokenFile,
    GATEHOUSE_KEYS: secrets.envKey,
  })

  test('names the source of each value: file, ${NAME}, env, env _FILE, default', async () => {
    const res = await run(['check-config', '--explain', path], { env: env() })
    assert.equal(res.code, 0, res.stderr)
    const line = (key: string) =>
      res.stdout.split('\n').find((l) => l.startsWith(`${key} `)) ?? assert.fail(`no line for ${key}:\n${res.stdout}`)
    assert.match(line('publicOrigin'), /"https:\/\/app\.example\.com"\s+\(file .*explain\.json\)$/)
    assert.match(line('oidc.clientId'), /"spa-bff"\s+\(\$\{CLIENT_ID\} in .*explain\.json\)$/)
    assert.match(line('listen.port'), /\b9001\s+\(env GATEHOUSE_LISTEN__PORT\)$/)
    assert.match(line('admin.token'), /\*\*\*\s+\(env GATEHOUSE_ADMIN__TOKEN_FILE \(.*admin-token\.txt\)\)$/)
    assert.match(line('keys'), /\[\*\*\*\]\s+\(env GATEHOUSE_KEYS\)$/)
    assert.match(line('listen.host'), /"127\.0\.0\.1"\s+\(default\)$/)
    assert.match(line('oidc.timeout'), /"10s"\s+\(default\)$/)
    assert.match(line('limits.perClient'), /\b32\s+\(default\)$/)
    assert.match(line('frontends[0].oidc.clientId'), /"app"\s+\(file /)
    assert.match(
      line('session.store'),
      /"postgres:\/\/gatehouse:\*\*\*@127\.0\.0\.1:5432\/test\?schema=explain_test"\s+\(file /,
    )
  })

  test('never prints a secret: client secrets, keys, admin.token, privateKeyJwk, the store password', async () => {
    const res = await run(['check-config', '--explain', path], { env: env() })
    assert.equal(res.code, 0, res.stderr)
    const output = res.stdout + res.stderr
    for (const [name, value] of [
      ...Object.entries(secrets),
      ['file key', KEY],
      ['jwk d', String(jwk.d)],
      ['jwk x', String(jwk.x)],
    ]) {
      assert.ok(!output.includes(value!), `${name} appears in the output`)
    }
    assert.match(output, /oidc\.clientSecret\s+\*\*\*\s/)
    assert.match(output, /frontends\[0\]\.oidc\.clientSecret\s+\*\*\*\s/)
    assert.match(output, /frontends\[0\]\.oidc\.privateKeyJwk\s+\*\*\*\s/)
  })

  test('without a file every value is from the environment or the default', async () => {
    const res = await run(['check-config', '--explain'], {
      env: {
        GATEHOUSE_OIDC__AUTHORITY: 'https://idp.example.com',
        GATEHOUSE_OIDC__CLIENT_ID: 'spa',
        GATEHOUSE_OIDC__CLIENT_SECRET_FILE: tokenFile,
        GATEHOUSE_KEYS: secrets.envKey,
        GATEHOUSE_SESSION__STORE: 'memory',
      },
    })
    assert.equal(res.code, 0, res.stderr)
    const lines = res.stdout
      .split('\n')
      .filter((l) => /^[a-z]/.test(l) && !l.startsWith('note: ') && !l.includes('configuration is valid'))
    assert.ok(lines.length > 30, res.stdout)
    for (const l of lines) assert.match(l, /\((env GATEHOUSE_[A-Z_]+( \(.*\))?|default)\)$/)
    assert.match(res.stdout, /^oidc\.clientSecret\s+\*\*\*\s+\(env GATEHOUSE_OIDC__CLIENT_SECRET_FILE \(/m)
    assert.ok(!res.stdout.includes(secrets.adminToken) && !res.stdout.includes(secrets.envKey))
    assert.match(res.stdout, /^configuration from the environment \(no file\): configuration is valid/m)
  })

  test('a store password given as a query parameter is masked too', async () => {
    const res = await run([
      'check-config',
      '--explain',
      configFile({
        ...production,
        session: { store: `postgres://gatehouse@127.0.0.1:5432/test?password=${secrets.password}&schema=x` },
      }),
    ])
    assert.equal(res.code, 0, res.stderr)
    assert.ok(!res.stdout.includes(secrets.password))
    assert.match(res.stdout, /"postgres:\/\/gatehouse@127\.0\.0\.1:5432\/test\?password=\*\*\*&schema=x"/)
  })

  test('a ${NAME} whose name says secret is masked in whatever key it lands; so is every query value but the known-safe ones', async () => {
    const env = { XSECRET: 'x-secret-value-0123456789', API_TOKEN: 'api-token-value-0123456789', TENANT: 'contoso' }
    const path = configFile({
      ...production,
      oidc: {
        ...production.oidc,
        extraAuthParams: { x: '${XSECRET}', tenant: '${TENANT}', hint: 'pre-${API_TOKEN}-post' },
      },
      frontends: [
        {
          name: 'app',
          path: '/',
          indexHtmlUrl: 'https://cdn.example.com/index.html?sig=SIGNATURE-0123456789&api_key=APIKEY-0123456789',
        },
      ],
    })
    const res = await run(['check-config', '--explain', path], { env })
    assert.equal(res.code, 0, res.stderr)
    for (const secret of [env.XSECRET, env.API_TOKEN, 'SIGNATURE-0123456789', 'APIKEY-0123456789'])
      assert.ok(!res.stdout.includes(secret), `${secret} is shown`)
    assert.match(
      res.stdout,
      /^oidc\.extraAuthParams\s+\{"x":"\*\*\*","tenant":"contoso","hint":"pre-\*\*\*-post"\}\s+\(\$\{XSECRET\}, \$\{TENANT\}, \$\{API_TOKEN\} in /m,
    )
    assert.match(
      res.stdout,
      /^frontends\[0\]\.indexHtmlUrl\s+"https:\/\/cdn\.example\.com\/index\.html\?sig=\*\*\*&api_key=\*\*\*"/m,
    )
  })
})

describe('a store password that breaks the URL (issue #15 review F1)', () => {
  // A base64 password: "/" ends the host early, "+" and "=" are harmless.
  const password = 'Zm9v/YmFy+SECRET='
  const config = () =>
    configFile({ ...production, session: { store: 'redis://gatehouse:${REDIS_PASSWORD}@127.0.0.1:6379/0' } })

  test('check-config refuses it naming session.store and hinting at percent-encoding; no part of the password is shown', async () => {
    const res = await run(['check-config', '--explain', config()], { env: { REDIS_PASSWORD: password } })
    assert.equal(res.code, 1)
    assert.match(
      res.stderr,
      /^ {2}session\.store: is not a valid URL \(check the host and port; percent-encode the user name and password \(encodeURIComponent\)/m,
    )
    assert.ok(!(res.stdout + res.stderr).includes('SECRET'), res.stdout + res.stderr)
  })

  test('serve refuses it the same way: no "Invalid URL", no password', async () => {
    const res = await run(['serve', config()], { env: { REDIS_PASSWORD: password } })
    assert.equal(res.code, 1)
    assert.match(res.stderr, /session\.store: is not a valid URL/)
    assert.doesNotMatch(res.stderr, /Invalid URL/)
    assert.ok(!(res.stdout + res.stderr).includes('SECRET'))
  })

  test('a password that makes it parse as port and path ("6379/…@") is refused without echoing it', async () => {
    const res = await run([
      'check-config',
      configFile({ ...production, session: { store: 'redis://gatehouse:6379/Zm9vSECRET@127.0.0.1:6379/0' } }),
    ])
    assert.equal(res.code, 1)
    assert.match(res.stderr, /^ {2}session\.store: has "@" after the host/m)
    assert.ok(!res.stderr.includes('SECRET'))
  })

  test('percent-encoded as docs/deployment.md says, it is valid and --explain masks it', async () => {
    const res = await run(['check-config', '--explain', config()], {
      env: { REDIS_PASSWORD: encodeURIComponent(password) },
    })
    assert.equal(res.code, 0, res.stderr)
    assert.match(
      res.stdout,
      /^session\.store\s+"redis:\/\/gatehouse:\*\*\*@127\.0\.0\.1:6379\/0"\s+\(\$\{REDIS_PASSWORD\} in /m,
    )
    assert.ok(!res.stdout.includes('SECRET'))
  })

  test('a password holding "@" is masked whole, up to the last "@"', async () => {
    const res = await run([
      'check-config',
      '--explain',
      configFile({ ...production, session: { store: 'redis://:p@ss-word-SECRET@127.0.0.1:6379/0' } }),
    ])
    assert.equal(res.code, 0, res.stderr)
    assert.match(res.stdout, /^session\.store\s+"redis:\/\/:\*\*\*@127\.0\.0\.1:6379\/0"/m)
    assert.ok(!res.stdout.includes('SECRET'))
  })
})

describe('secrets elsewhere (issue #15 review F2, F3)', () => {
  test('an oidc.authority with user:password@ is refused, the password shown nowhere', async () => {
    const res = await run([
      'check-config',
      '--connect',
      configFile({ ...production, oidc: { ...production.oidc, authority: 'https://user:AUTHPW-SECRET@127.0.0.1:9' } }),
    ])
    assert.equal(res.code, 1)
    assert.match(res.stderr, /^ {2}oidc\.authority: must not hold a user name or password/m)
    assert.ok(!(res.stdout + res.stderr).includes('AUTHPW-SECRET'))
  })

  test('a file that is not JSON: line and column, never the text beside the error', async () => {
    const path = configFile('{"oidc": {"clientId": "c",\n  "clientSecret": SUPERSECRETVALUE-123456789}}')
    const res = await run(['check-config', path])
    assert.equal(res.code, 1)
    assert.deepEqual(res.stderr.trim().split('\n'), [
      `gatehouse: ${path} is invalid (1 problem):`,
      `  (file): ${path}: not valid JSON (unexpected character at line 2, column 19)`,
    ])
  })
})

describe('check-config --connect', () => {
  let idp: RunningIdp
  const CLIENT_ID = 'check-bff'
  before(async () => {
    idp = await startIdp({
      clients: [
        { client_id: CLIENT_ID, client_secret: SECRET, redirect_uris: ['https://app.example.com/signin-oidc'] },
        {
          client_id: 'admin-bff',
          client_secret: 'admin-bff-secret-0123456789',
          redirect_uris: ['https://admin.example.com/signin-oidc'],
        },
      ],
    })
  })
  after(() => idp?.close())

  const withIdp = (extra: Record<string, unknown> = {}) => ({
    ...production,
    oidc: { authority: idp.issuer, clientId: CLIENT_ID, clientSecret: SECRET },
    ...extra,
  })

  test('SQLite: prints the IdP (issuer, endpoints, algorithms, keys, client authentication) and the store', async () => {
    const db = join(dir, 'connect', 'sessions.db')
    const res = await run(['check-config', '--connect', configFile(withIdp({ session: { store: `sqlite:${db}` } }))])
    assert.equal(res.code, 0, res.stderr)
    const out = res.stdout
    assert.match(out, new RegExp(`^  issuer: ${idp.issuer} \\(accepted: it is oidc\\.authority\\)$`, 'm'))
    assert.match(out, new RegExp(`^  authorization_endpoint: ${idp.issuer}/auth$`, 'm'))
    assert.match(out, new RegExp(`^  token_endpoint: ${idp.issuer}/token$`, 'm'))
    assert.match(out, /^ {2}end_session_endpoint: http:\/\/127\.0\.0\.1:\d+\/session\/end$/m)
    assert.match(out, /^ {2}revocation_endpoint: http:\/\/127\.0\.0\.1:\d+\/token\/revocation$/m)
    assert.match(out, /^ {2}pushed_authorization_request_endpoint: /m)
    assert.match(out, /^ {2}id_token signing algorithms: .*RS256/m)
    assert.match(out, /^ {2}jwks: 1 key \(RS256\) at http:\/\/127\.0\.0\.1:\d+\/jwks$/m)
    assert.match(out, /^ {2}token endpoint auth methods: .*client_secret_basic/m)
    assert.match(
      out,
      /^ {2}client authentication: client_secret_basic \(chosen from the identity provider's list; supported\)$/m,
    )
    assert.match(
      out,
      /^session store:\n {2}kind: sqlite\n {2}path: .*connect\/sessions\.db\n {2}tables: gatehouse_sessions, gatehouse_leases\n {2}state: the file does not exist yet; serve or gatehouse migrate will create it and its folder .*\/connect$/m,
    )
    assert.ok(!existsSync(join(dir, 'connect')), '--connect creates neither the folder nor the file')
  })

  test('SQLite is read, never written: a gatehouse database, one without the tables, a file that is not a database', async () => {
    const folder = join(dir, 'connect-existing')
    mkdirSync(folder, { recursive: true })
    const migrated = join(folder, 'migrated.db')
    const migrate = await run([
      'migrate',
      '--config',
      configFile(withIdp({ session: { store: `sqlite:${migrated}` } })),
    ])
    assert.equal(migrate.code, 0, migrate.stderr)
    const before = readdirSync(folder).sort()
    const ok = await run([
      'check-config',
      '--connect',
      configFile(withIdp({ session: { store: `sqlite:${migrated}` } })),
    ])
    assert.equal(ok.code, 0, ok.stderr)
    assert.match(ok.stdout, /^ {2}state: schema version 2 in place$/m)

    const empty = join(folder, 'empty.db')
    new DatabaseSync(empty).close()
    const bare = await run([
      'check-config',
      '--connect',
      configFile(withIdp({ session: { store: `sqlite:${empty}` } })),
    ])
    assert.equal(bare.code, 0, bare.stderr)
    assert.match(bare.stdout, /^ {2}state: no gatehouse tables yet; serve or gatehouse migrate will create them$/m)
    assert.equal(
      new DatabaseSync(empty, { readOnly: true }).prepare('SELECT count(*) AS n FROM sqlite_master').get()!.n,
      0,
      'no table was created',
    )

    const junk = join(folder, 'junk.db')
    writeFileSync(junk, 'this is a text file, not a database; '.repeat(20))
    const bad = await run(['check-config', '--connect', configFile(withIdp({ session: { store: `sqlite:${junk}` } }))])
    assert.equal(bad.code, 1)
    assert.deepEqual(bad.stderr.trim().split('\n'), [
      `gatehouse: --connect: session store (sqlite): sqlite:${junk}: ${junk} is not a SQLite database`,
    ])
    assert.deepEqual(
      readdirSync(folder).sort(),
      [...before, 'empty.db', 'junk.db'].sort(),
      'no -wal, -shm or other file appeared',
    )
  })

  test('SQLite in memory (a file: URI) is reported as such, and no folder named "file:…" appears', async () => {
    const res = await run([
      'check-config',
      '--connect',
      configFile(withIdp({ session: { store: 'sqlite:file:connect.db?mode=memory' } })),
    ])
    assert.equal(res.code, 0, res.stderr)
    assert.match(res.stdout, /^ {2}path: file:connect\.db\?mode=memory\n {2}tables: .*\n {2}state: in memory /m)
    assert.ok(!readdirSync(dir).some((f) => f.startsWith('file:') || f.startsWith('connect.db')))
  })

  test('PostgreSQL is read, never written: a missing schema is reported, not created', async () => {
    const schema = `gh_connect_${process.pid}`
    const res = await run([
      'check-config',
      '--connect',
      configFile(withIdp({ session: { store: `postgres://postgres@127.0.0.1:5432/test?schema=${schema}` } })),
    ])
    assert.equal(res.code, 0, res.stderr)
    assert.match(
      res.stdout,
      new RegExp(
        `^ {2}schema: ${schema}\\n(.*\\n)? {2}state: no gatehouse tables yet; serve or gatehouse migrate will create them$`,
        'm',
      ),
    )
    const client = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/test' })
    await client.connect()
    try {
      const { rows } = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])
      assert.equal(rows.length, 0, 'the schema was not created')
    } finally {
      await client.end()
    }
  })

  test("PostgreSQL tables missing that this user may not create: exit 1 with serve's line, nothing created", async () => {
    const role = `gh_connect_nocreate_${process.pid}`
    const schema = `gh_connect_never_${process.pid}`
    const client = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/test' })
    await client.connect()
    await client.query(`DROP ROLE IF EXISTS ${role}`)
    await client.query(`CREATE ROLE ${role} LOGIN`)
    try {
      const res = await run([
        'check-config',
        '--connect',
        configFile(withIdp({ session: { store: `postgres://${role}@127.0.0.1:5432/test?schema=${schema}` } })),
      ])
      assert.equal(res.code, 1)
      assert.deepEqual(res.stderr.trim().split('\n'), [
        `gatehouse: --connect: session store (postgresql): postgres://127.0.0.1:5432/test: schema ${schema} lacks the session tables and this user may not create them (no CREATE privilege): run gatehouse migrate as a user that may, such as the schema's owner`,
      ])
      assert.equal((await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])).rows.length, 0)
    } finally {
      await client.query(`DROP ROLE ${role}`)
      await client.end()
    }
  })

  test("a discovery document's control characters are escaped: no faked line, no terminal sequence", async () => {
    const hostile = createHttpServer((req, res) => {
      const origin = `http://127.0.0.1:${(hostile.address() as { port: number }).port}`
      res.setHeader('content-type', 'application/json')
      if (req.url === '/jwks')
        return void res.end(JSON.stringify({ keys: [{ kty: 'RSA', alg: 'RS256\u001b]0;owned\u0007' }] }))
      res.end(
        JSON.stringify({
          issuer: origin,
          authorization_endpoint: `${origin}/auth\u001b[31m`,
          token_endpoint: `${origin}/token`,
          jwks_uri: `${origin}/jwks`,
          end_session_endpoint: 'x\ngatehouse: --connect: faked line',
          id_token_signing_alg_values_supported: ['RS256\u202eevil', 'ES256\r'],
        }),
      )
    })
    await new Promise<void>((resolve) => hostile.listen(0, '127.0.0.1', resolve))
    try {
      const port = (hostile.address() as { port: number }).port
      const res = await run([
        'check-config',
        '--connect',
        configFile({ ...production, oidc: { ...production.oidc, authority: `http://127.0.0.1:${port}` } }),
      ])
      const output = res.stdout + res.stderr
      assert.doesNotMatch(output, /[\u0000-\u0008\u000b-\u001f\u007f\u202e]/, 'no raw control or format character')
      assert.doesNotMatch(output, /^gatehouse: --connect: faked line/m)
      assert.match(res.stdout, /^ {2}end_session_endpoint: x\\ngatehouse: --connect: faked line$/m)
      assert.match(res.stdout, /^ {2}id_token signing algorithms: RS256\\u202eevil, ES256\\r$/m)
    } finally {
      hostile.close()
    }
  })

  for (const kind of ['redis', 'postgres'] as const) {
    test(`${kind === 'redis' ? 'Redis' : 'PostgreSQL'}: prints the store's kind and its ${kind === 'redis' ? 'key prefix' : 'schema'}, never its password`, async () => {
      const fixture: StoreFixture = await storeFixture(kind, 'check-config')
      try {
        // PostgreSQL here trusts local connections, so a password in the URL is accepted and unused.
        const url = new URL(fixture.url())
        if (kind === 'postgres') url.password = 'connect-pass-w0rd'
        const res = await run([
          'check-config',
          '--connect',
          configFile(withIdp({ session: { store: url.toString() } })),
        ])
        assert.equal(res.code, 0, res.stderr)
        assert.ok(!(res.stdout + res.stderr).includes('connect-pass-w0rd'))
        if (kind === 'redis') {
          assert.match(
            res.stdout,
            /^session store:\n {2}kind: redis\n {2}server: redis:\/\/127\.0\.0\.1:6379\n {2}database: 0\n {2}key prefix: "check-config:[0-9a-f]+:"$/m,
          )
        } else {
          const schema = url.searchParams.get('schema')!
          assert.match(
            res.stdout,
            new RegExp(
              `^session store:\\n {2}kind: postgresql\\n {2}server: postgres://127\\.0\\.0\\.1:5432 \\(user postgres\\)\\n {2}database: test\\n {2}schema: ${schema}\\n {2}tables: ${schema}\\.gatehouse_sessions, ${schema}\\.gatehouse_leases$`,
              'm',
            ),
          )
        }
      } finally {
        await fixture.cleanup()
      }
    })
  }

  test('frontends with their own client are checked one by one', async () => {
    const res = await run([
      'check-config',
      '--connect',
      configFile(
        withIdp({
          frontends: [
            { name: 'app', path: '/', indexHtmlUrl: 'https://cdn.example.com/index.html' },
            {
              name: 'admin',
              path: '/admin',
              indexHtmlUrl: 'https://cdn.example.com/admin.html',
              oidc: {
                clientId: 'admin-bff',
                clientSecret: 'admin-bff-secret-0123456789',
                clientAuth: 'client_secret_post',
              },
            },
          ],
        }),
      ),
    ])
    assert.equal(res.code, 0, res.stderr)
    assert.match(res.stdout, /^ {2}client authentication of app \(oidc, clientId "check-bff"\): client_secret_basic /m)
    assert.match(
      res.stdout,
      /^ {2}client authentication of admin \(frontends\[1\]\.oidc, clientId "admin-bff"\): client_secret_post \(frontends\[1\]\.oidc\.clientAuth; supported\)$/m,
    )
    assert.ok(!res.stdout.includes('admin-bff-secret'))
  })

  test('a configured client authentication the IdP does not list is a warning (--strict: exit 1)', async () => {
    const strictIdp = await startIdp({
      clients: [
        {
          client_id: CLIENT_ID,
          client_secret: SECRET,
          redirect_uris: ['https://app.example.com/signin-oidc'],
          token_endpoint_auth_method: 'client_secret_post',
        },
      ],
      clientAuthMethods: ['client_secret_post'],
    })
    try {
      const path = configFile({
        ...production,
        oidc: {
          authority: strictIdp.issuer,
          clientId: CLIENT_ID,
          clientSecret: SECRET,
          clientAuth: 'client_secret_basic',
        },
      })
      const res = await run(['check-config', '--connect', path])
      assert.equal(res.code, 0, res.stderr)
      assert.match(
        res.stdout,
        /^ {2}client authentication: client_secret_basic \(oidc\.clientAuth; NOT listed by the identity provider\)$/m,
      )
      assert.deepEqual(warningLines(res.stderr), [
        "warning: oidc.clientAuth: client_secret_basic is not in the identity provider's token_endpoint_auth_methods_supported (client_secret_post): the token endpoint will likely refuse gatehouse; set oidc.clientAuth to a listed method",
      ])
      assert.equal((await run(['check-config', '--connect', '--strict', path])).code, 1)
    } finally {
      await strictIdp.close()
    }
  })

  test('an issuer the issuer rules refuse: exit 1, one line', async () => {
    const res = await run([
      'check-config',
      '--connect',
      configFile(
        withIdp({
          oidc: {
            authority: idp.issuer,
            issuer: 'https://other.example.com',
            clientId: CLIENT_ID,
            clientSecret: SECRET,
          },
        }),
      ),
    ])
    assert.equal(res.code, 1)
    assert.match(res.stdout, /^ {2}issuer: .* \(NOT accepted\)$/m)
    assert.deepEqual(res.stderr.trim().split('\n'), [
      `gatehouse: --connect: identity provider: the discovery document names issuer "${idp.issuer}", which is not oidc.issuer "https://other.example.com"`,
    ])
  })

  test("DPoP asked for from an IdP without it: exit 1 with serve's own reason", async () => {
    const noDpop = await startIdp({
      clients: [
        { client_id: CLIENT_ID, client_secret: SECRET, redirect_uris: ['https://app.example.com/signin-oidc'] },
      ],
      dpop: false,
    })
    try {
      const res = await run([
        'check-config',
        '--connect',
        configFile({
          ...production,
          oidc: { authority: noDpop.issuer, clientId: CLIENT_ID, clientSecret: SECRET, dpop: true },
        }),
      ])
      assert.equal(res.code, 1)
      assert.deepEqual(res.stderr.trim().split('\n'), [
        'gatehouse: --connect: identity provider: oidc.dpop is on, but the identity provider does not accept DPoP proofs signed with ES256 (its discovery document lists no dpop_signing_alg_values_supported)',
      ])
    } finally {
      await noDpop.close()
    }
  })

  test('an unreachable IdP: exit 1, one line naming the cause', async () => {
    const port = await closedPort()
    const res = await run([
      'check-config',
      '--connect',
      configFile({ ...production, oidc: { ...production.oidc, authority: `http://127.0.0.1:${port}` } }),
    ])
    assert.equal(res.code, 1)
    const lines = res.stderr.trim().split('\n')
    assert.equal(lines.length, 1, res.stderr)
    assert.match(
      lines[0]!,
      new RegExp(
        `^gatehouse: --connect: identity provider discovery failed: http://127\\.0\\.0\\.1:${port}/\\.well-known/openid-configuration could not be fetched: connection refused \\(ECONNREFUSED\\)$`,
      ),
    )
    assert.doesNotMatch(res.stdout, /configuration is valid/)
    assert.match(res.stdout, /^session store:\n {2}kind: sqlite/m)
  })

  test('an unreachable store: exit 1, one line naming it, no password', async () => {
    const port = await closedPort()
    const res = await run([
      'check-config',
      '--connect',
      configFile(withIdp({ session: { store: `redis://:unreachable-pass-w0rd@127.0.0.1:${port}` } })),
    ])
    assert.equal(res.code, 1)
    const lines = res.stderr.trim().split('\n')
    assert.equal(lines.length, 1, res.stderr)
    assert.match(lines[0]!, /^gatehouse: --connect: session store \(redis\): .*127\.0\.0\.1:\d+.*connection refused/)
    assert.ok(!(res.stdout + res.stderr).includes('unreachable-pass-w0rd'))
  })
})

describe('relative paths in the file resolve against its folder', () => {
  const root = join(dir, 'relative')
  const conf = join(root, 'conf')
  const elsewhere = join(root, 'elsewhere')
  before(() => {
    mkdirSync(join(conf, 'spa'), { recursive: true })
    mkdirSync(elsewhere, { recursive: true })
    writeFileSync(join(conf, 'spa', 'index.html'), '<!doctype html><title>relative spa</title>')
  })
  const relativeConfig = (port: number) => ({
    ...production,
    publicOrigin: `http://127.0.0.1:${port}`,
    listen: { host: '127.0.0.1', port },
    session: { store: 'sqlite:./data/sessions.db' },
    frontends: [{ name: 'app', path: '/', static: './spa' }],
  })

  test('check-config from another working directory finds the folder and shows the resolved paths', async () => {
    const path = configFile(relativeConfig(8080), 'gatehouse.json', conf)
    const res = await run(['check-config', '--explain', '../conf/gatehouse.json'], { cwd: elsewhere })
    assert.equal(res.code, 0, res.stderr)
    assert.match(
      res.stdout,
      new RegExp(
        `^frontends\\[0\\]\\.static\\s+"${join(conf, 'spa')}"\\s+\\(file \\.\\./conf/gatehouse\\.json\\)$`,
        'm',
      ),
    )
    assert.match(res.stdout, new RegExp(`^session\\.store\\s+"sqlite:${join(conf, 'data', 'sessions.db')}"`, 'm'))
    assert.ok(existsSync(path))
  })

  test('a missing folder is reported at its resolved path', async () => {
    configFile(
      { ...relativeConfig(8080), frontends: [{ name: 'app', path: '/', static: './no-such-build' }] },
      'missing.json',
      conf,
    )
    const res = await run(['check-config', join('..', 'conf', 'missing.json')], { cwd: elsewhere })
    assert.equal(res.code, 1)
    assert.match(
      res.stderr,
      new RegExp(`frontends\\[0\\]\\.static: folder "${join(conf, 'no-such-build')}" does not exist`),
    )
  })

  test('values from the environment stay relative to the working directory', async () => {
    mkdirSync(join(elsewhere, 'env-spa'), { recursive: true })
    const res = await run(['check-config', '--explain', '../conf/gatehouse.json'], {
      cwd: elsewhere,
      env: { GATEHOUSE_FRONTENDS: JSON.stringify([{ name: 'app', path: '/', static: './env-spa' }]) },
    })
    assert.equal(res.code, 0, res.stderr)
    assert.match(res.stdout, /^frontends\[0\]\.static\s+"\.\/env-spa"\s+\(env GATEHOUSE_FRONTENDS\)$/m)
  })

  test(
    'serve from another working directory serves the SPA and keeps sessions beside the file',
    { timeout: 60_000 },
    async () => {
      const port = await closedPort()
      configFile(relativeConfig(port), 'serve.json', conf)
      const child = spawn(process.execPath, [CLI, 'serve', '../conf/serve.json'], {
        cwd: elsewhere,
        env: envWith(),
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      const exited = new Promise<void>((resolve) => child.on('close', () => resolve()))
      try {
        let out = ''
        await new Promise<void>((resolve, reject) => {
          child.stdout.on('data', (d: Buffer) => {
            out += d
            if (/"event":"listening"/.test(out)) resolve()
          })
          child.stderr.on('data', (d: Buffer) => (out += d))
          child.on('close', () => reject(new Error(`serve exited: ${out}`)))
        })
        const page = await new Promise<{ status: number; body: string }>((resolve, reject) => {
          const req = request(
            { host: '127.0.0.1', port, path: '/', headers: { accept: 'text/html', 'sec-fetch-mode': 'navigate' } },
            (res) => {
              let body = ''
              res.on('data', (d: Buffer) => (body += d))
              res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
            },
          )
          req.on('error', reject)
          req.end()
        })
        assert.equal(page.status, 200)
        assert.match(page.body, /relative spa/)
        assert.ok(existsSync(join(conf, 'data', 'sessions.db')), 'the SQLite file is beside the configuration file')
        assert.ok(!existsSync(join(elsewhere, 'data')), 'nothing is created in the working directory')
      } finally {
        child.kill('SIGTERM')
        await exited
      }
    },
  )
})
