// The public API of the package as its users see it: every export of every entry point in
// package.json "exports", with its declared type, and every declaration of ours those types refer
// to. Read from declaration files that the TypeScript compiler emits from src/ in memory (no build,
// nothing written but the snapshot), printed without comments, sorted, with no paths, so it changes
// only when the API does. `npm run api:update` rewrites api/public-api.md;
// tests/unit/public-api.test.ts fails when the two differ.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join, relative, sep } from 'node:path'
import ts from 'typescript'

const root = join(dirname(new URL(import.meta.url).pathname), '..')
export const snapshotPath = join(root, 'api', 'public-api.md')
// Declarations are "emitted" under this folder, which never exists on disk.
const virtualDist = join(root, '.public-api-declarations')
const TSCONFIGS = ['tsconfig.json', 'tsconfig.client.json']

interface Entry {
  /** The import specifier users write (`gatehouse-bff/client`). */
  name: string
  /** The entry's source file, absolute. */
  source: string
}

function entries(): Entry[] {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
    name: string
    exports: Record<string, { types: string }>
  }
  return Object.entries(pkg.exports)
    .map(([path, target]) => ({
      name: path === '.' ? pkg.name : `${pkg.name}/${path.replace(/^\.\//, '')}`,
      source: join(root, target.types.replace(/^\.\/dist\//, 'src/').replace(/\.d\.ts$/, '.ts')),
    }))
    .sort((a, b) => (a.name < b.name ? -1 : 1))
}

function parseConfig(file: string): ts.ParsedCommandLine {
  const parsed = ts.getParsedCommandLineOfConfigFile(
    join(root, file),
    {},
    {
      ...ts.sys,
      onUnRecoverableConfigFileDiagnostic: (d) => {
        throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'))
      },
    },
  )
  if (!parsed) throw new Error(`cannot read ${file}`)
  return parsed
}

function formatDiagnostics(diagnostics: readonly ts.Diagnostic[]): string {
  return ts.formatDiagnostics(diagnostics, {
    getCanonicalFileName: (f) => f,
    getCurrentDirectory: () => root,
    getNewLine: () => '\n',
  })
}

/** Declaration files for the entries, emitted in memory under virtualDist; also the compiler options used. */
function emitDeclarations(): {
  files: Map<string, string>
  options: ts.CompilerOptions
  entryFiles: Map<string, string>
} {
  const files = new Map<string, string>()
  const entryFiles = new Map<string, string>()
  let options: ts.CompilerOptions = {}
  const pending = entries()
  for (const config of TSCONFIGS) {
    const parsed = parseConfig(config)
    const mine = pending.filter((e) => parsed.fileNames.includes(e.source))
    if (mine.length === 0) continue
    const outDir = join(virtualDist, relative(join(root, 'dist'), parsed.options.outDir ?? join(root, 'dist')))
    options = {
      ...parsed.options,
      outDir,
      declaration: true,
      emitDeclarationOnly: true,
      noEmit: false,
      sourceMap: false,
      declarationMap: false,
    }
    const program = ts.createProgram(
      mine.map((e) => e.source),
      options,
    )
    const result = program.emit(undefined, (fileName, text) => files.set(fileName, text), undefined, true)
    if (result.diagnostics.length > 0) throw new Error(formatDiagnostics(result.diagnostics))
    const rootDir = parsed.options.rootDir ?? join(root, 'src')
    for (const e of mine) entryFiles.set(e.name, join(outDir, relative(rootDir, e.source)).replace(/\.ts$/, '.d.ts'))
  }
  const missing = pending.filter((e) => !entryFiles.has(e.name))
  if (missing.length > 0)
    throw new Error(`no tsconfig compiles ${missing.map((e) => relative(root, e.source)).join(', ')}`)
  return { files, options, entryFiles }
}

/** A program over the in-memory declarations; packages and the standard library come from disk. */
function declarationProgram(files: Map<string, string>, options: ts.CompilerOptions, rootNames: string[]): ts.Program {
  const host = ts.createCompilerHost(options)
  const disk = {
    fileExists: host.fileExists,
    readFile: host.readFile,
    getSourceFile: host.getSourceFile,
    directoryExists: host.directoryExists,
  }
  const inVirtual = (path: string): boolean => path === virtualDist || path.startsWith(virtualDist + sep)
  host.fileExists = (f) => files.has(f) || (!inVirtual(f) && disk.fileExists(f))
  host.readFile = (f) => files.get(f) ?? (inVirtual(f) ? undefined : disk.readFile(f))
  host.directoryExists = (d) =>
    inVirtual(d) ? [...files.keys()].some((f) => f.startsWith(d + sep)) : (disk.directoryExists?.(d) ?? true)
  host.getSourceFile = (f, language, onError, shouldCreate) => {
    const text = files.get(f)
    return text === undefined
      ? disk.getSourceFile(f, language, onError, shouldCreate)
      : ts.createSourceFile(f, text, language, true)
  }
  // The client's lib (DOM) and the server's (node types) both, so every entry's types resolve.
  return ts.createProgram(
    rootNames,
    { ...options, lib: ['lib.es2023.d.ts', 'lib.dom.d.ts'], types: ['node'], noEmit: true },
    host,
  )
}

const printer = ts.createPrinter({ removeComments: true, newLine: ts.NewLineKind.LineFeed })

/**
 * The checker writes a union's members in the order their types were created, which moves when
 * unrelated code changes; sorted, an expanded type reads the same until it changes. `undefined` last.
 */
function sortUnions(node: ts.TypeNode, source: ts.SourceFile): ts.TypeNode {
  const key = (t: ts.TypeNode): string => {
    const text = printer.printNode(ts.EmitHint.Unspecified, t, source)
    return text === 'undefined' ? '\uffff' : text
  }
  const sorting: ts.TransformerFactory<ts.TypeNode> = (context) => {
    const visit = (child: ts.Node): ts.Node => {
      const visited = ts.visitEachChild(child, visit, context)
      if (!ts.isUnionTypeNode(visited)) return visited
      const types = [...visited.types].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0))
      return ts.factory.updateUnionTypeNode(visited, ts.factory.createNodeArray(types))
    }
    return (root) => visit(root) as ts.TypeNode
  }
  const result = ts.transform(node, [sorting])
  const [sorted] = result.transformed
  result.dispose()
  return sorted ?? node
}

