import type { ConfigSources } from './read-config.ts'
import { configSchema, formatKeyPath } from './validate.ts'
import { unwrap, type ZodLike } from './zod-walk.ts'
import { MASK, maskCredentials } from './mask.ts'

/** Where one effective value came from. */
export type ValueSource =
  | { kind: 'file'; file: string }
  | { kind: 'substitution'; file: string; names: string[] }
  | { kind: 'env'; name: string }
  | { kind: 'envFile'; name: string; path: string }
  | { kind: 'default' }

export interface ExplainedKey {
  /** `oidc.clientId`, `remoteApis[0].target` */
  path: string
  /** The value as JSON, secrets masked. */
  value: string
  source: ValueSource
}

type Segment = string | number

/**
 * Every effective key of a valid configuration, leaf by leaf, with its value (secrets masked) and its
 * source: the file, a `${NAME}` in it, a `GATEHOUSE_*` variable (or its `_FILE`), or the default.
 * Walks the validation schema, so defaults are shown as written (`"10s"`, not milliseconds).
 */
export function explainConfig(sources: ConfigSources, file: string | undefined): ExplainedKey[] {
  const out: ExplainedKey[] = []
  const sourceOf = (path: Segment[]): ValueSource => {
    // The deepest variable over this key decides: it replaced whatever the file had there.
    const byEnv = sources.overlay.values.filter(({ variable }) => variable.path.every((p, i) => path[i] === p)).at(-1)
    if (byEnv) {
      if (!has(byEnv.value, path.slice(byEnv.variable.path.length))) return { kind: 'default' }
      return byEnv.file === undefined
        ? { kind: 'env', name: byEnv.name }
        : { kind: 'envFile', name: byEnv.name, path: byEnv.file }
    }
    if (file === undefined || !has(sources.written, path)) return { kind: 'default' }
    const names = [
      ...new Set(
        [...JSON.stringify(valueAt(sources.written, path)).matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)].map(
          (m) => m[1]!,
        ),
      ),
    ]
    return names.length ? { kind: 'substitution', file, names } : { kind: 'file', file }
  }
  const walk = (node: ZodLike, value: unknown, present: boolean, path: Segment[]): void => {
    const inner = unwrap(node)
    const def = inner._zod.def
    if (!present) {
      const fallback = defaultOf(node)
      if (fallback === undefined) return
      value = fallback
    }
    if (def.type === 'object' && isRecord(value)) {
      for (const [key, child] of Object.entries(def.shape as Record<string, ZodLike>)) {
        if (key === '$schema') continue
        walk(child, value[key], Object.hasOwn(value, key), [...path, key])
      }
      return
    }
    if (
      def.type === 'array' &&
      Array.isArray(value) &&
      value.length > 0 &&
      unwrap(def.element as ZodLike)._zod.def.type === 'object'
    ) {
      value.forEach((item, i) => walk(def.element as ZodLike, item, true, [...path, i]))
      return
    }
    const source = present ? sourceOf(path) : ({ kind: 'default' } as const)
    out.push({ path: formatKeyPath(path), value: display(path, value, source, sources.secretValues), source })
  }
  walk(configSchema as unknown as ZodLike, sources.merged, true, [])
  return out
}

/** `file gatehouse.json`, `${OIDC_CLIENT_SECRET} in gatehouse.json`, `env GATEHOUSE_KEYS_FILE (/run/secrets/keys)`, `default`. */
export function describeSource(source: ValueSource): string {
  switch (source.kind) {
    case 'file':
      return `file ${source.file}`
    case 'substitution':
      return `${source.names.map((n) => `\${${n}}`).join(', ')} in ${source.file}`
    case 'env':
      return `env ${source.name}`
    case 'envFile':
      return `env ${source.name} (${source.path})`
    case 'default':
      return 'default'
  }
}

/** Keys whose values are secrets wherever they come from. */
function isSecretKey(path: readonly Segment[]): boolean {
  const last = path.at(-1)
  return (
    path[0] === 'keys' ||
    last === 'clientSecret' ||
    last === 'privateKeyJwk' ||
    (path[0] === 'admin' && last === 'token')
  )
}

function display(path: Segment[], value: unknown, source: ValueSource, secretValues: readonly string[]): string {
  // Whatever came through a _FILE variable was put in a file because it is a secret.
  if (isSecretKey(path) || source.kind === 'envFile') {
    if (Array.isArray(value)) return `[${value.map(() => MASK).join(', ')}]`
    return MASK
  }
  const hidden = source.kind === 'substitution' ? secretValues : []
  if (typeof value === 'string' && hidden.includes(value)) return MASK
  return (
    JSON.stringify(value, (_key, item: unknown) =>
      typeof item === 'string' ? maskCredentials(hide(item, hidden)) : item,
    ) ?? 'undefined'
  )
}

/** `text` with each of `secrets` in it replaced by `***`, the longest first (one may contain another). */
function hide(text: string, secrets: readonly string[]): string {
  return [...secrets].sort((a, b) => b.length - a.length).reduce((out, secret) => out.replaceAll(secret, MASK), text)
}

/** Variables whose names say they hold a secret; their values are masked wherever `${NAME}` put them. */
export const SECRET_VARIABLE = /SECRET|PASSWORD|PASSWD|TOKEN|KEY|CREDENTIAL/i

/** The default as users would write it (a duration's "10s"), or undefined for an optional key. */
function defaultOf(node: ZodLike): unknown {
  for (;;) {
    const def = node._zod.def
    if (def.type === 'default' || def.type === 'prefault') return structuredClone(def.defaultValue)
    if (
      def.type === 'optional' ||
      def.type === 'nullable' ||
      def.type === 'readonly' ||
      def.type === 'nonoptional' ||
      def.type === 'catch'
    )
      node = def.innerType as ZodLike
    else if (def.type === 'pipe') node = def.in as ZodLike
    else return undefined
  }
}

function has(value: unknown, path: readonly Segment[]): boolean {
  let current = value
  for (const segment of path) {
    if (current === null || typeof current !== 'object' || !Object.hasOwn(current, segment)) return false
    current = (current as Record<Segment, unknown>)[segment]
  }
  return true
}

function valueAt(value: unknown, path: readonly Segment[]): unknown {
  let current = value
  for (const segment of path) current = (current as Record<Segment, unknown>)[segment]
  return current
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}
