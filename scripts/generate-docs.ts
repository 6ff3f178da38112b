// The parts of the docs that are generated from the code, so that they cannot drift from it:
// - docs/configuration.md, the key reference: every key of the configuration schema
//   (src/config/validate.ts) with its type, default (src/config/defaults.ts), environment variable
//   (src/config/env-config.ts) and description (the schema's `.describe()`, also in gatehouse.schema.json);
// - docs/errors.md: every code of the ERRORS table (src/errors.ts) with its status, title and meaning.
// Each is written between `<!-- generated:NAME:start -->` and `<!-- generated:NAME:end -->`; the text
// around the markers is written by hand. `npm run docs:update` rewrites both files;
// tests/unit/generated-docs.test.ts fails when a file differs from what this generates.
import { readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { z } from 'zod'
import { COMPUTED_DEFAULTS } from '../src/config/defaults.ts'
import { envVariables } from '../src/config/env-config.ts'
import { configSchema, valueKinds } from '../src/config/validate.ts'
import { ERRORS } from '../src/errors.ts'

export const root = join(dirname(new URL(import.meta.url).pathname), '..')

export interface GeneratedPart {
  /** The file, relative to the repository root. */
  file: string
  /** The marker name: `<!-- generated:NAME:start -->`. */
  name: string
  render: () => string
}

export const GENERATED_PARTS: readonly GeneratedPart[] = [
  { file: 'docs/configuration.md', name: 'config-keys', render: () => renderConfigKeys() },
  { file: 'docs/errors.md', name: 'errors', render: () => renderErrors() },
]

interface ZodLike {
  _zod: { def: { type: string; [key: string]: unknown } }
}

/** One key of the configuration as the reference shows it. */
export interface KeyRow {
  /** `oidc.clientId`, `remoteApis[].path` (`[]`: each entry of a list). */
  path: string
  type: string
  /** Markdown: `"10s"`, **required**, a computed default's wording, or — . */
  default: string
  /** `GATEHOUSE_OIDC__CLIENT_ID`; undefined for keys inside list entries (set with the whole list). */
  variable: string | undefined
  description: string | undefined
  /** Whether the key holds an object of further keys (shown only when it has a description of its own). */
  object: boolean
  /** Whether a default comes from the schema itself (COMPUTED_DEFAULTS must not word one then). */
  schemaDefault: boolean
}

/** The wrappers of a key (optional, default, pipe…) taken off: its default, whether it may be left out, and its shape. */
function peel(node: ZodLike): {
  inner: ZodLike
  chain: ZodLike[]
  fallback: { value: unknown } | undefined
  optional: boolean
} {
  const chain: ZodLike[] = []
  let fallback: { value: unknown } | undefined
  let optional = false
  for (;;) {
    chain.push(node)
    const def = node._zod.def
    if (def.type === 'default' || def.type === 'prefault') {
      fallback ??= { value: def.defaultValue }
      node = def.innerType as ZodLike
    } else if (def.type === 'optional') {
      optional = true
      node = def.innerType as ZodLike
    } else if (def.type === 'nullable' || def.type === 'readonly' || def.type === 'nonoptional' || def.type === 'catch')
      node = def.innerType as ZodLike
    else if (def.type === 'pipe') node = def.in as ZodLike
    else return { inner: node, chain, fallback, optional }
  }
}

function typeOf(node: ZodLike): string {
  const { inner, chain } = peel(node)
  const kind = chain.map((n) => valueKinds.get(n as unknown as z.ZodType)?.kind).find((k) => k !== undefined)
  if (kind) return kind
  const def = inner._zod.def
  switch (def.type) {
    case 'string':
      return 'string'
    case 'boolean':
      return 'boolean'
    case 'number': {
      const checks = ((def.checks as ZodLike[] | undefined) ?? []).map(
        (c) => c._zod.def as { check?: string; format?: string; value?: number },
      )
      const whole = checks.some((c) => c.format === 'safeint' || c.format === 'int32')
      const min = checks.find((c) => c.check === 'greater_than')?.value
      const max = checks.find((c) => c.check === 'less_than')?.value
      const range = min !== undefined && max !== undefined ? ` (${min}–${max})` : ''
      return `${whole ? 'whole number' : 'number'}${range}`
    }
    case 'enum':
      return Object.values(def.entries as Record<string, string>)
        .map((v) => `\`${JSON.stringify(v)}\``)
        .join(', ')
    case 'literal':
      return (def.values as unknown[]).map((v) => `\`${JSON.stringify(v)}\``).join(', ')
    case 'union':
      return (def.options as ZodLike[]).map(typeOf).join(' or ')
    case 'array': {
      const element = typeOf(def.element as ZodLike)
      return element === 'object' ? 'list of objects' : element === 'string' ? 'list of strings' : `list of ${element}`
    }
    case 'record':
    case 'object':
      return 'object'
    default:
      return def.type
  }
}

/** Every key of the configuration schema, depth first in the schema's order. */
export function configKeys(): KeyRow[] {
  const variables = new Map(envVariables().map((v) => [v.path.join('.'), v.name]))
  const rows: KeyRow[] = []
  const walk = (shape: Record<string, ZodLike>, prefix: string, inList: boolean): void => {
    for (const [key, child] of Object.entries(shape)) {
      const path = prefix ? `${prefix}.${key}` : key
      const { inner, fallback, optional } = peel(child)
      const def = inner._zod.def
      const element = def.type === 'array' ? peel(def.element as ZodLike).inner : undefined
      const computed = COMPUTED_DEFAULTS[path]
      rows.push({
        path,
        type: typeOf(child),
        // Required inside an object or list entry means: required when that object or entry is given.
        default:
          fallback !== undefined
            ? `\`${JSON.stringify(fallback.value)}\``
            : (computed ?? (optional ? '—' : '**required**')),
        variable: inList ? undefined : variables.get(path),
        description: z.globalRegistry.get(child as unknown as z.ZodType)?.description,
        object: def.type === 'object',
        schemaDefault: fallback !== undefined,
      })
      if (def.type === 'object') walk(def.shape as Record<string, ZodLike>, path, inList)
      else if (element?._zod.def.type === 'object')
        walk(element._zod.def.shape as Record<string, ZodLike>, `${path}[]`, true)
    }
  }
  walk(peel(configSchema as unknown as ZodLike).inner._zod.def.shape as Record<string, ZodLike>, '', false)
  return rows
}

/** `docs/remote-apis.md#methods` in a description → a link relative to docs/. */
function markdown(text: string): string {
  return text
    .replace(
      /\bdocs\/([a-z0-9-]+\.md)(#[a-z0-9-]+)?/g,
      (_, file: string, anchor: string | undefined) => `[${file}](${file}${anchor ?? ''})`,
    )
    .replaceAll('|', '\\|')
}

/** The key reference of docs/configuration.md. */
export function renderConfigKeys(): string {
  const lines = [
    '<!-- Generated by `npm run docs:update` from src/config/validate.ts (descriptions) and src/config/defaults.ts: edit them there. -->',
    '',
    '| key | type | default | variable | meaning |',
    '|---|---|---|---|---|',
  ]
  for (const row of configKeys()) {
    // An object is a heading for its keys; it gets a row only when there is something to say about it.
    if (row.object && row.description === undefined) continue
    const cells = [
      `\`${row.path}\``,
      markdown(row.type),
      markdown(row.default),
      row.variable ? `\`${row.variable}\`` : '—',
      markdown(row.description ?? ''),
    ]
    lines.push(`| ${cells.join(' | ')} |`)
  }
  return lines.join('\n')
}

/** The error table of docs/errors.md, by status. */
export function renderErrors(): string {
  const codes = Object.entries(ERRORS).sort(([, a], [, b]) => a.status - b.status)
  return [
    '<!-- Generated by `npm run docs:update` from the ERRORS table in src/errors.ts: edit it there. -->',
    '',
    '| status | code | title | meaning |',
    '|---|---|---|---|',
    ...codes.map(([code, e]) => `| ${e.status} | \`${code}\` | ${markdown(e.title)} | ${markdown(e.meaning)} |`),
  ].join('\n')
}

export function markers(name: string): { start: string; end: string } {
  return { start: `<!-- generated:${name}:start -->`, end: `<!-- generated:${name}:end -->` }
}

/** `text` with the part between the markers replaced by `body`; undefined when the markers are missing. */
export function withGenerated(text: string, name: string, body: string): string | undefined {
  const { start, end } = markers(name)
  const from = text.indexOf(start)
  const to = text.indexOf(end)
  if (from === -1 || to < from || text.indexOf(start, from + 1) !== -1) return undefined
  return `${text.slice(0, from + start.length)}\n${body}\n${text.slice(to)}`
}

if (process.argv[1] && new URL(import.meta.url).pathname === process.argv[1]) {
  for (const part of GENERATED_PARTS) {
    const path = join(root, part.file)
    const text = readFileSync(path, 'utf8')
    const next = withGenerated(text, part.name, part.render())
    if (next === undefined) {
      const { start, end } = markers(part.name)
      console.error(`${part.file}: no ${start} … ${end} markers to write between`)
      process.exitCode = 1
      continue
    }
    if (next !== text) writeFileSync(path, next)
    console.log(`${part.file}: ${next === text ? 'up to date' : 'updated'}`)
  }
}
