import { randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, generateKeyPair } from 'jose'
import type { Configuration } from 'oidc-provider'
import { escapeHtml } from '../http/reply.ts'
import { createIdpStorage } from './idp-storage.ts'

/**
 * An embedded OpenID Provider (node-oidc-provider) for the demo and the tests — never for production.
 * It has a real login form that checks a password, auto-consents for its registered clients, and
 * supports refresh tokens, revocation, introspection, RP-initiated and back-channel logout, DPoP and
 * resource indicators.
 */

export interface DemoUser {
  username: string
  password: string
  sub: string
  claims: Record<string, unknown>
}

export const DEMO_USERS: readonly DemoUser[] = [
  {
    username: 'alice',
    password: 'alice-demo-password',
    sub: 'alice-0001',
    claims: { name: 'Alice Example', given_name: 'Alice', family_name: 'Example', preferred_username: 'alice', email: 'alice@example.test', email_verified: true },
  },
  {
    username: 'bob',
    password: 'bob-demo-password',
    sub: 'bob-0002',
    claims: { name: 'Bob Example', given_name: 'Bob', family_name: 'Example', preferred_username: 'bob', email: 'bob@example.test', email_verified: false },
  },
]

export interface IdpClient {
  client_id: string
  client_secret?: string
  redirect_uris: string[]
  post_logout_redirect_uris?: string[]
  backchannel_logout_uri?: string
  token_endpoint_auth_method?: string
  token_endpoint_auth_signing_alg?: string
  /** Public keys for private_key_jwt client authentication. */
  jwks?: { keys: Array<Record<string, unknown>> }
  grant_types?: string[]
  response_types?: string[]
}

export interface IdpOptions {
  host?: string
  /** Host name in the issuer URL (default: the listen host). */
  issuerHost?: string
  /** 0 picks a free port. */
  port?: number
  clients: IdpClient[]
  accessTokenTtlSec?: number
  /** Issue a new refresh token on every refresh (rotation). */
  rotateRefreshTokens?: boolean
  /**
   * DPoP (RFC 9449): on by default, as in oidc-provider — a token request with a DPoP proof gets a
   * token bound to its key (`cnf.jkt`, token_type DPoP). `false` turns it off (not advertised in
   * discovery); `requireNonce` makes every DPoP request first get a `use_dpop_nonce` challenge.
   */
  dpop?: boolean | { requireNonce: boolean }
  /**
   * The `sub` the UserInfo endpoint answers with for an account (default: the account's own). For
   * tests of a misbehaving IdP only: oidc-provider always answers with the account id it loads.
   */
  userInfoSubject?: (sub: string) => string
  /**
   * Resource servers (RFC 8707 resource indicators) by URI, with the scopes each offers: a token
   * requested with `resource` is a JWT whose `aud` is that URI. Any other resource is refused
   * (`invalid_target`), as oidc-provider does by default.
   */
  resourceServers?: Record<string, { scope?: string; accessTokenTtlSec?: number }>
}

export interface RunningIdp {
  issuer: string
  server: Server
  /** Every request path the IdP received (tests assert on token/revocation calls). */
  requests: Array<{ method: string; path: string }>
  /** grant_type of every successful token request, in order. */
  grants: string[]
  /** The IdP's signing key (private JWK): tests sign their own logout tokens with it. */
  signingKey: Record<string, unknown>
  /** Delay before the token endpoint answers (tests use it to keep a refresh in flight). */
  tokenDelayMs: number
  /** Delay before the revocation endpoint answers (tests use it for an IdP that is slow to revoke). */
  revocationDelayMs: number
  close(): Promise<void>
}

