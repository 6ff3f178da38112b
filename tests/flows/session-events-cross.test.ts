import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { openStore } from '../../src/session/stores/open-store.ts'
import { CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import {
  instanceOptions,
  startInstance,
  storeFixture,
  type Instance,
  type SharedStoreKind,
  type StoreFixture,
} from '../helpers/instances.ts'
import { openEvents } from '../helpers/session-events.ts'

// SPEC §8: an open tab learns at once that its session ended, also when the ending happened on
// another instance. The periodic store check is set to an hour here, so only the store's
// notifications (Redis pub/sub, PostgreSQL NOTIFY) can deliver within the test.
const NO_PERIODIC_CHECK = 3_600_000
type Claims = Array<{ type: string; value: unknown }>

for (const kind of ['redis', 'postgres'] as const satisfies readonly SharedStoreKind[]) {
  describe(`session-end push across instances on ${kind}`, () => {
    let store: StoreFixture
    let flow: Flow
    let b: Instance
    before(async () => {
      store = await storeFixture(kind, 'gatehouse-push')
      flow = await startFlow({
        gatehouse: { session: { store: store.url() } },
        runtime: { sessionCheckMs: NO_PERIODIC_CHECK },
      })
      b = await startInstance(instanceOptions(flow, { session: { store: store.url() } }), {
        sessionCheckMs: NO_PERIODIC_CHECK,
      })
    })
    after(async () => {
      await b?.close()
      await flow?.close()
      await store?.cleanup()
    })

    test('a logout on instance A ends the event stream held by instance B', async () => {
      const browser = flow.browser()
      await flow.login(browser)
      const events = await openEvents(b.origin, browser.cookieHeader())
      assert.equal(events.status, 200)
      await events.next('session')
      const claims = JSON.parse((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) as Claims
      await browser.get(`${flow.origin}${claims.find((c) => c.type === 'bff:logout_url')!.value as string}`)
      assert.deepEqual(await events.next('session-end'), { reason: 'logout' })
      events.close()
    })

    test('a revocation from the CLI (another process on the same store) reaches the stream on B', async () => {
      const browser = flow.browser()
      await flow.login(browser, { username: 'bob' })
      const events = await openEvents(b.origin, browser.cookieHeader())
      await events.next('session')
      // What `gatehouse sessions revoke --sub` does: its own store connection, delete, publish.
      const cli = await openStore(store.url())
      try {
        await cli.deleteWhere({ sub: 'bob-0002' })
        await cli.publishEnded!({ filter: { sub: 'bob-0002' }, reason: 'revoked', origin: 'cli' })
      } finally {
        await cli.close()
      }
      assert.deepEqual(await events.next('session-end'), { reason: 'revoked' })
      events.close()
    })
  })
}
