import { readConfig } from '../config/read-config.ts'
import type { Config } from '../config/types.ts'
import type { ConfigFile } from './args.ts'

export { DEFAULT_CONFIG_PATH } from './args.ts'

/** Loads and validates; on problems prints one line per problem to stderr and returns undefined. */
export async function loadOrReport(source: string | ConfigFile): Promise<Config | undefined> {
  return (await load(source)).config
}

async function load(source: string | ConfigFile): Promise<{ config: Config | undefined; file: string | undefined }> {
  const { path, explicit } = typeof source === 'string' ? { path: source, explicit: true } : source
  const { config, issues, file } = await readConfig(path, process.env, { fileOptional: !explicit })
  if (config) return { config, file }
  const what = file ?? 'the configuration (no file; from the environment)'
  process.stderr.write(`gatehouse: ${what} is invalid (${issues.length} problem${issues.length === 1 ? '' : 's'}):\n`)
  for (const issue of issues) process.stderr.write(`  ${issue.path}: ${issue.message}\n`)
  return { config: undefined, file }
}

/** `gatehouse check-config [FILE | --config FILE]` — exit 0 when valid, 1 with one line per problem when not. */
export async function checkConfig(source: string | ConfigFile): Promise<number> {
  const { config, file } = await load(source)
  if (!config) return 1
  process.stdout.write(`${file ?? 'configuration from the environment (no file)'}: configuration is valid\n`)
  return 0
}
