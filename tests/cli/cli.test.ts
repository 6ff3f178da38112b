import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import { generateKey, decodeKey } from '../../src/session/seal.ts'
import { SqliteStore } from '../../src/session/stores/sqlite.ts'
import { runCli, startCli } from '../helpers/cli.ts'

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-cli-'))
after(() => rmSync(dir, { recursive: true, force: true }))

function file(name: string, content: unknown): string {
  const path = join(dir, name)
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content))
  return path
}

const valid = {
  oidc: { authority: 'https://idp.example.com', clientId: 'spa', clientSecret: '${TEST_SECRET}' },
  keys: [generateKey()],
  session: { store: `sqlite:${join(dir, 'sessions.db')}` },
}

describe('gatehouse check-config', () => {
  test('a valid config exits 0', async () => {
    const res = await runCli(['check-config', '--config', file('ok.json', valid)], { env: { TEST_SECRET: 's3cret' } })
    assert.equal(res.code, 0, res.stderr)
    assert.match(res.stdout, /configuration is valid/)
  })

  test('the shipped gatehouse.example.json is valid', async () => {
    const example = new URL('../../gatehouse.example.json', import.meta.url).pathname
    const res = await runCli(['check-config', '--config', example], {
      env: { OIDC_CLIENT_SECRET: 'x', GATEHOUSE_KEY: generateKey() },
    })
    assert.equal(res.code, 0, res.stderr)
  })

  test('YAML is accepted', async () => {
    const yaml = `oidc:\n  authority: https://idp.example.com\n  clientId: spa\n  clientSecret: x\nkeys:\n  - ${generateKey()}\nsession:\n  store: memory\n`
    const res = await runCli(['check-config', '--config', file('ok.yaml', yaml)])
    assert.equal(res.code, 0, res.stderr)
  })

  const invalid: Array<[string, unknown, RegExp[]]> = [
    ['missing oidc block', { keys: [generateKey()] }, [/^ {2}oidc: is required$/m]],
    [
      'empty clientId and http authority',
      { ...valid, oidc: { authority: 'http://idp.example.com', clientId: '' } },
      [/oidc\.authority: must be an https:\/\/ URL/, /oidc\.clientId: must not be empty/],
    ],
    ['bad key in the ring', { ...valid, keys: [generateKey(), 'not-a-key'] }, [/keys\[1\]: must be a 32-byte key/]],
    ['no keys', { ...valid, keys: [] }, [/keys: at least one key is required/]],
    ['unknown key (typo)', { ...valid, sesion: {} }, [/sesion: unknown key/]],
    [
      'bad duration and sameSite',
      { ...valid, session: { lifetime: 'forever', sameSite: 'none' } },
      [/session\.lifetime: must be a duration/, /session\.sameSite:/],
    ],
    [
      'cookie without __Host- prefix',
      { ...valid, session: { cookieName: 'sid' } },
      [/session\.cookieName: must start with "__Host-"/],
    ],
    [
      'remote API with a bad target',
      { ...valid, remoteApis: [{ path: '/api', target: 'nope' }] },
      [/remoteApis\[0\]\.target: must be an http:\/\/ or https:\/\/ URL/],
    ],
    ['wrong types', { ...valid, trustProxy: 'yes', listen: { port: 70000 } }, [/trustProxy:/, /listen\.port:/]],
  ]
  for (const [name, config, expected] of invalid) {
    test(`an invalid config (${name}) exits 1 naming the key`, async () => {
      const res = await runCli(['check-config', '--config', file(`bad-${name.replace(/\W+/g, '-')}.json`, config)], {
        env: { TEST_SECRET: 's3cret' },
      })
      assert.equal(res.code, 1)
      for (const pattern of expected) assert.match(res.stderr, pattern)
      assert.doesNotMatch(res.stderr, /\n\s+at /, 'no stack trace')
    })
  }

  test('an unset ${ENV} variable is reported at its key path', async () => {
    const res = await runCli(['check-config', '--config', file('env.json', valid)], { env: { TEST_SECRET: undefined } })
    assert.equal(res.code, 1)
    assert.match(res.stderr, /oidc\.clientSecret: environment variable TEST_SECRET is not set/)
  })

  test('broken JSON and a missing file exit 1 with a clear message', async () => {
    const broken = await runCli(['check-config', '--config', file('broken.json', '{ "oidc": ')])
    assert.equal(broken.code, 1)
    assert.match(broken.stderr, /not valid JSON/)
    const missing = await runCli(['check-config', '--config', join(dir, 'nope.json')])
    assert.equal(missing.code, 1)
    assert.match(missing.stderr, /file not found/)
  })

  test('the secret value is not echoed in problem reports', async () => {
    const res = await runCli(
      ['check-config', '--config', file('leak.json', { ...valid, oidc: { ...valid.oidc, clientId: '' } })],
      { env: { TEST_SECRET: 'very-secret-value' } },
    )
    assert.equal(res.code, 1)
    assert.doesNotMatch(res.stderr + res.stdout, /very-secret-value/)
  })
})

