/**
 * The shape of src/ stays as docs/architecture.md ("Layering rules") draws it: no import cycle between
 * files, and every import — type-only ones included — goes from a layer to one it may depend on.
 *
 * Cycles count runtime edges only: `import type` is erased before the code runs, so it cannot change
 * the order modules are evaluated in. Type-only edges still obey the layering, and the layer table is
 * itself checked to be acyclic, so a type-only cycle between two layers is still refused (as a layering
 * violation); only a type-only back-reference inside one folder passes.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { builtinModules } from 'node:module'
import { test } from 'node:test'
import { findCycles, importsOf, readImportGraph, srcRoot, type ImportEdge } from '../helpers/import-graph.ts'

interface Layer {
  /** Folders (ending in `/`) and files of src/ that make up the layer; the longest match wins. */
  files: string[]
  /** Layers (by name) and single files (`session/store.ts`) it may import, besides its own files. */
  mayImport: string[]
}

// Mirrors the table in docs/architecture.md (a test below compares the two). Bottom to top.
const LAYERS: Record<string, Layer> = {
  errors: { files: ['errors.ts'], mayImport: [] },
  config: { files: ['config/'], mayImport: ['errors'] },
  log: { files: ['log.ts', 'log-pretty.ts', 'access-log.ts'], mayImport: ['config', 'errors'] },
  ops: { files: ['ops/'], mayImport: ['config', 'errors'] },
  session: { files: ['session/'], mayImport: ['config', 'errors'] },
  'session/stores': { files: ['session/stores/'], mayImport: ['session/store.ts', 'config', 'errors'] },
  oidc: { files: ['oidc/'], mayImport: ['config', 'errors'] },
  tokens: { files: ['tokens/'], mayImport: ['oidc', 'session', 'ops', 'config', 'errors'] },
  hooks: { files: ['hooks.ts'], mayImport: ['session', 'config', 'errors'] },
  proxy: { files: ['proxy/'], mayImport: ['tokens', 'session', 'ops', 'config', 'errors'] },
  frontends: { files: ['frontends/'], mayImport: ['oidc', 'tokens', 'config', 'errors'] },
  http: {
    files: ['http/'],
    mayImport: ['frontends', 'proxy', 'hooks', 'tokens', 'oidc', 'session', 'ops', 'log', 'config', 'errors'],
  },
  endpoints: {
    files: ['endpoints/'],
    mayImport: ['http', 'frontends', 'hooks', 'tokens', 'oidc', 'session', 'ops', 'log', 'config', 'errors'],
  },
  'ops/admin': { files: ['ops/admin.ts'], mayImport: ['http', 'session', 'ops', 'log', 'config', 'errors'] },
  gatehouse: {
    files: ['gatehouse.ts'],
    mayImport: [
      'endpoints',
      'ops/admin',
      'http',
      'frontends',
      'proxy',
      'hooks',
      'tokens',
      'oidc',
      'session/stores',
      'session',
      'ops',
      'log',
      'config',
      'errors',
    ],
  },
  index: { files: ['index.ts'], mayImport: ['gatehouse', 'hooks', 'session', 'config', 'errors'] },
  testing: { files: ['testing/'], mayImport: ['session/store.ts'] },
  demo: { files: ['demo/'], mayImport: ['gatehouse', 'http', 'session', 'log', 'config', 'errors'] },
  cli: {
    files: ['cli/'],
    mayImport: ['demo', 'gatehouse', 'frontends', 'oidc', 'session/stores', 'session', 'log', 'config', 'errors'],
  },
  client: { files: ['client/'], mayImport: [] },
}

/**
 * Imports that run against the table today, each with why it is there and how it goes away. The list
 * only shrinks: a new violation fails the test, and so does an entry that no longer happens (remove it).
 */
const KNOWN_VIOLATIONS: Record<string, string> = {
  // Pure HTTP helpers live in http/ but are needed below it. Fix: move them down (config/ or a small shared module).
  'config/validate.ts → http/origin.ts':
    'validation reuses the origin helpers (originKeys, isLoopbackHost, isOriginOfHost, derivedFrontendOrigin)',
  'config/warnings.ts → http/origin.ts': 'the start-up warnings reuse isLoopbackHost and OwnOrigins',
  'session/sessions.ts → http/cookies.ts': 'Sessions writes its own Set-Cookie headers with the cookie serializer',
  'session/cookie-sessions.ts → http/cookies.ts':
    'cookie-mode sessions write their Set-Cookie headers with the cookie serializer',
  'frontends/frontends.ts → http/origin.ts':
    'each frontend builds its OwnOrigins (the origin helper) while http needs the Frontend type',
  // The key ring is a crypto primitive kept in session/. Fix: move seal.ts below config, oidc and session.
  'config/validate.ts → session/seal.ts': 'validation decodes the session keys with decodeKey',
  'oidc/login-state.ts → session/seal.ts': 'the login-state cookie is sealed with the session key ring (type KeyRing)',
  'oidc/logout-state.ts → session/seal.ts': 'the logout-state value is sealed with the session key ring (type KeyRing)',
  // Constants of the IdP rules read by validation. Fix: declare them in config/ and import them from there in oidc/.
  'config/validate.ts → oidc/end-session.ts':
    'validation checks the end-session placeholders against END_SESSION_PLACEHOLDERS',
  'config/validate.ts → oidc/issuer.ts': 'validation checks tenant ids against TENANT_ID',
  // oidc/ is below tokens/ (TokenService refreshes through OidcClient). Fix: issue #16 item 4 moves the request building into oidc/.
  'oidc/client.ts → tokens/resource.ts':
    'the IdP client builds RFC 8707 resource parameters with resourceParameters from tokens/',
  'oidc/client.ts → tokens/dpop.ts': 'the IdP client signs DPoP proofs with the DpopKey type from tokens/',
  'oidc/claims.ts → session/session.ts':
    'the Claim type is declared with the session. Fix: declare it in oidc/claims.ts and let session import it',
  // cli is the top; demo sits below it (cli/run.ts loads it for `gatehouse demo`).
  'demo/demo.ts → cli/serve.ts':
    'the demo reuses listen() and closeServer() from the serve command. Fix: move them to a module below both',
}

