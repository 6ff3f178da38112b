import { interpolateEnv, loadConfigFile } from './load.ts'
import type { Config, ConfigIssue } from './types.ts'
import { validateConfig } from './validate.ts'

/** File → ${ENV} substitution → validation. Every problem of every stage comes back at once. */
export async function readConfig(path: string, env: NodeJS.ProcessEnv = process.env): Promise<{ config: Config; issues: [] } | { config: undefined; issues: ConfigIssue[] }> {
  const loaded = await loadConfigFile(path)
  if (loaded.issues.length) return { config: undefined, issues: loaded.issues }
  const envIssues: ConfigIssue[] = []
  const raw = interpolateEnv(loaded.raw, env, '', envIssues)
  const validated = validateConfig(raw)
  if (envIssues.length) return { config: undefined, issues: [...envIssues, ...validated.issues.filter((i) => !envIssues.some((e) => e.path === i.path))] }
  return validated
}
