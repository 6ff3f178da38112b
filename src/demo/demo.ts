import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { closeServer, listen } from '../cli/serve.ts'
import { createGatehouse } from '../gatehouse.ts'
import { generateKey } from '../session/seal.ts'
import { startDemoApi } from './api.ts'
import { DEMO_USERS, startIdp } from './idp.ts'
import { DEMO_PAGE, DEMO_SCRIPT } from './page.ts'

export interface DemoOptions {
  /** gatehouse's port (default 8080; 0 picks one); the IdP listens on the next port (or any, with 0). */
  port?: number | undefined
  /** Where the SQLite sessions and the demo's key live (default ./.gatehouse-demo). */
  dataDir?: string
  print?: (text: string) => void
}

export interface RunningDemo {
  url: string
  issuer: string
  close(): Promise<void>
}

const CLIENT_ID = 'gatehouse-demo'
const API_CLIENT_ID = 'demo-api'

/** `gatehouse demo`: embedded IdP + demo API + demo SPA behind gatehouse, sessions in SQLite. */
export async function runDemo(options: DemoOptions = {}): Promise<RunningDemo> {
  const dataDir = options.dataDir ?? '.gatehouse-demo'
  mkdirSync(dataDir, { recursive: true })
  const clientModule = readClientModule()
  let app: ((req: IncomingMessage, res: ServerResponse) => void) | undefined
  const server = createServer((req, res) => (app ? app(req, res) : void res.writeHead(503).end()))
  const port = options.port ?? 8080
  await listen(server, port, '127.0.0.1')
  const actualPort = (server.address() as AddressInfo).port
  const origin = `http://localhost:${actualPort}`

  const clientSecret = randomBytes(24).toString('base64url')
  const apiSecret = randomBytes(24).toString('base64url')
  const idp = await startIdp({
    port: port === 0 ? 0 : actualPort + 1,
    issuerHost: 'localhost',
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: clientSecret,
        redirect_uris: [`${origin}/signin-oidc`],
        post_logout_redirect_uris: [`${origin}/signout-callback-oidc`],
        backchannel_logout_uri: `${origin}/bff/backchannel`,
      },
      // The demo API's own credentials, used only to introspect the tokens it receives.
      { client_id: API_CLIENT_ID, client_secret: apiSecret, redirect_uris: [], grant_types: [], response_types: [] },
    ],
  })
  const discovery = (await (await fetch(`${idp.issuer}/.well-known/openid-configuration`)).json()) as { introspection_endpoint: string }
  const api = await startDemoApi({ introspectionEndpoint: discovery.introspection_endpoint, clientId: API_CLIENT_ID, clientSecret: apiSecret, port: port === 0 ? 0 : actualPort + 2 })
  const gatehouse = await createGatehouse({
    publicOrigin: origin,
    // DPoP on: the demo API sees tokens bound to a key only this session's gatehouse holds.
    oidc: { authority: idp.issuer, clientId: CLIENT_ID, clientSecret, scopes: ['openid', 'profile', 'email', 'offline_access'], dpop: true },
    keys: [demoKey(dataDir)],
    session: { store: `sqlite:${join(dataDir, 'sessions.db')}` },
    remoteApis: [{ path: '/api', target: api.url, token: 'user' }],
    log: { level: 'warn' },
  })
  app = (req, res) => gatehouse.handle(req, res, () => demoApp(clientModule, req, res))
  server.on('upgrade', gatehouse.upgrade)

  const print = options.print ?? ((text: string) => process.stdout.write(text))
  const users = DEMO_USERS.map((u) => `${u.username} / ${u.password}`)
  print(`
  gatehouse demo is running

    Open:       ${origin}/
    Log in as:  ${users[0]}   (or ${users.slice(1).join(', ')})

    Identity provider: ${idp.issuer}  (embedded, demo only)
    Demo API:          ${api.url}  (reached through gatehouse at ${origin}/api)
    Sessions:          SQLite at ${join(dataDir, 'sessions.db')}
    Stop with Ctrl+C
\n`)
  return {
    url: `${origin}/`,
    issuer: idp.issuer,
    async close() {
      await closeServer(server, gatehouse, 2_000)
      await api.close()
      await idp.close()
    },
  }
}

/** The demo's own routes: the SPA and the client module. The API lives in its own server. */
function demoApp(clientModule: string, req: IncomingMessage, res: ServerResponse): void {
  const path = (req.url ?? '/').split('?')[0]
  const csp = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
  if (req.method !== 'GET') return void res.writeHead(405, { allow: 'GET' }).end()
  if (path === '/' || path === '/index.html') return send(res, 'text/html; charset=utf-8', DEMO_PAGE, { 'content-security-policy': csp })
  if (path === '/demo.js') return send(res, 'text/javascript; charset=utf-8', DEMO_SCRIPT)
  if (path === '/gatehouse-client.js') return send(res, 'text/javascript; charset=utf-8', clientModule)
  res.writeHead(404, { 'content-type': 'text/plain' }).end('not found')
}

function send(res: ServerResponse, type: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(200, { 'content-type': type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...headers }).end(body)
}

/** A key kept in the data dir, so demo sessions survive a restart of the demo. */
function demoKey(dataDir: string): string {
  const file = join(dataDir, 'key')
  if (existsSync(file)) return readFileSync(file, 'utf8').trim()
  const key = generateKey()
  writeFileSync(file, `${key}\n`, { mode: 0o600 })
  return key
}

function readClientModule(): string {
  for (const candidate of ['../client/index.js', '../../dist/client/index.js']) {
    try {
      return readFileSync(new URL(candidate, import.meta.url), 'utf8').replace(/\n\/\/# sourceMappingURL=.*$/m, '')
    } catch {
      // try the next location (running from src/ during development)
    }
  }
  throw new Error('gatehouse/client is not built; run `npm run build` first')
}
