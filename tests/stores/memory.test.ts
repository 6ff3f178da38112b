import { MemoryStore } from '../../src/session/stores/memory.ts'
import { runStoreContract } from './contract.ts'

runStoreContract('memory', async () => new MemoryStore())
