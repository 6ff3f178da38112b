/** The query parameters gatehouse reads from a `redis://` store URL (docs/sessions.md); the driver sees none. */
export const REDIS_URL_PARAMS: readonly string[] = ['prefix']

const ENCODE_HINT =
  'percent-encode the user name and password (encodeURIComponent): a / ? # @ : % or space in them breaks the URL'

/**
 * What is wrong with a `redis://`, `rediss://`, `postgres://` or `postgresql://` session store
 * location, or undefined. Messages never repeat the location or a part of it besides a harmless
 * parameter name: a password that breaks the URL lands anywhere in it (a `/` moves it into the path).
 */
export function storeUrlProblem(location: string): string | undefined {
  if (isRedisTopologyUrl(location)) {
    const parsed = parseRedisTopologyUrl(location)
    return typeof parsed === 'string' ? parsed : undefined
  }
  const redis = /^rediss?:\/\//.test(location)
  if (!redis && !/^postgres(ql)?:\/\//.test(location)) return undefined
  // libpq's host list (postgres://db1,db2/app): node-postgres connects to one host only.
  const authority = location.replace(/^[a-z]+:\/\//, '').split(/[/?#]/)[0]!
  if (!redis && authority.slice(authority.lastIndexOf('@') + 1).includes(','))
    return 'lists several hosts: gatehouse connects to one; give it one name that always reaches the primary (docs/deployment.md, "PostgreSQL failover")'
  if (!URL.canParse(location)) return `is not a valid URL (check the host and port; ${ENCODE_HINT})`
  const url = new URL(location)
  // A password holding "/", "?" or "#" ends the host early; the rest, up to its "@", becomes path or query.
  if (hasAtAfterHost(url))
    return `has "@" after the host: a password holding "/", "?" or "#" ends the host early; ${ENCODE_HINT}`
  if (/%(?![0-9A-Fa-f]{2})/.test(`${url.username}:${url.password}`))
    return `has a "%" that starts no percent-escape in its user name or password: ${ENCODE_HINT} (% is %25)`
  if (!redis) return undefined
  const path = url.pathname
  if (path !== '' && path !== '/' && !(/^\/\d+$/.test(path) && Number.isSafeInteger(Number(path.slice(1))))) {
    return `the path must be a database number such as /0 or /3 (if the password holds "/", ${ENCODE_HINT})`
  }
  return redisQueryProblem(url)
}

/** A query parameter of a Redis store URL that gatehouse does not read, or undefined. */
export function redisQueryProblem(url: URL): string | undefined {
  for (const name of new Set(url.searchParams.keys())) {
    if (REDIS_URL_PARAMS.includes(name)) continue
    const shown = /^[A-Za-z0-9_.-]{1,64}$/.test(name) ? `"${name}"` : 'a parameter'
    const hint =
      name === 'db' ? 'the database is the path: redis://host:6379/5' : "gatehouse sets the driver's options itself"
    return `has the query parameter ${shown}, which gatehouse does not read (${hint}; a Redis URL takes only ${REDIS_URL_PARAMS.map((p) => `?${p}=`).join(', ')})`
  }
  return undefined
}

/** Whether a parsed store URL has an "@" after its host: a password with "/", "?" or "#" that ended the host early. */
export function hasAtAfterHost(url: URL): boolean {
  return `${url.pathname}${url.search}${url.hash}`.includes('@')
}

/** The query parameters of a `redis-cluster://` and of a `redis-sentinel://` store URL. */
export const REDIS_CLUSTER_URL_PARAMS: readonly string[] = ['prefix']
export const REDIS_SENTINEL_URL_PARAMS: readonly string[] = ['prefix', 'db', 'sentinelUser', 'sentinelPassword']

const TOPOLOGY_SCHEME = /^(rediss?)-(cluster|sentinel):\/\//

/** A `redis-cluster://` or `redis-sentinel://` location, read (credentials still percent-encoded). */
export interface RedisTopologyUrl {
  kind: 'cluster' | 'sentinel'
  tls: boolean
  username: string
  password: string
  /** The seed nodes (cluster) or the sentinels, in the order given. */
  nodes: Array<{ host: string; port: number }>
  /** Sentinel: the name the sentinels monitor the primary under. */
  masterName: string
  prefix: string | undefined
  /** Sentinel: the database (`?db=`), 0 when absent. */
  db: number
  sentinelUsername: string
  sentinelPassword: string
  /** `scheme://host:port,…[/masterName]`, as messages may show it: no credential, no query. */
  shown: string
}

/** `host:port` as URLs and messages write it: an IPv6 host in brackets. */
export function hostPort(node: { host: string; port: number }): string {
  return `${node.host.includes(':') ? `[${node.host}]` : node.host}:${node.port}`
}

/** Whether a store location names a Redis Cluster or Redis Sentinel deployment. */
export function isRedisTopologyUrl(location: string): boolean {
  return TOPOLOGY_SCHEME.test(location)
}

/**
 * Reads `redis[s]-cluster://[user:pass@]h1:p1,h2:p2[,…][/][?prefix=…]` or
 * `redis[s]-sentinel://[user:pass@]h1:p1[,…]/masterName[?prefix=…&db=N&sentinelUser=…&sentinelPassword=…]`;
 * a string is the problem (for `session.store …`). WHATWG URLs hold one host, so the host list is
 * split here and every host checked as a `redis://` URL's. Problems never repeat a credential.
 */
export function parseRedisTopologyUrl(location: string): RedisTopologyUrl | string {
  const scheme = TOPOLOGY_SCHEME.exec(location)
  if (!scheme) return 'is not a redis-cluster:// or redis-sentinel:// URL'
  const kind = scheme[2] as 'cluster' | 'sentinel'
  if (/[\s\x00-\x1f\x7f]/.test(location))
    return 'holds white space or a control character (a trailing newline from a secret file?)'
  const rest = location.slice(scheme[0].length)
  const authorityEnd = /[/?#]/.exec(rest)?.index ?? rest.length
  const authority = rest.slice(0, authorityEnd)
  const tail = rest.slice(authorityEnd)
  if (tail.includes('@'))
    return `has "@" after the hosts: a password holding "/", "?" or "#" ends the hosts early; ${ENCODE_HINT}`
  const at = authority.lastIndexOf('@')
  const userInfo = at === -1 ? '' : authority.slice(0, at)
  const colon = userInfo.indexOf(':')
  const username = colon === -1 ? userInfo : userInfo.slice(0, colon)
  const password = colon === -1 ? '' : userInfo.slice(colon + 1)
  if (/%(?![0-9A-Fa-f]{2})/.test(userInfo))
    return `has a "%" that starts no percent-escape in its user name or password: ${ENCODE_HINT} (% is %25)`
  const defaultPort = kind === 'cluster' ? 6379 : 26379
  const nodes: RedisTopologyUrl['nodes'] = []
  const hosts = authority.slice(at + 1)
  if (hosts === '')
    return `names no ${kind === 'cluster' ? 'seed node' : 'sentinel'} (${kind === 'cluster' ? 'redis-cluster://host1:6379,host2:6379' : 'redis-sentinel://host1:26379,host2:26379/masterName'})`
  for (const [i, entry] of hosts.split(',').entries()) {
    const node = `redis://${entry}`
    if (entry === '' || !URL.canParse(node) || new URL(node).hostname === '' || new URL(node).pathname !== '')
      return `has an invalid host:port as its host number ${i + 1} (hosts are separated by ",")`
    const url = new URL(node)
    const port = Number(url.port || defaultPort)
    if (port === 0) return `has port 0 as its host number ${i + 1}`
    nodes.push({ host: url.hostname.replace(/^\[|\]$/g, ''), port })
  }
  const rel = new URL(`http://h${tail}`)
  const path = rel.pathname
  let masterName = ''
  if (kind === 'cluster') {
    if (path !== '/')
      return 'has a path: a Redis Cluster has one database, so the URL ends after its hosts (redis-cluster://h1:6379,h2:6379)'
  } else {
    masterName = path.slice(1)
    if (masterName === '') return 'names no master: the path is the name the sentinels monitor (…:26379/mymaster)'
    if (!/^[A-Za-z0-9._-]{1,128}$/.test(masterName))
      return 'has a master name of other characters than letters, digits, ".", "_" and "-"'
  }
  const allowed = kind === 'cluster' ? REDIS_CLUSTER_URL_PARAMS : REDIS_SENTINEL_URL_PARAMS
  // No parameter name is repeated: an unencoded "&" in ?sentinelPassword= turns the password's tail into one.
  const takes = `a ${scheme[1]}-${kind}:// URL takes only ${allowed.map((p) => `?${p}=`).join(', ')}`
  const secretHint = kind === 'sentinel' ? '; percent-encode & # + % in ?sentinelPassword=' : ''
  if (rel.hash !== '' || tail.includes('#')) return `has a "#" fragment (${takes}${secretHint})`
  const names = [...rel.searchParams.keys()]
  if (names.some((name) => !allowed.includes(name)))
    return `has a query parameter gatehouse does not read (${takes}${secretHint})`
  if (new Set(names).size !== names.length) return `repeats a query parameter (${takes}${secretHint})`
  const dbText = rel.searchParams.get('db')
  if (dbText !== null && !(/^\d{1,9}$/.test(dbText) && Number.isSafeInteger(Number(dbText))))
    return '?db= must be a database number such as 0 or 3'
  return {
    kind,
    tls: scheme[1] === 'rediss',
    username,
    password,
    nodes,
    masterName,
    prefix: rel.searchParams.get('prefix') ?? undefined,
    db: dbText === null ? 0 : Number(dbText),
    sentinelUsername: rel.searchParams.get('sentinelUser') ?? '',
    sentinelPassword: rel.searchParams.get('sentinelPassword') ?? '',
    shown: `${scheme[1]}-${kind}://${nodes.map(hostPort).join(',')}${kind === 'sentinel' ? `/${masterName}` : ''}`,
  }
}

/** The kind of session store, as logs and the admin console show it: never the location (it may carry a password). */
export function storeKind(session: { mode: 'server' | 'cookie'; store: string }): string {
  if (session.mode === 'cookie') return 'cookie'
  const location = session.store
  if (location === 'memory') return 'memory'
  if (location.startsWith('sqlite:')) return 'sqlite'
  if (/^rediss?-cluster:/.test(location)) return 'redis-cluster'
  if (/^rediss?-sentinel:/.test(location)) return 'redis-sentinel'
  if (/^rediss?:/.test(location)) return 'redis'
  if (/^postgres(ql)?:/.test(location)) return 'postgres'
  return 'other'
}
