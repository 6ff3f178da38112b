import { resolve } from 'node:path'
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util'

/**
 * The CLI grammar: every command's options and usage in one table, parsed strictly with
 * `node:util` parseArgs. An unknown flag, a flag without its value, a flag given twice or an
 * unexpected argument is a usage error (exit 2), never silently ignored.
 */

export const DEFAULT_CONFIG_PATH = 'gatehouse.json'

export interface CommandSpec {
  /** As typed: `serve`, `sessions list`. */
  name: string
  /** The synopsis after `gatehouse `. */
  synopsis: string
  summary: string
  /** Option lines of the usage text. */
  help: string[]
  options: ParseArgsOptionsConfig
  /** How many positional arguments the command takes (the config file of serve and check-config). */
  maxPositionals: number
}

/** The most `serve --workers` accepts: far more than a machine has cores; a larger number is a typo. */
export const MAX_WORKERS = 256

const CONFIG_OPTION = { config: { type: 'string', short: 'c' } } as const satisfies ParseArgsOptionsConfig
const CONFIG_HELP = `-c, --config FILE   configuration file (default: $GATEHOUSE_CONFIG, else ${DEFAULT_CONFIG_PATH})`

export const COMMANDS: readonly CommandSpec[] = [
  {
    name: 'serve',
    synopsis: 'serve [FILE | --config FILE] [--port N] [--host H] [--workers N|auto]',
    summary: 'run the gateway',
    help: [
      CONFIG_HELP,
      '--port N            listen on this port instead of listen.port (0 picks a free one)',
      '--host H            listen on this address instead of listen.host',
      `--workers N|auto    processes sharing the port, 1 to ${MAX_WORKERS} (default auto: one per available CPU with sessions in a shared store, else 1)`,
    ],
    options: { ...CONFIG_OPTION, port: { type: 'string' }, host: { type: 'string' }, workers: { type: 'string' } },
    maxPositionals: 1,
  },
  {
    name: 'check-config',
    synopsis: 'check-config [FILE | --config FILE] [--explain] [--strict] [--connect]',
    summary:
      'validate the configuration: exit 0 when valid (printing the warnings serve would log), 1 with one line per problem',
    help: [
      CONFIG_HELP,
      '--explain           print every effective key, its value (secrets masked) and where it came from',
      '--strict            exit 1 when there is a warning',
      "--connect           also fetch the IdP's discovery document and keys, and check the session store (read-only: nothing is created)",
    ],
    options: {
      ...CONFIG_OPTION,
      explain: { type: 'boolean' },
      strict: { type: 'boolean' },
      connect: { type: 'boolean' },
    },
    maxPositionals: 1,
  },
  {
    name: 'keys generate',
    synopsis: 'keys generate',
    summary: 'print a new key for the "keys" ring (the last line of stdout)',
    help: [],
    options: {},
    maxPositionals: 0,
  },
  {
    name: 'migrate',
    synopsis: 'migrate [--config FILE]',
    summary: "apply the session store's schema (PostgreSQL, SQLite); idempotent",
    help: [CONFIG_HELP],
    options: { ...CONFIG_OPTION },
    maxPositionals: 0,
  },
  {
    name: 'sessions list',
    synopsis: 'sessions list [--sub S] [--limit N] [--config FILE]',
    summary: 'one line per live session (id hash, sub, sid, partition, times)',
    help: [
      '--sub S             only the sessions of this subject',
      '--limit N           at most N sessions (default 1000)',
      CONFIG_HELP,
    ],
    options: { ...CONFIG_OPTION, sub: { type: 'string' }, limit: { type: 'string' } },
    maxPositionals: 0,
  },
  {
    name: 'sessions revoke',
    synopsis: 'sessions revoke (--sub S | --sid S) [--config FILE]',
    summary: 'end sessions; every instance refuses them at the next request',
    help: [
      '--sub S             every session of this subject',
      "--sid S             the sessions of this IdP session (the id_token's sid)",
      CONFIG_HELP,
    ],
    options: { ...CONFIG_OPTION, sub: { type: 'string' }, sid: { type: 'string' } },
    maxPositionals: 0,
  },
  {
    name: 'schema',
    synopsis: 'schema',
    summary: 'print the JSON Schema (draft 2020-12) of the configuration file',
    help: [],
    options: {},
    maxPositionals: 0,
  },
  {
    name: 'demo',
    synopsis: 'demo [--port N] [--idp-port N] [--api-port N] [--data-dir D]',
    summary: 'run the demo: embedded IdP, demo API and SPA, SQLite sessions',
    help: [
      '--port N            port of the demo (default 8080; 0 picks a free one)',
      '--idp-port N        port of the embedded IdP (default: --port + 1)',
      '--api-port N        port of the demo API (default: --port + 2)',
      '--data-dir D        where the demo keeps its data (default .gatehouse-demo)',
    ],
    options: {
      port: { type: 'string' },
      'idp-port': { type: 'string' },
      'api-port': { type: 'string' },
      'data-dir': { type: 'string' },
    },
    maxPositionals: 0,
  },
]

