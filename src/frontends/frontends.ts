import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Logger } from 'pino'
import type { Config, FrontendConfig, OidcConfig } from '../config/types.ts'
import { OwnOrigins } from '../http/origin.ts'
import { OidcClient } from '../oidc/client.ts'
import { ClientCredentials } from '../tokens/client-credentials.ts'
import { RemoteIndexHtml } from './index-html.ts'
import { StaticFolder } from './static.ts'

export type ServeOutcome = 'served' | 'not_found' | 'bad_path' | 'unavailable'

/**
 * Where index.html answers a path that names no file (SPEC §6): `routes` — at the frontend's root
 * and on every client-side route (a path without a file extension), for navigations; `root` — at
 * the root only, for any other request (fetch() of an unknown path gets 404, not a page); `never` —
 * files only, as middleware, where the app's own routes come first (a folder's index.html is still
 * a file at the root).
 */
export type IndexFallback = 'routes' | 'root' | 'never'

/** One SPA gatehouse fronts: where it lives, its session partition and cookie, its IdP client. */
export interface Frontend {
  /** Also the session partition. */
  name: string
  /** '/' or a prefix such as '/admin'. */
  path: string
  /** What endpoint paths get in front: '' for '/', else the path. */
  prefix: string
  host: string | undefined
  /** The origin browsers use for this host-based frontend (FrontendConfig.origin); undefined for a path-based one. */
  origin: string | undefined
  cookieName: string
  oidcConfig: OidcConfig
  oidc: OidcClient
  clientCredentials: ClientCredentials
  /** Serves the SPA itself; undefined when gatehouse only fronts APIs. */
  serve:
    | ((
        req: IncomingMessage,
        res: ServerResponse,
        relativePath: string,
        fallback: IndexFallback,
      ) => Promise<ServeOutcome>)
    | undefined
}

/** The implicit frontend when none are configured: the root, the top-level oidc block, no SPA serving. */
export const DEFAULT_FRONTEND = 'default'

/**
 * The configured frontends (SPEC §6), matched by host first, then longest path prefix, then the
 * default (a host-less frontend at "/"). Each has its own cookie: the one at "/" without a host
 * keeps `session.cookieName`, every other one appends `-<name>`.
 */
export class Frontends {
  readonly all: readonly Frontend[]
  /**
   * The origins gatehouse answers for — publicOrigin and every host-based frontend's origin — or
   * undefined when none is configured (then any well-formed Host is answered, as it names the origin).
   */
  readonly origins: OwnOrigins | undefined
  readonly #byName: Map<string, Frontend>
  readonly #fallback: Frontend

  constructor(config: Config, now: () => number, log?: Logger) {
    // Without a host-less frontend at "/", an implicit one (no SPA) owns the root: /bff/* and
    // remote APIs outside every frontend's path still have a session partition and a client.
    const hasRoot = config.frontends.some((f) => f.path === '/' && f.host === undefined)
    const entries: FrontendConfig[] = hasRoot
      ? config.frontends
      : [
          ...config.frontends,
          {
            name: DEFAULT_FRONTEND,
            path: '/',
            host: undefined,
            origin: undefined,
            static: undefined,
            indexHtmlUrl: undefined,
            indexHtmlCacheTtlMs: 0,
            oidc: undefined,
          },
        ]
    const shared = new Map<string, { oidc: OidcClient; clientCredentials: ClientCredentials }>()
    this.all = entries.map((entry, index) => {
      const oidcConfig = mergeOidc(config.oidc, entry.oidc)
      // Frontends registered as the same client share one discovery cache and one client token.
      const key = JSON.stringify([
        oidcConfig.clientId,
        oidcConfig.clientSecret,
        oidcConfig.clientAuth,
        oidcConfig.clientCredentialsScopes,
      ])
      let clients = shared.get(key)
      if (!clients) {
        const ownAuth =
          entry.oidc !== undefined &&
          (entry.oidc.clientAuth !== undefined ||
            entry.oidc.clientSecret !== undefined ||
            entry.oidc.privateKeyJwk !== undefined)
        const oidc = new OidcClient(oidcConfig, {
          log,
          clientAuthKey: ownAuth ? `frontends[${index}].oidc.clientAuth` : 'oidc.clientAuth',
        })
        clients = {
          oidc,
          clientCredentials: new ClientCredentials({
            oidc,
            scopes: oidcConfig.clientCredentialsScopes,
            skewMs: oidcConfig.tokenRefreshSkewMs,
            now,
            dpop: oidcConfig.dpop,
          }),
        }
        shared.set(key, clients)
      }
      const isRoot = entry.path === '/' && entry.host === undefined
      return {
        name: entry.name,
        path: entry.path,
        prefix: entry.path === '/' ? '' : entry.path,
        host: entry.host,
        origin: entry.host === undefined ? undefined : entry.origin,
        cookieName: isRoot ? config.session.cookieName : `${config.session.cookieName}-${entry.name}`,
        oidcConfig,
        ...clients,
        serve: serverFor(entry, now, config.antiForgery.header),
      }
    })
    const own = [
      ...(config.publicOrigin === undefined ? [] : [config.publicOrigin]),
      ...this.all.flatMap((f) => (f.origin === undefined ? [] : [f.origin])),
    ]
    this.origins = own.length === 0 ? undefined : new OwnOrigins(own)
    this.#byName = new Map(this.all.map((f) => [f.name, f]))
    this.#fallback = this.all.find((f) => f.path === '/' && f.host === undefined)!
  }

