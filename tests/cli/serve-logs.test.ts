// What `gatehouse serve` writes for people and for machines: JSON lines on a pipe unless
// log.format says otherwise, readable lines in a terminal, one start line that says what is
// running, and draining/stopped lines on shutdown. The CLI runs as a child process, as in production.
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { Agent, createServer, get, type IncomingMessage, type Server } from 'node:http'
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { startIdp, type RunningIdp } from '../../src/demo/idp.ts'
import { generateKey } from '../../src/session/seal.ts'
import { CLI, runCli } from '../helpers/cli.ts'

const VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version
const ADMIN_TOKEN = 'serve-logs-admin-token-0123'
const STORE_PASSWORD = 'start-line-secret-pw'
const POSTGRES_URL = `postgres://postgres:${STORE_PASSWORD}@127.0.0.1:5432/test`
const ESC = '\x1b'
const PRETTY_LINE = /^\d\d:\d\d:\d\d\.\d{3} (TRACE|DEBUG|INFO |WARN |ERROR|FATAL) /
const HAS_SCRIPT = spawnSync('script', ['--version']).status === 0

interface Running {
  child: ChildProcess
  /** stdout and stderr as received so far (stdout only for `stdout()`). */
  output: () => string
  stdout: () => string
  waitFor: (pattern: RegExp) => Promise<RegExpMatchArray>
  exited: Promise<number | null>
}

/** Starts `gatehouse serve --config FILE` with stdout a pipe, or a terminal (`tty`, through util-linux `script`). */
function serve(
  configFile: string,
  options: { env?: NodeJS.ProcessEnv; tty?: boolean; args?: readonly string[] } = {},
): Running {
  const env = { ...process.env, ...options.env }
  const child = options.tty
    ? spawn('script', ['-qfec', `exec '${process.execPath}' '${CLI}' serve --config '${configFile}'`, '/dev/null'], {
        env,
        stdio: ['pipe', 'pipe', 'pipe'],
      })
    : spawn(process.execPath, [CLI, 'serve', '--config', configFile, ...(options.args ?? [])], {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      })
  let out = ''
  let all = ''
  const waiters: Array<() => void> = []
  const changed = () => waiters.splice(0).forEach((wake) => wake())
  child.stdout!.on('data', (chunk: Buffer) => {
    out += chunk
    all += chunk
    changed()
  })
  child.stderr!.on('data', (chunk: Buffer) => {
    all += chunk
    changed()
  })
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
  let done = false
  void exited.then(() => {
    done = true
    changed()
  })
  const waitFor = async (pattern: RegExp): Promise<RegExpMatchArray> => {
    for (;;) {
      const match = out.match(pattern)
      if (match) return match
      if (done) throw new Error(`gatehouse exited before ${pattern}:\n${all}`)
      await new Promise<void>((wake) => waiters.push(wake))
    }
  }
  return { child, output: () => all, stdout: () => out, waitFor, exited }
}

function jsonLines(text: string): Array<Record<string, unknown>> {
  return text
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => {
      try {
        return JSON.parse(line) as Record<string, unknown>
      } catch {
        throw new Error(`not a JSON line: ${line}`)
      }
    })
}

/** GET through `agent`, body read: with a keep-alive agent the connection then stays open, idle. */
function getThrough(url: string, agent: Agent, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) =>
    get(url, { agent, headers }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode!))
    }).on('error', reject),
  )
}

/**
 * SIGTERM once gatehouse has answered a request on a keep-alive connection (an answer means the
 * start-up has finished and the signal is handled), and waits for exit 0.
 */
async function stopWithOneConnection(running: Running, url: string): Promise<void> {
  const agent = new Agent({ keepAlive: true })
  try {
    assert.equal(await getThrough(`${url}/healthz`, agent), 200)
    running.child.kill('SIGTERM')
    assert.equal(await running.exited, 0, running.output())
  } finally {
    agent.destroy()
  }
}

