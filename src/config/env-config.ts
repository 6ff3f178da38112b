import { readFileSync } from 'node:fs'
import type { ConfigIssue } from './types.ts'
import { configSchema } from './validate.ts'
import { unwrap, type ZodLike } from './zod-walk.ts'

/**
 * Configuration from the environment (docs/configuration.md#from-the-environment): every key of the
 * schema as `GATEHOUSE_` + its key path in upper snake case, `__` between levels
 * (`oidc.clientId` → `GATEHOUSE_OIDC__CLIENT_ID`), and `<VAR>_FILE` naming a file holding the value.
 * The names are derived from the zod schema, never listed by hand.
 */

export const ENV_PREFIX = 'GATEHOUSE_'

/** How a variable's text becomes a value: what the schema expects at that key. */
export type EnvKind = 'string' | 'number' | 'boolean' | 'stringList' | 'json' | 'booleanOrJson'

export interface EnvVariable {
  /** `GATEHOUSE_OIDC__CLIENT_ID` */
  name: string
  /** `['oidc', 'clientId']` */
  path: string[]
  kind: EnvKind
}

/**
 * `GATEHOUSE_*` names that are not configuration keys and are left alone: `GATEHOUSE_CONFIG` (which
 * file), the names the docs and examples use inside `${…}` substitutions, the Docker image's
 * health-check URL and the inline-JSON variable of the framework examples.
 */
export const RESERVED_ENV_NAMES: ReadonlySet<string> = new Set([
  'GATEHOUSE_CONFIG',
  'GATEHOUSE_CONFIG_JSON',
  'GATEHOUSE_HEALTHCHECK_URL',
  'GATEHOUSE_KEY',
  'GATEHOUSE_KEY_NEXT',
  'GATEHOUSE_ADMIN_TOKEN',
  'GATEHOUSE_SESSION_STORE',
  'GATEHOUSE_REDIS_URL',
])
/** Prefixes of gatehouse's own test and benchmark harness variables (GATEHOUSE_TEST_REDIS_URL, …). */
const RESERVED_ENV_PREFIXES = ['GATEHOUSE_TEST_', 'GATEHOUSE_BENCH_']

/** `publicOrigin` → `PUBLIC_ORIGIN`, `privateKeyJwk` → `PRIVATE_KEY_JWK`. */
export function toUpperSnake(key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()
}

/** `['oidc', 'clientId']` → `GATEHOUSE_OIDC__CLIENT_ID`. */
export function envNameOf(path: readonly string[]): string {
  return ENV_PREFIX + path.map(toUpperSnake).join('__')
}

function kindOf(node: ZodLike): EnvKind {
  const def = unwrap(node)._zod.def
  switch (def.type) {
    case 'string':
    case 'enum':
      return 'string'
    case 'number':
    case 'int':
      return 'number'
    case 'boolean':
      return 'boolean'
    case 'literal': {
      const values = def.values as unknown[]
      if (values.every((v) => typeof v === 'number')) return 'number'
      if (values.every((v) => typeof v === 'boolean')) return 'boolean'
      return 'string'
    }
    case 'array':
      return kindOf(def.element as ZodLike) === 'string' ? 'stringList' : 'json'
    case 'union': {
      const kinds = new Set((def.options as ZodLike[]).map(kindOf))
      if (kinds.size === 1) return [...kinds][0]!
      if (kinds.has('boolean')) return 'booleanOrJson'
      return 'json'
    }
    default:
      return 'json'
  }
}

function walk(node: ZodLike, path: string[], out: EnvVariable[]): void {
  const inner = unwrap(node)
  if (path.length) out.push({ name: envNameOf(path), path, kind: kindOf(inner) })
  if (inner._zod.def.type !== 'object') return
  const shape = inner._zod.def.shape as Record<string, ZodLike>
  for (const [key, child] of Object.entries(shape)) {
    // `$schema` is an editors' hint, and no environment variable name can spell it.
    if (!/^[A-Za-z][A-Za-z0-9]*$/.test(key)) continue
    walk(child, [...path, key], out)
  }
}

let cached: readonly EnvVariable[] | undefined
/** Every variable the schema allows, objects included (set as JSON), shallowest first. */
export function envVariables(): readonly EnvVariable[] {
  if (!cached) {
    const out: EnvVariable[] = []
    walk(configSchema as unknown as ZodLike, [], out)
    cached = out
  }
  return cached
}

export function formatPath(path: readonly string[]): string {
  return path.join('.')
}

/** The key path a variable sets, with the variable that set it: `oidc.clientId (GATEHOUSE_OIDC__CLIENT_ID)`. */
function label(variable: EnvVariable, name = variable.name): string {
  return `${formatPath(variable.path)} (${name})`
}

/** Text of a variable → value; `undefined` with an issue when it cannot be parsed. Never echoes the text. */
export function parseEnvValue(text: string, kind: EnvKind): { value: unknown } | { error: string } {
  switch (kind) {
    case 'string':
      return { value: text }
    case 'number': {
      const trimmed = text.trim()
      return /^-?\d+(\.\d+)?$/.test(trimmed) ? { value: Number(trimmed) } : { error: 'must be a number' }
    }
    case 'boolean': {
      const trimmed = text.trim()
      return trimmed === 'true'
        ? { value: true }
        : trimmed === 'false'
          ? { value: false }
          : { error: 'must be true or false' }
    }
    case 'booleanOrJson': {
      const trimmed = text.trim()
      if (trimmed === 'true' || trimmed === 'false') return { value: trimmed === 'true' }
      return parseJson(trimmed, 'must be true, false or JSON')
    }
    case 'stringList': {
      const trimmed = text.trim()
      if (trimmed.startsWith('[')) return parseJson(trimmed, 'must be a JSON list or a comma-separated list')
      return {
        value: trimmed
          .split(/[,\r\n]/)
          .map((item) => item.trim())
          .filter((item) => item !== ''),
      }
    }
    case 'json':
      return parseJson(text.trim(), 'must be JSON')
  }
}