  byName(name: string): Frontend | undefined {
    return this.#byName.get(name)
  }

  get default(): Frontend {
    return this.#fallback
  }

  /**
   * The frontend a request belongs to. `origin` is the one of `origins` the request's host named: a
   * host-based frontend with an origin is matched by it exactly. Without configured origins, `host` —
   * the request's host (lower-case, maybe with port) — is compared with the frontends' `host`.
   */
  select(host: string | undefined, path: string, origin?: string): Frontend {
    let best: Frontend | undefined
    for (const frontend of this.all) {
      if (frontend.host !== undefined) {
        if (
          frontend.origin !== undefined
            ? frontend.origin !== origin
            : frontend.host !== host && frontend.host !== host?.replace(/:\d+$/, '')
        )
          continue
      }
      if (frontend.path !== '/' && path !== frontend.path && !path.startsWith(`${frontend.path}/`)) continue
      if (!best || rank(frontend) > rank(best)) best = frontend
    }
    return best ?? this.#fallback
  }
}

/** Host-bound frontends first, then the longer path. */
function rank(frontend: Frontend): number {
  return (frontend.host === undefined ? 0 : 10_000) + frontend.path.length
}

function mergeOidc(base: OidcConfig, override: FrontendConfig['oidc']): OidcConfig {
  if (!override) return base
  const merged: OidcConfig = {
    ...base,
    ...Object.fromEntries(Object.entries(override).filter(([, v]) => v !== undefined)),
  }
  if (!override.clientAuth && (override.clientSecret || override.privateKeyJwk || override.clientId)) {
    merged.clientAuth =
      merged.privateKeyJwk && !override.clientSecret ? 'private_key_jwt' : merged.clientSecret ? undefined : 'none'
  }
  return merged
}

function serverFor(entry: FrontendConfig, now: () => number, antiForgeryHeader: string): Frontend['serve'] {
  // index.html on a client-side route depends on the headers that make a navigation (src/http/navigation.ts).
  const vary = `Sec-Fetch-Mode, Accept, ${antiForgeryHeader}`
  if (entry.static !== undefined) {
    const folder = new StaticFolder(entry.static, { vary })
    return (req, res, relativePath, fallback) => folder.serve(req, res, relativePath, fallback)
  }
  if (entry.indexHtmlUrl !== undefined) {
    const index = new RemoteIndexHtml(entry.indexHtmlUrl, { ttlMs: entry.indexHtmlCacheTtlMs, now })
    // Assets of a CDN-hosted SPA come from the CDN; index.html answers the root and, for navigations, client-side routes.
    return async (req, res, relativePath, fallback) => {
      if (relativePath === '/') return fallback === 'never' ? 'not_found' : index.serve(req, res)
      return fallback !== 'routes' || /\.[A-Za-z0-9]+$/.test(relativePath)
        ? 'not_found'
        : index.serve(req, res, { vary })
    }
  }
  return undefined
}
