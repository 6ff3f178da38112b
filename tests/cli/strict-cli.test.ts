import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import Ajv2020Module from 'ajv/dist/2020.js'
import { generateKey } from '../../src/session/seal.ts'
import { runCli, startCli } from '../helpers/cli.ts'

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-strict-cli-'))
after(() => rmSync(dir, { recursive: true, force: true }))

const root = new URL('../../', import.meta.url).pathname
const example = join(root, 'gatehouse.example.json')

function file(name: string, content: unknown): string {
  const path = join(dir, name)
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content))
  return path
}

const valid = {
  oidc: { authority: 'https://idp.example.com', clientId: 'spa', clientSecret: 'not-a-real-secret' },
  keys: [generateKey()],
  session: { store: 'memory' },
}
const validPath = file('valid.json', valid)

/** The usage text of one command (or the overall one) went to stderr, with exactly one `gatehouse …:` error line. */
function assertUsageError(
  res: { code: number | null; stdout: string; stderr: string },
  usage: RegExp,
  problem: RegExp,
): void {
  assert.equal(res.code, 2, `exit 2; stderr: ${res.stderr}`)
  assert.equal(res.stdout, '', 'nothing on stdout')
  assert.match(res.stderr, usage)
  const errorLines = res.stderr.split('\n').filter((line) => /^gatehouse[\w -]*: /.test(line))
  assert.equal(errorLines.length, 1, `one error line: ${res.stderr}`)
  assert.match(errorLines[0]!, problem)
}

