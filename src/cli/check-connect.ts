import { resolve } from 'node:path'
import { pino } from 'pino'
import { DEFAULTS } from '../config/defaults.ts'
import { isRedisTopologyUrl, parseRedisTopologyUrl } from '../config/store-url.ts'
import { decode, MASK, maskCredentials, maskUrlsIn } from '../config/mask.ts'
import type { Config } from '../config/types.ts'
import { GatehouseError } from '../errors.ts'
import type { ConfigWarning } from '../config/warnings.ts'
import { Frontends, type Frontend } from '../frontends/frontends.ts'
import { chooseClientAuth } from '../oidc/client-auth.ts'
import { fetchDiscovery } from '../oidc/discovery.ts'
import { authoritySpellings, checkPublishedIssuer, isTemplate } from '../oidc/issuer.ts'
import { escapeControls } from '../log-pretty.ts'
import { SCHEMA_OBJECTS, SCHEMA_VERSION } from '../session/stores/migration.ts'
import { openStore } from '../session/stores/open-store.ts'
import { inspectSqliteFile, isSqliteUri } from '../session/stores/sqlite-open.ts'

/** What `check-config --connect` found: report lines (stdout), warnings, and one line per failure. */
export interface ConnectReport {
  lines: string[]
  warnings: ConfigWarning[]
  failures: string[]
}

/**
 * `check-config --connect`: the IdP's discovery document and JWKS, checked with gatehouse's own
 * discovery (the same issuer rules, client-authentication choice and DPoP checks `serve` applies),
 * then the session store reached as `serve` reaches it, but read only: nothing is created.
 */
export async function checkConnections(config: Config): Promise<ConnectReport> {
  const report: ConnectReport = { lines: [], warnings: [], failures: [] }
  await checkIdp(config, report)
  await checkStore(config, report)
  // The discovery document's strings and the servers' messages are shown: no control character of
  // theirs may reach the terminal, and no URL of theirs a password.
  return {
    lines: report.lines.map(escapeControls),
    warnings: report.warnings.map((w) => ({ ...w, message: escapeControls(maskUrlsIn(w.message)) })),
    failures: report.failures.map((f) => escapeControls(maskUrlsIn(f))),
  }
}

