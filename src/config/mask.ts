// How a URL or message may be shown: no password, no secret query value. Used wherever gatehouse
// prints or logs a location it was given (check-config, the start line, store errors).

export const MASK = '***'

/** Query parameters whose values are shown: store and connection settings that are never secret. */
const SHOWN_PARAMS: ReadonlySet<string> = new Set([
  'prefix',
  'schema',
  'sslmode',
  'db',
  'dbname',
  'host',
  'port',
  'user',
  'application_name',
  'connect_timeout',
  'target_session_attrs',
  'uselibpqcompat',
  'sslrootcert',
  'family',
])

/**
 * A URL as it may be shown: its password, every query value but those of SHOWN_PARAMS (a `password=`,
 * as libpq and ioredis read, a `sig=`, an `api_key=`…) and its fragment replaced by `***`; the user
 * name stays. A URL that does not parse is shown as `scheme://***`: a password holding "/" or "@"
 * breaks it anywhere. Other text is returned as is.
 */
export function maskCredentials(text: string): string {
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.exec(text)?.[0]
  if (scheme === undefined) return text
  // A Redis Cluster or Sentinel URL lists several hosts, which no URL parses: masked with one in their place.
  const hosts = /^rediss?-(?:cluster|sentinel):\/\/(?:[^/?#]*@)?([A-Za-z0-9.:[\],-]*,[A-Za-z0-9.:[\],-]*)/.exec(text)
  if (hosts) {
    const start = hosts[0].length - hosts[1]!.length
    const placeholder = 'gatehouse-hosts'
    return maskCredentials(`${text.slice(0, start)}${placeholder}${text.slice(hosts[0].length)}`).replace(
      placeholder,
      hosts[1]!,
    )
  }
  if (!URL.canParse(text)) return `${scheme}${MASK}`
  const url = new URL(text)
  const rest = text.slice(scheme.length)
  // An "@" after the host means a password ended the host early ("/" in it): the user info runs to the last "@".
  const broken = `${url.pathname}${url.search}${url.hash}`.includes('@')
  const at = broken ? rest.lastIndexOf('@') : rest.slice(0, /[/?#]/.exec(rest)?.index ?? rest.length).lastIndexOf('@')
  const userInfo = at === -1 ? undefined : rest.slice(0, at)
  let shown = ''
  if (userInfo !== undefined) {
    const user = userInfo.includes(':') ? userInfo.slice(0, userInfo.indexOf(':')) : broken ? undefined : userInfo
    shown =
      user === undefined || /[/?#]/.test(user) ? `${MASK}@` : userInfo.includes(':') ? `${user}:${MASK}@` : `${user}@`
  }
  const after = rest.slice(at + 1)
  const hash = after.indexOf('#')
  const main = hash === -1 ? after : after.slice(0, hash)
  const query = main.indexOf('?')
  const masked =
    query === -1
      ? main
      : `${main.slice(0, query + 1)}${main
          .slice(query + 1)
          .split('&')
          .map(maskParam)
          .join('&')}`
  return `${scheme}${shown}${masked}${hash === -1 || hash === after.length - 1 ? after.slice(main.length) : `#${MASK}`}`
}

function maskParam(pair: string): string {
  if (pair === '') return pair
  const eq = pair.indexOf('=')
  const name = eq === -1 ? pair : pair.slice(0, eq)
  if (SHOWN_PARAMS.has(decode(name.replaceAll('+', ' ')).toLowerCase())) return pair
  return eq === -1 ? MASK : `${name}=${MASK}`
}

/** Every URL in a message masked as maskCredentials masks one (a URL ends at white space or a quote). */
export function maskUrlsIn(text: string): string {
  return text.replace(/[A-Za-z][A-Za-z0-9+.-]*:\/\/[^\s"'<>`]*/g, (url) => maskCredentials(url))
}

/** decodeURIComponent that never throws: a malformed escape ("%zz") is left as written. */
export function decode(text: string): string {
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}
