// The bring-your-own store example (examples/custom-store) passes the contract suite that ships as
// `gatehouse-bff/testing`, and a real login, /bff/user and logout run on it.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { KeyValueStore, MapKeyValue } from '../../examples/custom-store/kv-store.ts'
import { runStoreContract } from '../../src/testing/index.ts'
import { CSRF, startFlow, type Flow } from '../helpers/flow.ts'

runStoreContract('key-value (examples/custom-store)', async () => new KeyValueStore(new MapKeyValue()))

describe('gatehouse on a custom SessionStore', () => {
  let flow: Flow
  const store = new KeyValueStore(new MapKeyValue())
  before(async () => {
    flow = await startFlow({ runtime: { store } })
  })
  after(() => flow.close())

  test('a login is stored in the custom store, /bff/user reads it, and logout removes it', async () => {
    const browser = flow.browser()
    await flow.login(browser)
    assert.equal((await store.list({ limit: 10 }, Date.now())).length, 1, 'the session lives in the custom store')
    const claims = JSON.parse((await browser.get(`${flow.origin}/bff/user`, CSRF)).text) as Array<{
      type: string
      value: string
    }>
    const logoutUrl = claims.find((c) => c.type === 'bff:logout_url')!.value
    assert.equal((await browser.get(`${flow.origin}${logoutUrl}`)).status, 302)
    assert.equal((await store.list({ limit: 10 }, Date.now())).length, 0, 'logout removed it')
  })
})

test('the contract suite is published as gatehouse/testing (the package export map resolves it)', async () => {
  const published = (await import('gatehouse-bff/testing')) as { runStoreContract?: unknown; sampleRecord?: unknown }
  assert.equal(typeof published.runStoreContract, 'function')
  assert.equal(typeof published.sampleRecord, 'function')
})