async function checkIdp(config: Config, report: ConnectReport): Promise<void> {
  const o = config.oidc
  const fail = (detail: string) =>
    report.failures.push(detail.startsWith('identity provider') ? detail : `identity provider: ${detail}`)
  let doc: Record<string, unknown>
  try {
    doc = await fetchDiscovery(o.authority, o.timeoutMs)
  } catch (err) {
    return void fail(withReason(err))
  }
  const line = (text: string) => report.lines.push(`  ${text}`)
  report.lines.push(`identity provider (${maskCredentials(o.authority)}):`)
  const issuer = String(doc.issuer)
  const verdict = checkPublishedIssuer(o, issuer)
  line(`issuer: ${issuer} (${verdict.ok ? `accepted: ${issuerRule(config, issuer)}` : 'NOT accepted'})`)
  if (!verdict.ok) {
    const key = o.issuer === undefined ? 'oidc.authority' : 'oidc.issuer'
    fail(`the discovery document names issuer "${issuer}", which is not ${key} "${verdict.refusal.expected}"`)
  }
  for (const key of [
    'authorization_endpoint',
    'token_endpoint',
    'end_session_endpoint',
    'revocation_endpoint',
    'pushed_authorization_request_endpoint',
    'userinfo_endpoint',
  ]) {
    line(`${key}: ${typeof doc[key] === 'string' ? doc[key] : '(none)'}`)
  }
  if (o.endSessionEndpoint) line(`end-session endpoint used: ${o.endSessionEndpoint} (oidc.endSessionEndpoint)`)
  line(`id_token signing algorithms: ${list(doc.id_token_signing_alg_values_supported)}`)
  const jwks = await fetchJwks(String(doc.jwks_uri), o.timeoutMs).catch((err: unknown) => {
    fail(`JWKS ${String(doc.jwks_uri)}: ${withReason(err)}`)
    return undefined
  })
  if (jwks)
    line(
      `jwks: ${jwks.length} ${jwks.length === 1 ? 'key' : 'keys'} (${jwks.join(', ') || 'none'}) at ${String(doc.jwks_uri)}`,
    )
  if (jwks?.length === 0) fail(`JWKS ${String(doc.jwks_uri)} holds no keys: no id_token can be verified`)
  const methods = doc.token_endpoint_auth_methods_supported
  line(
    `token endpoint auth methods: ${Array.isArray(methods) ? list(methods) : '(not listed; client_secret_basic by default, RFC 8414)'}`,
  )
  if (o.dpop)
    line(
      `DPoP signing algorithms: ${list(doc.dpop_signing_alg_values_supported)} (oidc.dpop asks for ${o.dpop.signingAlg})`,
    )
  if (o.pushedAuthorizationRequests && typeof doc.pushed_authorization_request_endpoint !== 'string') {
    fail(
      'oidc.pushedAuthorizationRequests is on, but the identity provider has no pushed_authorization_request_endpoint: every login would fail',
    )
  }

  // One client per registration: frontends with their own oidc block are checked apart, each by
  // serve's own discovery (src/oidc/client.ts), whose warnings are kept.
  const logged: Array<{ event?: string; msg?: string }> = []
  const log = pino(
    { level: 'warn', base: null },
    { write: (text: string) => void logged.push(JSON.parse(text) as (typeof logged)[number]) },
  )
  const frontends = new Frontends(config, Date.now, log)
  const clients = new Map<Frontend['oidc'], Frontend[]>()
  for (const f of frontends.all) clients.set(f.oidc, [...(clients.get(f.oidc) ?? []), f])
  for (const [client, members] of clients) {
    // The client's keys: the top-level block's, unless every frontend using it names a client of its own.
    const indexes = members.map((m) => config.frontends.findIndex((f) => f.name === m.name))
    const own = indexes.every((i) => i !== -1 && hasOwnClient(config.frontends[i]!.oidc)) ? indexes[0]! : -1
    const key = own === -1 ? 'oidc' : `frontends[${own}].oidc`
    const settings = members[0]!.oidcConfig
    const label =
      clients.size > 1 ? ` of ${members.map((m) => m.name).join(', ')} (${key}, clientId "${settings.clientId}")` : ''
    const choice = chooseClientAuth(settings, methods)
    const listed = Array.isArray(methods) ? methods.includes(choice.method) : choice.method === 'client_secret_basic'
    const how = settings.clientAuth
      ? `${key}.clientAuth`
      : choice.fromDiscovery
        ? "chosen from the identity provider's list"
        : 'from the configured credentials'
    line(
      `client authentication${label}: ${choice.method} (${how}; ${listed ? 'supported' : 'NOT listed by the identity provider'})`,
    )
    if (!listed) {
      report.warnings.push({
        level: 'warn',
        event: 'client_auth_unlisted',
        message: `${key}.clientAuth: ${choice.method} is not in the identity provider's token_endpoint_auth_methods_supported (${Array.isArray(methods) ? list(methods) : 'none listed'}): the token endpoint will likely refuse gatehouse; set ${key}.clientAuth to a listed method`,
      })
    }
    // What else serve decides at discovery: DPoP support, the private_key_jwt key, https keys, a
    // missing end-session endpoint, an unrestricted multi-tenant issuer.
    if (verdict.ok) {
      try {
        await client.ready()
      } catch (err) {
        fail(withReason(err))
      }
    }
    client.close()
  }
  for (const entry of logged) {
    // client_auth_chosen is reported above, with whether the method is listed.
    if (
      entry.event === 'client_auth_chosen' ||
      typeof entry.msg !== 'string' ||
      report.warnings.some((w) => w.message === entry.msg)
    )
      continue
    report.warnings.push({ level: 'warn', event: entry.event ?? 'discovery', message: entry.msg })
  }
}

function hasOwnClient(oidc: Config['frontends'][number]['oidc']): boolean {
  return (
    oidc !== undefined &&
    (oidc.clientId !== undefined ||
      oidc.clientSecret !== undefined ||
      oidc.clientAuth !== undefined ||
      oidc.privateKeyJwk !== undefined)
  )
}

