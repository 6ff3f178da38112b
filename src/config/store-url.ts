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
  const redis = /^rediss?:\/\//.test(location)
  if (!redis && !/^postgres(ql)?:\/\//.test(location)) return undefined
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