describe('strict argument parsing', () => {
  const cases: Array<[string, string[], RegExp, RegExp]> = [
    [
      'a misspelt flag on serve (--conifg)',
      ['serve', '--conifg', validPath],
      /Usage: gatehouse serve /,
      /unknown option --conifg \(did you mean --config\?\)/,
    ],
    [
      'an unknown flag on check-config',
      ['check-config', '--verbose', validPath],
      /Usage: gatehouse check-config /,
      /unknown option --verbose/,
    ],
    [
      'a single-dash long flag (-port)',
      ['serve', '-port', '9000', validPath],
      /Usage: gatehouse serve /,
      /unknown option -port \(did you mean --port\?\)/,
    ],
    [
      '--sub without a value on sessions list',
      ['sessions', 'list', '--sub'],
      /Usage: gatehouse sessions list /,
      /--sub needs a value/,
    ],
    [
      '--sub followed by another flag instead of a value',
      ['sessions', 'list', '--sub', '--config', validPath],
      /Usage: gatehouse sessions list /,
      /--sub needs a value/,
    ],
    [
      'an empty --sid on sessions revoke',
      ['sessions', 'revoke', '--sid=', '--config', validPath],
      /Usage: gatehouse sessions revoke /,
      /--sid needs a non-empty value/,
    ],
    [
      'a flag given twice',
      ['serve', '--port', '9000', '--port', '9001', validPath],
      /Usage: gatehouse serve /,
      /--port is given more than once/,
    ],
    [
      'a stray argument to sessions list',
      ['sessions', 'list', 'alice', '--config', validPath],
      /Usage: gatehouse sessions list /,
      /unexpected argument "alice"/,
    ],
    [
      'a config file given as an argument to migrate',
      ['migrate', 'prod.json'],
      /Usage: gatehouse migrate /,
      /unexpected argument "prod\.json" \(give the configuration file as --config prod\.json\)/,
    ],
    [
      'two config file arguments to check-config',
      ['check-config', validPath, 'other.json'],
      /Usage: gatehouse check-config /,
      /unexpected argument "other\.json"/,
    ],
    [
      'a config file both as argument and --config, different',
      ['check-config', validPath, '--config', join(dir, 'other.json')],
      /Usage: gatehouse check-config /,
      /two configuration files given: --config .*other\.json and .*valid\.json/,
    ],
    [
      'an argument after keys generate',
      ['keys', 'generate', 'now'],
      /Usage: gatehouse keys generate/,
      /unexpected argument "now"/,
    ],
    ['a value for --help', ['serve', '--help=yes'], /Usage: gatehouse serve /, /--help takes no value/],
    [
      'a --port that is not a number',
      ['serve', '--port', 'http', validPath],
      /Usage: gatehouse serve /,
      /--port must be a whole number from 0 to 65535 \(got "http"\)/,
    ],
    [
      'a --port above 65535',
      ['serve', '--port', '70000', validPath],
      /Usage: gatehouse serve /,
      /--port must be a whole number from 0 to 65535 \(got "70000"\)/,
    ],
    [
      'a demo --idp-port that is no port',
      ['demo', '--idp-port', 'eight'],
      /Usage: gatehouse demo /,
      /--idp-port must be a whole number from 0 to 65535 \(got "eight"\)/,
    ],
    [
      'a negative --port',
      ['serve', '--port=-1', validPath],
      /Usage: gatehouse serve /,
      /--port must be a whole number from 0 to 65535 \(got "-1"\)/,
    ],
    [
      'a --limit that is not a positive number',
      ['sessions', 'list', '--limit', '0', '--config', validPath],
      /Usage: gatehouse sessions list /,
      /--limit must be a positive whole number \(got "0"\)/,
    ],
    [
      'sessions revoke with neither --sub nor --sid',
      ['sessions', 'revoke', '--config', validPath],
      /Usage: gatehouse sessions revoke /,
      /needs exactly one of --sub S or --sid S/,
    ],
    [
      'a flag before the command',
      ['--config', validPath, 'serve'],
      /Usage: gatehouse <command>/,
      /unknown option --config \(options come after the command/,
    ],
  ]
  for (const [name, args, usage, problem] of cases) {
    test(`${name} exits 2 with the command's usage and one line naming the problem`, async () => {
      assertUsageError(await runCli(args), usage, problem)
    })
  }

  test('a bad --port is reported even when the configuration file is also missing', async () => {
    assertUsageError(
      await runCli(['serve', '--port', 'x', join(dir, 'missing.json')]),
      /Usage: gatehouse serve /,
      /--port must be/,
    )
  })
})

describe('the configuration file argument', () => {
  test('check-config takes the file as its first argument and checks that file', async () => {
    const ok = await runCli(['check-config', validPath])
    assert.equal(ok.code, 0, ok.stderr)
    assert.match(ok.stdout, /valid\.json: configuration is valid/)
    const bad = await runCli(['check-config', file('positional-bad.json', { ...valid, sesion: {} })])
    assert.equal(bad.code, 1)
    assert.match(bad.stderr, /positional-bad\.json is invalid/)
    assert.match(bad.stderr, /sesion: unknown key/)
  })

  test('check-config with a file argument that does not exist exits 1 naming the file, not the default gatehouse.json', async () => {
    const res = await runCli(['check-config', 'prod.json'], { cwd: dir })
    assert.equal(res.code, 1)
    assert.match(res.stderr, /prod\.json: file not found/)
    assert.doesNotMatch(res.stderr + res.stdout, /gatehouse\.json/)
  })

  test('-c FILE and --config=FILE name the configuration file too', async () => {
    assert.equal((await runCli(['check-config', '-c', validPath])).code, 0)
    assert.equal((await runCli(['check-config', `--config=${validPath}`])).code, 0)
  })

  test('the same file given as argument and as --config is accepted', async () => {
    const res = await runCli(['check-config', 'valid.json', '--config', './valid.json'], { cwd: dir })
    assert.equal(res.code, 0, res.stderr)
  })

  test('$GATEHOUSE_CONFIG names the file when no argument or flag does, and an argument wins over it', async () => {
    const fromEnv = await runCli(['check-config'], { env: { GATEHOUSE_CONFIG: validPath } })
    assert.equal(fromEnv.code, 0, fromEnv.stderr)
    assert.match(fromEnv.stdout, /valid\.json: configuration is valid/)
    const argWins = await runCli(['check-config', join(dir, 'absent.json')], { env: { GATEHOUSE_CONFIG: validPath } })
    assert.equal(argWins.code, 1)
    assert.match(argWins.stderr, /absent\.json: file not found/)
  })

  test('serve takes the file as its first argument; a missing one exits 1 naming it', async () => {
    const res = await runCli(['serve', join(dir, 'nowhere.json')])
    assert.equal(res.code, 1)
    assert.match(res.stderr, /nowhere\.json: file not found/)
  })
})

describe('serve --port and --host', () => {
  test('--port and --host override listen from the configuration file', async () => {
    const port = await freePort()
    const config = file('serve-override.json', {
      ...valid,
      listen: { host: '0.0.0.0', port: 1 },
      log: { level: 'info' },
    })
    const running = await startCli(
      ['serve', config, '--port', String(port), '--host', '127.0.0.1'],
      /"url":"(http:\/\/[^"]+)"/,
    )
    try {
      assert.equal(running.match[1], `http://127.0.0.1:${port}`)
      const health = await fetch(`http://127.0.0.1:${port}/healthz`)
      assert.equal(health.status, 200)
    } finally {
      running.child.kill('SIGTERM')
    }
    assert.equal(await running.exited, 0)
  })
})

