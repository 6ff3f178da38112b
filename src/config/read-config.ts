import { existsSync } from 'node:fs'
import { dirname, isAbsolute, resolve } from 'node:path'
import { SECRET_VARIABLE } from './explain.ts'
import { applyEnvOverlay, isSetByEnv, labelIssues, readEnvConfig, type EnvOverlay } from './env-config.ts'
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

/** Where each value came from, for `check-config --explain` (src/config/explain.ts). */
export interface ConfigSources {
  /** The file as written, before `${NAME}` substitution; `{}` without a file. */
  written: unknown
  /** What validation saw: the file substituted, its paths resolved, the environment set over it. */
  merged: unknown
  overlay: EnvOverlay
  /** The values `${NAME}` put into the file for variables whose names look secret (explain.ts masks them). */
  secretValues: string[]
}

export type ReadConfigResult = (
  { config: Config; issues: []; sources: ConfigSources } | { config: undefined; issues: ConfigIssue[] }
) & {
  /** The file read, or undefined when the configuration came from the environment alone. */
  file: string | undefined
}

/**
 * File → ${ENV} substitution → relative paths resolved against the file's folder → `GATEHOUSE_*`
 * variables set over it (docs/configuration.md#from-the-environment) → validation. Every problem of
 * every stage comes back at once.
 */
export async function readConfig(
  path: string,
  env: NodeJS.ProcessEnv = process.env,
  options: ReadConfigOptions = {},
): Promise<ReadConfigResult> {
  const file = options.fileOptional && !existsSync(path) ? undefined : path
  let fileRaw: unknown = {}
  if (file !== undefined) {
    const loaded = await loadConfigFile(file)
    if (loaded.issues.length) return { config: undefined, issues: loaded.issues, file }
    fileRaw = loaded.raw
  }
  const overlay = readEnvConfig(env)
  if (file === undefined && !overlay.values.length && !overlay.issues.length) {
    return {
      config: undefined,
      issues: [
        { path: '(file)', message: `${path}: file not found (and no GATEHOUSE_* configuration variables are set)` },
      ],
      file,
    }
  }
  // ${NAME} in a key the environment replaces does not matter.
  const substitutionIssues: ConfigIssue[] = []
  const interpolated = interpolateEnv(fileRaw, env, '', substitutionIssues)
  const envIssues = [...overlay.issues, ...substitutionIssues.filter((i) => !isSetByEnv(i.path, overlay))]
  const located = file === undefined ? interpolated : resolveFilePaths(interpolated, dirname(resolve(file)))
  const raw = overlay.values.length ? applyEnvOverlay(located, overlay) : located
  const validated = validateConfig(raw)
  if (envIssues.length || !validated.config) {
    const rest = labelIssues(validated.issues, overlay, file === undefined).filter(
      (i) =>
        !envIssues.some((e) => e.path === i.path || i.path.startsWith(`${e.path} `) || e.path.startsWith(`${i.path} `)),
    )
    return { config: undefined, issues: [...envIssues, ...rest], file }
  }
  return {
    config: validated.config,
    issues: [],
    sources: { written: fileRaw, merged: raw, overlay, secretValues: secretSubstitutions(fileRaw, env) },
    file,
  }
}

/**
 * The file's filesystem paths — `frontends[].static` and `session.store`'s `sqlite:PATH` — made
 * absolute against the file's folder, so that a configuration means the same from every working
 * directory. Values from the environment (and defaults) stay relative to the working directory.
 * Lenient: a value of the wrong shape is left for validation to report.
 */
export function resolveFilePaths(raw: unknown, folder: string): unknown {
  if (!isRecord(raw)) return raw
  const out: Record<string, unknown> = { ...raw }
  if (isRecord(raw.session) && typeof raw.session.store === 'string') {
    const store = raw.session.store
    const location = store.startsWith('sqlite:') ? store.slice('sqlite:'.length) : undefined
    // `:memory:` and `file:` URIs go to SQLite as written (src/session/stores/sqlite-open.ts).
    if (
      location !== undefined &&
      location !== '' &&
      location !== ':memory:' &&
      !location.startsWith('file:') &&
      !isAbsolute(location)
    ) {
      out.session = { ...raw.session, store: `sqlite:${resolve(folder, location)}` }
    }
  }
  if (Array.isArray(raw.frontends)) {
    out.frontends = raw.frontends.map((frontend: unknown) =>
      isRecord(frontend) && typeof frontend.static === 'string' && frontend.static !== ''
        ? { ...frontend, static: resolve(folder, frontend.static) }
        : frontend,
    )
  }
  return out
}

function secretSubstitutions(written: unknown, env: NodeJS.ProcessEnv): string[] {
  const names = new Set([...JSON.stringify(written).matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)].map((m) => m[1]!))
  return [...names].filter((name) => SECRET_VARIABLE.test(name)).flatMap((name) => (env[name] ? [env[name]] : []))
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}
