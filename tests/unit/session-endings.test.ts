import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { createGatehouse } from '../../src/gatehouse.ts'
import type { SessionEndEvent } from '../../src/hooks.ts'
import { createLogger } from '../../src/log.ts'
import { CookieSessions } from '../../src/session/cookie-sessions.ts'
import { KeyRing, generateKey } from '../../src/session/seal.ts'
import type { ExpiryPolicy, SessionData } from '../../src/session/session.ts'
import { SessionEvents, type EndReason } from '../../src/session/session-events.ts'
import { Sessions } from '../../src/session/sessions.ts'
import {
  capabilities,
  incompleteCapabilities,
  type SessionEndNotice,
  type SessionStore,
} from '../../src/session/store.ts'
import { MemoryStore } from '../../src/session/stores/memory.ts'
import { logLines } from '../helpers/log-lines.ts'

// Sessions own every ending: ending a session (one, or those a filter names) also tells this
// instance's listeners, the audit hook and — through the store — the other instances, so no caller
// can end a session and forget to tell. A store's optional capabilities are detected once.

const HOUR = 3_600_000
const policy: ExpiryPolicy = { lifetimeMs: HOUR, sliding: false, absoluteLifetimeMs: HOUR }

function data(): SessionData {
  return {
    claims: [{ type: 'sub', value: 'alice' }],
    tokens: {
      accessToken: 'at',
      refreshToken: 'rt',
      idToken: undefined,
      accessTokenExpiresAt: undefined,
      scope: 'openid',
    },
    logoutSid: 'l',
    sessionState: undefined,
  }
}

/** The memory store with notices: what it publishes is recorded (another instance would receive it). */
class NoticeMemoryStore extends MemoryStore {
  readonly published: SessionEndNotice[] = []
  async publishEnded(notice: SessionEndNotice): Promise<void> {
    this.published.push(notice)
  }
  async subscribeEnded(): Promise<() => Promise<void>> {
    return async () => {}
  }
}

function setup() {
  const store = new NoticeMemoryStore()
  const hooked: SessionEndEvent[] = []
  const events = new SessionEvents({ notices: capabilities(store).notices, onEnded: (event) => hooked.push(event) })
  const sessions = new Sessions({ store, keyRing: new KeyRing([generateKey()]), policy, events })
  const login = (sub: string, sid: string) => sessions.create({ sub, sid, partition: 'app', data: data() })
  return { store, events, sessions, hooked, login }
}

