#!/usr/bin/env node
import { readFileSync } from 'node:fs'
import { GatehouseError } from '../errors.ts'
import { parseArgs, stringOption } from './args.ts'
import { checkConfig, DEFAULT_CONFIG_PATH, loadOrReport } from './check-config.ts'
import { keysGenerate } from './keys.ts'
import { migrate, sessionsList, sessionsRevoke } from './sessions.ts'
import { exitOnSignal, startServer } from './serve.ts'

const USAGE = `Usage: gatehouse <command> [options]

Commands:
  serve [--config FILE]          run the gateway (default config: ${DEFAULT_CONFIG_PATH})
  check-config [--config FILE]   validate the configuration; one line per problem
  keys generate                  print a new key for the "keys" ring (last line of stdout)
  migrate [--config FILE]        apply the session store's schema (PostgreSQL, SQLite); idempotent
  sessions list [--sub S] [--limit N] [--config FILE]
                                 one line per live session (id hash, sub, sid, partition, times)
  sessions revoke (--sub S | --sid S) [--config FILE]
                                 end sessions; every instance refuses them at the next request
  demo [--port N] [--data-dir D] run the demo: embedded IdP, demo API and SPA, SQLite sessions

Options:
  --help, --version
`

async function main(argv: readonly string[]): Promise<number | 'running'> {
  const args = parseArgs(argv)
  const [command, sub] = args.positional
  if (args.options.has('version')) {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
    process.stdout.write(`${pkg.version}\n`)
    return 0
  }
  if (!command || args.options.has('help') || command === 'help') {
    process.stdout.write(USAGE)
    return command || args.options.has('help') ? 0 : 2
  }
  const configPath = stringOption(args, 'config') ?? process.env.GATEHOUSE_CONFIG ?? DEFAULT_CONFIG_PATH
  switch (command) {
    case 'check-config':
      return checkConfig(configPath)
    case 'keys':
      if (sub === 'generate') return keysGenerate()
      break
    case 'migrate': {
      const config = await loadOrReport(configPath)
      return config ? migrate(config) : 1
    }
    case 'sessions': {
      if (sub !== 'list' && sub !== 'revoke') break
      const config = await loadOrReport(configPath)
      if (!config) return 1
      const bySub = stringOption(args, 'sub')
      const bySid = stringOption(args, 'sid')
      if (sub === 'list') {
        const limit = Number(stringOption(args, 'limit') ?? 1000)
        if (!Number.isInteger(limit) || limit < 1) return usageError('--limit must be a positive whole number')
        return sessionsList(config, { ...(bySub === undefined ? {} : { sub: bySub }), limit })
      }
      if ((bySub === undefined) === (bySid === undefined)) return usageError('sessions revoke needs exactly one of --sub S or --sid S')
      return sessionsRevoke(config, bySub !== undefined ? { sub: bySub } : { sid: bySid! })
    }
    case 'serve': {
      const config = await loadOrReport(configPath)
      if (!config) return 1
      const running = await startServer(config)
      exitOnSignal(running.close)
      return 'running'
    }
    case 'demo': {
      const { runDemo } = await import('../demo/demo.ts')
      const port = stringOption(args, 'port')
      if (port !== undefined && !/^\d{1,5}$/.test(port)) {
        process.stderr.write('gatehouse: --port must be a number\n')
        return 2
      }
      const dataDir = stringOption(args, 'data-dir')
      const demo = await runDemo({ port: port === undefined ? undefined : Number(port), ...(dataDir ? { dataDir } : {}) })
      exitOnSignal(demo.close)
      return 'running'
    }
  }
  process.stderr.write(`gatehouse: unknown command "${[command, sub].filter(Boolean).join(' ')}"\n\n${USAGE}`)
  return 2
}

function usageError(message: string): number {
  process.stderr.write(`gatehouse: ${message}\n`)
  return 2
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 'running') process.exitCode = code
  },
  (err: unknown) => {
    if (err instanceof GatehouseError && err.code === 'config_invalid') process.stderr.write(`gatehouse: configuration is invalid:\n${err.message}\n`)
    else if ((err as NodeJS.ErrnoException)?.code === 'EADDRINUSE') process.stderr.write(`gatehouse: ${(err as Error).message} — is another server using that port?\n`)
    else process.stderr.write(`gatehouse: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exitCode = 1
  },
)
