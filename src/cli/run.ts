// The CLI itself, loaded by src/cli/main.ts once the Node.js version is known to be able to run it.
import { readFileSync } from 'node:fs'
import { GatehouseError } from '../errors.ts'
import {
  commandUsage,
  configFileOf,
  findCommand,
  overallUsage,
  parseCommand,
  portOption,
  subcommandsOf,
  UsageError,
  workersOption,
  type CommandSpec,
} from './args.ts'
import { checkConfig, loadOrReport } from './check-config.ts'
import { keysGenerate } from './keys.ts'
import { printSchema } from './schema.ts'
import { migrate, sessionsList, sessionsRevoke } from './sessions.ts'
import { exitOnSignal, startServer } from './serve.ts'
import { isWorker, runWorker, startWorkers, workerCount } from './workers.ts'

const GROUPS = ['keys', 'sessions']

async function main(argv: readonly string[]): Promise<number | 'running'> {
  const [first, second] = argv
  if (first === undefined) {
    process.stderr.write(overallUsage())
    return 2
  }
  if (first === '--version') {
    if (argv.length > 1) throw new UsageError(`--version takes no arguments (got "${argv[1]}")`)
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
    process.stdout.write(`${pkg.version}\n`)
    return 0
  }
  if (first === '--help' || first === '-h' || first === 'help') {
    // `gatehouse help serve`, `gatehouse help sessions list`
    const topic = argv.slice(1).join(' ')
    if (!topic) {
      process.stdout.write(overallUsage())
      return 0
    }
    const spec = findCommand(topic)
    if (spec) {
      process.stdout.write(commandUsage(spec))
      return 0
    }
    if (GROUPS.includes(topic)) {
      process.stdout.write(groupUsage(topic))
      return 0
    }
    throw new UsageError(`unknown command "${topic}"`)
  }
  if (first.startsWith('-'))
    throw new UsageError(`unknown option ${first} (options come after the command: gatehouse <command> [options])`)

  let spec: CommandSpec | undefined
  let rest: readonly string[]
  if (GROUPS.includes(first)) {
    if (second === undefined || second === '--help' || second === '-h') {
      // `gatehouse keys` alone is a mistake; `gatehouse keys --help` asked for this.
      const help = second !== undefined
      ;(help ? process.stdout : process.stderr).write(
        `${help ? '' : `gatehouse ${first}: missing subcommand (one of: ${subcommandsOf(first).join(', ')})\n\n`}${groupUsage(first)}`,
      )
      return help ? 0 : 2
    }
    spec = findCommand(`${first} ${second}`)
    if (!spec) {
      process.stderr.write(
        `gatehouse ${first}: unknown subcommand "${second}" (one of: ${subcommandsOf(first).join(', ')})\n\n${groupUsage(first)}`,
      )
      return 2
    }
    rest = argv.slice(2)
  } else {
    spec = findCommand(first)
    rest = argv.slice(1)
  }
  if (!spec) {
    process.stderr.write(`gatehouse: unknown command "${first}"\n\n${overallUsage()}`)
    return 2
  }

  const args = parseCommand(spec, rest)
  if (args.values.help) {
    process.stdout.write(commandUsage(spec))
    return 0
  }
  const value = (name: string) => args.values[name] as string | undefined

  switch (spec.name) {
    case 'check-config':
      return checkConfig(configFileOf(spec, args), {
        explain: args.values.explain === true,
        strict: args.values.strict === true,
        connect: args.values.connect === true,
      })
    case 'keys generate':
      return keysGenerate()
    case 'schema':
      return printSchema()
    case 'migrate': {
      const config = await loadOrReport(configFileOf(spec, args))
      return config ? migrate(config) : 1
    }
    case 'sessions list': {
      const limitText = value('limit') ?? '1000'
      const limit = /^\d+$/.test(limitText) ? Number(limitText) : NaN
      if (!Number.isSafeInteger(limit) || limit < 1)
        throw new UsageError(`--limit must be a positive whole number (got "${limitText}")`, spec)
      const config = await loadOrReport(configFileOf(spec, args))
      if (!config) return 1
      const sub = value('sub')
      return sessionsList(config, { ...(sub === undefined ? {} : { sub }), limit })
    }
    case 'sessions revoke': {
      const sub = value('sub')
      const sid = value('sid')
      if ((sub === undefined) === (sid === undefined))
        throw new UsageError('needs exactly one of --sub S or --sid S', spec)
      const config = await loadOrReport(configFileOf(spec, args))
      if (!config) return 1
      return sessionsRevoke(config, sub !== undefined ? { sub } : { sid: sid! })
    }
    case 'serve': {
      // Flag mistakes first: they are exit 2 whatever the configuration says.
      const path = configFileOf(spec, args)
      const port = portOption(spec, 'port', value('port'))
      const host = value('host')
      const workers = workersOption(spec, value('workers'))
      // A worker of `--workers`: the primary has read the configuration and sends it.
      if (isWorker()) return runWorker(failureLine, (running) => running.gatehouse.telemetry)
      const config = await loadOrReport(path)
      if (!config) return 1
      const listen = { host: host ?? config.listen.host, port: port ?? config.listen.port }
      const served = port === undefined && host === undefined ? config : { ...config, listen }
      const plan = workerCount(served, workers)
      if ('refused' in plan) {
        process.stderr.write(`gatehouse serve: ${plan.refused}\n`)
        return 2
      }
      // One worker is no cluster at all: the single process of gatehouse serve.
      if (plan.count > 1) return startWorkers(served, plan.count)
      const stop = exitOnSignal()
      const running = await startServer(served)
      stop.closeWith(running.close)
      return 'running'
    }
    case 'demo': {
      const port = portOption(spec, 'port', value('port'))
      const idpPort = portOption(spec, 'idp-port', value('idp-port'))
      const apiPort = portOption(spec, 'api-port', value('api-port'))
      const dataDir = value('data-dir')
      const { runDemo } = await import('../demo/demo.ts')
      const stop = exitOnSignal()
      const demo = await runDemo({
        port,
        ...(idpPort === undefined ? {} : { idpPort }),
        ...(apiPort === undefined ? {} : { apiPort }),
        ...(dataDir ? { dataDir } : {}),
      })
      stop.closeWith(demo.close)
      return 'running'
    }
  }
  throw new Error(`command ${spec.name} has no handler`)
}

