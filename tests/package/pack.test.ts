// The published package (README "Install"): `npm pack` in a copy of the repository without dist/
// gives a tarball that installs globally and as a project dependency, with exactly the README's
// lines, whose `gatehouse` command and library imports work; the Dockerfile installs it with the
// same line. The installs use npm's cache first (--prefer-offline through the environment, never
// by changing a line); what the cache lacks comes from the npm registry.
import assert from 'node:assert/strict'
import { spawnSync, type SpawnSyncReturns } from 'node:child_process'
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, delimiter, dirname, join, relative, sep } from 'node:path'
import { after, before, describe, test } from 'node:test'

const root = new URL('../../', import.meta.url).pathname
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  name: string
  version: string
  bin: Record<string, string>
  files: string[]
  exports: Record<string, { types: string; default: string }>
  scripts: Record<string, string>
}
const readme = readFileSync(join(root, 'README.md'), 'utf8')
const tarballName = `${pkg.name}-${pkg.version}.tgz`
const INSTALL_TIMEOUT_MS = 300_000

/** The lines of the fenced block right after `<!-- install:NAME -->` in the README. */
function installBlock(name: string): string[] {
  const match = new RegExp(`<!-- install:${name} -->\\s*\`\`\`sh\\n([\\s\\S]*?)\`\`\``).exec(readme)
  assert.ok(match, `README has a fenced sh block marked <!-- install:${name} -->`)
  return match[1]!.split('\n').filter((line) => line.trim() !== '')
}

/** The one command of a block that holds a single line. */
function installLine(name: string): string {
  const lines = installBlock(name)
  assert.equal(lines.length, 1, `the install:${name} block is one command: ${lines.join(' | ')}`)
  return lines[0]!
}

/** The README's fenced sh blocks (list items' too), as lines without their indentation. */
function readmeShellBlocks(): string[][] {
  return [...readme.matchAll(/^([ \t]*)```sh\n([\s\S]*?)^[ \t]*```/gm)].map((m) =>
    m[2]!
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== ''),
  )
}

/**
 * The environment for npm and the installed command: Node 24 (this test's) first on PATH, none of
 * the outer `npm test`'s npm_* variables (its --silent, its prefix), the cache before the network.
 */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env))
    if (!/^npm_/i.test(k) && k !== 'INIT_CWD' && !k.startsWith('GATEHOUSE_')) env[k] = v
  return {
    ...env,
    PATH: [dirname(process.execPath), process.env.PATH].join(delimiter),
    npm_config_prefer_offline: 'true',
    npm_config_audit: 'false',
    npm_config_fund: 'false',
    npm_config_update_notifier: 'false',
    ...extra,
  }
}

function sh(command: string, cwd: string, env: NodeJS.ProcessEnv): SpawnSyncReturns<string> {
  const result = spawnSync('sh', ['-c', command], { cwd, env, encoding: 'utf8', timeout: INSTALL_TIMEOUT_MS })
  assert.equal(result.error, undefined, `${command}: ${result.error?.message}`)
  assert.equal(result.status, 0, `${command} (in ${cwd}) exited ${result.status}:\n${result.stdout}\n${result.stderr}`)
  return result
}

function run(file: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): SpawnSyncReturns<string> {
  return spawnSync(file, args, { cwd, env, encoding: 'utf8', timeout: 60_000 })
}

/** The files of the repository a fresh clone has: no node_modules, dist, build output or local state. */
function isCloneFile(src: string): boolean {
  const rel = relative(root, src)
  if (rel === '') return true
  const parts = rel.split(sep)
  if (parts.some((p) => p === 'node_modules' || p === 'dist' || p === '.git' || p === '.gatehouse-demo')) return false
  if (parts[0] === 'tmp' || (parts[0] === 'bench' && parts[1] === 'results')) return false
  return !/\.(tgz|db|db-wal|db-shm|tsbuildinfo)$/.test(rel)
}

let work: string
let clone: string
let tarball: string
let packed: string[]

