import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { pino } from 'pino'
import { createGatehouse, type Gatehouse, type GatehouseOptions, type RuntimeOptions } from '../../src/index.ts'
import { DEMO_USERS, startIdp, type IdpClient, type IdpOptions, type RunningIdp } from '../../src/demo/idp.ts'
import { generateKey, KeyRing } from '../../src/session/seal.ts'
import type { SessionData } from '../../src/session/session.ts'
import { hashSessionId, sessionSealPurpose } from '../../src/session/sessions.ts'
import type { SessionStore } from '../../src/session/store.ts'
import { BrowserJar, type JarResponse } from './browser-jar.ts'

export const CLIENT_ID = 'test-bff'
export const CLIENT_SECRET = 'test-bff-secret-0123456789'
export const CSRF = { 'x-csrf': '1' }

export interface Flow {
  idp: RunningIdp
  gatehouse: Gatehouse
  server: Server
  origin: string
  keys: string[]
  /** A fresh browser. */
  browser(): BrowserJar
  /** Logs `browser` in through the real IdP login form; returns the final answer after the callback. */
  login(browser: BrowserJar, options?: { returnUrl?: string; username?: string; prompt?: string }): Promise<JarResponse>
  /** Restarts gatehouse (same port, same IdP) with the same or changed options. */
  restart(overrides?: Partial<GatehouseOptions>): Promise<void>
  close(): Promise<void>
}