describe('gatehouse keys generate', () => {
  test('prints a new 32-byte key as the last line of stdout, different each time', async () => {
    const a = await runCli(['keys', 'generate'])
    const b = await runCli(['keys', 'generate'])
    assert.equal(a.code, 0)
    const keyA = a.stdout.trim().split('\n').at(-1)!
    const keyB = b.stdout.trim().split('\n').at(-1)!
    assert.ok(decodeKey(keyA))
    assert.notEqual(keyA, keyB)
  })
})

describe('gatehouse serve', () => {
  test('an unknown command exits 2 with usage', async () => {
    const res = await runCli(['frobnicate'])
    assert.equal(res.code, 2)
    assert.match(res.stderr, /Usage: gatehouse/)
  })

  test('serve with an invalid config exits 1 before listening', async () => {
    const res = await runCli(['serve', '--config', file('serve-bad.json', { keys: [] })])
    assert.equal(res.code, 1)
    assert.match(res.stderr, /oidc: is required/)
  })

  test('serve answers /healthz, reports /readyz 503 while the IdP is unreachable, and exits 0 on SIGTERM', async () => {
    const config = file('serve.json', {
      ...valid,
      listen: { port: 0 },
      oidc: { authority: 'http://127.0.0.1:9', clientId: 'spa', clientSecret: 'x' },
      log: { level: 'info' },
    })
    const running = await startCli(['serve', '--config', config], /"url":"(http:\/\/127\.0\.0\.1:\d+)"/)
    const base = running.match[1]!
    const health = await fetch(`${base}/healthz`)
    assert.equal(health.status, 200)
    const ready = await fetch(`${base}/readyz`)
    assert.equal(ready.status, 503)
    assert.deepEqual(((await ready.json()) as { checks: unknown }).checks, { store: 'ok', idp: 'failing' })
    running.child.kill('SIGTERM')
    assert.equal(await running.exited, 0)
  })
})

