/**
 * gatehouse/testing — for authors of a custom SessionStore: the contract suite every built-in store
 * passes (node:test), to run against your own. See docs/extending.md.
 */
export { runStoreContract, sampleRecord } from './store-contract.ts'
export type { SessionStore, SessionRecord, SessionFilter, SessionEndNotice } from '../session/store.ts'
