import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { GatehouseError } from '../../src/errors.ts'
import { parseCookies } from '../../src/http/cookies.ts'
import { KeyRing, generateKey } from '../../src/session/seal.ts'
import type { ExpiryPolicy, SessionData } from '../../src/session/session.ts'
import { Sessions, hashSessionId } from '../../src/session/sessions.ts'
import type { SessionRecord, SessionStore } from '../../src/session/store.ts'
import { MemoryStore } from '../../src/session/stores/memory.ts'

const HOUR = 3_600_000
const START = 1_700_000_000_000
const SLIDING: ExpiryPolicy = { lifetimeMs: HOUR, sliding: true, absoluteLifetimeMs: 4 * HOUR }
const FIXED: ExpiryPolicy = { lifetimeMs: HOUR, sliding: false, absoluteLifetimeMs: 4 * HOUR }
const SLIDE = { slide: true }
const NO_SLIDE = { slide: false }

function sessionData(overrides: Partial<SessionData> = {}): SessionData {
  return {
    claims: [
      { type: 'sub', value: 'alice' },
      { type: 'name', value: 'Alice' },
    ],
    tokens: {
      accessToken: 'at-SECRET',
      refreshToken: 'rt-SECRET',
      idToken: 'it-SECRET',
      accessTokenExpiresAt: START + HOUR,
      scope: 'openid',
    },
    logoutSid: 'sid-1',
    sessionState: undefined,
    ...overrides,
  }
}

/** A MemoryStore that counts calls and lets a test run code right after a get (to stage races). */
class SpyStore extends MemoryStore {
  calls = 0
  writes: SessionRecord[] = []
  afterGet: (() => Promise<void>) | undefined
  override async get(idHash: string, now: number) {
    this.calls++
    const record = await super.get(idHash, now)
    const hook = this.afterGet
    this.afterGet = undefined
    await hook?.()
    return record
  }
  override async set(record: SessionRecord, expectedVersion?: number) {
    this.calls++
    this.writes.push(structuredClone(record))
    return super.set(record, expectedVersion)
  }
  override async delete(idHash: string) {
    this.calls++
    return super.delete(idHash)
  }
  override async deleteWhere(filter: Parameters<MemoryStore['deleteWhere']>[0]) {
    this.calls++
    return super.deleteWhere(filter)
  }
}

function setup(policy: ExpiryPolicy = SLIDING) {
  const clock = { now: START }
  const store = new SpyStore()
  const sessions = new Sessions({ store, keyRing: new KeyRing([generateKey()]), policy, now: () => clock.now })
  const login = (overrides: { sub?: string; sid?: string | undefined; partition?: string; data?: SessionData } = {}) =>
    sessions.create({ sub: 'alice', sid: 'sid-1', partition: 'app', data: sessionData(), ...overrides })
  return { clock, store, sessions, login }
}