function issuerRule(config: Config, issuer: string): string {
  const o = config.oidc
  if (o.issuer !== undefined)
    return `oidc.issuer${issuer === o.issuer ? '' : ' fills the published {tenantid} template'}`
  if (authoritySpellings(o.authority).includes(issuer)) return 'it is oidc.authority'
  if (isTemplate(issuer))
    return `multi-tenant template; ${o.allowedTenants ? `oidc.allowedTenants: ${o.allowedTenants.join(', ')}` : o.allowedIssuers ? `oidc.allowedIssuers: ${o.allowedIssuers.join(', ')}` : 'every tenant'}`
  return 'listed in oidc.allowedIssuers'
}

/** The JWKS's keys, as `alg` (or key type and curve when a key names no alg). */
async function fetchJwks(uri: string, timeoutMs: number): Promise<string[]> {
  const res = await fetch(uri, {
    headers: { accept: 'application/json' },
    redirect: 'manual',
    signal: AbortSignal.timeout(timeoutMs),
  })
  if (res.status !== 200) {
    await res.body?.cancel()
    throw new Error(`answered ${res.status}`)
  }
  let body: unknown
  try {
    body = await res.json()
  } catch {
    throw new Error('did not answer JSON')
  }
  const keys = (body as { keys?: unknown } | null)?.keys
  if (!Array.isArray(keys)) throw new Error('is not a JWK set (no "keys" list)')
  return keys.map((k: unknown) => {
    const { alg, kty, crv } = (k ?? {}) as Record<string, unknown>
    return typeof alg === 'string' ? alg : `${String(kty)}${typeof crv === 'string' ? ` ${crv}` : ''} (no alg)`
  })
}

async function checkStore(config: Config, report: ConnectReport): Promise<void> {
  if (config.session.mode === 'cookie') {
    report.lines.push('session store: none (session.mode is "cookie": sessions live in the sealed cookie)')
    return
  }
  const location = config.session.store
  const { kind, details } = describeStore(location)
  let state: string[]
  try {
    state = await storeState(location)
  } catch (err) {
    // A store's start-up error is one line naming the location and the cause already.
    const reason = err instanceof GatehouseError ? err.message.replace(/^session store /, '') : withReason(err)
    report.failures.push(`session store (${kind}): ${scrub(reason, location)}`)
    return
  }
  report.lines.push('session store:', `  kind: ${kind}`, ...[...details, ...state].map((d) => `  ${d}`))
}

const CREATES = 'serve or gatehouse migrate will create'

/**
 * What the store holds, found without changing it (unlike serve and migrate, which create the SQLite
 * file, the PostgreSQL schema and the tables): the tables present or missing, the file's existence.
 * A store serve could not open throws serve's one-line error.
 */
async function storeState(location: string): Promise<string[]> {
  if (location === 'memory') return []
  if (location.startsWith('sqlite:')) {
    const found = inspectSqliteFile(location.slice('sqlite:'.length))
    if (found.state === 'memory') return ['state: in memory (each process that opens it gets new, empty tables)']
    if (found.state === 'absent')
      return [
        `state: the file does not exist yet; ${CREATES} it${found.folder ? ` and its folder ${found.folder}` : ''}`,
      ]
    return [tablesState(found.missing)]
  }
  if (/^postgres(ql)?:/.test(location)) {
    const { inspectPostgresStore } = await import('../session/stores/postgres.ts')
    return [tablesState((await inspectPostgresStore(location)).missing)]
  }
  // Redis: connecting and a PING write nothing.
  const store = await openStore(location)
  try {
    await store.ping()
  } finally {
    await store.close().catch(() => {})
  }
  return ['state: answered (Redis needs no schema)']
}

function tablesState(missing: string[]): string {
  if (missing.length === 0) return `state: schema version ${SCHEMA_VERSION} in place`
  return `state: ${missing.length === SCHEMA_OBJECTS.length ? 'no gatehouse tables yet' : `missing ${missing.join(', ')}`}; ${CREATES} them`
}

/**
 * What a store location names, credentials masked. Read from the location as the stores read it
 * (src/session/stores/*, which expose none of it), with the defaults of src/config/defaults.ts (Redis's
 * key prefix, PostgreSQL's schema).
 */