function groupUsage(group: string): string {
  const specs = subcommandsOf(group).map((sub) => findCommand(`${group} ${sub}`)!)
  return `Usage: gatehouse ${group} <subcommand> [options]\n\nSubcommands:\n${specs.map((s) => `  ${s.synopsis}\n      ${s.summary}`).join('\n')}\n\nSee gatehouse ${group} <subcommand> --help.\n`
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 'running') finish(code)
  },
  (err: unknown) => {
    if (err instanceof UsageError) {
      const where = err.spec ? `gatehouse ${err.spec.name}` : 'gatehouse'
      process.stderr.write(`${where}: ${err.message}\n\n${err.spec ? commandUsage(err.spec) : overallUsage()}`)
      return finish(2)
    }
    process.stderr.write(failureLine(err))
    finish(1)
  },
)

/** Exits with `code` once the output is written. An IPC channel from a supervisor (pm2) would hold the process open. */
function finish(code: number): void {
  process.exitCode = code
  process.channel?.unref()
}

/** What stderr says when a command fails (exit 1); a `serve --workers` worker sends it to the primary instead. */
function failureLine(err: unknown): string {
  if (err instanceof GatehouseError && err.code === 'config_invalid')
    return `gatehouse: configuration is invalid:\n${err.message}\n`
  if ((err as NodeJS.ErrnoException)?.code === 'EADDRINUSE')
    return `gatehouse: ${(err as Error).message} — is another server using that port?\n`
  return `gatehouse: ${err instanceof Error ? err.message : String(err)}\n`
}
