import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { afterEach, beforeEach, describe, test } from 'node:test'
import { capabilities, type SessionRecord, type SessionStore } from '../session/store.ts'

const NOW = 1_700_000_000_000
const HOUR = 3_600_000

/** A record that is live at NOW unless told otherwise; ids are random so suites never collide. */
export function sampleRecord(overrides: Partial<SessionRecord> = {}): SessionRecord {
  return {
    idHash: randomBytes(32).toString('base64url'),
    sub: 'alice',
    sid: 'sid-1',
    partition: 'app',
    createdAt: NOW - HOUR,
    renewedAt: NOW - HOUR,
    expiresAt: NOW + HOUR,
    version: 1,
    sealed: `sealed-${randomBytes(8).toString('hex')}`,
    ...overrides,
  }
}

/**
 * The behaviour every SessionStore must show (SPEC §4). `open` must hand back an empty store for
 * every test; the suite closes it afterwards.
 */
export function runStoreContract(name: string, open: () => Promise<SessionStore>): void {
  describe(`${name} store contract`, () => {
    let store: SessionStore
    beforeEach(async () => {
      store = await open()
    })
    afterEach(async () => {
      await store.close()
    })

    const leasesOf = () => {
      const { leases } = capabilities(store)
      assert.ok(leases, 'the built-in stores implement leases')
      return leases
    }

    const ids = async (records: Promise<SessionRecord[]>) => (await records).map((r) => r.idHash).sort()

    test('a record that was inserted is returned by get, field for field', async () => {
      const record = sampleRecord()
      assert.equal(await store.set(record), true)
      assert.deepEqual(await store.get(record.idHash, NOW), record)
    })

    test('a record without sid comes back with sid undefined', async () => {
      const record = sampleRecord({ sid: undefined })
      assert.equal(await store.set(record), true)
      const got = await store.get(record.idHash, NOW)
      assert.equal(got?.sid, undefined)
      assert.deepEqual(got, record)
    })

    test('get of an unknown id returns undefined', async () => {
      assert.equal(await store.get('no-such-id', NOW), undefined)
    })

    test('inserting an id that already exists returns false and keeps the first record', async () => {
      const record = sampleRecord()
      assert.equal(await store.set(record), true)
      assert.equal(await store.set({ ...record, sub: 'mallory', sealed: 'other' }), false)
      assert.deepEqual(await store.get(record.idHash, NOW), record)
    })

    test('an expired record is not returned by get, even before cleanup', async () => {
      const record = sampleRecord({ expiresAt: NOW - 1 })
      await store.set(record)
      assert.equal(await store.get(record.idHash, NOW), undefined)
      assert.deepEqual(await store.get(record.idHash, NOW - 2), record)
    })

    test('a record is expired at exactly its expiresAt instant', async () => {
      const record = sampleRecord({ expiresAt: NOW })
      await store.set(record)
      assert.equal(await store.get(record.idHash, NOW), undefined)
      assert.deepEqual(await store.get(record.idHash, NOW - 1), record)
    })

    test('an update carrying the stored version replaces the record', async () => {
      const record = sampleRecord()
      await store.set(record)
      const next = { ...record, renewedAt: NOW, expiresAt: NOW + 2 * HOUR, version: 2, sealed: 'renewed' }
      assert.equal(await store.set(next, 1), true)
      assert.deepEqual(await store.get(record.idHash, NOW), next)
    })

    test('an update carrying a stale version fails and leaves the record unchanged', async () => {
      const record = sampleRecord()
      await store.set(record)
      const v2 = { ...record, version: 2, sealed: 'v2' }
      assert.equal(await store.set(v2, 1), true)
      assert.equal(await store.set({ ...record, version: 2, sealed: 'stale' }, 1), false)
      assert.deepEqual(await store.get(record.idHash, NOW), v2)
    })

    test('an update of an id that was never inserted returns false and creates nothing', async () => {
      const record = sampleRecord({ version: 2 })
      assert.equal(await store.set(record, 1), false)
      assert.equal(await store.get(record.idHash, NOW), undefined)
    })

    test('a deleted record is never written back by a compare-and-set update', async () => {
      const record = sampleRecord()
      await store.set(record)
      assert.equal(await store.delete(record.idHash), true)
      assert.equal(await store.set({ ...record, version: 2, sealed: 'late refresh' }, 1), false)
      assert.equal(await store.get(record.idHash, NOW), undefined)
      assert.deepEqual(await store.list({ sub: record.sub, limit: 10 }, NOW), [])
    })

    test('delete returns false for an id that is not stored', async () => {
      assert.equal(await store.delete('no-such-id'), false)
    })

    test('of 10 concurrent updates from the same version exactly one wins', async () => {
      const record = sampleRecord()
      await store.set(record)
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) => store.set({ ...record, version: 2, sealed: `writer-${i}` }, 1)),
      )
      assert.equal(results.filter(Boolean).length, 1)
      const winner = results.indexOf(true)
      const stored = await store.get(record.idHash, NOW)
      assert.equal(stored?.version, 2)
      assert.equal(stored?.sealed, `writer-${winner}`)
    })

    test('deleteWhere by sub removes every session of that user and no other', async () => {
      const a1 = sampleRecord({ sub: 'alice', sid: 's1' })
      const a2 = sampleRecord({ sub: 'alice', sid: 's2', partition: 'admin' })
      const a3 = sampleRecord({ sub: 'alice', sid: undefined })
      const b1 = sampleRecord({ sub: 'bob', sid: 's1' })
      for (const r of [a1, a2, a3, b1]) await store.set(r)
      assert.equal(await store.deleteWhere({ sub: 'alice' }), 3)
      for (const r of [a1, a2, a3]) assert.equal(await store.get(r.idHash, NOW), undefined)
      assert.deepEqual(await store.get(b1.idHash, NOW), b1)
    })

    test('deleteWhere by sub and sid removes only that IdP session', async () => {
      const a1 = sampleRecord({ sub: 'alice', sid: 's1' })
      const a1bis = sampleRecord({ sub: 'alice', sid: 's1', partition: 'admin' })
      const a2 = sampleRecord({ sub: 'alice', sid: 's2' })
      const a3 = sampleRecord({ sub: 'alice', sid: undefined })
      const b1 = sampleRecord({ sub: 'bob', sid: 's1' })
      for (const r of [a1, a1bis, a2, a3, b1]) await store.set(r)
      assert.equal(await store.deleteWhere({ sub: 'alice', sid: 's1' }), 2)
      assert.deepEqual(await ids(store.list({ sub: 'alice', limit: 10 }, NOW)), [a2.idHash, a3.idHash].sort())
      assert.deepEqual(await store.get(b1.idHash, NOW), b1)
    })

    test('deleteWhere by sid alone removes every session of that IdP session, whoever its sub', async () => {
      const a1 = sampleRecord({ sub: 'alice', sid: 's1' })
      const a1admin = sampleRecord({ sub: 'alice', sid: 's1', partition: 'admin' })
      const a2 = sampleRecord({ sub: 'alice', sid: 's2' })
      const none = sampleRecord({ sub: 'carol', sid: undefined })
      for (const r of [a1, a1admin, a2, none]) await store.set(r)
      assert.equal(await store.deleteWhere({ sid: 's1' }), 2)
      assert.equal(await store.get(a1.idHash, NOW), undefined)
      assert.equal(await store.get(a1admin.idHash, NOW), undefined)
      assert.deepEqual(await store.get(a2.idHash, NOW), a2)
      assert.deepEqual(await store.get(none.idHash, NOW), none)
      assert.equal(await store.deleteWhere({ sid: 'unknown' }), 0)
    })

    test("deleteWhere by sub and partition removes only that frontend's sessions", async () => {
      const app = sampleRecord({ sub: 'alice', partition: 'app' })
      const admin = sampleRecord({ sub: 'alice', partition: 'admin' })
      const other = sampleRecord({ sub: 'bob', partition: 'app' })
      for (const r of [app, admin, other]) await store.set(r)
      assert.equal(await store.deleteWhere({ sub: 'alice', partition: 'app' }), 1)
      assert.equal(await store.get(app.idHash, NOW), undefined)
      assert.deepEqual(await store.get(admin.idHash, NOW), admin)
      assert.deepEqual(await store.get(other.idHash, NOW), other)
    })

    test('deleteWhere by sub, sid and partition narrows by all three', async () => {
      const hit = sampleRecord({ sub: 'alice', sid: 's1', partition: 'app' })
      const otherPartition = sampleRecord({ sub: 'alice', sid: 's1', partition: 'admin' })
      const otherSid = sampleRecord({ sub: 'alice', sid: 's2', partition: 'app' })
      for (const r of [hit, otherPartition, otherSid]) await store.set(r)
      assert.equal(await store.deleteWhere({ sub: 'alice', sid: 's1', partition: 'app' }), 1)
      assert.deepEqual(
        await ids(store.list({ sub: 'alice', limit: 10 }, NOW)),
        [otherPartition.idHash, otherSid.idHash].sort(),
      )
    })

    test('deleteWhere for a user without sessions returns 0', async () => {
      await store.set(sampleRecord({ sub: 'alice' }))
      assert.equal(await store.deleteWhere({ sub: 'nobody' }), 0)
      assert.equal(await store.deleteWhere({ sub: 'alice', sid: 'no-such-sid' }), 0)
      assert.equal((await store.list({ limit: 10 }, NOW)).length, 1)
    })

    test("list by sub returns only that user's live sessions", async () => {
      const a1 = sampleRecord({ sub: 'alice' })
      const a2 = sampleRecord({ sub: 'alice', sid: 's2' })
      const aExpired = sampleRecord({ sub: 'alice', expiresAt: NOW - 1 })
      const b1 = sampleRecord({ sub: 'bob' })
      for (const r of [a1, a2, aExpired, b1]) await store.set(r)
      const listed = await store.list({ sub: 'alice', limit: 10 }, NOW)
      assert.deepEqual(listed.map((r) => r.idHash).sort(), [a1.idHash, a2.idHash].sort())
      assert.deepEqual(
        listed.find((r) => r.idHash === a1.idHash),
        a1,
      )
      assert.deepEqual(await store.list({ sub: 'nobody', limit: 10 }, NOW), [])
    })

    test("list by sid returns only that IdP session's live sessions, narrowed by sub when given", async () => {
      const a1 = sampleRecord({ sub: 'alice', sid: 'idp-1' })
      const a2 = sampleRecord({ sub: 'alice', sid: 'idp-1', partition: 'admin' })
      const aOther = sampleRecord({ sub: 'alice', sid: 'idp-2' })
      const aExpired = sampleRecord({ sub: 'alice', sid: 'idp-1', expiresAt: NOW - 1 })
      const bSameSid = sampleRecord({ sub: 'bob', sid: 'idp-1' })
      const noSid = sampleRecord({ sub: 'alice', sid: undefined })
      for (const r of [a1, a2, aOther, aExpired, bSameSid, noSid]) await store.set(r)
      assert.deepEqual(
        await ids(store.list({ sid: 'idp-1', limit: 10 }, NOW)),
        [a1.idHash, a2.idHash, bSameSid.idHash].sort(),
      )
      assert.deepEqual(
        await ids(store.list({ sid: 'idp-1', sub: 'alice', limit: 10 }, NOW)),
        [a1.idHash, a2.idHash].sort(),
      )
      assert.deepEqual(
        (await store.list({ sid: 'idp-1', sub: 'alice', limit: 10 }, NOW)).find((r) => r.idHash === a1.idHash),
        a1,
      )
      assert.deepEqual(await store.list({ sid: 'idp-1', sub: 'carol', limit: 10 }, NOW), [])
      assert.deepEqual(await store.list({ sid: 'no-such-sid', limit: 10 }, NOW), [])
      assert.equal((await store.list({ sid: 'idp-1', limit: 1 }, NOW)).length, 1)
    })

    test('list without sub returns every live session and no expired one', async () => {
      const live = [
        sampleRecord({ sub: 'alice' }),
        sampleRecord({ sub: 'bob' }),
        sampleRecord({ sub: 'carol', sid: undefined }),
      ]
      const expired = [
        sampleRecord({ sub: 'alice', expiresAt: NOW }),
        sampleRecord({ sub: 'dave', expiresAt: NOW - HOUR }),
      ]
      for (const r of [...live, ...expired]) await store.set(r)
      assert.deepEqual(await ids(store.list({ limit: 100 }, NOW)), live.map((r) => r.idHash).sort())
    })

    test('list returns at most limit records', async () => {
      for (let i = 0; i < 5; i++)
        await store.set(sampleRecord({ sub: 'alice', sid: `s${i}`, createdAt: NOW - HOUR + i }))
      await store.set(sampleRecord({ sub: 'bob' }))
      assert.equal((await store.list({ sub: 'alice', limit: 3 }, NOW)).length, 3)
      assert.equal((await store.list({ sub: 'alice', limit: 1 }, NOW)).length, 1)
      assert.equal((await store.list({ limit: 4 }, NOW)).length, 4)
      assert.equal((await store.list({ limit: 100 }, NOW)).length, 6)
    })

    test('count counts the live sessions only, and follows inserts and deletes', async () => {
      assert.ok(store.count, 'the built-in stores implement count')
      assert.equal(await store.count(NOW), 0)
      const live = [
        sampleRecord({ sub: 'alice' }),
        sampleRecord({ sub: 'alice', sid: 's2' }),
        sampleRecord({ sub: 'bob', sid: undefined, expiresAt: NOW + 1 }),
      ]
      const expired = [
        sampleRecord({ sub: 'carol', expiresAt: NOW }),
        sampleRecord({ sub: 'dave', expiresAt: NOW - HOUR }),
      ]
      for (const r of [...live, ...expired]) await store.set(r)
      assert.equal(await store.count(NOW), 3)
      assert.equal(await store.count(NOW - 2 * HOUR), 5, 'at an earlier instant the expired ones were live')
      await store.delete(live[0]!.idHash)
      await store.deleteWhere({ sub: 'bob' })
      assert.equal(await store.count(NOW), 1)
    })

    test('count stays exact through every kind of write: refused inserts, replaces, deletes, deleteWhere, deleteExpired', async () => {
      assert.ok(store.count, 'the built-in stores implement count')
      const count = (at = NOW) => store.count!(at)
      const a = sampleRecord({ sub: 'alice', sid: 's1' })
      const b = sampleRecord({ sub: 'bob', sid: 's2' })
      const c = sampleRecord({ sub: 'carol', sid: undefined })
      const old = sampleRecord({ sub: 'dave', sid: 's4', expiresAt: NOW - 1 })
      for (const r of [a, b, c, old]) assert.equal(await store.set(r), true)
      assert.equal(await count(), 3)
      assert.equal(await store.set({ ...a, sealed: 'again' }), false)
      assert.equal(await count(), 3, 'an insert of an id already stored adds nothing')
      assert.equal(await store.set({ ...a, version: 2, expiresAt: NOW + 2 * HOUR, sealed: 'renewed' }, 1), true)
      assert.equal(await count(), 3, 'a replace is not a second session')
      assert.equal(await store.set({ ...b, version: 2, expiresAt: NOW - 1 }, 1), true)
      assert.equal(await count(), 2, 'a replace that moves the expiry into the past ends it')
      assert.equal(await store.set({ ...c, version: 6 }, 5), false)
      assert.equal(await store.delete('no-such-id'), false)
      assert.equal(await count(), 2, 'refused writes change nothing')
      assert.equal(await store.delete(c.idHash), true)
      assert.equal(await count(), 1)
      assert.equal(await count(NOW - 2 * HOUR), 3, 'the expired ones are still stored, and were live then')
      assert.equal(await store.deleteExpired(NOW, 10), 2)
      assert.equal(await count(), 1, 'removing expired sessions does not change the live count')
      assert.equal(await count(NOW - 2 * HOUR), 1, 'they are gone')
      assert.equal(await store.deleteWhere({ sub: 'alice' }), 1)
      assert.equal(await count(), 0)
      assert.equal(await count(NOW - 2 * HOUR), 0)
    })

    test('count stays exact through concurrent inserts and deletes', async () => {
      assert.ok(store.count, 'the built-in stores implement count')
      const records = Array.from({ length: 40 }, (_, i) => sampleRecord({ sub: `u${i}`, sid: `s${i}` }))
      const inserted = await Promise.all(records.map((r) => store.set(r)))
      assert.ok(inserted.every(Boolean))
      assert.equal(await store.count(NOW), 40)
      const ending = records.slice(0, 30)
      const deleted = await Promise.all(
        ending.map((r, i) => (i % 2 === 0 ? store.delete(r.idHash) : store.deleteWhere({ sub: r.sub }))),
      )
      assert.deepEqual(
        deleted.map((d) => Number(d)),
        ending.map(() => 1),
      )
      assert.equal(await store.count(NOW), 10)
    })

    test('deleteExpired removes only expired records, at most limit per call, until none are left', async () => {
      const expired = Array.from({ length: 5 }, (_, i) => sampleRecord({ sub: `u${i}`, expiresAt: NOW - i }))
      const live = [sampleRecord({ sub: 'alice', expiresAt: NOW + 1 }), sampleRecord({ sub: 'bob' })]
      for (const r of [...expired, ...live]) await store.set(r)
      assert.equal(await store.deleteExpired(NOW, 2), 2)
      assert.equal(await store.deleteExpired(NOW, 2), 2)
      assert.equal(await store.deleteExpired(NOW, 2), 1)
      assert.equal(await store.deleteExpired(NOW, 2), 0)
      for (const r of expired)
        assert.equal(await store.get(r.idHash, NOW - 10), undefined, 'expired record is gone, not merely hidden')
      assert.deepEqual(await ids(store.list({ limit: 100 }, NOW)), live.map((r) => r.idHash).sort())
    })

    test('deleteExpired with nothing expired removes nothing', async () => {
      const record = sampleRecord()
      await store.set(record)
      assert.equal(await store.deleteExpired(NOW, 100), 0)
      assert.deepEqual(await store.get(record.idHash, NOW), record)
    })

    test('a lease is exclusive until released or expired, and re-entrant for its owner', async () => {
      const leases = leasesOf()
      assert.equal(await leases.acquireLease('refresh:a', 'one', 10_000, NOW), true)
      assert.equal(await leases.acquireLease('refresh:a', 'two', 10_000, NOW + 1), false)
      assert.equal(await leases.acquireLease('refresh:a', 'one', 10_000, NOW + 2), true, 'owner may renew')
      assert.equal(await leases.acquireLease('refresh:b', 'two', 10_000, NOW), true, 'other names are independent')
      await leases.releaseLease('refresh:a', 'two') // not the owner: no effect
      assert.equal(await leases.acquireLease('refresh:a', 'two', 10_000, NOW + 3), false)
      await leases.releaseLease('refresh:a', 'one')
      assert.equal(await leases.acquireLease('refresh:a', 'two', 10_000, NOW + 4), true)
      assert.equal(
        await leases.acquireLease('refresh:a', 'three', 10_000, NOW + 10_004),
        true,
        'an expired lease can be taken',
      )
    })

    test('of many concurrent lease attempts exactly one wins', async () => {
      const leases = leasesOf()
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) => leases.acquireLease('refresh:c', `owner-${i}`, 10_000, NOW)),
      )
      assert.equal(results.filter(Boolean).length, 1)
    })

    test('ping resolves while the store is open', async () => {
      await store.ping()
    })

    test('close can be called more than once', async () => {
      await store.close()
      await store.close()
      store = await open() // afterEach closes this one
    })
  })
}
