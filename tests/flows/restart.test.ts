import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { generateKey } from '../../src/session/seal.ts'
import type { BrowserJar, JarResponse } from '../helpers/browser-jar.ts'
import { CSRF, startFlow, type Flow } from '../helpers/flow.ts'

const COOKIE = '__Host-gatehouse'

describe('restart with the SQLite store', () => {
  let flow: Flow
  let dir: string
  let dbPath: string

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gatehouse-restart-'))
    dbPath = join(dir, 'x.db')
    flow = await startFlow({ gatehouse: { session: { store: `sqlite:${dbPath}` } } })
  })
  after(async () => {
    await flow.close()
    rmSync(dir, { recursive: true, force: true })
  })

  /** /bff/user with exactly this session cookie, independent of any jar. */
  const userWith = (cookie: string): Promise<JarResponse> =>
    flow.browser().get(`${flow.origin}/bff/user`, { ...CSRF, cookie: `${COOKIE}=${cookie}` })

  async function loggedIn(): Promise<{ browser: BrowserJar; cookie: string }> {
    const browser = flow.browser()
    await flow.login(browser)
    const cookie = browser.cookies.get(COOKIE)!
    assert.equal((await userWith(cookie)).status, 200)
    return { browser, cookie }
  }

  const clearsSessionCookie = (res: JarResponse) =>
    res.headers.getSetCookie().some((l) => l.startsWith(`${COOKIE}=;`) && /; Max-Age=0\b/.test(l))

  test('a session survives a restart: the same cookie still gets 200 from /bff/user', async () => {
    await flow.restart()
    const { browser } = await loggedIn()
    const before = JSON.parse((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) as Array<{
      type: string
      value: unknown
    }>
    assert.ok(existsSync(dbPath), 'the session store is a file on disk')

    await flow.restart()
    const res = await browser.get(`${flow.origin}/bff/user`, CSRF)
    assert.equal(res.status, 200)
    const after = JSON.parse(res.text) as Array<{ type: string; value: unknown }>
    const pick = (claims: typeof after, type: string) => claims.find((c) => c.type === type)?.value
    for (const type of ['sub', 'sid', 'name', 'bff:logout_url'])
      assert.deepEqual(pick(after, type), pick(before, type), type)
  })

  test('after a restart with a new key first and the old key second, the session still works', async () => {
    await flow.restart()
    const { cookie } = await loggedIn()
    await flow.restart({ keys: [generateKey(), ...flow.keys] })
    assert.equal((await userWith(cookie)).status, 200)
  })

  test('after a restart with only a new key, the session is anonymous (401) and its cookie cleared, not a 500', async () => {
    await flow.restart()
    const { browser, cookie } = await loggedIn()
    await flow.restart({ keys: [generateKey()] })
    const res = await browser.get(`${flow.origin}/bff/user`, CSRF)
    assert.equal(res.status, 401)
    assert.match(res.headers.get('content-type')!, /^application\/problem\+json/)
    assert.equal(JSON.parse(res.text).code, 'session_required')
    assert.ok(clearsSessionCookie(res))

    // Nothing stored was lost: with the old key back in the ring the same session id works again.
    await flow.restart()
    assert.equal((await userWith(cookie)).status, 200)
  })

  test('a key rotation completes: sessions started under the new key survive dropping the old key, older ones do not', async () => {
    await flow.restart()
    const { cookie: oldSession } = await loggedIn()
    const newKey = generateKey()
    await flow.restart({ keys: [newKey, ...flow.keys] })
    const { cookie: newSession } = await loggedIn()
    assert.equal((await userWith(oldSession)).status, 200)

    await flow.restart({ keys: [newKey] })
    assert.equal((await userWith(newSession)).status, 200)
    assert.equal((await userWith(oldSession)).status, 401)
  })

  test('a logout before a restart stays a logout after it', async () => {
    await flow.restart()
    const { browser, cookie } = await loggedIn()
    const claims = JSON.parse((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) as Array<{
      type: string
      value: unknown
    }>
    const logoutUrl = claims.find((c) => c.type === 'bff:logout_url')!.value as string
    assert.equal((await browser.get(`${flow.origin}${logoutUrl}`)).status, 302)
    await flow.restart()
    assert.equal((await userWith(cookie)).status, 401)
  })

  test('the SQLite file holds neither the session cookie value nor the tokens in clear', async () => {
    await flow.restart()
    const { cookie } = await loggedIn()
    await flow.restart() // closing the store checkpoints the WAL into the main file
    const bytes = [dbPath, `${dbPath}-wal`]
      .filter(existsSync)
      .map((p) => readFileSync(p).toString('latin1'))
      .join('')
    assert.ok(bytes.length > 0)
    assert.equal(bytes.includes(cookie), false, 'no raw session id')
    assert.equal(bytes.includes('alice@example.test'), false, 'no claims in clear')
    assert.equal(/eyJ[A-Za-z0-9_-]{10,}\.eyJ/.test(bytes), false, 'no JWT (id_token) in clear')
  })
})
