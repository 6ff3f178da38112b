import { readConfig } from '../config/read-config.ts'
import type { Config } from '../config/types.ts'

export { DEFAULT_CONFIG_PATH } from './args.ts'

/** Loads and validates; on problems prints one line per problem to stderr and returns undefined. */
export async function loadOrReport(path: string): Promise<Config | undefined> {
  const { config, issues } = await readConfig(path)
  if (config) return config
  process.stderr.write(`gatehouse: ${path} is invalid (${issues.length} problem${issues.length === 1 ? '' : 's'}):\n`)
  for (const issue of issues) process.stderr.write(`  ${issue.path}: ${issue.message}\n`)
  return undefined
}

/** `gatehouse check-config [FILE | --config FILE]` — exit 0 when valid, 1 with one line per problem when not. */
export async function checkConfig(path: string): Promise<number> {
  const config = await loadOrReport(path)
  if (!config) return 1
  process.stdout.write(`${path}: configuration is valid\n`)
  return 0
}
