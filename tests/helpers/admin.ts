import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Gatehouse } from '../../src/index.ts'

/** Mounts an admin handler on its own loopback server, as `gatehouse serve` or a library user would. */
export async function mountAdmin(handler: Gatehouse['adminHandler']): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => handler(req, res))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