/** Commands that only group subcommands (`keys`, `sessions`), with their subcommand names. */
export function subcommandsOf(group: string): string[] {
  return COMMANDS.filter((c) => c.name.startsWith(`${group} `)).map((c) => c.name.slice(group.length + 1))
}

export function findCommand(name: string): CommandSpec | undefined {
  return COMMANDS.find((c) => c.name === name)
}

export function overallUsage(): string {
  const lines = COMMANDS.map((c) => {
    const head = `  ${c.synopsis}`
    return head.length < 40 ? `${head.padEnd(40)}${c.summary}` : `${head}\n${' '.repeat(40)}${c.summary}`
  })
  return `Usage: gatehouse <command> [options]

Commands:
${lines.join('\n')}

Options:
  -h, --help      show this help, or a command's (gatehouse <command> --help)
  --version       print gatehouse's version
`
}

export function commandUsage(spec: CommandSpec): string {
  const options = [...spec.help, '-h, --help          show this help']
  return `Usage: gatehouse ${spec.synopsis}\n\n${spec.summary[0]!.toUpperCase()}${spec.summary.slice(1)}.\n\nOptions:\n${options.map((o) => `  ${o}`).join('\n')}\n`
}

/** A mistake in how the command was typed: exit 2 with the command's usage on stderr. */
export class UsageError extends Error {
  readonly spec: CommandSpec | undefined
  constructor(message: string, spec?: CommandSpec) {
    super(message)
    this.spec = spec
  }
}

export interface ParsedCommand {
  values: Record<string, string | boolean | undefined>
  positionals: string[]
}

/** Parses one command's arguments strictly; throws UsageError naming the offending flag or argument. */
export function parseCommand(spec: CommandSpec, argv: readonly string[]): ParsedCommand {
  const options: ParseArgsOptionsConfig = { ...spec.options, help: { type: 'boolean', short: 'h' } }
  const parsed = (() => {
    try {
      return parseArgs({ args: [...argv], options, strict: true, allowPositionals: true, tokens: true })
    } catch (err) {
      throw new UsageError(describeParseError(err, options, argv), spec)
    }
  })()
  const { positionals, tokens } = parsed
  const values = parsed.values as ParsedCommand['values']
  if (values.help) return { values, positionals }
  // Without `multiple`, parseArgs keeps the last of a repeated flag: say so instead of choosing.
  const seen = new Set<string>()
  for (const token of tokens) {
    if (token.kind !== 'option') continue
    if (seen.has(token.name)) throw new UsageError(`--${token.name} is given more than once`, spec)
    seen.add(token.name)
  }
  for (const [name, value] of Object.entries(values)) {
    if (value === '') throw new UsageError(`--${name} needs a non-empty value`, spec)
  }
  if (positionals.length > spec.maxPositionals) {
    const extra = positionals[spec.maxPositionals]!
    const hint =
      spec.maxPositionals === 0 && 'config' in spec.options && /\.(json|ya?ml)$/i.test(extra)
        ? ` (give the configuration file as --config ${extra})`
        : ''
    throw new UsageError(`unexpected argument "${extra}"${hint}`, spec)
  }
  return { values, positionals }
}

