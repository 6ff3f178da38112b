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
 * resource indicators. Its options also give it the shapes of real IdPs (an issuer under a path or
 * with a trailing slash, endpoints left out, other signing algorithms, a rewritten discovery
 * document) for interop tests; tests/helpers/idp-shapes.ts has them ready-made.
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
    claims: {
      name: 'Alice Example',
      given_name: 'Alice',
      family_name: 'Example',
      preferred_username: 'alice',
      email: 'alice@example.test',
      email_verified: true,
    },
  },
  {
    username: 'bob',
    password: 'bob-demo-password',
    sub: 'bob-0002',
    claims: {
      name: 'Bob Example',
      given_name: 'Bob',
      family_name: 'Example',
      preferred_username: 'bob',
      email: 'bob@example.test',
      email_verified: false,
    },
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
  /** The id_token's JWS algorithm (default: the IdP's `signingAlg`); "HS256" signs with the client secret. */
  id_token_signed_response_alg?: string
}

/** The algorithms the IdP can sign id_tokens (and logout tokens) with; its key is of the matching type. */
export type IdpSigningAlg = 'RS256' | 'PS256' | 'ES256'

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
  /**
   * The issuer's path on the IdP's origin, as real IdPs publish it: `/realms/demo` (Keycloak),
   * `/<tenant-id>/v2.0` (Entra ID); `/` gives an issuer with a trailing slash, as Auth0's
   * `https://tenant.auth0.com/`. Every endpoint (and the login form) lives under it. Default: none.
   */
  issuerPath?: string
  /** RP-initiated logout (`end_session_endpoint`); false: none, as Auth0 classic or some Okta setups. Default true. */
  endSession?: boolean
  /** Token revocation (RFC 7009, `revocation_endpoint`); false: none, as Entra ID. Default true. */
  revocation?: boolean
  /** The UserInfo endpoint; false: none, and the user's claims go into the id_token. Default true. */
  userinfo?: boolean
  /** false: never issues a refresh token (also not for offline_access). Default true. */
  refreshTokens?: boolean
  /** The token endpoint authentication methods the IdP accepts and publishes, e.g. `['client_secret_post']`. */
  clientAuthMethods?: string[]
  /** The id_token (and logout token) signing algorithm and key type. Default RS256. */
  signingAlg?: IdpSigningAlg
  /** Claims every account gets, in the id_token itself (not only from UserInfo), e.g. Entra's `{ tid }`. */
  extraClaims?: Record<string, unknown>
  /** Rewrites the discovery document the IdP serves (a stale algorithm list, a templated issuer, …). */
  discovery?: (document: Record<string, unknown>) => Record<string, unknown>
  /**
   * Runs first for every request, with the request's path (no query); answering it and returning
   * true means handled (e.g. another JWKS, an extra discovery document at some other path).
   */
  intercept?: (req: IncomingMessage, res: ServerResponse, path: string) => boolean
}

export interface RunningIdp {
  issuer: string
  /** `http://host:port`: the issuer without its path. */
  origin: string
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
  // The issuer's path, without a trailing slash ("" for the origin itself, and for "/").
  const prefix = issuerPrefix(options.issuerPath)
  const server = createServer((req, res) => {
    const fullPath = (req.url ?? '/').split('?')[0]!
    requests.push({ method: req.method ?? 'GET', path: fullPath })
    if (options.intercept?.(req, res, fullPath)) return
    if (!provider) {
      res.statusCode = 503
      return res.end()
    }
    // Mounted under the issuer's path: the provider sees the rest, and finds its mount point in originalUrl.
    if (prefix && fullPath !== prefix && !fullPath.startsWith(`${prefix}/`))
      return void res.writeHead(404, { 'content-type': 'text/plain' }).end('not found')
    const path = fullPath.slice(prefix.length) || '/'
    if (prefix) {
      ;(req as IncomingMessage & { originalUrl?: string }).originalUrl = req.url
      req.url = path + (req.url ?? '').slice(fullPath.length)
    }
    const p = provider
    if (path === '/token' && running.tokenDelayMs > 0)
      return void setTimeout(() => void route(p, req, res, prefix), running.tokenDelayMs)
    if (path === '/token/revocation' && running.revocationDelayMs > 0)
      return void setTimeout(() => void route(p, req, res, prefix), running.revocationDelayMs)
    void route(p, req, res, prefix)
  })
  // A port in use rejects (EADDRINUSE) rather than crashing the process with an unhandled 'error' event.
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const port = (server.address() as AddressInfo).port
  const origin = `http://${options.issuerHost ?? (host.includes(':') ? `[${host}]` : host)}:${port}`
  const issuer = options.issuerPath === '/' ? `${origin}/` : `${origin}${prefix}`