describe('the npm package (README "Install")', () => {
  before(
    () => {
      work = mkdtempSync(join(tmpdir(), 'gatehouse-pack-'))
      clone = join(work, 'gatehouse')
      cpSync(root, clone, { recursive: true, filter: isCloneFile })
      // `npm ci` in the clone would download every dependency again: the repository's are the same.
      symlinkSync(join(root, 'node_modules'), join(clone, 'node_modules'), 'dir')
      assert.equal(existsSync(join(clone, 'dist')), false, 'the copy has no dist/: npm pack must build it')

      const packLine = installBlock('pack').join('\n')
      assert.match(packLine, /^git clone .+ gatehouse && cd gatehouse$/m, 'the pack block clones into ./gatehouse')
      const packCommand = /npm pack[^&;|\n]*/.exec(packLine)?.[0].trim()
      assert.ok(packCommand, 'the pack block runs npm pack')
      sh(packCommand, clone, cleanEnv())
      tarball = join(dirname(clone), tarballName)
      assert.ok(existsSync(tarball), `${packCommand} wrote ${tarballName} next to the clone`)
      const listing = spawnSync('tar', ['-tzf', tarball], { encoding: 'utf8' })
      assert.equal(listing.status, 0, listing.stderr)
      packed = listing.stdout
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => l.replace(/^package\//, ''))
    },
    { timeout: INSTALL_TIMEOUT_MS },
  )

  after(() => {
    if (work) rmSync(work, { recursive: true, force: true })
  })

  test('npm pack builds dist/ on prepack and the tarball holds what users need and nothing else', () => {
    const needed = [
      'package.json',
      'README.md',
      'SECURITY.md',
      'gatehouse.example.json',
      'gatehouse.schema.json',
      'docs/configuration.md',
      'docs/deployment.md',
      ...Object.values(pkg.bin).map((p) => p.replace(/^\.\//, '')),
      ...Object.values(pkg.exports)
        .flatMap((e) => [e.types, e.default])
        .map((p) => p.replace(/^\.\//, '')),
    ]
    for (const file of needed) assert.ok(packed.includes(file), `the tarball has ${file}`)
    for (const file of packed) {
      assert.doesNotMatch(
        file,
        /^(src|tests|bench|scripts|examples|deploy|\.ci|node_modules)\//,
        `${file} is not for users`,
      )
      assert.doesNotMatch(file, /\.map$/, `${file}: source maps point at src/, which is not shipped`)
      assert.ok(!file.endsWith('.ts') || file.endsWith('.d.ts'), `${file}: no TypeScript sources`)
    }
    // The README's file name is the one npm pack writes, so its lines work as written.
    for (const name of ['global-cli', 'project-dependency'])
      assert.ok(installLine(name).endsWith(` ./${tarballName}`), `install:${name} installs ./${tarballName}`)
  })

  test(
    'the README global-CLI line installs a `gatehouse` command: --version, keys generate, and the example config it checks',
    { timeout: INSTALL_TIMEOUT_MS },
    () => {
      const prefix = join(work, 'global')
      const env = cleanEnv({ npm_config_prefix: prefix })
      const line = installLine('global-cli')
      assert.match(line, /^npm install -g /)
      // "in the folder that holds the tarball"
      sh(line, dirname(tarball), env)

      const cliEnv = { ...env, PATH: [join(prefix, 'bin'), env.PATH].join(delimiter) }
      const user = join(work, 'spa')
      mkdirSync(user)
      const version = run('gatehouse', ['--version'], user, cliEnv)
      assert.equal(version.status, 0, version.stderr)
      assert.equal(version.stdout.trim(), pkg.version)

      const keys = run('gatehouse', ['keys', 'generate'], user, cliEnv)
      assert.equal(keys.status, 0, keys.stderr)
      const key = keys.stdout.trim().split('\n').at(-1)!
      assert.match(key, /^[A-Za-z0-9_-]{43}$/)
      assert.equal(Buffer.from(key, 'base64url').length, 32, 'a 32-byte key')

      // "Run it in front of your SPA", step 3: the example config from the installed package.
      const copy = readmeShellBlocks().find((lines) => lines.some((l) => l.includes(`$(npm root -g)/${pkg.name}/`)))
      assert.ok(copy, `the README copies the example from $(npm root -g)/${pkg.name}/`)
      for (const l of copy) sh(l, user, cliEnv)
      assert.deepEqual(
        JSON.parse(readFileSync(join(user, 'gatehouse.json'), 'utf8')),
        JSON.parse(readFileSync(join(root, 'gatehouse.example.json'), 'utf8')),
      )
      assert.deepEqual(
        JSON.parse(readFileSync(join(user, 'gatehouse.schema.json'), 'utf8')),
        JSON.parse(readFileSync(join(root, 'gatehouse.schema.json'), 'utf8')),
      )

      // Step 5, after step 2's SPA build (./dist) and with step 4's secrets: the installed command
      // validates the copied example.
      mkdirSync(join(user, 'dist'))
      writeFileSync(join(user, 'dist', 'index.html'), '<!doctype html><title>spa</title>\n')
      const checkLine = readmeShellBlocks()
        .flat()
        .find((l) => l.startsWith('gatehouse check-config'))
      assert.ok(checkLine, 'the README checks the configuration with gatehouse check-config')
      sh(checkLine, user, { ...cliEnv, OIDC_CLIENT_SECRET: 'a-client-secret', GATEHOUSE_KEY: key })
    },
  )

  test(
    'the README project-dependency line installs the library: gatehouse-bff, /client and /testing import',
    { timeout: INSTALL_TIMEOUT_MS },
    () => {
      const app = join(work, 'app')
      mkdirSync(app)
      writeFileSync(
        join(app, 'package.json'),
        `${JSON.stringify({ name: 'my-app', version: '1.0.0', private: true }, null, 2)}\n`,
      )
      // "with the tarball copied there"
      copyFileSync(tarball, join(app, basename(tarball)))
      const line = installLine('project-dependency')
      assert.match(line, /^npm install (?!-g)/)
      const env = cleanEnv()
      sh(line, app, env)

      const manifest = JSON.parse(readFileSync(join(app, 'package.json'), 'utf8')) as {
        dependencies?: Record<string, string>
      }
      assert.ok(manifest.dependencies?.[pkg.name], `${pkg.name} is a dependency of the project`)
      assert.ok(existsSync(join(app, 'node_modules', 'jose')), 'runtime dependencies are installed')
      for (const dev of ['typescript', 'oidc-provider', 'node'])
        assert.equal(existsSync(join(app, 'node_modules', dev)), false, `devDependency ${dev} is not installed`)

      writeFileSync(
        join(app, 'check.mjs'),
        [
          `import { createGatehouse, GatehouseError } from '${pkg.name}'`,
          `import { bffFetch, getUser, login, logout, onSessionEnd } from '${pkg.name}/client'`,
          `import { runStoreContract } from '${pkg.name}/testing'`,
          'console.log(JSON.stringify({ createGatehouse: typeof createGatehouse, GatehouseError: typeof GatehouseError, bffFetch: typeof bffFetch, getUser: typeof getUser, login: typeof login, logout: typeof logout, onSessionEnd: typeof onSessionEnd, runStoreContract: typeof runStoreContract }))',
          '',
        ].join('\n'),
      )
      const result = run(process.execPath, ['check.mjs'], app, env)
      assert.equal(result.status, 0, result.stderr)
      const types = JSON.parse(result.stdout) as Record<string, string>
      for (const [name, type] of Object.entries(types)) assert.equal(type, 'function', `${name} is exported`)
    },
  )
})

/** Dockerfile instructions, continuation lines joined, each with the stage it belongs to. */
function dockerInstructions(): Array<{ stage: number; op: string; args: string }> {
  const text = readFileSync(join(root, 'Dockerfile'), 'utf8')
  const joined = text
    .split('\n')
    .filter((l) => !/^\s*#/.test(l))
    .join('\n')
    .replace(/\\\n/g, ' ')
  let stage = -1
  const out: Array<{ stage: number; op: string; args: string }> = []
  for (const raw of joined.split('\n')) {
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(raw)
    if (!m) continue
    const op = m[1]!.toUpperCase()
    if (op === 'FROM') stage++
    out.push({ stage, op, args: m[2]!.replace(/\s+/g, ' ').trim() })
  }
  return out
}

describe('the Docker image installs the package the README way', () => {
  const instructions = dockerInstructions()
  const last = Math.max(...instructions.map((i) => i.stage))
  const build = instructions.filter((i) => i.stage < last)
  const runtime = instructions.filter((i) => i.stage === last)

  test('the runtime stage installs the tarball with exactly the README global-CLI line, from where the build stage packed it', () => {
    const line = installLine('global-cli')
    const index = runtime.findIndex((i) => i.op === 'RUN' && i.args.replace(/^(--\S+\s+)*/, '') === line)
    assert.ok(index >= 0, `a RUN of the runtime stage is exactly: ${line}`)
    const install = runtime[index]!
    const workdir = runtime
      .slice(0, index)
      .filter((i) => i.op === 'WORKDIR')
      .at(-1)?.args
    const dest = build.map((i) => /npm pack --pack-destination (\S+)/.exec(i.args)?.[1]).find(Boolean)
    assert.ok(dest, 'the build stage runs npm pack --pack-destination DIR')
    assert.ok(
      build.some((i) => i.op === 'RUN' && /\bnpm ci\b/.test(i.args)),
      'the build stage runs npm ci first',
    )
    assert.ok(
      install.args.includes(`--mount=type=bind,from=build,source=${dest},target=${workdir}`),
      `the tarball from ${dest} is mounted at the working directory ${workdir}`,
    )
    const entrypoint = runtime.filter((i) => i.op === 'ENTRYPOINT').at(-1)
    assert.deepEqual(JSON.parse(entrypoint!.args), Object.keys(pkg.bin), 'the image runs the installed command')
  })

  test('the session-store drivers ioredis and pg are installed next to gatehouse', () => {
    const drivers = runtime.find(
      (i) =>
        i.op === 'RUN' &&
        /npm install -g /.test(i.args) &&
        /import\('ioredis'\)/.test(i.args) &&
        /import\('pg'\)/.test(i.args),
    )
    assert.ok(drivers, 'a RUN installs the drivers globally and imports both')
    assert.ok(
      build.some((i) => /'ioredis', 'pg'/.test(i.args) && /package-lock\.json/.test(i.args)),
      'their versions come from package-lock.json',
    )
  })

  test('the README Docker line builds the Dockerfile at the root of the clone the pack block made', () => {
    const line = installLine('docker')
    assert.equal(line, 'docker build -t gatehouse ./gatehouse')
    assert.ok(existsSync(join(root, 'Dockerfile')))
  })

  test('.dockerignore lets in every file npm ci, the build and npm pack need', () => {
    const allowed = readFileSync(join(root, '.dockerignore'), 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('!'))
      .map((l) => l.slice(1).replace(/\/$/, ''))
    const buildInputs = [...pkg.scripts.build!.matchAll(/-p (\S+)/g)].map((m) => m[1]!)
    const scripts = [...pkg.scripts.build!.matchAll(/node (scripts\/\S+)/g)].map((m) => m[1]!)
    const needed = [
      'package.json',
      'package-lock.json',
      'tsconfig.base.json',
      'src',
      ...buildInputs,
      ...scripts,
      ...pkg.files.filter((f) => !f.startsWith('!') && f !== 'dist'),
    ]
    for (const file of needed) assert.ok(allowed.includes(file), `.dockerignore allows ${file}`)
  })
})
