// npm test: every test file under tests/, on the Node that runs npm scripts (node@24 from devDependencies).
import { spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { join, relative } from 'node:path'

const root = new URL('..', import.meta.url).pathname
function find(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name)
    return e.isDirectory() ? find(path) : e.name.endsWith('.test.ts') ? [relative(root, path)] : []
  })
}
const files = find(join(root, 'tests')).sort()
const args = [
  '--test',
  '--test-concurrency=4',
  '--test-timeout=120000',
  ...(process.env.CI ? ['--test-reporter=spec'] : []),
  ...files,
]
const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' })
process.exit(result.status ?? 1)
