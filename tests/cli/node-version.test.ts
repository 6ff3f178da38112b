import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { test } from 'node:test'
import { unsupportedNode } from '../../src/cli/node-version.ts'
import { CLI } from '../helpers/cli.ts'

test('a Node.js older than 22.13 is named in one line; 22.13 and newer pass', () => {
  assert.equal(unsupportedNode('v20.20.2'), 'gatehouse needs Node.js >= 22.13 (this is v20.20.2)')
  assert.equal(unsupportedNode('v22.12.0'), 'gatehouse needs Node.js >= 22.13 (this is v22.12.0)')
  assert.equal(unsupportedNode('18.0.0'), 'gatehouse needs Node.js >= 22.13 (this is v18.0.0)')
  for (const fine of ['v22.13.0', 'v22.20.1', 'v24.21.0', 'v26.0.0'])
    assert.equal(unsupportedNode(fine), undefined, fine)
})

// The machines carry Node.js 20 as the system's node (the project runs on its pinned Node 24).
const OLD_NODE = ['/usr/bin/node', '/usr/local/bin/node', '/bin/node'].find(
  (path) =>
    existsSync(path) && unsupportedNode(spawnSync(path, ['-v'], { encoding: 'utf8' }).stdout.trim()) !== undefined,
)

test('the CLI run by an old Node.js says which version it needs and exits 1, without a stack trace', () => {
  assert.ok(OLD_NODE, 'an old system Node.js to run the CLI with (this machine kind carries Node.js 20)')
  const run = spawnSync(OLD_NODE, [CLI, '--version'], { encoding: 'utf8' })
  assert.equal(run.status, 1)
  assert.equal(run.stdout, '')
  assert.match(run.stderr, /^gatehouse needs Node\.js >= 22\.13 \(this is v\d+\.\d+\.\d+\)\n$/)
})
