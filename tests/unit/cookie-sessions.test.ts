import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { parseCookies } from '../../src/http/cookies.ts'
import { CHUNK_SIZE, CookieSessions } from '../../src/session/cookie-sessions.ts'
import { generateKey, KeyRing } from '../../src/session/seal.ts'
import type { SessionData } from '../../src/session/session.ts'

const HOUR = 3_600_000
const policy = { lifetimeMs: 8 * HOUR, sliding: true, absoluteLifetimeMs: 24 * HOUR }
const cookie = { name: '__Host-gatehouse', sameSite: 'lax' as const, maxAgeSec: 86_400 }

function data(claimBytes = 0): SessionData {
  return {
    claims: [{ type: 'sub', value: 'alice' }, ...(claimBytes ? [{ type: 'big', value: 'x'.repeat(claimBytes) }] : [])],
    tokens: {
      accessToken: 'AT',
      refreshToken: 'refresh-token-plaintext',
      idToken: 'IT',
      accessTokenExpiresAt: Date.now() + HOUR,
      scope: 'openid',
    },
    logoutSid: 'logout-sid',
    sessionState: undefined,
  }
}

/** What the browser would send back after these Set-Cookie lines (later lines win, Max-Age=0 deletes). */
function browserCookies(writes: string[], jar = new Map<string, string>()): Map<string, string> {
  for (const line of writes) {
    const [pair] = line.split(';')
    const eq = pair!.indexOf('=')
    const name = pair!.slice(0, eq)
    if (/Max-Age=0/.test(line)) jar.delete(name)
    else jar.set(name, pair!.slice(eq + 1))
  }
  return parseCookies([...jar].map(([k, v]) => `${k}=${v}`).join('; '))
}

/** Undefined members do not survive JSON (the cookie's payload), which is fine: compare as JSON. */
const same = (a: unknown, b: unknown) => assert.deepEqual(JSON.parse(JSON.stringify(a)), JSON.parse(JSON.stringify(b)))

function setup(keys = [generateKey()], now = () => Date.now()) {
  return new CookieSessions({ keyRing: new KeyRing(keys), policy, cookie, now })
}