describe('gatehouse serve logs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-serve-logs-'))
  const key = generateKey()
  const stopAtEnd: Running[] = []
  let idp: RunningIdp

  const writeConfig = (name: string, config: Record<string, unknown>): string => {
    const file = join(dir, `${name}.json`)
    writeFileSync(
      file,
      JSON.stringify({ listen: { host: '127.0.0.1', port: 0 }, keys: [key], session: { store: 'memory' }, ...config }),
    )
    return file
  }
  /** An IdP that refuses connections: discovery fails at once. */
  const unreachableIdp = { authority: 'http://127.0.0.1:9', clientId: 'spa', clientSecret: 'serve-logs-client-secret' }
  const started = (running: Running) => {
    stopAtEnd.push(running)
    return running
  }

  before(async () => {
    idp = await startIdp({
      clients: [
        {
          client_id: 'spa',
          client_secret: 'serve-logs-client-secret',
          redirect_uris: ['http://127.0.0.1/signin-oidc'],
        },
      ],
    })
  })
  after(async () => {
    for (const running of stopAtEnd) running.child.kill('SIGKILL')
    await idp.close()
    rmSync(dir, { recursive: true, force: true })
  })

  test('JSON by default when stdout is a pipe; the start line says what runs, without the store password; SIGTERM logs draining and stopped', async () => {
    const spa = join(dir, 'spa')
    mkdirSync(spa, { recursive: true })
    writeFileSync(join(spa, 'index.html'), '<!doctype html><title>spa</title>')
    const configFile = writeConfig('json', {
      publicOrigin: 'https://app.example.com',
      oidc: { authority: idp.issuer, clientId: 'spa', clientSecret: 'serve-logs-client-secret' },
      session: { store: POSTGRES_URL },
      remoteApis: [
        { path: '/api', target: 'http://127.0.0.1:5000', token: 'user' },
        { path: '/status', target: 'http://127.0.0.1:5001', token: 'none' },
      ],
      frontends: [{ name: 'app', path: '/', static: spa }],
      admin: { listen: { host: '127.0.0.1', port: 0 }, token: ADMIN_TOKEN },
    })
    // One process, as with the memory store: a shared store would otherwise start one worker per CPU,
    // each with its own draining and stopped lines (tests/cli/workers.test.ts).
    const running = started(serve(configFile, { args: ['--workers', '1'] }))
    await running.waitFor(/"event":"admin_listening"/)
    const start = jsonLines(running.stdout()).find((entry) => entry.event === 'listening')
    assert.ok(start, running.output())
    const url = start.url as string
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/)
    assert.match(start.admin as string, /^http:\/\/127\.0\.0\.1:\d+$/)
    assert.notEqual(start.admin, url)
    assert.deepEqual(
      {
        level: start.level,
        msg: start.msg,
        version: start.version,
        publicOrigin: start.publicOrigin,
        store: start.store,
        issuer: start.issuer,
        discovery: start.discovery,
        remoteApis: start.remoteApis,
        frontends: start.frontends,
      },
      {
        level: 30,
        msg: `gatehouse ${VERSION} started`,
        version: VERSION,
        publicOrigin: 'https://app.example.com',
        store: 'postgres',
        issuer: idp.issuer,
        discovery: 'ok',
        remoteApis: 2,
        frontends: 1,
      },
    )

    // One idle keep-alive connection to each listener is open when the signal comes.
    const agent = new Agent({ keepAlive: true })
    try {
      assert.equal(await getThrough(`${url}/healthz`, agent), 200)
      assert.equal(
        await getThrough(`${start.admin as string}/metrics`, agent, { authorization: `Bearer ${ADMIN_TOKEN}` }),
        200,
        'the admin URL in the start line answers',
      )
      running.child.kill('SIGTERM')
      assert.equal(await running.exited, 0, running.output())
    } finally {
      agent.destroy()
    }
    const entries = jsonLines(running.stdout())
    // Access lines are batched: one may land between draining and stopped.
    const [draining, stopped] = entries.filter((e) => e.event !== undefined).slice(-2)
    assert.deepEqual(
      {
        event: draining!.event,
        level: draining!.level,
        signal: draining!.signal,
        connections: draining!.connections,
        graceMs: draining!.graceMs,
      },
      { event: 'draining', level: 30, signal: 'SIGTERM', connections: 2, graceMs: 10_000 },
    )
    assert.deepEqual(
      { event: stopped!.event, level: stopped!.level, connectionsCut: stopped!.connectionsCut, msg: stopped!.msg },
      { event: 'stopped', level: 30, connectionsCut: 0, msg: 'gatehouse stopped' },
    )
    assert.equal(typeof stopped!.ms, 'number')
    // Access lines are written in batches: the one of the last request is flushed by the shutdown, before "stopped".
    const access = entries.findIndex((e) => e.msg === 'request' && e.path === '/healthz' && e.status === 200)
    assert.ok(access >= 0 && access < entries.length - 1, running.output())
    assert.ok(!running.output().includes(STORE_PASSWORD), "the store URL's password is never printed")
  })

  test('log.format "pretty" prints one readable line per event, without colours into a pipe, through start and shutdown', async () => {
    const running = started(serve(writeConfig('pretty', { oidc: unreachableIdp, log: { format: 'pretty' } })))
    const [line, url] = await running.waitFor(
      /^.* INFO  gatehouse \S+ started event=listening url=(http:\/\/127\.0\.0\.1:\d+) .*$/m,
    )
    assert.ok(
      line.endsWith(
        `started event=listening url=${url} version=${VERSION} publicOrigin=null store=memory issuer=http://127.0.0.1:9 discovery=failed remoteApis=0 frontends=0`,
      ),
      line,
    )
    await stopWithOneConnection(running, url!)
    const lines = running.stdout().split('\n').filter(Boolean)
    for (const each of lines) assert.match(each, PRETTY_LINE)
    assert.ok(!running.stdout().includes('{"level"'), 'no JSON line')
    assert.ok(!running.stdout().includes(ESC), 'no colours into a pipe')
    assert.ok(
      lines.some((each) =>
        / WARN  identity provider discovery failed: .* event=discovery_failed cause=unreachable /.test(each),
      ),
      'the discovery failure is explained before the start line',
    )
    assert.match(
      lines.at(-2)!,
      / INFO  draining: 1 open connection\(s\), at most 10 s event=draining signal=SIGTERM connections=1 graceMs=10000$/,
    )
    assert.match(lines.at(-1)!, / INFO  gatehouse stopped event=stopped ms=\d+ connectionsCut=0$/)
  })

  test(
    'log.format "auto" (the default) is pretty and coloured in a terminal; NO_COLOR drops the colours; GATEHOUSE_LOG__FORMAT=json keeps JSON',
    { skip: !HAS_SCRIPT && 'util-linux script is not installed' },
    async () => {
      const configFile = writeConfig('auto', { oidc: unreachableIdp })
      const coloured = started(serve(configFile, { tty: true, env: { NO_COLOR: '', TERM: 'xterm' } }))
      const [line] = await coloured.waitFor(/^.*started.*event=.*listening.*$/m)
      assert.ok(line.includes(`${ESC}[32mINFO ${ESC}[0m gatehouse ${VERSION} started`), JSON.stringify(line))
      assert.ok(line.includes(`${ESC}[2mstore=${ESC}[0mmemory`), JSON.stringify(line))
      coloured.child.kill('SIGTERM')
      await coloured.exited

      const plain = started(serve(configFile, { tty: true, env: { NO_COLOR: '1', TERM: 'xterm' } }))
      const [plainLine] = await plain.waitFor(/^.*started.*$/m)
      assert.match(plainLine, /^\d\d:\d\d:\d\d\.\d{3} INFO  gatehouse \S+ started event=listening /)
      assert.ok(!plain.stdout().includes(ESC), 'no escape sequences with NO_COLOR')
      plain.child.kill('SIGTERM')
      await plain.exited

      const json = started(serve(configFile, { tty: true, env: { GATEHOUSE_LOG__FORMAT: 'json' } }))
      await json.waitFor(/"event":"listening"/)
      const lines = json
        .stdout()
        .split(/\r?\n/)
        .filter((each) => each.trim())
      assert.ok(lines.length > 0)
      for (const each of lines) assert.equal(typeof JSON.parse(each), 'object', each)
      json.child.kill('SIGTERM')
      await json.exited
    },
  )

  test('an IdP whose discovery has not ended within 2 s is "pending" in the start line, which does not wait for it', async () => {
    const sockets = new Set<Socket>()
    const silent: TcpServer = createTcpServer((socket) => sockets.add(socket))
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    try {
      const authority = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`
      const running = started(serve(writeConfig('pending', { oidc: { ...unreachableIdp, authority } })))
      await running.waitFor(/"event":"listening"/)
      const start = jsonLines(running.stdout()).find((entry) => entry.event === 'listening')!
      assert.equal(start.discovery, 'pending')
      assert.equal(start.issuer, authority)
      assert.ok(sockets.size > 0, 'discovery had asked the IdP')
      await stopWithOneConnection(running, start.url as string)
    } finally {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => silent.close(() => resolve()))
    }
  })

  test('a connection still open when the 10 s grace period ends is cut, and the stopped line counts it', async () => {
    // An API that streams forever: the proxied answer through gatehouse never finishes by itself.
    const endless: Server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      const timer = setInterval(() => res.write('data: tick\n\n'), 200)
      res.once('close', () => clearInterval(timer))
    })
    await new Promise<void>((resolve) => endless.listen(0, '127.0.0.1', resolve))
    try {
      const target = `http://127.0.0.1:${(endless.address() as AddressInfo).port}`
      const running = started(
        serve(
          writeConfig('cut', {
            oidc: unreachableIdp,
            remoteApis: [{ path: '/stream', target, token: 'none', antiForgery: false }],
          }),
        ),
      )
      const [, url] = await running.waitFor(/"event":"listening","url":"(http:\/\/127\.0\.0\.1:\d+)"/)
      const response = await new Promise<IncomingMessage>((resolve, reject) =>
        get(`${url}/stream/events`, { agent: false }, resolve).on('error', reject),
      )
      assert.equal(response.statusCode, 200)
      response.on('error', () => {})
      response.resume()
      running.child.kill('SIGTERM')
      assert.equal(await running.exited, 0, running.output())
      const entries = jsonLines(running.stdout())
      const draining = entries.find((entry) => entry.event === 'draining')
      const stopped = entries.at(-1)
      assert.equal(draining?.connections, 1, running.stdout())
      assert.deepEqual(
        { event: stopped!.event, level: stopped!.level, connectionsCut: stopped!.connectionsCut, msg: stopped!.msg },
        {
          event: 'stopped',
          level: 40,
          connectionsCut: 1,
          msg: 'gatehouse stopped; 1 connection(s) still open after 10 s were cut',
        },
      )
    } finally {
      endless.closeAllConnections()
      await new Promise<void>((resolve) => endless.close(() => resolve()))
    }
  })

  test('a bad log.format is refused with one line naming the key, from the file or the environment', async () => {
    const configFile = writeConfig('bad', { oidc: unreachableIdp, log: { format: 'fancy' } })
    for (const command of ['check-config', 'serve']) {
      const res = await runCli([command, '--config', configFile])
      assert.equal(res.code, 1, `${command}: ${res.stderr}`)
      assert.match(res.stderr, /^ {2}log\.format: must be one of "json", "pretty", "auto"$/m)
      assert.doesNotMatch(res.stderr, /\n\s+at /, 'no stack trace')
      assert.equal(res.stdout, '')
    }
    const fromEnv = await runCli(['serve', '--config', writeConfig('good', { oidc: unreachableIdp })], {
      env: { GATEHOUSE_LOG__FORMAT: 'colourful' },
    })
    assert.equal(fromEnv.code, 1, fromEnv.stderr)
    assert.match(
      fromEnv.stderr,
      /^ {2}log\.format \(GATEHOUSE_LOG__FORMAT\): must be one of "json", "pretty", "auto"$/m,
    )
  })
})
