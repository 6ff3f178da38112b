import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { closeServer, listen } from '../cli/serve.ts'
import { DEFAULTS } from '../config/defaults.ts'
import { createGatehouse } from '../gatehouse.ts'
import { generateKey } from '../session/seal.ts'
import { startDemoApi } from './api.ts'
import { DEMO_USERS, startIdp } from './idp.ts'
import { DEMO_PAGE, DEMO_SCRIPT } from './page.ts'

export interface DemoOptions {
  /** gatehouse's port (default: `listen.port`'s, 8080; 0 picks one). */
  port?: number | undefined
  /** The embedded IdP's port (default: gatehouse's port + 1; any free one when `port` is 0). */
  idpPort?: number | undefined
  /** The demo API's port (default: gatehouse's port + 2; any free one when `port` is 0). */
  apiPort?: number | undefined
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
  const port = options.port ?? DEFAULTS.listen.port
  // Whatever started before a failure (a port in use) is closed again, so the process can exit.
  const started: Array<() => Promise<void>> = []
  const unwind = async (err: unknown): Promise<never> => {
    for (const close of started.reverse()) await close().catch(() => {})
    throw err
  }
  await listen(server, port, '127.0.0.1').catch((err: unknown) => unwind(portError(err, port, 'gatehouse', '--port')))
  started.push(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const actualPort = (server.address() as AddressInfo).port
  const origin = `http://localhost:${actualPort}`
  const idpPort = options.idpPort ?? (port === 0 ? 0 : actualPort + 1)
  const apiPort = options.apiPort ?? (port === 0 ? 0 : actualPort + 2)
  // oidc-provider prints development notices ("oidc-provider NOTICE: …") on the console; not the demo's business.
  const restoreConsole = hideProviderNotices()
  started.push(async () => restoreConsole())

  const clientSecret = randomBytes(24).toString('base64url')
  const apiSecret = randomBytes(24).toString('base64url')
  const idp = await startIdp({
    port: idpPort,
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
  }).catch((err: unknown) => unwind(portError(err, idpPort, 'the demo identity provider', '--idp-port')))
  started.push(() => idp.close())
  const discovery = (await fetch(`${idp.issuer}/.well-known/openid-configuration`)
    .then((res) => res.json())
    .catch(unwind)) as { introspection_endpoint: string }
  const api = await startDemoApi({
    introspectionEndpoint: discovery.introspection_endpoint,
    clientId: API_CLIENT_ID,
    clientSecret: apiSecret,
    port: apiPort,
  }).catch((err: unknown) => unwind(portError(err, apiPort, 'the demo API', '--api-port')))
  started.push(() => api.close())
  const gatehouse = await createGatehouse({
    publicOrigin: origin,
    // DPoP on: the demo API sees tokens bound to a key only this session's gatehouse holds.
    oidc: {
      authority: idp.issuer,
      clientId: CLIENT_ID,
      clientSecret,
      scopes: ['openid', 'profile', 'email', 'offline_access'],
      dpop: true,
    },
    keys: [demoKey(dataDir)],
    session: { store: `sqlite:${join(dataDir, 'sessions.db')}` },
    remoteApis: [{ path: '/api', target: api.url, token: 'user' }],
    log: { level: 'warn' },
  }).catch(unwind)
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
      restoreConsole()
    },
  }
}

/** A port in use becomes one line naming the port, what wanted it and the flag choosing another. */
function portError(err: unknown, port: number, what: string, flag: string): unknown {
  if ((err as NodeJS.ErrnoException)?.code !== 'EADDRINUSE') return err
  return new Error(`port ${port} (${what}) is already in use; choose another with ${flag} N, or stop what is using it`)
}

const PROVIDER_NOTICE = /^(?:\x1b\[[\d;]*m)?oidc-provider NOTICE: /

/** Drops oidc-provider's development notices from console.info/console.warn; returns the undo. */
function hideProviderNotices(): () => void {
  const { info, warn } = console
  const filter =
    (write: (...args: unknown[]) => void) =>
    (...args: unknown[]) => {
      if (typeof args[0] === 'string' && PROVIDER_NOTICE.test(args[0])) return
      write.apply(console, args)
    }
  console.info = filter(info)
  console.warn = filter(warn)
  return () => {
    console.info = info
    console.warn = warn
  }
}

/** The demo's own routes: the SPA and the client module. The API lives in its own server. */
function demoApp(clientModule: string, req: IncomingMessage, res: ServerResponse): void {
  const path = (req.url ?? '/').split('?')[0]
  const csp =
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
  if (req.method !== 'GET') return void res.writeHead(405, { allow: 'GET' }).end()
  if (path === '/' || path === '/index.html')
    return send(res, 'text/html; charset=utf-8', DEMO_PAGE, { 'content-security-policy': csp })
  if (path === '/demo.js') return send(res, 'text/javascript; charset=utf-8', DEMO_SCRIPT)
  if (path === '/gatehouse-client.js') return send(res, 'text/javascript; charset=utf-8', clientModule)
  res.writeHead(404, { 'content-type': 'text/plain' }).end('not found')
}

function send(res: ServerResponse, type: string, body: string, headers: Record<string, string> = {}): void {
  res
    .writeHead(200, {
      'content-type': type,
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      ...headers,
    })
    .end(body)
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
