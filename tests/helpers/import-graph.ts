/**
 * The import graph of src/: every file, every import it makes, read with the TypeScript parser
 * (not regular expressions), so comments, strings and template text are never mistaken for imports.
 *
 * An edge is `runtime` when it makes the importing module load the other one when it runs, and
 * `type` when it is erased before it runs: `import type …`, `export type … from`, and
 * `typeof import('…')` in a type position. `import { type A } from '…'` is a runtime edge: with
 * `verbatimModuleSyntax` (and under Node's type stripping) it still loads the module, as `import {} from '…'`.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, posix, relative, sep } from 'node:path'
import ts from 'typescript'

export type ImportForm = 'import' | 'export-from' | 'dynamic-import' | 'import-type-node'

export interface ImportEdge {
  /** The importing file, relative to the root, with `/` separators (`http/dispatch.ts`). */
  from: string
  /** The imported file relative to the root for a relative specifier; the specifier itself for a package or `node:` module. */
  to: string
  specifier: string
  form: ImportForm
  runtime: boolean
  /** True when `to` is a file of the graph (a relative specifier that resolved). */
  internal: boolean
  /** 1-based line of the import. */
  line: number
}

export interface ImportGraph {
  files: string[]
  edges: ImportEdge[]
  /** Relative specifiers that name no file, and `import()` calls whose argument is not a string literal. */
  unresolved: { from: string; specifier: string; line: number }[]
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) =>
      e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
    )
    .sort()
}

function toPosix(path: string): string {
  return path.split(sep).join('/')
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile()
  } catch {
    return false
  }
}

/** A relative specifier → the file it names (relative to root), trying `.ts` for `.js` specifiers and bare paths. */
function resolveRelative(root: string, fromFile: string, specifier: string): string | undefined {
  const target = posix.normalize(posix.join(posix.dirname(fromFile), specifier))
  const candidates = [target, target.replace(/\.js$/, '.ts'), `${target}.ts`, `${target}/index.ts`]
  return candidates.find((c) => !c.startsWith('../') && isFile(join(root, c)))
}

/** The imports one file makes, as the parser sees them. */
export function importsOf(
  fileName: string,
  code: string,
): { specifier: string | undefined; form: ImportForm; runtime: boolean; line: number }[] {
  const source = ts.createSourceFile(fileName, code, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS)
  const found: { specifier: string | undefined; form: ImportForm; runtime: boolean; line: number }[] = []
  const lineOf = (node: ts.Node): number => source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1
  const textOf = (node: ts.Expression | undefined): string | undefined =>
    node && ts.isStringLiteralLike(node) ? node.text : undefined

  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) {
      found.push({
        specifier: textOf(node.moduleSpecifier),
        form: 'import',
        runtime: !node.importClause?.isTypeOnly,
        line: lineOf(node),
      })
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier) {
      found.push({
        specifier: textOf(node.moduleSpecifier),
        form: 'export-from',
        runtime: !node.isTypeOnly,
        line: lineOf(node),
      })
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      found.push({
        specifier: textOf(node.moduleReference.expression),
        form: 'import',
        runtime: !node.isTypeOnly,
        line: lineOf(node),
      })
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      found.push({ specifier: textOf(node.arguments[0]), form: 'dynamic-import', runtime: true, line: lineOf(node) })
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      found.push({
        specifier: textOf(node.argument.literal as ts.Expression),
        form: 'import-type-node',
        runtime: false,
        line: lineOf(node),
      })
    }
    ts.forEachChild(node, visit)
  }
  visit(source)
  return found
}

/** Reads every `.ts` file under `root` and returns the graph of their imports. */
export function readImportGraph(root: string): ImportGraph {
  const files = sourceFiles(root).map((f) => toPosix(relative(root, f)))
  const edges: ImportEdge[] = []
  const unresolved: ImportGraph['unresolved'] = []
  for (const from of files) {
    for (const found of importsOf(from, readFileSync(join(root, from), 'utf8'))) {
      const { specifier, form, runtime, line } = found
      if (specifier === undefined) {
        unresolved.push({ from, specifier: '(not a string literal)', line })
        continue
      }
      if (!specifier.startsWith('.')) {
        edges.push({ from, to: specifier, specifier, form, runtime, internal: false, line })
        continue
      }
      const to = resolveRelative(root, from, specifier)
      if (to === undefined) unresolved.push({ from, specifier, line })
      else edges.push({ from, to, specifier, form, runtime, internal: true, line })
    }
  }
  return { files, edges, unresolved }
}

/**
 * Every elementary cycle among the files, each as a path that returns to its start
 * (`a.ts → b.ts → a.ts`), starting at its alphabetically first file so a cycle is reported once.
 * Johnson's idea in its simplest form: from each start, search only files that sort after it.
 * Stops at `limit` cycles: a tangled graph can hold very many, and the first ones show where to cut.
 */
export function findCycles(files: string[], edges: { from: string; to: string }[], limit = 100): string[][] {
  const next = new Map<string, string[]>(files.map((f) => [f, []]))
  for (const e of edges) if (next.has(e.to) && !next.get(e.from)!.includes(e.to)) next.get(e.from)!.push(e.to)
  for (const targets of next.values()) targets.sort()
  const cycles: string[][] = []
  const sorted = [...files].sort()
  for (const start of sorted) {
    const path: string[] = [start]
    const onPath = new Set(path)
    const walk = (node: string): void => {
      for (const to of next.get(node) ?? []) {
        if (cycles.length >= limit) return
        if (to === start) cycles.push([...path, start])
        else if (to > start && !onPath.has(to)) {
          path.push(to)
          onPath.add(to)
          walk(to)
          onPath.delete(to)
          path.pop()
        }
      }
    }
    walk(start)
  }
  return cycles
}

/** Absolute path of src/ for tests. */
export const srcRoot = join(dirname(new URL(import.meta.url).pathname), '..', '..', 'src')