/** Starts the IdP listening on loopback; `issuer` is its URL. */
export async function startIdp(options: IdpOptions): Promise<RunningIdp> {
  const { default: Provider, errors } = await import('oidc-provider').catch((cause: unknown) => {
    throw new Error('the embedded demo IdP needs the "oidc-provider" package (npm install oidc-provider)', { cause })
  })
  const host = options.host ?? '127.0.0.1'
  const requests: RunningIdp['requests'] = []
  const grants: string[] = []
  let provider: InstanceType<typeof Provider> | undefined
  const running = { tokenDelayMs: 0, revocationDelayMs: 0 }
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!
    requests.push({ method: req.method ?? 'GET', path })
    if (!provider) {
      res.statusCode = 503
      return res.end()
    }
    const p = provider
    if (path === '/token' && running.tokenDelayMs > 0) return void setTimeout(() => void route(p, req, res), running.tokenDelayMs)
    if (path === '/token/revocation' && running.revocationDelayMs > 0) return void setTimeout(() => void route(p, req, res), running.revocationDelayMs)
    void route(p, req, res)
  })
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, host, resolve))
  const port = (server.address() as AddressInfo).port
  const issuer = `http://${options.issuerHost ?? (host.includes(':') ? `[${host}]` : host)}:${port}`

  const { privateKey } = await generateKeyPair('RS256', { extractable: true })
  const jwk = { ...(await exportJWK(privateKey)), kid: randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' }

  const configuration = {
    adapter: createIdpStorage(),
    // The embedded IdP's back-channel logout calls go to gatehouse on loopback, which oidc-provider's
    // SSRF guard refuses by default; this IdP only ever runs on loopback for the demo and tests.
    fetch: (url: URL | string, init: RequestInit & { dispatcher?: unknown }) => {
      const { dispatcher: _guard, ...rest } = init
      return fetch(url, rest)
    },
    clients: options.clients.map((c) => ({
      grant_types: c.client_secret ? ['authorization_code', 'refresh_token', 'client_credentials'] : ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: c.client_secret ? 'client_secret_basic' : 'none',
      ...(c.backchannel_logout_uri ? { backchannel_logout_session_required: true } : {}),
      ...c,
    })),
    jwks: { keys: [jwk] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    claims: {
      openid: ['sub'],
      profile: ['name', 'given_name', 'family_name', 'preferred_username'],
      email: ['email', 'email_verified'],
    },
    scopes: ['openid', 'offline_access', 'profile', 'email', 'api'],
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: true },
      introspection: { enabled: true },
      clientCredentials: { enabled: true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: { enabled: true, logoutSource, postLogoutSuccessSource },
      dPoP: dpopFeature(options.dpop),
      resourceIndicators: {
        enabled: true,
        getResourceServerInfo: async (_ctx: unknown, indicator: string) => {
          const server = options.resourceServers?.[indicator]
          if (!server) throw new errors.InvalidTarget()
          return { scope: server.scope ?? '', audience: indicator, accessTokenFormat: 'jwt', ...(server.accessTokenTtlSec ? { accessTokenTTL: server.accessTokenTtlSec } : {}) }
        },
      },
    },
    pkce: { required: () => true },
    ttl: {
      // A resource server's own lifetime first (RFC 8707 tokens), as oidc-provider's default does.
      AccessToken: (_ctx: unknown, token: { resourceServer?: { accessTokenTTL?: number } }) => token.resourceServer?.accessTokenTTL ?? options.accessTokenTtlSec ?? 3600,
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: 14 * 24 * 3600,
      Interaction: 3600,
      Session: 14 * 24 * 3600,
      Grant: 14 * 24 * 3600,
    },
    rotateRefreshToken: options.rotateRefreshTokens ?? true,
    issueRefreshToken: async (_ctx: unknown, client: { grantTypeAllowed(type: string): boolean }) => client.grantTypeAllowed('refresh_token'),
    interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `/interaction/${interaction.uid}` },
    findAccount: async (ctx: { oidc?: { route?: string } }, id: string) => {
      const user = DEMO_USERS.find((u) => u.sub === id)
      const accountId = user && ctx.oidc?.route === 'userinfo' && options.userInfoSubject ? options.userInfoSubject(user.sub) : user?.sub
      return user && { accountId, claims: async () => ({ sub: accountId, ...user.claims }) }
    },
    renderError: async (ctx: { type: string; body: string }, out: Record<string, string>) => {
      ctx.type = 'html'
      ctx.body = page('Sign-in error', `<p>${escapeHtml(out.error ?? 'error')}: ${escapeHtml(out.error_description ?? '')}</p>`)
    },
  }
  // The option types of oidc-provider are stricter than its runtime; the object above follows its docs.
  provider = new Provider(issuer, configuration as unknown as Configuration)
  provider.on('grant.success', (ctx: { oidc: { params?: { grant_type?: unknown } } }) => grants.push(String(ctx.oidc.params?.grant_type)))
  provider.on('server_error', () => {})
  provider.on('backchannel.error', () => {})

  return {
    issuer,
    server,
    requests,
    grants,
    signingKey: jwk,
    get tokenDelayMs() {
      return running.tokenDelayMs
    },
    set tokenDelayMs(ms: number) {
      running.tokenDelayMs = ms
    },
    get revocationDelayMs() {
      return running.revocationDelayMs
    },
    set revocationDelayMs(ms: number) {
      running.revocationDelayMs = ms
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

function dpopFeature(option: IdpOptions['dpop']): Record<string, unknown> {
  if (option === false) return { enabled: false }
  if (option === undefined || option === true || !option.requireNonce) return { enabled: true }
  return { enabled: true, nonceSecret: randomBytes(32), requireNonce: () => true }
}

type Provider = InstanceType<Awaited<typeof import('oidc-provider')>['default']>

async function route(provider: Provider, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const match = /^\/interaction\/([A-Za-z0-9_-]+)(\/login)?$/.exec((req.url ?? '').split('?')[0]!)
  if (!match) return provider.callback()(req, res)
  try {
    const details = await provider.interactionDetails(req, res)
    if (details.uid !== match[1]) throw new Error('interaction mismatch')
    if (details.prompt.name === 'login') {
      if (req.method === 'POST' && match[2]) {
        const form = new URLSearchParams(await readBody(req))
        const user = DEMO_USERS.find((u) => u.username === form.get('username') && u.password === form.get('password'))
        if (!user) return send(res, 200, loginPage(details.uid, 'Wrong username or password.'))
        return provider.interactionFinished(req, res, { login: { accountId: user.sub } }, { mergeWithLastSubmission: false })
      }
      return send(res, 200, loginPage(details.uid))
    }
    // First-party demo clients: grant what was asked for without a consent screen.
    const grant = details.grantId ? await provider.Grant.find(details.grantId) : new provider.Grant({ accountId: details.session!.accountId, clientId: details.params.client_id as string })
    const missing = details.prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[]; missingResourceScopes?: Record<string, string[]> }
    if (missing.missingOIDCScope) grant!.addOIDCScope(missing.missingOIDCScope.join(' '))
    if (missing.missingOIDCClaims) grant!.addOIDCClaims(missing.missingOIDCClaims)
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) grant!.addResourceScope(indicator, scopes.join(' '))
    const grantId = await grant!.save()
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true })
  } catch {
    send(res, 400, page('Sign-in error', '<p>This sign-in link is no longer valid. Go back to the application and start again.</p>'))
  }
}