describe('Sessions: endings are told', () => {
  test('end deletes the session, tells its open streams and the audit hook, and publishes one notice', async () => {
    const { store, events, sessions, hooked, login } = setup()
    const { session } = await login('alice', 's1')
    const heard: EndReason[] = []
    events.subscribe(session, (reason) => heard.push(reason))
    await sessions.end(session, 'logout')
    assert.equal(await store.get(session.idHash, Date.now()), undefined)
    assert.deepEqual(heard, ['logout'])
    assert.deepEqual(
      hooked.map((e) => [e.reason, e.session?.sub]),
      [['logout', 'alice']],
    )
    assert.deepEqual(
      store.published.map((n) => [n.idHash, n.reason]),
      [[session.idHash, 'logout']],
    )
  })

  test('endWhere ends only the sessions the filter names, returns how many, and publishes the filter', async () => {
    const { store, sessions, hooked, login } = setup()
    await login('alice', 's1')
    await login('alice', 's2')
    const { session: bob } = await login('bob', 's3')
    assert.equal(await sessions.endWhere({ sub: 'alice' }, 'revoked'), 2)
    assert.deepEqual(
      (await store.list({ limit: 10 }, Date.now())).map((r) => r.sub),
      ['bob'],
    )
    assert.ok(await store.get(bob.idHash, Date.now()))
    assert.deepEqual(
      store.published.map((n) => [n.filter, n.reason]),
      [[{ sub: 'alice' }, 'revoked']],
    )
    assert.deepEqual(
      hooked.map((e) => [e.reason, e.filter]),
      [['revoked', { sub: 'alice' }]],
    )
  })

  test('a login that replaces an older session of the same sub and sid tells of it as replaced', async () => {
    const { store, login } = setup()
    await login('alice', 's1')
    assert.equal(store.published.length, 0, 'a first login replaces nothing')
    const { replaced } = await login('alice', 's1')
    assert.equal(replaced, 1)
    assert.deepEqual(
      store.published.map((n) => [n.filter, n.reason]),
      [[{ sub: 'alice', sid: 's1', partition: 'app' }, 'replaced']],
    )
  })

  test('a login whose new session cannot be written still tells of the older ones it deleted: other instances stop serving them', async () => {
    const { store, events, hooked, login } = setup()
    const { session: older } = await login('alice', 's1')
    const heard: EndReason[] = []
    events.subscribe(older, (reason) => heard.push(reason))
    // The store loses its connection between the delete of the older session and the write of the new one.
    const set = store.set.bind(store)
    store.set = async () => {
      throw new Error('connection lost')
    }
    await assert.rejects(login('alice', 's1'), (err: Error & { code?: string }) => err.code === 'store_unavailable')
    store.set = set
    assert.equal(await store.get(older.idHash, Date.now()), undefined, 'the older session was deleted')
    assert.deepEqual(
      store.published.map((n) => [n.filter, n.reason]),
      [[{ sub: 'alice', sid: 's1', partition: 'app' }, 'replaced']],
    )
    assert.deepEqual(heard, ['replaced'], 'its open streams are told')
    assert.deepEqual(
      hooked.map((e) => [e.reason, e.filter]),
      [['replaced', { sub: 'alice', sid: 's1', partition: 'app' }]],
    )
  })

  test('without events of its own (the CLI), Sessions publishes through the store it was given', async () => {
    const store = new NoticeMemoryStore()
    const sessions = new Sessions({ store, keyRing: new KeyRing([generateKey()]), policy })
    await sessions.create({ sub: 'alice', sid: 's1', partition: 'app', data: data() })
    assert.equal(await sessions.endWhere({ sid: 's1' }, 'revoked'), 1)
    assert.deepEqual(
      store.published.map((n) => [n.filter, n.reason]),
      [[{ sid: 's1' }, 'revoked']],
    )
  })

  test('a store failure while ending publishes nothing: the session was not ended', async () => {
    const { store, sessions, hooked, login } = setup()
    const { session } = await login('alice', 's1')
    store.delete = async () => {
      throw new Error('connection refused')
    }
    await assert.rejects(sessions.end(session, 'logout'), { code: 'store_unavailable' })
    assert.deepEqual(store.published, [])
    assert.deepEqual(hooked, [])
  })

  test('list gives the sessions without their sealed part', async () => {
    const { sessions, login } = setup()
    await login('alice', 's1')
    const [summary] = await sessions.list({ sub: 'alice', limit: 10 })
    assert.equal(summary?.sub, 'alice')
    assert.ok(summary && !('sealed' in summary))
  })
})

describe('Sessions: claimOnce (the logout-token replay check)', () => {
  test('a marker is claimed once until its claim is released; other markers are independent', async () => {
    const { sessions } = setup()
    const claim = await sessions.claimOnce('jti:a', 60_000)
    assert.ok(claim)
    assert.equal(await sessions.claimOnce('jti:a', 60_000), undefined)
    assert.ok(await sessions.claimOnce('jti:b', 60_000))
    await claim.release()
    assert.ok(
      await sessions.claimOnce('jti:a', 60_000),
      'a released claim can be taken again (the IdP retries a failed logout)',
    )
  })

  test('over a store without leases, claims are kept in this process and no shared leases are offered', async () => {
    const store: SessionStore = new MemoryStore()
    Object.defineProperty(store, 'acquireLease', { value: undefined }) // a custom store without leases
    const sessions = new Sessions({ store, keyRing: new KeyRing([generateKey()]), policy })
    assert.equal(sessions.leases, undefined)
    assert.ok(await sessions.claimOnce('jti:a', 60_000))
    assert.equal(await sessions.claimOnce('jti:a', 60_000), undefined)
  })

  test('a store failure while claiming is store_unavailable, not "already used"', async () => {
    const { store, sessions } = setup()
    store.acquireLease = async () => {
      throw new Error('connection refused')
    }
    await assert.rejects(sessions.claimOnce('jti:a', 60_000), { code: 'store_unavailable' })
  })
})

