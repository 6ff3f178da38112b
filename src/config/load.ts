import { readFile } from 'node:fs/promises'
import { extname } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { describeJsonError } from './json-error.ts'
import type { ConfigIssue } from './types.ts'

/** Reads a JSON or YAML config file. Never throws for bad content: problems come back as issues. */
export async function loadConfigFile(path: string): Promise<{ raw: unknown; issues: ConfigIssue[] }> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : 'file cannot be read'
    return { raw: undefined, issues: [{ path: '(file)', message: `${path}: ${reason}` }] }
  }
  const yaml = /^\.ya?ml$/.test(extname(path).toLowerCase())
  try {
    // logLevel "error": the library's warnings (an unknown tag or directive) print the source line to stderr.
    const raw: unknown = yaml ? parseYaml(text, { logLevel: 'error' }) : JSON.parse(text)
    return { raw, issues: [] }
  } catch (err) {
    return {
      raw: undefined,
      issues: [
        {
          path: '(file)',
          message: `${path}: not valid ${yaml ? 'YAML' : 'JSON'} (${yaml ? describeYamlError(err) : describeJsonError(text, err)})`,
        },
      ],
    }
  }
}

/**
 * The yaml library's reason and position, without the source it quotes: its message goes on with
 * the offending lines, a few reasons end with the text at fault (an escape, an alias's name).
 */
function describeYamlError(err: unknown): string {
  const first = (err instanceof Error ? err.message : String(err)).split('\n')[0]!
  const position = (err as { linePos?: Array<{ line: number; col: number }> }).linePos?.[0]
  const reason = first
    .replace(/ at line \d+, column \d+:?$/, '')
    .replace(/:\s.*$/, '')
    .replace(/ (\\\S*|character \S+)$/, (m) => (m.startsWith(' character') ? ' character' : ''))
  const text = reason.charAt(0).toLowerCase() + reason.slice(1)
  return position ? `${text} at line ${position.line}, column ${position.col}` : text
}

/**
 * Replaces `${NAME}` in every string with the environment variable NAME (SPEC §2).
 * An unset variable is an issue at that key path rather than an empty secret.
 */
export function interpolateEnv(value: unknown, env: NodeJS.ProcessEnv, path = '', issues: ConfigIssue[] = []): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
      const found = env[name]
      if (found === undefined) {
        issues.push({ path: path || '(root)', message: `environment variable ${name} is not set` })
        return ''
      }
      return found
    })
  }
  if (Array.isArray(value)) return value.map((item, i) => interpolateEnv(item, env, `${path}[${i}]`, issues))
  if (value !== null && typeof value === 'object') {
    // fromEntries defines own properties: `out[key] = …` would make a "__proto__" key the object's
    // prototype, hiding it from validation while its members read as config.
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [
        key,
        interpolateEnv(item, env, path ? `${path}.${key}` : key, issues),
      ]),
    )
  }
  return value
}