describe('gatehouse sessions', () => {
  const dbPath = join(dir, 'admin.db')
  const config = () => file('admin.json', { ...valid, session: { store: `sqlite:${dbPath}` } })
  const record = (sub: string, sid: string | undefined, n: number) => ({
    idHash: `hash-${sub}-${n}`,
    sub,
    sid,
    partition: 'default',
    createdAt: Date.now(),
    renewedAt: Date.now(),
    expiresAt: Date.now() + 3_600_000,
    version: 1,
    sealed: 'sealed-secret-bytes',
  })

  test('list prints one line per session with sub and sid; revoke by sid and by sub ends them', async () => {
    const store = new SqliteStore(dbPath)
    for (const r of [
      record('alice', 'sid-a1', 1),
      record('alice', 'sid-a2', 2),
      record('bob', 'sid-b1', 3),
      record('carol', undefined, 4),
    ])
      await store.set(r)
    await store.close()
    const env = { TEST_SECRET: 's' }

    const all = await runCli(['sessions', 'list', '--config', config()], { env })
    assert.equal(all.code, 0, all.stderr)
    assert.equal(all.stdout.trim().split('\n').length, 4)
    assert.match(all.stdout, /sub=alice\s+sid=sid-a1/)
    assert.match(all.stdout, /sub=carol\s+sid=-/)
    assert.doesNotMatch(all.stdout, /sealed-secret-bytes/, 'sealed tokens are never printed')

    const alice = await runCli(['sessions', 'list', '--sub', 'alice', '--config', config()], { env })
    assert.deepEqual(
      alice.stdout
        .trim()
        .split('\n')
        .map((l) => /sid=(\S+)/.exec(l)![1])
        .sort(),
      ['sid-a1', 'sid-a2'],
    )

    const bySid = await runCli(['sessions', 'revoke', '--sid', 'sid-a1', '--config', config()], { env })
    assert.equal(bySid.code, 0)
    assert.match(bySid.stdout, /revoked 1 session/)
    const bySub = await runCli(['sessions', 'revoke', '--sub', 'alice', '--config', config()], { env })
    assert.match(bySub.stdout, /revoked 1 session/)
    const left = await runCli(['sessions', 'list', '--config', config()], { env })
    assert.doesNotMatch(left.stdout, /sub=alice/)
    assert.match(left.stdout, /sub=bob/)
  })

  test('revoke needs exactly one of --sub or --sid', async () => {
    const env = { TEST_SECRET: 's' }
    assert.equal((await runCli(['sessions', 'revoke', '--config', config()], { env })).code, 2)
    assert.equal(
      (await runCli(['sessions', 'revoke', '--sub', 'a', '--sid', 'b', '--config', config()], { env })).code,
      2,
    )
  })
})

describe('gatehouse migrate', () => {
  test('applies the PostgreSQL schema (twice is fine) and says nothing is needed for Redis', async () => {
    const schema = `gh_cli_${process.pid}_${Date.now()}`
    const url = `postgres://postgres@127.0.0.1:5432/test?schema=${schema}`
    const cfg = file('migrate-pg.json', { ...valid, session: { store: url } })
    const env = { TEST_SECRET: 's' }
    const { default: pg } = await import('pg')
    const client = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/test' })
    await client.connect()
    try {
      for (let i = 0; i < 2; i++) {
        const res = await runCli(['migrate', '--config', cfg], { env })
        assert.equal(res.code, 0, res.stderr)
        assert.match(
          res.stdout,
          i === 0 ? /^created schema version 2 / : /^nothing to do: schema version 2 is already in place/,
        )
      }
      const tables = await client.query(
        'SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1',
        [schema],
      )
      assert.deepEqual(
        tables.rows.map((r: { table_name: string }) => r.table_name),
        ['gatehouse_leases', 'gatehouse_session_count', 'gatehouse_sessions'],
      )
      const redis = await runCli(
        ['migrate', '--config', file('migrate-redis.json', { ...valid, session: { store: 'redis://127.0.0.1:6379' } })],
        { env },
      )
      assert.equal(redis.code, 0)
      assert.match(redis.stdout, /^nothing to do: Redis needs no schema/)
    } finally {
      await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
      await client.end()
    }
  })

  test('an unreachable store stops serve at start with a message naming it, without the password', async () => {
    const res = await runCli(
      [
        'serve',
        '--config',
        file('serve-down.json', {
          ...valid,
          listen: { port: 0 },
          session: { store: 'postgres://gh:hunter2@127.0.0.1:9/test' },
        }),
      ],
      { env: { TEST_SECRET: 's' } },
    )
    assert.equal(res.code, 1)
    assert.match(res.stderr, /^gatehouse: session store postgres:\/\/127\.0\.0\.1:9\/test: connection refused/)
    assert.doesNotMatch(res.stderr, /hunter2/)
  })
})