describe('cookie-mode endings', () => {
  test('end remembers the session ended and tells its streams and the audit hook; endWhere ends none', async () => {
    const hooked: SessionEndEvent[] = []
    const events = new SessionEvents({ onEnded: (event) => hooked.push(event) })
    const sessions = new CookieSessions({
      keyRing: new KeyRing([generateKey()]),
      policy,
      cookie: { name: '__Host-g', sameSite: 'lax', maxAgeSec: 3600 },
      events,
    })
    const { session } = await sessions.start({ sub: 'alice', sid: 's1', partition: 'app', data: data() }, [])
    const heard: EndReason[] = []
    events.subscribe(session, (reason) => heard.push(reason))
    await sessions.end(session, 'logout')
    assert.equal(sessions.hasEnded(session), true)
    assert.deepEqual(heard, ['logout'])
    assert.equal(await sessions.endWhere({ sub: 'alice' }, 'revoked'), 0)
    assert.deepEqual(
      hooked.map((e) => e.reason),
      ['logout', 'revoked'],
    )
    assert.equal(sessions.leases, undefined, 'refreshes are coordinated in-process')
  })
})

describe('store capabilities', () => {
  test('the memory store has leases and a count, and no notices', () => {
    const can = capabilities(new MemoryStore())
    assert.ok(can.leases)
    assert.ok(can.count)
    assert.equal(can.notices, undefined)
    assert.equal(can.fresh, undefined)
  })

  test('half a capability is none: publishEnded without subscribeEnded gives no notices', () => {
    const store = new MemoryStore() as SessionStore
    store.publishEnded = async () => {}
    assert.equal(capabilities(store).notices, undefined)
  })

  test('a store with half a capability is told: the methods it has and the one it lacks; whole or absent ones are not', () => {
    const publishOnly = new MemoryStore() as SessionStore
    publishOnly.publishEnded = async () => {}
    assert.deepEqual(incompleteCapabilities(publishOnly), [
      { capability: 'notices', has: ['publishEnded'], missing: ['subscribeEnded'] },
    ])
    const subscribeOnly = new MemoryStore() as SessionStore
    subscribeOnly.subscribeEnded = async () => async () => {}
    assert.deepEqual(incompleteCapabilities(subscribeOnly), [
      { capability: 'notices', has: ['subscribeEnded'], missing: ['publishEnded'] },
    ])
    const halfLeases = new MemoryStore() as SessionStore
    halfLeases.releaseLease = undefined
    assert.deepEqual(incompleteCapabilities(halfLeases), [
      { capability: 'leases', has: ['acquireLease'], missing: ['releaseLease'] },
    ])
    assert.deepEqual(incompleteCapabilities(new MemoryStore()), [], 'leases whole, notices absent')
    assert.deepEqual(incompleteCapabilities(new NoticeMemoryStore()), [], 'both whole')
  })

  test('gatehouse warns once at start about a custom store with publishEnded but no subscribeEnded, naming the missing method', async () => {
    const publishOnly = new MemoryStore() as SessionStore
    publishOnly.publishEnded = async () => {}
    const log = logLines()
    const gatehouse = await createGatehouse(
      {
        oidc: { authority: 'http://127.0.0.1:1', clientId: 'spa-bff', clientSecret: 'spa-bff-secret' },
        keys: [generateKey()],
      },
      { store: publishOnly, logger: createLogger('info', log.sink) },
    )
    try {
      const warnings = log.entries().filter((e) => e.event === 'session_store_incomplete_capability')
      assert.equal(warnings.length, 1, `one warning (got ${log.lines.join(' | ')})`)
      assert.equal(warnings[0]!.capability, 'notices')
      assert.deepEqual(warnings[0]!.missing, ['subscribeEnded'])
      assert.match(String(warnings[0]!.msg), /defines publishEnded but not subscribeEnded/)
    } finally {
      await gatehouse.close()
    }
    const whole = logLines()
    const quiet = await createGatehouse(
      {
        oidc: { authority: 'http://127.0.0.1:1', clientId: 'spa-bff', clientSecret: 'spa-bff-secret' },
        keys: [generateKey()],
      },
      { store: new NoticeMemoryStore(), logger: createLogger('info', whole.sink) },
    )
    await quiet.close()
    assert.equal(
      whole.entries().filter((e) => e.event === 'session_store_incomplete_capability').length,
      0,
      'a store with both methods gets no warning',
    )
  })

  test('a handle is the store itself, so a method replaced later is the one called', async () => {
    const store = new MemoryStore()
    const { leases } = capabilities(store)
    let called = 0
    store.acquireLease = async () => {
      called++
      return false
    }
    assert.equal(await leases!.acquireLease('x', 'o', 1000, 0), false)
    assert.equal(called, 1)
  })
})