describe('help, version and commands', () => {
  test("<command> --help prints that command's usage on stdout and exits 0", async () => {
    for (const [args, usage] of [
      [['serve', '--help'], /^Usage: gatehouse serve \[FILE \| --config FILE\] \[--port N\] \[--host H\]/],
      [['check-config', '-h'], /^Usage: gatehouse check-config \[FILE \| --config FILE\]/],
      [['sessions', 'revoke', '--help'], /^Usage: gatehouse sessions revoke \(--sub S \| --sid S\)/],
      [['keys', 'generate', '--help'], /^Usage: gatehouse keys generate/],
      [['help', 'sessions', 'list'], /^Usage: gatehouse sessions list/],
    ] as const) {
      const res = await runCli([...args])
      assert.equal(res.code, 0, `${args.join(' ')}: ${res.stderr}`)
      assert.match(res.stdout, usage)
      assert.equal(res.stderr, '')
    }
  })

  test('--help alone prints the overall usage on stdout and exits 0', async () => {
    const res = await runCli(['--help'])
    assert.equal(res.code, 0)
    assert.match(res.stdout, /^Usage: gatehouse <command>/)
    for (const command of [
      'serve',
      'check-config',
      'keys generate',
      'migrate',
      'sessions list',
      'sessions revoke',
      'schema',
      'demo',
    ])
      assert.match(res.stdout, new RegExp(`\\n  ${command}\\b`))
  })

  test('--version prints the version from package.json', async () => {
    const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }
    const res = await runCli(['--version'])
    assert.equal(res.code, 0)
    assert.equal(res.stdout, `${version}\n`)
  })

  test('gatehouse with no command prints the overall usage on stderr and exits 2', async () => {
    const res = await runCli([])
    assert.equal(res.code, 2)
    assert.equal(res.stdout, '')
    assert.match(res.stderr, /^Usage: gatehouse <command>/)
  })

  test('an unknown command exits 2 naming it, with the overall usage', async () => {
    assertUsageError(await runCli(['check-confg']), /Usage: gatehouse <command>/, /unknown command "check-confg"/)
  })

  test('keys alone exits 2 and lists its subcommands', async () => {
    const res = await runCli(['keys'])
    assert.equal(res.code, 2)
    assert.match(res.stderr, /gatehouse keys: missing subcommand \(one of: generate\)/)
    assert.match(res.stderr, /Usage: gatehouse keys <subcommand>/)
    assert.match(res.stderr, /keys generate/)
  })

  test('sessions with an unknown subcommand exits 2 and lists list and revoke', async () => {
    const res = await runCli(['sessions', 'purge'])
    assert.equal(res.code, 2)
    assert.match(res.stderr, /gatehouse sessions: unknown subcommand "purge" \(one of: list, revoke\)/)
  })

  test('keys generate still prints the key as the last line of stdout', async () => {
    const res = await runCli(['keys', 'generate'])
    assert.equal(res.code, 0)
    assert.match(res.stdout.trim().split('\n').at(-1)!, /^[A-Za-z0-9_-]{43}$/)
  })
})

