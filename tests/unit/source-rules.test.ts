import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { test } from 'node:test'

const root = new URL('../../src', import.meta.url).pathname

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  )
}

test('no `any` in src: every value is typed (strict TypeScript, no escape hatch)', () => {
  const offenders: string[] = []
  for (const file of sources(root)) {
    readFileSync(file, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        const code = line.replace(/\/\/.*$/, '').replace(/'[^']*'|"[^"]*"|`[^`]*`/g, '')
        if (/(:\s*any\b|\bas any\b|<any>|any\[\])/.test(code))
          offenders.push(`${relative(root, file)}:${i + 1}: ${line.trim()}`)
      })
  }
  assert.deepEqual(offenders, [])
})

test('no default exports, no enums, no namespaces in src (erasable, named-export style)', () => {
  const offenders: string[] = []
  for (const file of sources(root)) {
    readFileSync(file, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        if (/^\s*export default\b|^\s*(export\s+)?(const\s+)?enum\s|^\s*(export\s+)?namespace\s/.test(line))
          offenders.push(`${relative(root, file)}:${i + 1}`)
      })
  }
  assert.deepEqual(offenders, [])
})
