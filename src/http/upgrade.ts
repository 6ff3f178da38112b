import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { GatehouseError } from '../errors.ts'
import { forwardUpgrade } from '../proxy/websocket.ts'
import { credentialsFor } from '../tokens/credentials.ts'
import { createContext, originOf, pathOf, resolveSession, type Services } from './context.ts'
import { matchOrigin } from './cors.ts'
import { refuseUpgrade } from './render.ts'
import type { RouteTable } from './routes.ts'

/**
 * The entry for `upgrade` events: WebSockets to remote APIs with `websockets: true` (SPEC §5). A
 * browser cannot add the anti-forgery header to a handshake, so the Origin header must be the app's
 * own instead (cross-site WebSocket hijacking). Then, like every API call: session → one of the
 * client's places → credentials → the handshake forwarded (src/proxy/websocket.ts).
 */
export function createUpgrade(
  services: Services,
  routes: RouteTable,
): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  return (req, socket, head) => {
    socket.on('error', () => socket.destroy())
    upgrade(services, routes, req, socket, head).catch((err: unknown) => {
      const status = err instanceof GatehouseError ? err.status : 500
      if (status >= 500)
        services.log.warn(
          { event: 'websocket_failed', status, code: err instanceof GatehouseError ? err.code : 'internal' },
          'websocket upgrade failed',
        )
      refuseUpgrade(socket, err)
    })
  }
}

async function upgrade(
  services: Services,
  routes: RouteTable,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
): Promise<void> {
  const match = services.apis.match(req.url ?? '/')
  if (match === undefined) throw new GatehouseError('not_found')
  if (match === 'escape') throw new GatehouseError('path_escape')
  if (!match.api.websockets || (req.headers.upgrade ?? '').toLowerCase() !== 'websocket')
    throw new GatehouseError('not_found')
  // RFC 6455 §4.1: the handshake is a GET. Every other method would otherwise be upgraded as a GET
  // upstream, past a `methods` list that refuses it (validation makes GET a must with websockets).
  if (req.method !== 'GET') throw new GatehouseError('method_not_allowed')
  const path = pathOf(req.url)
  const ctx = createContext(req, services, originOf(req, services, path), path)
  if (ctx.invalid) throw ctx.invalid
  // An SPA on one of cors.allowedOrigins may open them too (a handshake is not subject to CORS: this is the check).
  if (
    req.headers.origin !== ctx.origin &&
    (services.cors === undefined || matchOrigin(services.cors, req.headers.origin) === undefined)
  ) {
    throw new GatehouseError('forbidden', 'the WebSocket Origin is not this application')
  }
  const route = routes.api(match.api)
  if (route.session !== 'none') ctx.session = await resolveSession(ctx, true)
  // A WebSocket is a long-lived stream: one of the client's `limits.perClientStreams`, held until the socket closes.
  if (!services.upstreams.admit(req, socket, match.api, ctx.session, 'stream')) return
  const credentials = await credentialsFor(ctx, route)
  await forwardUpgrade(req, socket, head, match, credentials, ctx.origin, services.upstreams)
}
