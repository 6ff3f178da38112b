// docs/configuration.md (the key reference) and docs/errors.md (the error codes) are generated from
// the code by scripts/generate-docs.ts (`npm run docs:update`). These tests fail when a file differs
// from what the code generates, and when the code lacks what the generated docs need.
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import {
  configKeys,
  GENERATED_PARTS,
  markers,
  renderConfigKeys,
  renderErrors,
  root,
  withGenerated,
} from '../../scripts/generate-docs.ts'
import { COMPUTED_DEFAULTS } from '../../src/config/defaults.ts'
import { configJsonSchema } from '../../src/config/json-schema.ts'
import { ERRORS } from '../../src/errors.ts'

/** The first lines where two texts differ, with their line numbers: enough to see what drifted. */
function firstDifferences(recorded: string, generated: string, max = 5): string {
  const a = recorded.split('\n')
  const b = generated.split('\n')
  const out: string[] = []
  for (let i = 0; i < Math.max(a.length, b.length) && out.length < max * 2; i++) {
    if (a[i] === b[i]) continue
    out.push(`  line ${i + 1} in the file: ${a[i] ?? '(none)'}`, `  line ${i + 1} from the code: ${b[i] ?? '(none)'}`)
  }
  return out.join('\n')
}

for (const part of GENERATED_PARTS) {
  test(`${part.file} is what the code generates (run \`npm run docs:update\` after changing the code)`, () => {
    const text = readFileSync(join(root, part.file), 'utf8')
    const { start, end } = markers(part.name)
    const expected = withGenerated(text, part.name, part.render())
    assert.ok(
      expected !== undefined,
      `${part.file} needs exactly one ${start} … ${end} pair; run \`npm run docs:update\` once they are there`,
    )
    if (text !== expected) {
      assert.fail(
        `${part.file} differs from what the code generates:\n${firstDifferences(text, expected)}\nRun \`npm run docs:update\` and commit the result (descriptions live in src/config/validate.ts, meanings in src/errors.ts).`,
      )
    }
  })
}

test('a hand edit inside the generated part is detected, and text around the markers is left alone', () => {
  const body = renderErrors()
  const doc = `# Title\n\nprose\n\n${markers('errors').start}\n${body}\n${markers('errors').end}\n\nmore prose\n`
  assert.equal(withGenerated(doc, 'errors', body), doc)
  const edited = doc.replace('| 404 | `not_found` |', '| 404 | `not_found_renamed` |')
  assert.notEqual(edited, doc)
  assert.equal(withGenerated(edited, 'errors', body), doc, 'regenerating restores the table and nothing else')
})

test('missing, reversed or repeated markers are refused rather than written somewhere', () => {
  const { start, end } = markers('errors')
  assert.equal(withGenerated('no markers here', 'errors', 'x'), undefined)
  assert.equal(withGenerated(`${start}\nonly a start`, 'errors', 'x'), undefined)
  assert.equal(withGenerated(`${end}\n${start}\n`, 'errors', 'x'), undefined)
  assert.equal(withGenerated(`${start}\n${end}\n${start}\n${end}\n`, 'errors', 'x'), undefined)
  assert.equal(
    withGenerated(`${markers('config-keys').start}\n${markers('config-keys').end}`, 'errors', 'x'),
    undefined,
    "another part's markers are not these",
  )
})

test('every key of the configuration has a description (objects that only group keys excepted)', () => {
  const rows = configKeys()
  assert.ok(rows.length > 60, `${rows.length} keys`)
  assert.deepEqual(
    rows.filter((r) => !r.object && !r.description).map((r) => r.path),
    [],
  )
  for (const path of [
    'oidc.clientId',
    'session.cacheTtl',
    'remoteApis[].queue',
    'frontends[].oidc.clientId',
    'admin.listen.port',
  ]) {
    assert.ok(
      rows.some((r) => r.path === path),
      `${path} is in the reference`,
    )
  }
})

test('the key reference shows defaults from the schema, required keys and environment variables', () => {
  const row = (path: string) => configKeys().find((r) => r.path === path)!
  assert.equal(row('listen.port').default, '`8080`')
  assert.equal(row('oidc.timeout').default, '`"10s"`', 'durations as users write them')
  assert.equal(row('oidc.timeout').type, 'duration')
  assert.equal(row('remoteApis[].maxBodySize').type, 'size')
  assert.equal(row('oidc.clientId').default, '**required**')
  assert.equal(row('oidc.clientSecret').default, '—')
  assert.equal(row('oidc.clientId').variable, 'GATEHOUSE_OIDC__CLIENT_ID')
  assert.equal(row('remoteApis[].path').variable, undefined, 'keys of list entries are set with the whole list')
  assert.equal(row('remoteApis').variable, 'GATEHOUSE_REMOTE_APIS')
})

test('every computed default names a key of the schema that has no default of its own', () => {
  const rows = new Map(configKeys().map((r) => [r.path, r]))
  for (const path of Object.keys(COMPUTED_DEFAULTS)) {
    const row = rows.get(path)
    assert.ok(row, `COMPUTED_DEFAULTS names ${path}, which is not a key of the schema`)
    assert.equal(
      row.schemaDefault,
      false,
      `${path} has a default in the schema, so COMPUTED_DEFAULTS must not word another`,
    )
  }
})

test('every error code is in docs/errors.md once, with its status and a meaning', () => {
  const doc = readFileSync(join(root, 'docs/errors.md'), 'utf8')
  for (const [code, e] of Object.entries(ERRORS)) {
    assert.match(e.meaning, /^[A-Z`].{40,}[.)]$/s, `${code}: a meaning of a sentence or more`)
    const rows = doc.split('\n').filter((line) => line.startsWith(`| ${e.status} | \`${code}\` |`))
    assert.equal(rows.length, 1, `${code} is listed once with status ${e.status}`)
  }
})

/** GitHub's heading anchors: lower case, punctuation dropped, spaces as "-". */
function anchorsOf(file: string): Set<string> {
  const text = readFileSync(file, 'utf8').replace(/```[\s\S]*?```/g, '')
  const headings = [...text.matchAll(/^#{1,6} (.+)$/gm)].map((m) => m[1]!)
  return new Set(
    headings.map((h) =>
      h
        .toLowerCase()
        .replace(/[^\p{L}\p{N} _-]/gu, '')
        .replace(/ /g, '-'),
    ),
  )
}

test('every link in the generated parts names a file of docs/ and a heading in it', () => {
  const links = [...`${renderConfigKeys()}\n${renderErrors()}`.matchAll(/\]\(([a-z0-9-]+\.md)(?:#([a-z0-9-]+))?\)/g)]
  assert.ok(links.length > 10)
  for (const [, file, anchor] of links) {
    const path = join(root, 'docs', file!)
    assert.ok(existsSync(path), `docs/${file} exists`)
    if (anchor) assert.ok(anchorsOf(path).has(anchor), `docs/${file} has a heading for #${anchor}`)
  }
})

test('the descriptions reach the JSON Schema editors read', () => {
  const schema = configJsonSchema() as {
    properties: Record<string, { description?: string; properties?: Record<string, { description?: string }> }>
  }
  assert.match(schema.properties.oidc!.properties!.clientId!.description ?? '', /client id registered at the IdP/)
  assert.match(schema.properties.publicOrigin!.description ?? '', /host allowlist/)
})
