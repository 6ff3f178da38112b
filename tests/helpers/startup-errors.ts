import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { describeError, GatehouseError } from '../../src/errors.ts'
import { openStore } from '../../src/session/stores/open-store.ts'

/** A loopback port nothing listens on (taken from the OS, then released). */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/**
 * The error opening `location` fails with, checked for what every start-up error must be: a GatehouseError
 * store_unavailable, one line, `session store <where>: <cause>`, no secret in it or its cause.
 */
export async function startupError(location: string, secrets: string[] = []): Promise<GatehouseError> {
  const err = await openStore(location).then(
    async (store) => {
      await store.close()
      return assert.fail(`${location} opened`)
    },
    (e: unknown) => e,
  )
  assert.ok(err instanceof GatehouseError, `a GatehouseError, got ${String(err)}`)
  assert.equal(err.code, 'store_unavailable')
  assert.doesNotMatch(err.message, /\n/, 'one line')
  assert.match(err.message, /^session store \S+: \S/)
  const logged = `${err.message} ${JSON.stringify(describeError(err))} ${String(err.cause)} ${JSON.stringify(err.cause)}`
  for (const secret of secrets) assert.ok(!logged.includes(secret), `the message and its cause never show "${secret}"`)
  return err
}