describe('Sessions', () => {
  test('a created session resolves from its cookie value with its data', async () => {
    const { sessions, login } = setup()
    const { cookieValue, session } = await login()
    assert.match(cookieValue, /^[A-Za-z0-9_-]{43}$/)
    const resolved = await sessions.resolve(cookieValue, 'app', SLIDE)
    assert.ok(resolved)
    assert.equal(resolved.sub, 'alice')
    assert.equal(resolved.sid, 'sid-1')
    assert.equal(resolved.partition, 'app')
    assert.equal(resolved.idHash, session.idHash)
    assert.equal(resolved.createdAt, START)
    assert.equal(resolved.expiresAt, START + HOUR)
    assert.deepEqual(resolved.data, JSON.parse(JSON.stringify(sessionData())))
  })

  test('every login gets a fresh, unguessable cookie value', async () => {
    const { login } = setup()
    const values = new Set<string>()
    for (let i = 0; i < 20; i++) values.add((await login({ sid: `s${i}` })).cookieValue)
    assert.equal(values.size, 20)
  })

  test('the store is keyed by the hash of the cookie value and holds only sealed data', async () => {
    const { store, login } = setup()
    const { cookieValue } = await login()
    const record = await store.get(hashSessionId(cookieValue), START)
    assert.ok(record)
    assert.notEqual(record.idHash, cookieValue)
    assert.equal(await store.get(cookieValue, START), undefined)
    const dump = JSON.stringify(await store.list({ limit: 10 }, START))
    assert.ok(!dump.includes(cookieValue))
    for (const secret of ['at-SECRET', 'rt-SECRET', 'it-SECRET']) assert.ok(!dump.includes(secret), secret)
  })

  test('malformed cookie values resolve to no session without touching the store', async () => {
    const { store, sessions, login } = setup()
    const { cookieValue } = await login()
    store.calls = 0
    const malformed = [
      undefined,
      '',
      cookieValue.slice(0, 42),
      `${cookieValue}A`,
      `${cookieValue.slice(0, 42)}+`,
      `${cookieValue.slice(0, 42)}/`,
      `${cookieValue.slice(0, 42)}=`,
      `${cookieValue.slice(0, 42)}.`,
      ` ${cookieValue.slice(1)}`,
      `${cookieValue.slice(0, 42)}é`,
      `"${cookieValue}"`,
      'x'.repeat(10_000),
      hashSessionId(cookieValue) + 'x',
    ]
    for (const value of malformed)
      assert.equal(await sessions.resolve(value, 'app', SLIDE), undefined, JSON.stringify(value?.slice(0, 50)))
    assert.equal(store.calls, 0)
  })

  test('a session cookie sent twice reads as no session, clears nothing, touches no store and reports the ambiguity once', async () => {
    const { store, sessions, login } = setup()
    const { cookieValue } = await login()
    const { cookieValue: other } = await login({ sub: 'mallory', sid: 'sid-m' })
    for (const header of [
      `__Host-gatehouse=${other}; __Host-gatehouse=${cookieValue}`,
      `__Host-gatehouse=${cookieValue}; __Host-gatehouse=garbage`,
      `__Host-gatehouse=${cookieValue}; x=1; __Host-gatehouse=${cookieValue}`,
    ]) {
      store.calls = 0
      const writes: string[] = []
      let reports = 0
      assert.equal(
        await sessions.read(parseCookies(header), 'app', { slide: true, onAmbiguous: () => reports++ }, writes),
        undefined,
        header,
      )
      assert.deepEqual(writes, [], 'the real cookie is not deleted')
      assert.equal(reports, 1)
      assert.equal(store.calls, 0)
    }
    let reports = 0
    const once = await sessions.read(
      parseCookies(`__Host-gatehouse=${cookieValue}; __Host-gatehouse-admin=x; __Host-gatehouse-admin=y`),
      'app',
      { slide: false, onAmbiguous: () => reports++ },
      [],
    )
    assert.equal(once?.sub, 'alice', "another partition's cookie repeated does not matter here")
    assert.equal(reports, 0)
  })

  test('a well-formed but unknown cookie value resolves to no session', async () => {
    const { sessions } = setup()
    assert.equal(await sessions.resolve('A'.repeat(43), 'app', SLIDE), undefined)
  })

  test('the stored hash used as a cookie value does not resolve', async () => {
    const { sessions, login } = setup()
    const { cookieValue } = await login()
    assert.equal(await sessions.resolve(hashSessionId(cookieValue), 'app', SLIDE), undefined)
  })

  test('a session resolves only in the partition it was created for', async () => {
    const { sessions, login } = setup()
    const { cookieValue } = await login({ partition: 'app' })
    assert.equal(await sessions.resolve(cookieValue, 'admin', SLIDE), undefined)
    assert.ok(await sessions.resolve(cookieValue, 'app', SLIDE))
  })

  test('a session whose sealed data was tampered with or moved from another session resolves to nothing', async () => {
    const { store, sessions, login } = setup()
    const a = await login({ sid: 'a' })
    const b = await login({ sid: 'b' })
    const recordA = (await store.get(a.session.idHash, START))!
    const recordB = (await store.get(b.session.idHash, START))!
    // b's sealed payload copied into a's record: sealing binds the id hash, so it must not open.
    await store.set({ ...recordA, version: 2, sealed: recordB.sealed }, 1)
    assert.equal(await sessions.resolve(a.cookieValue, 'app', NO_SLIDE), undefined)
    await store.set({ ...recordB, version: 2, sealed: recordB.sealed.slice(0, -2) }, 1)
    assert.equal(await sessions.resolve(b.cookieValue, 'app', NO_SLIDE), undefined)
  })

  test('without sliding a session ends exactly lifetime after login, however often it is used', async () => {
    const { clock, sessions, login } = setup(FIXED)
    const { cookieValue, session } = await login()
    assert.equal(session.expiresAt, START + HOUR)
    for (const t of [0.5, 0.75, 0.99]) {
      clock.now = START + t * HOUR
      const resolved = await sessions.resolve(cookieValue, 'app', SLIDE)
      assert.equal(resolved?.expiresAt, START + HOUR, `at ${t} h`)
      assert.equal(resolved?.version, 1)
    }
    clock.now = START + HOUR - 1
    assert.ok(await sessions.resolve(cookieValue, 'app', SLIDE))
    clock.now = START + HOUR
    assert.equal(await sessions.resolve(cookieValue, 'app', SLIDE), undefined)
  })

  test('a sliding session that was not used for its lifetime expires', async () => {
    const { clock, sessions, login } = setup()
    const { cookieValue } = await login()
    clock.now = START + HOUR
    assert.equal(await sessions.resolve(cookieValue, 'app', SLIDE), undefined)
  })

  test('a sliding session is not renewed before half its lifetime has passed', async () => {
    const { clock, store, sessions, login } = setup()
    const { cookieValue, session } = await login()
    store.writes = []
    clock.now = START + HOUR / 2 - 1
    const resolved = await sessions.resolve(cookieValue, 'app', SLIDE)
    assert.equal(resolved?.expiresAt, START + HOUR)
    assert.equal(resolved?.version, 1)
    assert.equal(store.writes.length, 0)
    assert.equal((await store.get(session.idHash, clock.now))?.version, 1)
  })

  test('a sliding session is renewed once half its lifetime has passed, with one store write', async () => {
    const { clock, store, sessions, login } = setup()
    const { cookieValue, session } = await login()
    store.writes = []
    clock.now = START + HOUR / 2
    const resolved = await sessions.resolve(cookieValue, 'app', SLIDE)
    assert.equal(resolved?.expiresAt, clock.now + HOUR)
    assert.equal(resolved?.renewedAt, clock.now)
    assert.equal(resolved?.version, 2)
    assert.equal(store.writes.length, 1)
    const stored = await store.get(session.idHash, clock.now)
    assert.equal(stored?.expiresAt, clock.now + HOUR)
    assert.equal(stored?.version, 2)
    // Right after a renewal the next half-lifetime starts: no further write.
    clock.now += 1000
    assert.equal((await sessions.resolve(cookieValue, 'app', SLIDE))?.version, 2)
    assert.equal(store.writes.length, 1)
    // Still alive past the original expiry.
    clock.now = START + HOUR + 1000
    assert.ok(await sessions.resolve(cookieValue, 'app', SLIDE))
  })

  test('sliding renewal never extends a session beyond its absolute lifetime', async () => {
    const { clock, sessions, login } = setup()
    const { cookieValue } = await login()
    let last = START
    for (clock.now = START + 0.6 * HOUR; clock.now < START + 4 * HOUR; clock.now += 0.6 * HOUR) {
      const resolved = await sessions.resolve(cookieValue, 'app', SLIDE)
      assert.ok(resolved, `alive at ${(clock.now - START) / HOUR} h`)
      assert.ok(resolved.expiresAt <= START + 4 * HOUR, 'never past the absolute cap')
      last = resolved.expiresAt
    }
    assert.equal(last, START + 4 * HOUR)
    clock.now = START + 4 * HOUR
    assert.equal(await sessions.resolve(cookieValue, 'app', SLIDE), undefined)
  })

  test('resolve with slide:false never writes, even when a renewal would be due', async () => {
    const { clock, store, sessions, login } = setup()
    const { cookieValue, session } = await login()
    store.writes = []
    clock.now = START + 0.9 * HOUR
    const resolved = await sessions.resolve(cookieValue, 'app', NO_SLIDE)
    assert.equal(resolved?.version, 1)
    assert.equal(resolved?.expiresAt, START + HOUR)
    assert.equal(store.writes.length, 0)
    const stored = await store.get(session.idHash, clock.now)
    assert.equal(stored?.version, 1)
    assert.equal(stored?.expiresAt, START + HOUR)
  })

  test('two requests renewing the same session at once write it once and both get the session', async () => {
    const { clock, store, sessions, login } = setup()
    const { cookieValue, session } = await login()
    store.writes = []
    clock.now = START + 0.6 * HOUR
    const [a, b] = await Promise.all([
      sessions.resolve(cookieValue, 'app', SLIDE),
      sessions.resolve(cookieValue, 'app', SLIDE),
    ])
    assert.ok(a && b)
    assert.equal(a.version, 2)
    assert.equal(b.version, 2)
    assert.equal((await store.get(session.idHash, clock.now))?.version, 2)
    assert.equal(store.writes.filter((w) => w.version === 2).length, 2, 'two attempts, one of which lost the race')
  })

  test('update replaces the sealed data and bumps the version', async () => {
    const { sessions, login } = setup()
    const { cookieValue } = await login()
    const session = (await sessions.resolve(cookieValue, 'app', NO_SLIDE))!
    const refreshed = sessionData({ tokens: { ...session.data.tokens, accessToken: 'at-NEW' } })
    assert.equal(await sessions.update(session, refreshed), true)
    const after = await sessions.resolve(cookieValue, 'app', NO_SLIDE)
    assert.equal(after?.data.tokens.accessToken, 'at-NEW')
    assert.equal(after?.version, 2)
  })

  test('update hands the store only sealed data, never the plaintext tokens', async () => {
    const { store, sessions, login } = setup()
    const { cookieValue } = await login()
    const session = (await sessions.resolve(cookieValue, 'app', NO_SLIDE))!
    store.writes = []
    await sessions.update(session, sessionData({ tokens: { ...session.data.tokens, accessToken: 'at-REFRESHED' } }))
    assert.equal(store.writes.length, 1)
    const written = store.writes[0]!
    assert.deepEqual(Object.keys(written).sort(), [
      'createdAt',
      'expiresAt',
      'idHash',
      'partition',
      'renewedAt',
      'sealed',
      'sid',
      'sub',
      'version',
    ])
    const text = JSON.stringify(written)
    for (const secret of ['at-REFRESHED', 'rt-SECRET', 'it-SECRET']) assert.ok(!text.includes(secret), secret)
  })

  test('an update from a stale copy of the session is refused', async () => {
    const { sessions, login } = setup()
    const { cookieValue } = await login()
    const copy1 = (await sessions.resolve(cookieValue, 'app', NO_SLIDE))!
    const copy2 = (await sessions.resolve(cookieValue, 'app', NO_SLIDE))!
    assert.equal(await sessions.update(copy1, sessionData({ logoutSid: 'first' })), true)
    assert.equal(await sessions.update(copy2, sessionData({ logoutSid: 'second' })), false)
    assert.equal((await sessions.resolve(cookieValue, 'app', NO_SLIDE))?.data.logoutSid, 'first')
  })

  test('a session ended while a token refresh was in flight is not written back', async () => {
    const { store, sessions, login } = setup()
    const { cookieValue } = await login()
    const inFlight = (await sessions.resolve(cookieValue, 'app', NO_SLIDE))!
    await sessions.end(inFlight, 'logout')
    assert.equal(await sessions.update(inFlight, sessionData({ logoutSid: 'late' })), false)
    assert.equal(await store.get(inFlight.idHash, START), undefined)
    assert.equal(await sessions.resolve(cookieValue, 'app', SLIDE), undefined)
  })

  test('a session ended while a sliding renewal was in flight is not resurrected', async () => {
    const { clock, store, sessions, login } = setup()
    const { cookieValue, session } = await login()
    clock.now = START + 0.75 * HOUR
    // The logout lands between the renewal's read and its write.
    store.afterGet = async () => {
      await store.delete(session.idHash)
    }
    assert.equal(await sessions.resolve(cookieValue, 'app', SLIDE), undefined)
    assert.equal(await store.get(session.idHash, clock.now), undefined)
    assert.deepEqual(await store.list({ limit: 10 }, clock.now), [])
  })

  test('a back-channel logout while a renewal is in flight leaves the session ended', async () => {
    const { clock, store, sessions, login } = setup()
    const { cookieValue, session } = await login()
    clock.now = START + 0.75 * HOUR
    store.afterGet = async () => {
      await store.deleteWhere({ sub: 'alice', sid: 'sid-1' })
    }
    assert.equal(await sessions.resolve(cookieValue, 'app', SLIDE), undefined)
    assert.equal(await store.get(session.idHash, clock.now), undefined)
  })

  test('end removes the session so its cookie no longer resolves', async () => {
    const { sessions, login } = setup()
    const { cookieValue, session } = await login()
    await sessions.end(session, 'logout')
    assert.equal(await sessions.resolve(cookieValue, 'app', SLIDE), undefined)
    await sessions.end(session, 'logout') // ending twice is harmless
  })

  test('a new login with the same sub and sid replaces the older session', async () => {
    const { sessions, login } = setup()
    const older = await login({ sub: 'alice', sid: 'sid-1' })
    const newer = await login({ sub: 'alice', sid: 'sid-1' })
    assert.notEqual(newer.cookieValue, older.cookieValue)
    assert.equal(await sessions.resolve(older.cookieValue, 'app', SLIDE), undefined)
    assert.ok(await sessions.resolve(newer.cookieValue, 'app', SLIDE))
  })

  test('logins with another sid, another user or no sid keep the other sessions', async () => {
    const { sessions, login } = setup()
    const a = await login({ sub: 'alice', sid: 'sid-1' })
    const b = await login({ sub: 'alice', sid: 'sid-2' })
    const c = await login({ sub: 'bob', sid: 'sid-1' })
    const d = await login({ sub: 'alice', sid: undefined })
    const e = await login({ sub: 'alice', sid: undefined })
    for (const { cookieValue } of [a, b, c, d, e]) assert.ok(await sessions.resolve(cookieValue, 'app', SLIDE))
  })

  test('removeExpired drains every expired session across several batches and keeps live ones', async () => {
    const { clock, store, sessions, login } = setup(FIXED)
    const expiredCount = 1234
    for (let i = 0; i < expiredCount; i++) await login({ sub: `user-${i}`, sid: undefined })
    clock.now = START + HOUR / 2
    const live = await login({ sub: 'late', sid: undefined })
    clock.now = START + HOUR
    assert.equal(await sessions.removeExpired(), expiredCount)
    assert.equal((await store.list({ limit: 10_000 }, 0)).length, 1, 'only the live session is left in the store')
    assert.ok(await sessions.resolve(live.cookieValue, 'app', NO_SLIDE))
    assert.equal(await sessions.removeExpired(), 0)
  })

  test('a removeExpired of exactly one full batch stops once the store is empty', async () => {
    const { clock, store, sessions, login } = setup(FIXED)
    for (let i = 0; i < 500; i++) await login({ sub: `user-${i}`, sid: undefined })
    clock.now = START + HOUR
    assert.equal(await sessions.removeExpired(), 500)
    assert.deepEqual(await store.list({ limit: 10 }, 0), [])
  })

  test('a store failure surfaces as store_unavailable (503), not as "no session"', async () => {
    const { cookieValue } = await setup().login()
    const broken = new MemoryStore()
    broken.get = async () => {
      throw new Error('connection refused')
    }
    const sessions = new Sessions({
      store: broken as SessionStore,
      keyRing: new KeyRing([generateKey()]),
      policy: SLIDING,
    })
    await assert.rejects(sessions.resolve(cookieValue, 'app', SLIDE), (err: unknown) => {
      assert.ok(err instanceof GatehouseError)
      assert.equal(err.code, 'store_unavailable')
      assert.equal(err.status, 503)
      return true
    })
  })
})

describe('Sessions: store metadata is authenticated', () => {
  for (const [column, change] of [
    ['sub', (r: SessionRecord) => ({ ...r, sub: 'mallory' })],
    ['sid', (r: SessionRecord) => ({ ...r, sid: 'other-sid' })],
    ['partition', (r: SessionRecord) => ({ ...r, partition: 'admin' })],
    ['createdAt', (r: SessionRecord) => ({ ...r, createdAt: r.createdAt + HOUR })],
  ] as const) {
    test(`a record whose ${column} was rewritten in the store reads as no session`, async () => {
      const { store, sessions, login } = setup()
      const { cookieValue } = await login()
      const idHash = hashSessionId(cookieValue)
      const record = (await store.get(idHash, START))!
      await store.delete(idHash)
      const forged = change(record)
      await store.set(forged)
      assert.equal(await sessions.resolve(cookieValue, forged.partition, NO_SLIDE), undefined)
    })
  }
})