function parseJson(text: string, message: string): { value: unknown } | { error: string } {
  try {
    return { value: JSON.parse(text) as unknown }
  } catch {
    // Not the parser's message: it quotes the text, which may be a secret.
    return { error: `${message} (not valid JSON)` }
  }
}

export interface EnvOverlay {
  /** Values by key path, shallowest first; `file`: the path a `<VAR>_FILE` variable named (the value was read from it). */
  values: Array<{ variable: EnvVariable; name: string; value: unknown; file?: string }>
  issues: ConfigIssue[]
}

/** Reads every `GATEHOUSE_*` variable (and `_FILE` variant) of `env`. */
export function readEnvConfig(
  env: NodeJS.ProcessEnv,
  readFile: (path: string) => string = (p) => readFileSync(p, 'utf8'),
): EnvOverlay {
  const variables = envVariables()
  const byName = new Map(variables.map((v) => [v.name, v]))
  const values: EnvOverlay['values'] = []
  const issues: ConfigIssue[] = []
  for (const name of Object.keys(env).sort()) {
    if (!name.startsWith(ENV_PREFIX) || env[name] === undefined) continue
    if (RESERVED_ENV_NAMES.has(name) || RESERVED_ENV_PREFIXES.some((p) => name.startsWith(p))) continue
    if (byName.has(name)) continue
    const base = name.endsWith('_FILE') ? name.slice(0, -'_FILE'.length) : undefined
    if (base !== undefined && byName.has(base)) continue
    issues.push({
      path: `(environment) ${name}`,
      message: `unknown variable (not a configuration key${suggestion(name, variables)})`,
    })
  }
  for (const variable of variables) {
    const direct = env[variable.name]
    const fileName = `${variable.name}_FILE`
    const filePath = env[fileName]
    if (direct !== undefined && filePath !== undefined) {
      issues.push({ path: label(variable), message: `both ${variable.name} and ${fileName} are set (set one)` })
      continue
    }
    let text: string
    let name = variable.name
    if (filePath !== undefined) {
      name = fileName
      try {
        text = readFile(filePath).replace(/\r?\n$/, '')
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        issues.push({
          path: label(variable, fileName),
          message: `${filePath}: ${code === 'ENOENT' ? 'file not found' : 'file cannot be read'}`,
        })
        continue
      }
    } else if (direct !== undefined) {
      text = direct
    } else continue
    const parsed = parseEnvValue(text, variable.kind)
    if ('error' in parsed) issues.push({ path: label(variable, name), message: parsed.error })
    else values.push({ variable, name, value: parsed.value, ...(filePath === undefined ? {} : { file: filePath }) })
  }
  return { values, issues }
}

function suggestion(name: string, variables: readonly EnvVariable[]): string {
  const squash = (n: string) => n.replace(/_/g, '')
  const near = variables.find((v) => squash(v.name) === squash(name) || squash(`${v.name}_FILE`) === squash(name))
  return near
    ? `; did you mean ${name.endsWith('_FILE') && !near.name.endsWith('_FILE') && squash(`${near.name}_FILE`) === squash(name) ? `${near.name}_FILE` : near.name}?`
    : ''
}

/** The file's raw config with the environment's values set over it, key by key. */
export function applyEnvOverlay(raw: unknown, overlay: EnvOverlay): unknown {
  let root: Record<string, unknown> = isPlainObject(raw) ? { ...raw } : {}
  for (const { variable, value } of overlay.values) root = setPath(root, variable.path, value)
  return root
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): Record<string, unknown> {
  const [head, ...rest] = path
  const copy: Record<string, unknown> = { ...target }
  if (rest.length === 0) {
    Object.defineProperty(copy, head!, { value, enumerable: true, writable: true, configurable: true })
    return copy
  }
  const current = Object.hasOwn(target, head!) ? target[head!] : undefined
  Object.defineProperty(copy, head!, {
    value: setPath(isPlainObject(current) ? current : {}, rest, value),
    enumerable: true,
    writable: true,
    configurable: true,
  })
  return copy
}

/**
 * Names the variable beside the key path of a validation issue: the variable that set that key (or
 * an enclosing one), or — with no configuration file — the variable that would set it.
 */
export function labelIssues(issues: ConfigIssue[], overlay: EnvOverlay, noFile: boolean): ConfigIssue[] {
  const set = [...overlay.values].reverse()
  const byPath = new Map(envVariables().map((v) => [formatPath(v.path), v]))
  return issues.map((issue) => {
    if (issue.path.includes('(')) return issue
    const source = set.find(({ variable }) => {
      const p = formatPath(variable.path)
      return issue.path === p || issue.path.startsWith(`${p}.`) || issue.path.startsWith(`${p}[`)
    })
    if (source) return { path: `${issue.path} (${source.name})`, message: issue.message }
    const variable = noFile ? byPath.get(issue.path) : undefined
    return variable ? { path: `${issue.path} (${variable.name})`, message: issue.message } : issue
  })
}

/** Whether `path` (a formatted key path) is set by the environment (or lies under a key that is). */
export function isSetByEnv(path: string, overlay: EnvOverlay): boolean {
  return overlay.values.some(({ variable }) => {
    const p = formatPath(variable.path)
    return path === p || path.startsWith(`${p}.`) || path.startsWith(`${p}[`)
  })
}