function isTopLevel(decl: ts.Declaration): boolean {
  const statement = ts.isVariableDeclaration(decl) ? decl.parent.parent : decl
  return ts.isSourceFile(statement.parent)
}

interface Printed {
  name: string
  text: string
}

/** Reads declarations out of the program: their text, and the named types they mention. */
function declarationReader(
  checker: ts.TypeChecker,
  isOurs: (file: string) => boolean,
  isExported: (symbol: ts.Symbol) => boolean,
) {
  const ownDeclarations = (symbol: ts.Symbol): ts.Declaration[] =>
    (symbol.declarations ?? []).filter((d) => isOurs(d.getSourceFile().fileName) && isTopLevel(d))
  const resolve = (symbol: ts.Symbol): ts.Symbol =>
    symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol

  /** The package a name was imported from, when it was imported from one (not from a file of ours). */
  const packageOf = (name: ts.Node): string | undefined => {
    const spec = checker.getSymbolAtLocation(name)?.declarations?.[0]
    const importDecl =
      spec && ts.isImportSpecifier(spec)
        ? spec.parent.parent.parent
        : spec && (ts.isImportClause(spec) || ts.isNamespaceImport(spec))
          ? ts.isImportClause(spec)
            ? spec.parent
            : spec.parent.parent
          : undefined
    const module =
      importDecl && ts.isStringLiteral(importDecl.moduleSpecifier) ? importDecl.moduleSpecifier.text : undefined
    return module !== undefined && !module.startsWith('.') ? module : undefined
  }

  /** A type alias computed from a value that is not exported (`z.input<typeof schema>`) is shown expanded: its shape is the API, the value is not. */
  const expandsTo = (decl: ts.Declaration): ts.TypeNode | undefined => {
    if (!ts.isTypeAliasDeclaration(decl)) return undefined
    let hidden = false
    const visit = (node: ts.Node): void => {
      if (ts.isTypeQueryNode(node)) {
        const symbol = checker.getSymbolAtLocation(
          ts.isQualifiedName(node.exprName) ? node.exprName.right : node.exprName,
        )
        if (symbol && !isExported(resolve(symbol))) hidden = true
      }
      ts.forEachChild(node, visit)
    }
    visit(decl.type)
    if (!hidden) return undefined
    const flags =
      ts.NodeBuilderFlags.NoTruncation |
      ts.NodeBuilderFlags.MultilineObjectLiterals |
      ts.NodeBuilderFlags.InTypeAlias |
      ts.NodeBuilderFlags.IgnoreErrors
    const node = checker.typeToTypeNode(checker.getTypeAtLocation(decl.name), decl, flags)
    return node && sortUnions(node, decl.getSourceFile())
  }

  /** A declaration as text: no comments, no `export`/`declare`, inline `import("./x").` prefixes of our own files dropped. */
  const print = (decl: ts.Declaration): string => {
    const source = decl.getSourceFile()
    const expanded = expandsTo(decl)
    let text: string
    if (expanded && ts.isTypeAliasDeclaration(decl)) {
      text = `type ${decl.name.text}${decl.typeParameters ? `<${decl.typeParameters.map((p) => printer.printNode(ts.EmitHint.Unspecified, p, source)).join(', ')}>` : ''} = ${printer.printNode(ts.EmitHint.Unspecified, expanded, source)};`
    } else if (ts.isVariableDeclaration(decl)) {
      const list = decl.parent
      const keyword = list.flags & ts.NodeFlags.Const ? 'const' : list.flags & ts.NodeFlags.Let ? 'let' : 'var'
      text = `${keyword} ${printer.printNode(ts.EmitHint.Unspecified, decl, source)};`
    } else {
      text = printer.printNode(ts.EmitHint.Unspecified, decl, source)
    }
    return text.replace(/^(export )?(declare )?/, '').replace(/import\("\.[^"]*"\)\./g, '')
  }

  /** The named types a declaration mentions: ours (to print too) and other packages' (to list). */
  const references = (decl: ts.Declaration): { ours: ts.Symbol[]; external: string[] } => {
    const ours: ts.Symbol[] = []
    const external: string[] = []
    const visitName = (name: ts.EntityName | ts.Expression): void => {
      let leftmost: ts.Node = name
      while (ts.isQualifiedName(leftmost) || ts.isPropertyAccessExpression(leftmost))
        leftmost = ts.isQualifiedName(leftmost) ? leftmost.left : leftmost.expression
      const module = packageOf(leftmost)
      if (module !== undefined) {
        external.push(`\`${leftmost.getText()}\` from \`${module}\``)
        return
      }
      const right = ts.isQualifiedName(name) ? name.right : ts.isPropertyAccessExpression(name) ? name.name : name
      const symbol = checker.getSymbolAtLocation(right)
      if (symbol && ownDeclarations(resolve(symbol)).length > 0) ours.push(resolve(symbol))
    }
    const visit = (node: ts.Node): void => {
      if (ts.isTypeReferenceNode(node)) visitName(node.typeName)
      else if (ts.isExpressionWithTypeArguments(node)) visitName(node.expression)
      else if (ts.isTypeQueryNode(node)) visitName(node.exprName)
      else if (
        ts.isImportTypeNode(node) &&
        node.qualifier &&
        ts.isLiteralTypeNode(node.argument) &&
        ts.isStringLiteral(node.argument.literal)
      ) {
        const module = node.argument.literal.text
        if (module.startsWith('.')) visitName(node.qualifier)
        else external.push(`\`${node.qualifier.getText()}\` from \`${module}\``)
      }
      ts.forEachChild(node, visit)
    }
    if (!expandsTo(decl)) visit(decl)
    return { ours, external }
  }

  return { ownDeclarations, resolve, print, references }
}

/** The snapshot text. */
export function renderPublicApi(): string {
  const { files, options, entryFiles } = emitDeclarations()
  const program = declarationProgram(files, options, [...entryFiles.values()])
  const checker = program.getTypeChecker()

  const exportsByEntry = [...entryFiles]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([entryName, file]) => {
      const sourceFile = program.getSourceFile(file)
      const moduleSymbol = sourceFile && checker.getSymbolAtLocation(sourceFile)
      if (!moduleSymbol) throw new Error(`cannot read the declarations of ${entryName}`)
      return { entryName, exports: checker.getExportsOfModule(moduleSymbol) }
    })
  const exported = new Set<ts.Symbol>()
  const reader = declarationReader(
    checker,
    (file) => files.has(file),
    (symbol) => exported.has(symbol),
  )
  for (const { exports } of exportsByEntry) for (const exp of exports) exported.add(reader.resolve(exp))

  const referenced = new Set<ts.Symbol>()
  const externals = new Set<string>()
  const queue: ts.Symbol[] = []
  const follow = (decl: ts.Declaration): void => {
    const { ours, external } = reader.references(decl)
    for (const line of external) externals.add(line)
    for (const symbol of ours) {
      if (referenced.has(symbol)) continue
      referenced.add(symbol)
      queue.push(symbol)
    }
  }

  const sections: string[] = []
  for (const { entryName, exports } of exportsByEntry) {
    const printed: Printed[] = []
    for (const exp of exports) {
      const target = reader.resolve(exp)
      const decls = reader.ownDeclarations(target)
      const alias = decls.length > 0 && target.name !== exp.name ? `// exported as ${exp.name}\n` : ''
      const text =
        decls.length > 0 ? decls.map(reader.print).join('\n') : `// ${exp.name}: declared outside this package`
      printed.push({ name: exp.name, text: alias + text })
      decls.forEach(follow)
    }
    sections.push(section(entryName, printed))
  }
  for (let symbol = queue.shift(); symbol; symbol = queue.shift()) reader.ownDeclarations(symbol).forEach(follow)

  const others = [...referenced]
    .filter((s) => !exported.has(s))
    .map((s) => ({ name: s.name, text: reader.ownDeclarations(s).map(reader.print).join('\n') }))
  return [
    '# Public API',
    '',
    'Generated by `npm run api:update` from the declarations of the entry points in package.json "exports";',
    'checked by tests/unit/public-api.test.ts. A change in this file is a change users of the package see.',
    '',
    ...sections,
    section('Declarations the exports refer to (not exported by name)', others),
    '## Types from other packages in the API',
    '',
    ...[...externals].sort().map((line) => `- ${line}`),
    '',
  ].join('\n')
}

function section(title: string, printed: Printed[]): string {
  const sorted = [...printed].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.text < b.text ? -1 : 1))
  return [`## ${title}`, '', '```ts', sorted.map((p) => p.text).join('\n\n'), '```', ''].join('\n')
}

if (process.argv[1] && new URL(import.meta.url).pathname === process.argv[1]) {
  const text = renderPublicApi()
  if (process.argv.includes('--update')) {
    mkdirSync(dirname(snapshotPath), { recursive: true })
    writeFileSync(snapshotPath, text)
    console.log(`wrote ${relative(root, snapshotPath)}`)
  } else {
    process.stdout.write(text)
  }
}
