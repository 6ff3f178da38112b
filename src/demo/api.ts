import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface DemoApi {
  url: string
  server: Server
  close(): Promise<void>
}

/**
 * The demo's separate API process (a plain HTTP service on its own port): it trusts nothing but the
 * bearer token gatehouse attaches, checks it at the IdP (RFC 7662 introspection) and answers what
 * it learned — subject and scopes — never the token.
 */
export async function startDemoApi(options: { introspectionEndpoint: string; clientId: string; clientSecret: string; port?: number }): Promise<DemoApi> {
  const basic = `Basic ${Buffer.from(`${options.clientId}:${options.clientSecret}`).toString('base64')}`
  const server = createServer(async (req, res) => {
    const send = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' }).end(JSON.stringify(body))
    if (req.method !== 'GET' || !req.url?.startsWith('/hello')) return send(404, { error: 'not_found' })
    const match = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')
    if (!match) return send(401, { error: 'no bearer token' })
    try {
      const answer = await fetch(options.introspectionEndpoint, {
        method: 'POST',
        headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token: match[1]! }),
        signal: AbortSignal.timeout(5_000),
      })
      const info = (await answer.json()) as { active?: boolean; sub?: string; scope?: string; client_id?: string; exp?: number }
      if (!info.active) return send(401, { error: 'token not active' })
      send(200, {
        message: 'Hello from the demo API',
        tokenSeenByApi: { active: true, sub: info.sub, scope: info.scope, clientId: info.client_id, expiresAt: info.exp ? new Date(info.exp * 1000).toISOString() : undefined },
        cookieSeenByApi: req.headers.cookie ?? null,
        at: new Date().toISOString(),
      })
    } catch {
      send(502, { error: 'the IdP could not be reached' })
    }
  })
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