function describeParseError(err: unknown, options: ParseArgsOptionsConfig, argv: readonly string[]): string {
  const { code, message } = err as { code?: string; message: string }
  const quoted = /'([^']+)'/.exec(message)?.[1] ?? ''
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION': {
      // `-port` parses as the short flags -p -o -r -t: name what was typed, not "-p".
      const typed = /^-[^-]$/.test(quoted)
        ? (argv.find((a) => a.startsWith(quoted) && !a.startsWith('--') && a.length > 2 && !a.includes('=')) ?? quoted)
        : quoted.split('=')[0]!
      const suggestion = suggest(typed.replace(/^-+/, ''), Object.keys(options))
      return `unknown option ${typed}${suggestion ? ` (did you mean --${suggestion}?)` : ''}`
    }
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      // "Option '--sub <value>' argument missing", "… argument is ambiguous" (the next word is a flag),
      // "Option '-h, --help' does not take an argument".
      const flag = /--[A-Za-z0-9-]+/.exec(quoted)?.[0] ?? quoted
      if (/does not take an argument/.test(message)) return `${flag} takes no value`
      return `${flag} needs a value`
    }
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument "${quoted}"`
    default:
      return message
  }
}

/** The known option closest to a mistyped one (edit distance ≤ 2), if any. */
function suggest(typed: string, known: string[]): string | undefined {
  let best: { name: string; distance: number } | undefined
  for (const name of known) {
    const distance = editDistance(typed, name)
    if (distance <= 2 && (!best || distance < best.distance)) best = { name, distance }
  }
  return best?.name
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0]!
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const current = row[j]!
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1))
      previous = current
    }
  }
  return row[b.length]!
}

/**
 * The configuration file: `--config FILE` / `-c FILE`, or (serve, check-config) the first positional
 * argument — both only when they name the same file — else `$GATEHOUSE_CONFIG`, else gatehouse.json.
 */
export function configPathOf(spec: CommandSpec, parsed: ParsedCommand, env: NodeJS.ProcessEnv = process.env): string {
  const flag = parsed.values.config as string | undefined
  const positional = parsed.positionals[0]
  if (flag !== undefined && positional !== undefined && resolve(flag) !== resolve(positional)) {
    throw new UsageError(`two configuration files given: --config ${flag} and ${positional} (give one)`, spec)
  }
  return flag ?? positional ?? (env.GATEHOUSE_CONFIG || DEFAULT_CONFIG_PATH)
}

/** The configuration file and whether it was named (flag, argument, $GATEHOUSE_CONFIG) rather than the default. */
export interface ConfigFile {
  path: string
  /** false for the default ./gatehouse.json: when absent, the configuration comes from the environment alone. */
  explicit: boolean
}

export function configFileOf(
  spec: CommandSpec,
  parsed: ParsedCommand,
  env: NodeJS.ProcessEnv = process.env,
): ConfigFile {
  const path = configPathOf(spec, parsed, env)
  const explicit =
    parsed.values.config !== undefined || parsed.positionals[0] !== undefined || Boolean(env.GATEHOUSE_CONFIG)
  return { path, explicit }
}

/** A TCP port from a flag: a whole number 0–65535. */
export function portOption(spec: CommandSpec, flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const port = /^\d{1,5}$/.test(value) ? Number(value) : NaN
  if (!(port >= 0 && port <= 65535))
    throw new UsageError(`--${flag} must be a whole number from 0 to 65535 (got "${value}")`, spec)
  return port
}

/** `serve --workers`: a whole number from 1 to MAX_WORKERS, or "auto" (also when absent). */
export function workersOption(spec: CommandSpec, value: string | undefined): number | 'auto' {
  if (value === undefined || value === 'auto') return 'auto'
  const workers = /^\d{1,3}$/.test(value) ? Number(value) : NaN
  if (!(workers >= 1 && workers <= MAX_WORKERS))
    throw new UsageError(`--workers must be a whole number from 1 to ${MAX_WORKERS}, or "auto" (got "${value}")`, spec)
  return workers
}