describe('cookie-mode sessions', () => {
  test('a session round-trips through one encrypted cookie (a JWE, no plaintext tokens)', async () => {
    const sessions = setup()
    const writes: string[] = []
    const { session: started } = await sessions.start(
      { sub: 'alice', sid: 's1', partition: 'default', data: data() },
      writes,
    )
    assert.equal(writes.length, 1)
    const value = writes[0]!.split(';')[0]!.split('=')[1]!
    assert.equal(value.split('.').length, 5, 'compact JWE')
    const bytes = Buffer.concat(value.split('.').map((part) => Buffer.from(part, 'base64url')))
    for (const plain of ['refresh-token-plaintext', 'alice'])
      assert.equal(bytes.includes(plain), false, `${plain} is not readable in the cookie`)
    assert.match(writes[0]!, /; Path=\/; Secure; HttpOnly; SameSite=Lax; Max-Age=86400/)
    const read = await sessions.read(browserCookies(writes), 'default', { slide: false }, [])
    same(read, started)
  })

  test('a large session is split into chunks and reassembled; a missing chunk reads as no session', async () => {
    const sessions = setup()
    const writes: string[] = []
    const { session: started } = await sessions.start(
      { sub: 'alice', sid: 's1', partition: 'default', data: data(7_000) },
      writes,
    )
    const jar = browserCookies(writes)
    const head = jar.get('__Host-gatehouse')!
    assert.match(head, /^chunks-\d$/)
    const count = Number(head.slice(7))
    assert.ok(count >= 2)
    for (let i = 1; i <= count; i++) assert.ok(jar.get(`__Host-gatehouseC${i}`)!.length <= CHUNK_SIZE)
    same(await sessions.read(jar, 'default', { slide: false }, []), started)

    const missing = new Map(jar)
    missing.delete('__Host-gatehouseC2')
    const clear: string[] = []
    assert.equal(await sessions.read(missing, 'default', { slide: false }, clear), undefined)
    assert.ok(
      clear.some((line) => line.startsWith('__Host-gatehouse=;') && /Max-Age=0/.test(line)),
      'the broken cookie is cleared',
    )
  })

  test('tampered, truncated, reordered or garbage cookies read as no session and never throw', async () => {
    const sessions = setup()
    const writes: string[] = []
    await sessions.start({ sub: 'alice', sid: 's1', partition: 'default', data: data(7_000) }, writes)
    const jar = browserCookies(writes)
    const variants: Array<Map<string, string>> = []
    const c1 = jar.get('__Host-gatehouseC1')!
    variants.push(
      new Map([...jar, ['__Host-gatehouseC1', `${c1.slice(0, 50)}${c1[50] === 'A' ? 'B' : 'A'}${c1.slice(51)}`]]),
    )
    variants.push(new Map([...jar, ['__Host-gatehouseC1', c1.slice(0, -10)]]))
    variants.push(new Map([...jar, ['__Host-gatehouseC1', jar.get('__Host-gatehouseC2')!], ['__Host-gatehouseC2', c1]]))
    variants.push(new Map([['__Host-gatehouse', 'chunks-99']]))
    variants.push(new Map([['__Host-gatehouse', 'garbage']]))
    variants.push(new Map([['__Host-gatehouse', 'a.b.c.d.e']]))
    variants.push(new Map([['__Host-gatehouse', '']]))
    for (const cookies of variants)
      assert.equal(await sessions.read(cookies, 'default', { slide: true }, []), undefined)
  })

  test('the head cookie or a chunk sent twice reads as no session, clears nothing and reports the ambiguity once', async () => {
    const sessions = setup()
    const big: string[] = []
    await sessions.start({ sub: 'alice', sid: 's1', partition: 'default', data: data(7_000) }, big)
    const header = [...browserCookies(big)].map(([k, v]) => `${k}=${v}`).join('; ')
    const small: string[] = []
    await sessions.start({ sub: 'mallory', sid: 's2', partition: 'default', data: data() }, small)
    const tossed = small[0]!.split(';')[0]!
    for (const cookies of [
      `${tossed}; ${header}`,
      `${header}; ${tossed}`,
      `${header}; __Host-gatehouseC1=x`,
      `__Host-gatehouseC2=x; ${header}`,
      `${header}; __Host-gatehouseC9=x; __Host-gatehouseC9=y`,
    ]) {
      const writes: string[] = []
      let reports = 0
      assert.equal(
        await sessions.read(parseCookies(cookies), 'default', { slide: true, onAmbiguous: () => reports++ }, writes),
        undefined,
      )
      assert.deepEqual(writes, [], 'no cookie is deleted')
      assert.equal(reports, 1)
    }
    same((await sessions.read(parseCookies(header), 'default', { slide: false }, []))?.sub, 'alice')
  })

  test('older keys still open cookies after rotation; a retired key reads as no session', async () => {
    const oldKey = generateKey()
    const newKey = generateKey()
    const writes: string[] = []
    const { session: started } = await setup([oldKey]).start(
      { sub: 'alice', sid: 's1', partition: 'default', data: data() },
      writes,
    )
    same(await setup([newKey, oldKey]).read(browserCookies(writes), 'default', { slide: false }, []), started)
    assert.equal(await setup([newKey]).read(browserCookies(writes), 'default', { slide: false }, []), undefined)
  })

  test('a cookie of another partition or past its expiry is no session', async () => {
    let now = Date.now()
    const sessions = setup(undefined, () => now)
    const writes: string[] = []
    await sessions.start({ sub: 'alice', sid: 's1', partition: 'default', data: data() }, writes)
    assert.equal(await sessions.read(browserCookies(writes), 'admin', { slide: false }, []), undefined)
    now += 8 * HOUR + 1
    assert.equal(await sessions.read(browserCookies(writes), 'default', { slide: false }, []), undefined)
  })

  test('sliding renewal rewrites the cookie once half the lifetime has passed', async () => {
    let now = Date.now()
    const sessions = setup(undefined, () => now)
    const writes: string[] = []
    const { session: started } = await sessions.start(
      { sub: 'alice', sid: 's1', partition: 'default', data: data() },
      writes,
    )
    now += 5 * HOUR
    const renewal: string[] = []
    const renewed = await sessions.read(browserCookies(writes), 'default', { slide: true }, renewal)
    assert.equal(renewed!.expiresAt, now + 8 * HOUR)
    assert.equal(renewal.length, 1)
    assert.ok(renewed!.expiresAt > started.expiresAt)
    const none: string[] = []
    await sessions.read(browserCookies(writes), 'default', { slide: false }, none)
    assert.equal(none.length, 0, 'slide=false never rewrites')
  })

  test('after a refresh, a request still carrying the older cookie sees the refreshed tokens', async () => {
    const sessions = setup()
    const writes: string[] = []
    const { session: started } = await sessions.start(
      { sub: 'alice', sid: 's1', partition: 'default', data: data() },
      writes,
    )
    const refreshed = await sessions.modify(started, (d) => ({
      ...d,
      tokens: { ...d.tokens, accessToken: 'AT2', refreshToken: 'RT2' },
    }))
    const rewrite: string[] = []
    const seen = await sessions.read(browserCookies(writes), 'default', { slide: false }, rewrite)
    assert.equal(seen!.data.tokens.refreshToken, 'RT2')
    assert.equal(seen!.version, refreshed!.version)
    assert.equal(rewrite.length, 1, 'and its cookie is brought up to date')
  })

  test('a session ended in this process stays ended: no read, refresh or rewrite brings it back', async () => {
    const sessions = setup()
    const writes: string[] = []
    const { session: started } = await sessions.start(
      { sub: 'alice', sid: 's1', partition: 'default', data: data() },
      writes,
    )
    await sessions.end(started, 'logout')
    assert.equal(sessions.hasEnded(started), true)
    assert.equal(await sessions.read(browserCookies(writes), 'default', { slide: true }, []), undefined)
    assert.equal(await sessions.modify(started, (d) => d), undefined)
    assert.equal(await sessions.current(started), undefined)
    const late: string[] = []
    await sessions.persist(started, new Map(), late)
    assert.deepEqual(late, [])
  })

  test('a session too large for three cookie chunks is refused with a clear error instead of unreadable cookies', async () => {
    const sessions = setup()
    await assert.rejects(
      sessions.start({ sub: 'alice', sid: 's1', partition: 'default', data: data(20_000) }, []),
      /too large for cookie mode/,
    )
  })

  test('a shrinking session deletes the chunks it no longer needs', async () => {
    const sessions = setup()
    const big: string[] = []
    const { session: started } = await sessions.start(
      { sub: 'alice', sid: 's1', partition: 'default', data: data(7_000) },
      big,
    )
    const jar = browserCookies(big)
    const small = await sessions.modify(started, () => data())
    const writes: string[] = []
    await sessions.persist(small!, jar, writes)
    const after = browserCookies(writes, new Map(jar))
    assert.deepEqual([...after.keys()], ['__Host-gatehouse'])
    assert.equal((await sessions.read(after, 'default', { slide: false }, []))!.data.claims.length, 1)
  })
})
