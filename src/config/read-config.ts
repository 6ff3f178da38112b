import { existsSync } from 'node:fs'
import { applyEnvOverlay, isSetByEnv, labelIssues, readEnvConfig } from './env-config.ts'
import { interpolateEnv, loadConfigFile } from './load.ts'
import type { Config, ConfigIssue } from './types.ts'
import { validateConfig } from './validate.ts'

export interface ReadConfigOptions {
  /**
   * The file was not named (the default ./gatehouse.json): when it is absent, the configuration
   * comes from the environment alone. A named file that is missing stays an error.
   */
  fileOptional?: boolean
}

export type ReadConfigResult = ({ config: Config; issues: [] } | { config: undefined; issues: ConfigIssue[] }) & {
  /** The file read, or undefined when the configuration came from the environment alone. */
  file: string | undefined
}

/**
 * File → ${ENV} substitution → `GATEHOUSE_*` variables set over it (docs/configuration.md#from-the-environment)
 * → validation. Every problem of every stage comes back at once.
 */
export async function readConfig(path: string, env: NodeJS.ProcessEnv = process.env, options: ReadConfigOptions = {}): Promise<ReadConfigResult> {
  const file = options.fileOptional && !existsSync(path) ? undefined : path
  let fileRaw: unknown = {}
  if (file !== undefined) {
    const loaded = await loadConfigFile(file)
    if (loaded.issues.length) return { config: undefined, issues: loaded.issues, file }
    fileRaw = loaded.raw
  }
  const overlay = readEnvConfig(env)
  if (file === undefined && !overlay.values.length && !overlay.issues.length) {
    return { config: undefined, issues: [{ path: '(file)', message: `${path}: file not found (and no GATEHOUSE_* configuration variables are set)` }], file }
  }
  // ${NAME} in a key the environment replaces does not matter.
  const substitutionIssues: ConfigIssue[] = []
  const interpolated = interpolateEnv(fileRaw, env, '', substitutionIssues)
  const envIssues = [...overlay.issues, ...substitutionIssues.filter((i) => !isSetByEnv(i.path, overlay))]
  const raw = overlay.values.length ? applyEnvOverlay(interpolated, overlay) : interpolated
  const validated = validateConfig(raw)
  if (envIssues.length || validated.issues.length) {
    const rest = labelIssues(validated.issues, overlay, file === undefined).filter((i) => !envIssues.some((e) => e.path === i.path || i.path.startsWith(`${e.path} `) || e.path.startsWith(`${i.path} `)))
    return { config: undefined, issues: [...envIssues, ...rest], file }
  }
  return { ...validated, file }
}