export function describeStore(location: string): { kind: string; details: string[] } {
  if (location === 'memory') return { kind: 'memory (in this process; lost on restart)', details: [] }
  if (location.startsWith('sqlite:')) {
    const path = location.slice('sqlite:'.length)
    return {
      kind: 'sqlite',
      details: [`path: ${isSqliteUri(path) ? path : resolve(path)}`, 'tables: gatehouse_sessions, gatehouse_leases'],
    }
  }
  if (isRedisTopologyUrl(location)) {
    const topology = parseRedisTopologyUrl(location)
    if (typeof topology === 'string') return { kind: location.split(':')[0]!.replace(/[^a-z-]/g, ''), details: [] }
    const user = topology.username ? ` (user ${decode(topology.username)})` : ''
    const prefix = `key prefix: ${JSON.stringify(topology.prefix ?? DEFAULTS.storeUrl.redisPrefix)}`
    const tls = topology.tls ? ' (TLS)' : ''
    const nodes = topology.shown.replace(/^[^/]*\/\//, '').replace(/\/.*$/, '')
    return topology.kind === 'cluster'
      ? { kind: `redis cluster${tls}`, details: [`seed nodes: ${nodes}${user}`, prefix] }
      : {
          kind: `redis sentinel${tls}`,
          details: [`sentinels: ${nodes}`, `master: ${topology.masterName}${user}`, `database: ${topology.db}`, prefix],
        }
  }
  if (!URL.canParse(location)) return { kind: location.split(':')[0]!.replace(/[^a-z]/g, ''), details: [] }
  const url = new URL(location)
  const server = `server: ${url.protocol}//${url.host}${url.username ? ` (user ${decode(url.username)})` : ''}`
  if (url.protocol === 'redis:' || url.protocol === 'rediss:') {
    const db = url.pathname.length > 1 ? url.pathname.slice(1) : '0'
    return {
      kind: `redis${url.protocol === 'rediss:' ? ' (TLS)' : ''}`,
      details: [
        server,
        `database: ${db}`,
        `key prefix: ${JSON.stringify(url.searchParams.get('prefix') ?? DEFAULTS.storeUrl.redisPrefix)}`,
      ],
    }
  }
  const schema = url.searchParams.get('schema') ?? DEFAULTS.storeUrl.postgresSchema
  const database = decode(url.pathname.slice(1)) || "(the user's default)"
  return {
    kind: 'postgresql',
    details: [
      server,
      `database: ${database}`,
      `schema: ${schema}`,
      `tables: ${schema}.gatehouse_sessions, ${schema}.gatehouse_leases`,
    ],
  }
}

const REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host not found',
  ETIMEDOUT: 'timed out',
  UND_ERR_CONNECT_TIMEOUT: 'timed out',
  ECONNRESET: 'connection reset',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
}

/** The error's message with the cause that explains it (connection refused, timed out, TLS…). */
function withReason(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err)
  const chain: Error[] = []
  for (let e: unknown = err; e instanceof Error && chain.length < 6; e = e.cause) chain.push(e)
  let reason = ''
  for (const e of chain) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string' && REASONS[code]) reason = `${REASONS[code]} (${code})`
    else if (e.name === 'TimeoutError') reason = 'timed out'
    else if (typeof code === 'string' && /CERT|TLS|SSL/.test(code)) reason = `TLS failure (${code})`
    if (reason) break
  }
  if (!reason && chain.length > 1) reason = chain.at(-1)!.message
  return reason && !message.includes(reason) ? `${message}: ${reason}` : message
}

/** Never a password in output: the URL's and whatever message repeats it. */
function scrub(text: string, location: string): string {
  let out = maskUrlsIn(text)
  const topology = isRedisTopologyUrl(location) ? parseRedisTopologyUrl(location) : undefined
  if (topology !== undefined && typeof topology !== 'string') {
    const secrets = [topology.password, topology.sentinelPassword].flatMap((s) => (s ? [s, decode(s)] : []))
    for (const secret of secrets.sort((a, b) => b.length - a.length)) out = out.replaceAll(secret, MASK)
  } else if (URL.canParse(location)) {
    const url = new URL(location)
    const secrets = [url.password, url.searchParams.get('password') ?? ''].flatMap((s) => (s ? [s, decode(s)] : []))
    for (const secret of secrets.sort((a, b) => b.length - a.length)) out = out.replaceAll(secret, MASK)
  }
  return out
}

function list(value: unknown): string {
  return Array.isArray(value) && value.length ? value.map(String).join(', ') : '(not listed)'
}
