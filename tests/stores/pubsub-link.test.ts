import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { openStore } from '../../src/session/stores/open-store.ts'
import type { SessionEndNotice, SessionStore } from '../../src/session/store.ts'
import { storeFixture, type SharedStoreKind, type StoreFixture } from '../helpers/instances.ts'
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.ts'

// The session read cache (src/session/stores/cached.ts) may only serve copies while the store's
// pub/sub is listening. These tests pull the plug on a real Redis / PostgreSQL (a TCP proxy in
// between) and check that the subscription says so, says when it listens again, and then really
// receives notices again.

const WAIT_MS = 20_000

async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_MS
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`${what}: not within ${WAIT_MS} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

for (const kind of ['redis', 'postgres'] as const satisfies readonly SharedStoreKind[]) {
  describe(`${kind}: the end-notice subscription reports its link`, () => {
    let fixture: StoreFixture
    let proxy: TcpProxy
    let subscriber: SessionStore
    let publisher: SessionStore

    before(async () => {
      fixture = await storeFixture(kind, 'gatehouse_link')
      proxy = await startTcpProxy(fixture.target)
      subscriber = await openStore(fixture.url(proxy))
      publisher = await openStore(fixture.url())
    })
    after(async () => {
      await proxy?.restore()
      await subscriber?.close()
      await publisher?.close()
      await proxy?.close()
      await fixture?.cleanup()
    })

    test('link lost: onLink(false); back: onLink(true) only once notices arrive again', async () => {
      const notices: SessionEndNotice[] = []
      const links: boolean[] = []
      const stop = await subscriber.subscribeEnded!(
        (notice) => notices.push(notice),
        (listening) => links.push(listening),
      )
      try {
        await publisher.publishEnded!({ idHash: 'before', reason: 'logout', origin: 'test' })
        await until('a notice while connected', () => notices.some((n) => n.idHash === 'before'))
        assert.equal(links.length, 0, 'no link change while connected')

        await proxy.cut()
        await until('onLink(false) after the connection was cut', () => links.includes(false))
        // Long enough for several failed reconnect attempts: each must not be reported (nor counted) again.
        await new Promise((resolve) => setTimeout(resolve, 1_500))
        await proxy.restore()
        await until('onLink(true) after the store came back', () => links.at(-1) === true)

        await publisher.publishEnded!({ idHash: 'after', reason: 'logout', origin: 'test' })
        await until('a notice after the link came back', () => notices.some((n) => n.idHash === 'after'))
        assert.deepEqual(links, [false, true], 'one loss and one return reported for one outage')
      } finally {
        await stop()
      }
      await new Promise((resolve) => setTimeout(resolve, 100))
      assert.deepEqual(links, [false, true], 'stopping the subscription reports nothing')
    })
  })
}