/** Endpoints do not import each other, with these exceptions. */
const ENDPOINT_IMPORTS: Record<string, string> = {
  'endpoints/endpoint-routes.ts → *': 'the route table of the endpoints imports each one',
  'endpoints/logout.ts → endpoints/user.ts':
    'one definition of the logout sid (logoutSidOf): /bff/user publishes it in the logout URL, /bff/logout checks it',
}

const layerPaths = Object.entries(LAYERS).flatMap(([name, layer]) => layer.files.map((path) => ({ name, path })))

/** The layer a file of src/ belongs to: the longest matching folder or file of the table. */
function layerOf(file: string): string | undefined {
  let best: { name: string; path: string } | undefined
  for (const entry of layerPaths) {
    const matches = entry.path.endsWith('/') ? file.startsWith(entry.path) : file === entry.path
    if (matches && (!best || entry.path.length > best.path.length)) best = entry
  }
  return best?.name
}

function isAllowed(edge: ImportEdge): boolean {
  const from = layerOf(edge.from)!
  const to = layerOf(edge.to)!
  return from === to || LAYERS[from]!.mayImport.some((allowed) => allowed === to || allowed === edge.to)
}

const graph = readImportGraph(srcRoot)
const key = (e: { from: string; to: string }): string => `${e.from} → ${e.to}`
const where = (e: ImportEdge): string =>
  `${e.from}:${e.line} imports ${e.to}${e.runtime ? '' : ' (type only)'} (${layerOf(e.from)} → ${layerOf(e.to)})`

test('every file of src/ belongs to a layer of the table (a new folder or top-level file is placed in it)', () => {
  assert.deepEqual(
    graph.files.filter((f) => layerOf(f) === undefined),
    [],
  )
})

test('every import in src/ resolves to a file, and every import() names its module as a string literal', () => {
  assert.deepEqual(
    graph.unresolved.map((u) => `${u.from}:${u.line} ${u.specifier}`),
    [],
  )
})

test('no import cycle between the files of src/ (runtime imports)', () => {
  const cycles = findCycles(
    graph.files,
    graph.edges.filter((e) => e.internal && e.runtime),
  )
  assert.deepEqual(
    cycles.map((c) => c.join(' → ')),
    [],
    'break each cycle: move what both files need into a third, lower module',
  )
})

test('the layer table is acyclic and names only its own layers, so no two layers can import each other', () => {
  for (const [name, layer] of Object.entries(LAYERS)) {
    for (const target of layer.mayImport) {
      assert.ok(
        target in LAYERS || (target.endsWith('.ts') && layerOf(target) !== undefined),
        `${name} may import ${target}, which is neither a layer nor a file of one`,
      )
    }
  }
  const dependsOn = (l: string): string[] =>
    LAYERS[l]!.mayImport.map((t) => (t in LAYERS ? t : layerOf(t)!)).filter((t) => t !== l)
  const files = Object.keys(LAYERS)
  const cycles = findCycles(
    files,
    files.flatMap((from) => dependsOn(from).map((to) => ({ from, to }))),
  )
  assert.deepEqual(
    cycles.map((c) => c.join(' → ')),
    [],
  )
})

test('every import in src/ (type-only ones too) goes to a layer its own layer may import', () => {
  const violations = graph.edges.filter((e) => e.internal && !isAllowed(e))
  const found = new Set(violations.map(key))
  const unexpected = violations.filter((e) => !(key(e) in KNOWN_VIOLATIONS)).map(where)
  const fixed = Object.keys(KNOWN_VIOLATIONS).filter((k) => !found.has(k))
  assert.deepEqual(
    unexpected,
    [],
    'an import against the layering (docs/architecture.md, "Layering rules"): import from a lower layer instead, or move the code',
  )
  assert.deepEqual(
    fixed,
    [],
    'these known violations no longer happen: remove them from KNOWN_VIOLATIONS and docs/architecture.md',
  )
})

