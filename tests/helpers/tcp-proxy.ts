import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net'

export interface TcpProxy {
  /** The loopback port the proxy listens on (stable across cut()/restore()). */
  readonly port: number
  readonly host: '127.0.0.1'
  /** Connections accepted since start (each is piped to a fresh connection to the target). */
  readonly accepted: number
  /** Simulates the target going away: stops listening (new connections are refused) and destroys every open connection, both sides. */
  cut(): Promise<void>
  /** Listens again on the same port; new connections reach the target again. */
  restore(): Promise<void>
  /** cut() for good. */
  close(): Promise<void>
}

/**
 * A TCP forwarder on 127.0.0.1:<random port> to `target`, for putting between gatehouse and a real
 * store and pulling the plug on it. Each accepted connection is piped to its own connection to the target.
 */
export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const sockets = new Set<Socket>()
  let accepted = 0
  const track = (socket: Socket): void => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    // A reset from either side is expected while cutting; never let it become an uncaught 'error'.
    socket.on('error', () => {})
  }

  const newServer = (): Server =>
    createServer((client) => {
      accepted++
      track(client)
      const upstream = createConnection({ host: target.host, port: target.port })
      track(upstream)
      client.pipe(upstream)
      upstream.pipe(client)
      client.once('close', () => upstream.destroy())
      upstream.once('close', () => client.destroy())
    })

  let server: Server | undefined = newServer()
  const listen = (s: Server, port: number): Promise<void> =>
    new Promise((resolve, reject) => {
      s.once('error', reject)
      s.listen(port, '127.0.0.1', () => {
        s.off('error', reject)
        resolve()
      })
    })
  await listen(server, 0)
  const port = (server.address() as AddressInfo).port

  const cut = async (): Promise<void> => {
    const current = server
    server = undefined
    if (!current) return
    const closed = new Promise<void>((resolve) => current.close(() => resolve()))
    for (const socket of sockets) socket.destroy()
    sockets.clear()
    await closed
  }

  return {
    port,
    host: '127.0.0.1',
    get accepted() {
      return accepted
    },
    cut,
    async restore() {
      if (server) return
      const next = newServer()
      await listen(next, port)
      server = next
    },
    close: cut,
  }
}

/** A loopback port nothing listens on (bound once, then released). */
export async function closedPort(): Promise<number> {
  // A privileged port nothing on this machine listens on (discard): a freed ephemeral port could be
  // taken by another process before the test uses it.
  return 9
}

/**
 * A loopback port that accepts TCP connections and never answers a byte (a hung server or a
 * black-holed network path). close() destroys the held connections.
 */
export async function silentPort(): Promise<{ port: number; close(): Promise<void> }> {
  const held = new Set<Socket>()
  const server = createServer((socket) => {
    held.add(socket)
    socket.on('error', () => {})
    socket.once('close', () => held.delete(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      for (const socket of held) socket.destroy()
      await closed
    },
  }
}
