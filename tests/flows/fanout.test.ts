import assert from 'node:assert/strict'
import { after, describe, test } from 'node:test'
import { measureFanout, setupNote, summaryLine } from '../../bench/fanout.ts'
import { storeFixture, type SharedStoreKind, type StoreFixture } from '../helpers/instances.ts'

// Issue 18 point 5: three gatehouse instances (child processes, as `gatehouse serve` runs them) share one
// store with a 60 s session cache; 100 sessions are logged out on A, one at a time, and B and C must refuse
// each (401) although they had just read it: only the store's session-end notice can make them. The
// fan-out figures (p50/p99/max, ms) are printed for the CI log; nothing here asserts a timing (the
// bench, `npm run bench:fanout`, judges the 50 ms goal). Real servers: the shared Redis and PostgreSQL,
// and a private Redis Cluster started from redis-server.

const LOGOUTS = 100
/** How long B and C have to refuse a logged-out session before the test gives up (not a timing assertion). */
const NOTICE_WAIT_MS = 5_000

for (const kind of ['redis', 'redis-cluster', 'postgres'] as const satisfies readonly SharedStoreKind[]) {
  describe(`fan-out of a logout across three instances sharing one ${kind} store`, () => {
    let store: StoreFixture | undefined
    after(async () => {
      await store?.cleanup()
    })

    test(`${LOGOUTS} logouts on A: each session, just read (and cached) by B and C, is refused by both (401) and by A`, async (t) => {
      store = await storeFixture(kind, 'gatehouse_fanout')
      const result = await measureFanout({
        store: store.url(),
        logouts: LOGOUTS,
        instances: 3,
        timeoutMs: NOTICE_WAIT_MS,
      })
      t.diagnostic(summaryLine(kind, result))
      t.diagnostic(setupNote(result.mode, result.instances, result.pollFrom))

      assert.equal(result.samples.length, LOGOUTS, 'every session was logged in, read on B and C, and logged out on A')
      const notRefused = result.samples.flatMap((sample, n) =>
        sample.refusedAfterSendMs.flatMap((ms, i) =>
          ms === undefined
            ? [`logout ${n + 1}: instance ${'BC'[i]} still answered 200 after ${NOTICE_WAIT_MS} ms`]
            : [],
        ),
      )
      assert.deepEqual(notRefused, [], 'B and C refuse every session logged out on A')
      assert.equal(result.unrefused, 0)
      const servedOnA = result.samples.flatMap((sample, n) => (sample.refusedOnA ? [] : [`logout ${n + 1}`]))
      assert.deepEqual(servedOnA, [], 'A refuses every session it logged out')
    })
  })
}