  const signingAlg = options.signingAlg ?? 'RS256'
  const { privateKey } = await generateKeyPair(signingAlg, { extractable: true })
  const jwk = { ...(await exportJWK(privateKey)), kid: randomBytes(8).toString('hex'), alg: signingAlg, use: 'sig' }
  const extraClaims = options.extraClaims ?? {}
  const idTokenAlgs = new Set(['RS256', 'PS256', 'ES256', 'Ed25519', 'EdDSA', signingAlg])
  for (const c of options.clients) if (c.id_token_signed_response_alg) idTokenAlgs.add(c.id_token_signed_response_alg)
  const authMethods = options.clientAuthMethods
  // A confidential client's default method: Basic, unless the IdP takes only others (then its first secret-based one).
  const secretMethod =
    !authMethods || authMethods.includes('client_secret_basic')
      ? 'client_secret_basic'
      : (authMethods.find((m) => m.startsWith('client_secret_')) ?? authMethods[0]!)
  const refreshTokens = options.refreshTokens ?? true

  const configuration = {
    adapter: createIdpStorage(),
    // The embedded IdP's back-channel logout calls go to gatehouse on loopback, which oidc-provider's
    // SSRF guard refuses by default; this IdP only ever runs on loopback for the demo and tests.
    fetch: (url: URL | string, init: RequestInit & { dispatcher?: unknown }) => {
      const { dispatcher: _guard, ...rest } = init
      return fetch(url, rest)
    },
    clients: options.clients.map((c) => ({
      grant_types: c.client_secret
        ? ['authorization_code', 'refresh_token', 'client_credentials']
        : ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: c.client_secret ? secretMethod : 'none',
      id_token_signed_response_alg: signingAlg,
      ...(c.backchannel_logout_uri ? { backchannel_logout_session_required: true } : {}),
      ...c,
    })),
    jwks: { keys: [jwk] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    claims: {
      // Claims of the openid scope go into every id_token (with conformIdTokenClaims too).
      openid: ['sub', ...Object.keys(extraClaims)],
      profile: ['name', 'given_name', 'family_name', 'preferred_username'],
      email: ['email', 'email_verified'],
    },
    scopes: ['openid', 'offline_access', 'profile', 'email', 'api'],
    ...(authMethods ? { clientAuthMethods: authMethods } : {}),
    enabledJWA: { idTokenSigningAlgValues: [...idTokenAlgs] },
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: options.revocation ?? true },
      userinfo: { enabled: options.userinfo ?? true },
      introspection: { enabled: true },
      clientCredentials: { enabled: true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: { enabled: options.endSession ?? true, logoutSource, postLogoutSuccessSource },
      dPoP: dpopFeature(options.dpop),
      resourceIndicators: {
        enabled: true,
        getResourceServerInfo: async (_ctx: unknown, indicator: string) => {
          const server = options.resourceServers?.[indicator]
          if (!server) throw new errors.InvalidTarget()
          return {
            scope: server.scope ?? '',
            audience: indicator,
            accessTokenFormat: 'jwt',
            ...(server.accessTokenTtlSec ? { accessTokenTTL: server.accessTokenTtlSec } : {}),
          }
        },
      },
    },
    pkce: { required: () => true },
    ttl: {
      // A resource server's own lifetime first (RFC 8707 tokens), as oidc-provider's default does.
      AccessToken: (_ctx: unknown, token: { resourceServer?: { accessTokenTTL?: number } }) =>
        token.resourceServer?.accessTokenTTL ?? options.accessTokenTtlSec ?? 3600,
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: 14 * 24 * 3600,
      Interaction: 3600,
      Session: 14 * 24 * 3600,
      Grant: 14 * 24 * 3600,
    },
    rotateRefreshToken: options.rotateRefreshTokens ?? true,
    issueRefreshToken: async (_ctx: unknown, client: { grantTypeAllowed(type: string): boolean }) =>
      refreshTokens && client.grantTypeAllowed('refresh_token'),
    interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `${prefix}/interaction/${interaction.uid}` },
    findAccount: async (ctx: { oidc?: { route?: string } }, id: string) => {
      const user = DEMO_USERS.find((u) => u.sub === id)
      const accountId =
        user && ctx.oidc?.route === 'userinfo' && options.userInfoSubject
          ? options.userInfoSubject(user.sub)
          : user?.sub
      return user && { accountId, claims: async () => ({ sub: accountId, ...user.claims, ...extraClaims }) }
    },
    renderError: async (ctx: { type: string; body: string }, out: Record<string, string>) => {
      ctx.type = 'html'
      ctx.body = page(
        'Sign-in error',
        `<p>${escapeHtml(out.error ?? 'error')}: ${escapeHtml(out.error_description ?? '')}</p>`,
      )
    },
  }
  // The option types of oidc-provider are stricter than its runtime; the object above follows its docs.
  const created = new Provider(issuer, configuration as unknown as Configuration)
  if (authMethods && !authMethods.includes('client_secret_basic')) {
    // oidc-provider takes client_secret_basic and client_secret_post as one method; a strict IdP refuses
    // the one it does not offer (a secret in the body is already ignored when post is not offered).
    created.use(async (ctx, next) => {
      if (!/^basic /i.test(ctx.get('authorization'))) return next()
      // RFC 6749 §5.2: invalid_client, 401 with a challenge in the scheme the client tried (as oidc-provider answers).
      const description = 'client_secret_basic is not an accepted client authentication method'
      ctx.status = 401
      ctx.set('www-authenticate', `Basic realm="${issuer}", error="invalid_client", error_description="${description}"`)
      ctx.body = { error: 'invalid_client', error_description: description }
    })
  }
  if (options.discovery) {
    const rewrite = options.discovery
    created.use(async (ctx, next) => {
      await next()
      if (ctx.oidc?.route === 'discovery' && ctx.status === 200 && ctx.body && typeof ctx.body === 'object')
        ctx.body = rewrite({ ...(ctx.body as Record<string, unknown>) })
    })
  }
  provider = created
  provider.on('grant.success', (ctx: { oidc: { params?: { grant_type?: unknown } } }) =>
    grants.push(String(ctx.oidc.params?.grant_type)),
  )
  provider.on('server_error', () => {})
  provider.on('backchannel.error', () => {})

  return {
    issuer,
    origin,
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

/** `/realms/demo/` → `/realms/demo`; undefined and `/` → "". */
function issuerPrefix(path: string | undefined): string {
  if (path === undefined || path === '/' || path === '') return ''
  if (!/^\/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$/.test(path) || path.includes('//'))
    throw new Error(`issuerPath must be a path such as "/realms/demo" (got "${path}")`)
  return path.replace(/\/+$/, '')
}

async function route(provider: Provider, req: IncomingMessage, res: ServerResponse, prefix: string): Promise<void> {
  const match = /^\/interaction\/([A-Za-z0-9_-]+)(\/login)?$/.exec((req.url ?? '').split('?')[0]!)
  if (!match) return provider.callback()(req, res)
  try {
    const details = await provider.interactionDetails(req, res)
    if (details.uid !== match[1]) throw new Error('interaction mismatch')
    if (details.prompt.name === 'login') {
      if (req.method === 'POST' && match[2]) {
        const form = new URLSearchParams(await readBody(req))
        const user = DEMO_USERS.find((u) => u.username === form.get('username') && u.password === form.get('password'))
        if (!user) return send(res, 200, loginPage(prefix, details.uid, 'Wrong username or password.'))
        return provider.interactionFinished(
          req,
          res,
          { login: { accountId: user.sub } },
          { mergeWithLastSubmission: false },
        )
      }
      return send(res, 200, loginPage(prefix, details.uid))
    }
    // First-party demo clients: grant what was asked for without a consent screen.
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session!.accountId, clientId: details.params.client_id as string })
    const missing = details.prompt.details as {
      missingOIDCScope?: string[]
      missingOIDCClaims?: string[]
      missingResourceScopes?: Record<string, string[]>
    }
    if (missing.missingOIDCScope) grant!.addOIDCScope(missing.missingOIDCScope.join(' '))
    if (missing.missingOIDCClaims) grant!.addOIDCClaims(missing.missingOIDCClaims)
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {}))
      grant!.addResourceScope(indicator, scopes.join(' '))
    const grantId = await grant!.save()
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true })
  } catch {
    send(
      res,
      400,
      page('Sign-in error', '<p>This sign-in link is no longer valid. Go back to the application and start again.</p>'),
    )
  }
}

function loginPage(prefix: string, uid: string, error?: string): string {
  const hint = DEMO_USERS.map(
    (u) => `<code>${escapeHtml(u.username)}</code> / <code>${escapeHtml(u.password)}</code>`,
  ).join(' or ')
  return page(
    'Sign in',
    `${error ? `<p role="alert" style="color:#b00">${escapeHtml(error)}</p>` : ''}
<form method="post" action="${escapeHtml(prefix)}/interaction/${escapeHtml(uid)}/login">
  <label>Username <input name="username" autocomplete="username" required autofocus></label>
  <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
  <button type="submit">Sign in</button>
</form>
<p style="color:#666">Demo identity provider. Demo users: ${hint}</p>`,
  )
}

async function logoutSource(ctx: { body: string }, form: string): Promise<void> {
  ctx.body = page(
    'Sign out',
    `${form}<p>Sign out of the demo identity provider as well?</p><button form="op.logoutForm" type="submit" name="logout" value="yes">Yes, sign me out</button>`,
  )
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