function loginPage(uid: string, error?: string): string {
  const hint = DEMO_USERS.map((u) => `<code>${escapeHtml(u.username)}</code> / <code>${escapeHtml(u.password)}</code>`).join(' or ')
  return page(
    'Sign in',
    `${error ? `<p role="alert" style="color:#b00">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
  <label>Username <input name="username" autocomplete="username" required autofocus></label>
  <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
  <button type="submit">Sign in</button>
</form>
<p style="color:#666">Demo identity provider. Demo users: ${hint}</p>`,
  )
}

async function logoutSource(ctx: { body: string }, form: string): Promise<void> {
  ctx.body = page('Sign out', `${form}<p>Sign out of the demo identity provider as well?</p><button form="op.logoutForm" type="submit" name="logout" value="yes">Yes, sign me out</button>`)
}

async function postLogoutSuccessSource(ctx: { body: string }): Promise<void> {
  ctx.body = page('Signed out', '<p>You are signed out of the demo identity provider.</p>')
}

function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)} · demo IdP</title><style>body{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto}label{display:block;margin:.5rem 0}input{display:block;width:100%;padding:.4rem}button{margin-top:1rem;padding:.5rem 1rem}</style></head><body><h1>${escapeHtml(title)}</h1>${body}</body></html>`
}

function send(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' })
  res.end(html)
}

async function readBody(req: IncomingMessage): Promise<string> {
  let body = ''
  for await (const chunk of req) {
    body += chunk
    if (body.length > 10_000) throw new Error('form too large')
  }
  return body
}