export interface FlowOptions {
  /** Merged into gatehouse's options; a function of the IdP when they depend on its address. */
  gatehouse?: Partial<GatehouseOptions> | ((idp: RunningIdp) => Partial<GatehouseOptions>)
  runtime?: RuntimeOptions
  idp?: Partial<IdpOptions>
  /** More clients to register at the IdP (e.g. a second frontend's), given gatehouse's origin. */
  extraClients?: (origin: string) => IdpClient[]
  /** Merged into the registered test client (e.g. another token_endpoint_auth_method). */
  client?: Partial<IdpClient>
  /** Merged into gatehouse's `oidc` options; a function of the IdP when they depend on its address (e.g. the authority). */
  oidc?: Partial<GatehouseOptions['oidc']> | ((idp: RunningIdp) => Partial<GatehouseOptions['oidc']>)
  /**
   * Replaces the whole request listener (e.g. an Express app that mounts gatehouse itself). May be
   * async (a framework that must finish booting first, like Fastify's `ready()`).
   */
  listener?: (gatehouse: Gatehouse) => NodeListener | Promise<NodeListener>
  /** Extra node:http handling after gatehouse (local API routes). */
  app?: (
    gatehouse: Gatehouse,
  ) => (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void
}

type NodeListener = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void

const quiet = pino({ level: 'silent' })

/** A real gatehouse on a loopback port in front of a real oidc-provider IdP. */
export async function startFlow(options: FlowOptions = {}): Promise<Flow> {
  let current:
    | {
        gatehouse: Gatehouse
        app?: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void
        listener?: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void
      }
    | undefined
  const server = createServer((req, res) => {
    const g = current!
    if (g.listener) return g.listener(req, res)
    // Without an app, gatehouse is the whole server (as `gatehouse serve` runs it); with one, middleware.
    if (!g.app) return g.gatehouse.handle(req, res)
    g.gatehouse.handle(req, res, () => g.app!(req, res))
  })
  // WebSocket upgrades to remote APIs (SPEC §5). Upgraded sockets leave the server's connection
  // tracking, so they are kept here for close().
  const upgraded = new Set<import('node:stream').Duplex>()
  server.on('upgrade', (req, socket, head) => {
    upgraded.add(socket)
    socket.once('close', () => upgraded.delete(socket))
    current!.gatehouse.upgrade(req, socket, head)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const idp = await startIdp({
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        redirect_uris: [`${origin}/signin-oidc`],
        post_logout_redirect_uris: [`${origin}/signout-callback-oidc`],
        backchannel_logout_uri: `${origin}/bff/backchannel`,
        ...options.client,
      },
      ...(options.extraClients?.(origin) ?? []),
    ],
    ...options.idp,
  })
  const keys = [generateKey()]
  const base: GatehouseOptions = {
    publicOrigin: origin,
    oidc: {
      authority: idp.issuer,
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      scopes: ['openid', 'profile', 'email', 'offline_access'],
      ...(typeof options.oidc === 'function' ? options.oidc(idp) : options.oidc),
    },
    keys,
    session: { store: 'memory' },
    log: { level: 'silent' },
  }
  const extra = typeof options.gatehouse === 'function' ? options.gatehouse(idp) : options.gatehouse
  const build = async (overrides: Partial<GatehouseOptions> = {}): Promise<void> => {
    const merged = { ...base, ...extra, ...overrides } as GatehouseOptions
    const gatehouse = await createGatehouse(merged, { logger: quiet, ...options.runtime })
    current = {
      gatehouse,
      ...(options.app ? { app: options.app(gatehouse) } : {}),
      ...(options.listener ? { listener: await options.listener(gatehouse) } : {}),
    }
  }
  try {
    await build()
  } catch (err) {
    // A gatehouse that refuses its options must not leave the servers of this flow running.
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
    await idp.close()
    throw err
  }

  const flow: Flow = {
    idp,
    get gatehouse() {
      return current!.gatehouse
    },
    server,
    origin,
    keys,
    browser: () => new BrowserJar(),
    async login(browser, opts = {}) {
      const user = DEMO_USERS.find((u) => u.username === (opts.username ?? 'alice'))!
      const params = new URLSearchParams()
      if (opts.returnUrl !== undefined) params.set('returnUrl', opts.returnUrl)
      if (opts.prompt !== undefined) params.set('prompt', opts.prompt)
      const query = params.size ? `?${params}` : ''
      const form = await browser.follow(await browser.get(`${origin}/bff/login${query}`))
      if (!form.text.includes('name="password"'))
        throw new Error(`expected the IdP login form, got ${form.status} at ${form.url}`)
      const afterLogin = await browser.submitForm(form, { username: user.username, password: user.password })
      // Follow the IdP's redirects up to, and including, gatehouse's callback; stop at its redirect.
      let res = afterLogin
      for (let i = 0; i < 15 && res.status >= 300 && res.status < 400; i++) {
        const next = new URL(res.headers.get('location')!, res.url).href
        res = await browser.get(next)
        if (next.startsWith(`${origin}/signin-oidc`)) break
      }
      return res
    },
    async restart(overrides) {
      await current!.gatehouse.close()
      await build(overrides)
    },
    async close() {
      await current?.gatehouse.close()
      for (const socket of upgraded) socket.destroy()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await idp.close()
    },
  }
  return flow
}

/** Stops the flow's IdP (connections refused on its port); returns a function that brings the same IdP back. */
export async function stopIdp(flow: Flow): Promise<() => Promise<void>> {
  const { port } = flow.idp.server.address() as AddressInfo
  flow.idp.server.closeAllConnections()
  await new Promise<void>((resolve, reject) => flow.idp.server.close((err) => (err ? reject(err) : resolve())))
  return () =>
    new Promise<void>((resolve, reject) =>
      flow.idp.server.once('error', reject).listen(port, '127.0.0.1', () => resolve()),
    )
}

/** The session's tokens as gatehouse keeps them, read straight from the store; undefined when no record exists. */
export async function storedTokens(
  store: SessionStore,
  keys: string[],
  cookie: string,
): Promise<SessionData['tokens'] | undefined> {
  // now = 0: whatever a test clock says, only a missing record reads as undefined.
  const record = await store.get(hashSessionId(cookie), 0)
  if (!record) return undefined
  const plain = new KeyRing(keys).unseal(record.sealed, sessionSealPurpose(record))
  if (plain === undefined) throw new Error('the stored record does not unseal with the flow keys')
  return (JSON.parse(plain) as SessionData).tokens
}