describe('gatehouse schema', () => {
  const Ajv2020 = Ajv2020Module.default ?? Ajv2020Module
  async function compiled() {
    const res = await runCli(['schema'])
    assert.equal(res.code, 0, res.stderr)
    const schema = JSON.parse(res.stdout) as Record<string, unknown>
    return { schema, text: res.stdout, validate: new Ajv2020({ allErrors: true, strict: true }).compile(schema) }
  }

  test('prints a draft 2020-12 JSON Schema with an $id and a title that forbids unknown keys', async () => {
    const { schema } = await compiled()
    assert.equal(schema.$schema, 'https://json-schema.org/draft/2020-12/schema')
    assert.match(String(schema.$id), /gatehouse\.schema\.json$/)
    assert.equal(schema.title, 'gatehouse configuration')
    assert.equal(schema.additionalProperties, false)
    assert.deepEqual(schema.required, ['oidc', 'keys'])
    const properties = schema.properties as Record<string, { additionalProperties?: unknown }>
    assert.equal(properties.oidc!.additionalProperties, false)
  })

  test('gatehouse.example.json, the test configurations and one naming the schema itself validate against it', async () => {
    const { validate } = await compiled()
    const configs: unknown[] = [
      JSON.parse(readFileSync(example, 'utf8')),
      valid,
      { ...valid, $schema: './node_modules/gatehouse/gatehouse.schema.json' },
      {
        ...valid,
        listen: { port: 0 },
        oidc: { ...valid.oidc, dpop: { signingAlg: 'ES384' } },
        remoteApis: [
          { path: '/api', target: 'http://127.0.0.1:5000', methods: ['GET'], maxBodySize: '1mb', timeout: '5s' },
        ],
      },
      {
        ...valid,
        session: { mode: 'cookie', lifetime: '1h' },
        frontends: [{ name: 'app', path: '/', indexHtmlUrl: 'https://cdn.example.com/index.html' }],
        admin: { token: '${GATEHOUSE_ADMIN_TOKEN}' },
      },
    ]
    for (const [i, config] of configs.entries())
      assert.ok(validate(config), `config ${i}: ${JSON.stringify(validate.errors)}`)
  })

  test('a configuration naming the schema with $schema still passes check-config', async () => {
    const res = await runCli([
      'check-config',
      file('with-schema.json', { $schema: './gatehouse.schema.json', ...valid }),
    ])
    assert.equal(res.code, 0, res.stderr)
  })

  test('an unknown key, a wrong type or a missing required key fails the schema', async () => {
    const { validate } = await compiled()
    const cases: Array<[unknown, RegExp]> = [
      [{ ...valid, sesion: {} }, /additionalProperties/],
      [{ ...valid, oidc: { ...valid.oidc, clientSecrt: 'x' } }, /additionalProperties/],
      [{ ...valid, trustProxy: 'yes' }, /"type"/],
      [{ ...valid, listen: { port: 70000 } }, /maximum/],
      [{ ...valid, session: { sameSite: 'sometimes' } }, /enum/],
      [{ keys: valid.keys }, /required/],
    ]
    for (const [config, keyword] of cases) {
      assert.equal(validate(config), false, JSON.stringify(config))
      assert.match(JSON.stringify(validate.errors), keyword)
    }
  })

  test('the build writes the same schema to gatehouse.schema.json at the package root', async () => {
    const { text } = await compiled()
    assert.equal(readFileSync(join(root, 'gatehouse.schema.json'), 'utf8'), text)
  })
})

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}
