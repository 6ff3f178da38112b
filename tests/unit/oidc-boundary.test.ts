import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { test } from 'node:test'
import { GatehouseError } from '../../src/errors.ts'
import { storeCall } from '../../src/session/store-call.ts'

const root = new URL('../../src', import.meta.url).pathname

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  )
}

/** Static imports, re-exports and dynamic import() of a module name. */
function importsOf(code: string): string[] {
  return [...code.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"]([^'"]+)['"]/gm)].map((m) => m[1]!)
}

test('one door to the IdP: nothing outside src/oidc imports openid-client or oauth4webapi', () => {
  const offenders: string[] = []
  for (const file of sources(root)) {
    const path = relative(root, file)
    if (path.startsWith('oidc/')) continue
    for (const name of importsOf(readFileSync(file, 'utf8')))
      if (name === 'openid-client' || name === 'oauth4webapi') offenders.push(`${path} imports ${name}`)
  }
  assert.deepEqual(offenders, [])
})

test('the boundary check sees the import forms it guards against', () => {
  assert.deepEqual(
    importsOf(
      "import * as oidc from 'openid-client'\nimport type { X } from \"oauth4webapi\"\nconst m = await import('openid-client')\nexport { Y } from 'oauth4webapi'\nimport 'openid-client'",
    ),
    ['openid-client', 'oauth4webapi', 'openid-client', 'oauth4webapi', 'openid-client'],
  )
})

test("storeCall: a store failure becomes store_unavailable (503) with the store's error as its cause", async () => {
  const failure = new Error('connection reset')
  const err = await storeCall(() => Promise.reject(failure)).then(
    () => assert.fail('resolved'),
    (e: unknown) => e,
  )
  assert.ok(err instanceof GatehouseError)
  assert.equal(err.code, 'store_unavailable')
  assert.equal(err.status, 503)
  assert.equal(err.cause, failure)
  assert.equal(err.report, undefined, 'no report: the answer is the same for every store fault')
})

test('storeCall: a synchronous throw and a non-Error rejection are store_unavailable too; a result passes through', async () => {
  await assert.rejects(
    storeCall(() => {
      throw new TypeError('driver bug')
    }),
    (e: unknown) => e instanceof GatehouseError && e.code === 'store_unavailable',
  )
  await assert.rejects(
    storeCall(() => Promise.reject('a string')),
    (e: unknown) => e instanceof GatehouseError && e.code === 'store_unavailable' && e.cause === 'a string',
  )
  assert.equal(await storeCall(() => Promise.resolve(42)), 42)
})
