import type { RemoteApiConfig } from '../config/types.ts'

export interface RemoteApi extends RemoteApiConfig {
  /** Upstream origin, e.g. `http://127.0.0.1:5000` (the pool key). */
  origin: string
  /** The target's base path without a trailing slash (`/v2`, or '' for the root). */
  basePath: string
  /** The methods forwarded, HEAD added when GET is there; undefined: every method. */
  allowed: ReadonlySet<string> | undefined
  /** The same as an `Allow` header value (RFC 9110 §10.2.1), for 405 answers. */
  allowHeader: string | undefined
}

export interface ApiMatch {
  api: RemoteApi
  /** Path and query to request upstream, e.g. `/v2/orders/7?x=1`. */
  upstreamPath: string
}

/**
 * Remote API routing (SPEC §5). Matching is on the raw request path, longest prefix first. A path
 * under a prefix that is not plainly a path below it — dot segments raw or percent-encoded, encoded
 * slashes or backslashes, double encodings of those, empty segments — is an escape attempt: refused
 * before any upstream is contacted, since the upstream might normalise it to somewhere else.
 */
export class RemoteApiRoutes {
  readonly #apis: RemoteApi[]

  constructor(apis: readonly RemoteApiConfig[]) {
    this.#apis = apis
      .map((api) => {
        const target = new URL(api.target)
        // RFC 9110 §9.3.2: HEAD is GET without the body, so a resource that answers GET answers HEAD.
        const allowed = api.methods && new Set(api.methods.includes('GET') ? [...api.methods, 'HEAD'] : api.methods)
        return {
          ...api,
          origin: target.origin,
          basePath: target.pathname.replace(/\/+$/, ''),
          allowed,
          allowHeader: allowed && [...allowed].join(', '),
        }
      })
      .sort((a, b) => b.path.length - a.path.length)
  }

  get size(): number {
    return this.#apis.length
  }

  /** Every API, longest prefix first. */
  get all(): readonly RemoteApi[] {
    return this.#apis
  }

  /** The API for a request target (path + query), 'escape' for a refused path, undefined when none matches. */
  match(target: string): ApiMatch | 'escape' | undefined {
    if (this.#apis.length === 0) return undefined
    const q = target.indexOf('?')
    const path = q === -1 ? target : target.slice(0, q)
    const search = q === -1 ? '' : target.slice(q)
    for (const api of this.#apis) {
      if (path !== api.path && !path.startsWith(`${api.path}/`)) continue
      const rest = path.slice(api.path.length)
      if (!isPlainSubpath(rest) || /[\u0000-\u001F\u007F\\#]/.test(search)) return 'escape'
      const upstreamPath = `${api.basePath}${rest}` || '/'
      return { api, upstreamPath: `${upstreamPath.startsWith('/') ? '' : '/'}${upstreamPath}${search}` }
    }
    // A path that only becomes an API path once normalised (`/x/../api`) never reaches an upstream:
    // it is not matched here, and nothing else in gatehouse resolves dot segments.
    return undefined
  }
}

/**
 * `''` or `/seg/seg…` where no segment is, or decodes (once or twice) to, a dot segment (also with
 * `;params`), or holds a separator (`/`, `\\`, and after decoding `?` or `#`) or a control character.
 */
export function isPlainSubpath(rest: string): boolean {
  if (rest === '') return true
  // A raw `#` is not legal in a request target; a WHATWG URL parser would cut the path there.
  if (rest[0] !== '/' || /[\u0000-\u0020\u007F\\#]/.test(rest)) return false
  const segments = rest.slice(1).split('/')
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!
    if (segment === '') {
      if (i === segments.length - 1) continue // a trailing slash is a normal path
      return false
    }
    // Malformed percent-encoding or invalid UTF-8 (overlong `%e0%80%ae` is `.` to some old decoders).
    try {
      decodeURIComponent(segment)
    } catch {
      return false
    }
    let form = segment
    for (let round = 0; ; round++) {
      // Servlet containers (Tomcat, Jetty) cut path parameters off before resolving dot segments:
      // `..;x` is `..` to them.
      const name = form.split(';', 1)[0]
      if (name === '.' || name === '..' || /[/\\\u0000-\u001F\u007F]/.test(form)) return false
      if (round > 0 && /[?#]/.test(form)) return false
      if (!/%[0-9A-Fa-f]{2}/.test(form)) break
      if (round === 2) return false // a third level of encoding: no honest client sends that
      form = decodeBytes(form)
    }
  }
  return true
}

/** Percent-decoding byte by byte: never throws, whatever an upstream's decoder would make of invalid UTF-8. */
function decodeBytes(text: string): string {
  return text.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)))
}
