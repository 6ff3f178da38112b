import { describeSource, explainConfig } from '../config/explain.ts'
import { readConfig, type ConfigSources } from '../config/read-config.ts'
import type { Config } from '../config/types.ts'
import { configWarnings } from '../config/warnings.ts'
import type { ConfigFile } from './args.ts'

export { DEFAULT_CONFIG_PATH } from './args.ts'

/** Loads and validates; on problems prints one line per problem to stderr and returns undefined. */
export async function loadOrReport(source: string | ConfigFile): Promise<Config | undefined> {
  return (await load(source)).config
}

async function load(
  source: string | ConfigFile,
): Promise<{ config: Config | undefined; sources: ConfigSources | undefined; file: string | undefined }> {
  const { path, explicit } = typeof source === 'string' ? { path: source, explicit: true } : source
  const result = await readConfig(path, process.env, { fileOptional: !explicit })
  if (result.config) return { config: result.config, sources: result.sources, file: result.file }
  const what = result.file ?? 'the configuration (no file; from the environment)'
  process.stderr.write(
    `gatehouse: ${what} is invalid (${result.issues.length} problem${result.issues.length === 1 ? '' : 's'}):\n`,
  )
  for (const issue of result.issues) process.stderr.write(`  ${issue.path}: ${issue.message}\n`)
  return { config: undefined, sources: undefined, file: result.file }
}

export interface CheckOptions {
  /** Print every effective key with its value (secrets masked) and where it came from. */
  explain?: boolean
  /** Exit 1 when there is a warning. */
  strict?: boolean
  /** Also fetch the IdP's discovery document and JWKS, and connect to the session store (read only). */
  connect?: boolean
}

/**
 * `gatehouse check-config [FILE | --config FILE] [--explain] [--strict] [--connect]`: exit 0 when
 * valid — warnings (`warning: …`, on stderr) included, unless --strict —, 1 with one line per
 * problem when not. Reports (--explain, --connect) and notes go to stdout.
 */
export async function checkConfig(source: string | ConfigFile, options: CheckOptions = {}): Promise<number> {
  const { config, sources, file } = await load(source)
  if (!config || !sources) return 1
  const name = file ?? 'configuration from the environment (no file)'
  const out: string[] = []
  if (options.explain) {
    const keys = explainConfig(sources, file)
    const width = Math.max(...keys.map((k) => k.path.length))
    out.push(...keys.map((k) => `${k.path.padEnd(width)}  ${k.value}  (${describeSource(k.source)})`))
  }
  const warnings = configWarnings(config)
  let failures: string[] = []
  if (options.connect) {
    // The IdP client and store drivers load only for --connect.
    const { checkConnections } = await import('./check-connect.ts')
    const report = await checkConnections(config)
    out.push(...report.lines)
    warnings.push(...report.warnings)
    failures = report.failures
  }
  const serious = warnings.filter((w) => w.level === 'warn')
  for (const w of warnings) if (w.level === 'info') out.push(`note: ${w.message}${describeFields(w.fields)}`)
  if (out.length) process.stdout.write(`${out.join('\n')}\n`)
  for (const w of serious) process.stderr.write(`warning: ${w.message}\n`)
  for (const failure of failures) process.stderr.write(`gatehouse: --connect: ${failure}\n`)
  if (failures.length) return 1
  const count = `${serious.length} warning${serious.length === 1 ? '' : 's'}`
  if (options.strict && serious.length) {
    process.stderr.write(`gatehouse: ${name}: configuration is valid but has ${count}, and --strict accepts none\n`)
    return 1
  }
  process.stdout.write(`${name}: configuration is valid${serious.length ? ` (${count})` : ''}\n`)
  return 0
}

function describeFields(fields: Record<string, unknown> | undefined): string {
  const origins = fields?.origins
  return Array.isArray(origins) ? `: ${origins.join(', ')}` : ''
}