test('endpoints do not import each other (only the route table, and logout.ts for the logout sid)', () => {
  const offenders = graph.edges
    .filter((e) => e.internal && layerOf(e.from) === 'endpoints' && layerOf(e.to) === 'endpoints')
    .filter((e) => !(`${e.from} → *` in ENDPOINT_IMPORTS) && !(key(e) in ENDPOINT_IMPORTS))
    .map(where)
  assert.deepEqual(offenders, [])
})

test('the browser module (src/client) imports no other module at all: no server code, no node:, no package', () => {
  const offenders = graph.edges
    .filter((e) => layerOf(e.from) === 'client' && (!e.internal || layerOf(e.to) !== 'client'))
    .map((e) => `${e.from}:${e.line} imports ${e.to}`)
  assert.deepEqual(offenders, [])
})

test('a package the install may lack (optional peer, devDependency) is loaded with import(), never by a static import', () => {
  const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    dependencies?: Record<string, string>
  }
  const installed = new Set(Object.keys(manifest.dependencies ?? {}))
  const builtins = new Set(builtinModules)
  const packageOf = (specifier: string): string =>
    specifier
      .split('/')
      .slice(0, specifier.startsWith('@') ? 2 : 1)
      .join('/')
  const offenders = graph.edges
    .filter((e) => !e.internal && e.runtime && e.form !== 'dynamic-import')
    .filter((e) => !e.to.startsWith('node:') && !builtins.has(e.to) && !installed.has(packageOf(e.to)))
    .map((e) => `${e.from}:${e.line} imports ${e.to}`)
  assert.deepEqual(offenders, [])
})

test('docs/architecture.md states the same layer table as this test', () => {
  const doc = readFileSync(new URL('../../docs/architecture.md', import.meta.url), 'utf8')
  const section = doc.split(/^## Layering rules$/m)[1]?.split(/^## /m)[0]
  assert.ok(section, 'docs/architecture.md has no "## Layering rules" section')
  const cells = (text: string): string[] =>
    text
      .replace(/`/g, '')
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '' && s !== '—')
      .sort()
  const documented: Record<string, { files: string[]; mayImport: string[] }> = {}
  for (const line of section.split('\n')) {
    const row = /^\|\s*`([^`]+)`\s*\|([^|]*)\|([^|]*)\|\s*$/.exec(line)
    if (row) documented[row[1]!] = { files: cells(row[2]!), mayImport: cells(row[3]!) }
  }
  const tested = Object.fromEntries(
    Object.entries(LAYERS).map(([name, l]) => [
      name,
      { files: [...l.files].sort(), mayImport: [...l.mayImport].sort() },
    ]),
  )
  assert.deepEqual(documented, tested)
  for (const known of Object.keys(KNOWN_VIOLATIONS))
    assert.ok(
      section.includes(known.replace(' → ', '` → `')),
      `docs/architecture.md does not list the known violation ${known}`,
    )
})

test('the import reader sees every import form, and nothing in comments or strings', () => {
  const code = [
    "import a from './a.ts'",
    "import type { B } from './b.ts'",
    "import { type C } from './c.ts'",
    "export { d } from './d.ts'",
    "export type { E } from './e.ts'",
    "export * from './f.ts'",
    "const g = await import('./g.ts')",
    "type H = typeof import('./h.ts')",
    "import './i.ts'",
    "// import x from './not-a.ts'",
    'const s = "import y from \'./not-b.ts\'"',
    'const t = `${"export { z } from \'./not-c.ts\'"}`',
    'const u = await import(name)',
  ].join('\n')
  assert.deepEqual(
    importsOf('sample.ts', code).map((i) => `${i.specifier ?? '?'} ${i.form} ${i.runtime ? 'runtime' : 'type'}`),
    [
      './a.ts import runtime',
      './b.ts import type',
      './c.ts import runtime',
      './d.ts export-from runtime',
      './e.ts export-from type',
      './f.ts export-from runtime',
      './g.ts dynamic-import runtime',
      './h.ts import-type-node type',
      './i.ts import runtime',
      '? dynamic-import runtime',
    ],
  )
})

test('the cycle finder reports each cycle once, as a path back to its first file', () => {
  const edges = [
    { from: 'a', to: 'b' },
    { from: 'b', to: 'a' },
    { from: 'b', to: 'c' },
    { from: 'c', to: 'a' },
    { from: 'c', to: 'd' },
  ]
  assert.deepEqual(findCycles(['a', 'b', 'c', 'd'], edges), [
    ['a', 'b', 'a'],
    ['a', 'b', 'c', 'a'],
  ])
  assert.deepEqual(findCycles(['a', 'b'], [{ from: 'a', to: 'b' }]), [])
  const everyToEvery = ['a', 'b', 'c', 'd', 'e'].flatMap((from, _, all) =>
    all.filter((to) => to !== from).map((to) => ({ from, to })),
  )
  assert.equal(findCycles(['a', 'b', 'c', 'd', 'e'], everyToEvery, 7).length, 7, 'stops at the limit')
})
