// The suite ships with the package (`gatehouse-bff/testing`) so that a custom SessionStore can run it too.
export { runStoreContract, sampleRecord } from '../../src/testing/store-contract.ts'
