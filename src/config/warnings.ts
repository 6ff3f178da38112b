import { isLoopbackHost, OwnOrigins } from '../http/origin.ts'
import type { Config } from './types.ts'

/** One thing about a configuration an operator should know: `serve` logs it at start, `check-config` prints it. */
export interface ConfigWarning {
  level: 'warn' | 'info'
  event: string
  message: string
  /** More fields of the log line (the origins, the API's path). */
  fields?: Record<string, unknown>
}

/**
 * What a valid configuration still gets wrong for production, decided from the configuration alone
 * (what only the IdP's discovery can tell is `check-config --connect`'s). Pure: the same list for
 * `serve`, the library and `check-config`.
 */
export function configWarnings(config: Config): ConfigWarning[] {
  const out: ConfigWarning[] = []
  const warn = (event: string, message: string, fields?: Record<string, unknown>) =>
    out.push({ level: 'warn', event, message, ...(fields ? { fields } : {}) })
  const info = (event: string, message: string, fields?: Record<string, unknown>) =>
    out.push({ level: 'info', event, message, ...(fields ? { fields } : {}) })

  if (!config.publicOrigin) {
    warn(
      'public_origin_unset',
      config.frontends.some((f) => f.origin !== undefined)
        ? "publicOrigin is not set: only the frontends' origins are served, and path-based frontends build redirect URIs from the Host header; set it in production"
        : 'publicOrigin is not set: redirect URIs are built from the Host header and requests for any host are answered (DNS rebinding); set it in production',
    )
  }
  if (!isLoopbackHost(config.listen.host)) {
    warn(
      'listen_public',
      `listen.host is "${config.listen.host}"${everyInterface(config.listen.host)}, not a loopback address: gatehouse serves plain HTTP, so only the TLS-terminating proxy should reach this port (close it to everything else: firewall, container network, security group)`,
      { host: config.listen.host },
    )
  }
  const own = [
    ...(config.publicOrigin === undefined ? [] : [config.publicOrigin]),
    ...config.frontends.flatMap((f) => (f.origin === undefined ? [] : [f.origin])),
  ]
  if (own.length)
    info(
      'host_allowlist',
      "requests are answered only for these origins' hosts (421 otherwise; /healthz and /readyz for any host)",
      { origins: new OwnOrigins(own).all },
    )
  if (config.cors)
    info(
      'cors_on',
      'CORS is on for cors.allowedOrigins: /bff/user, /bff/session-events, protected local routes and remote APIs answer them',
      { origins: config.cors.allowedOrigins },
    )
  // A development origin (http://localhost:5173) left in a production config lets whatever page is served there act as the user.
  const loopbackOrigins = config.cors?.allowedOrigins.filter((origin) => new URL(origin).protocol === 'http:') ?? []
  if (loopbackOrigins.length && config.publicOrigin && !isLoopbackHost(new URL(config.publicOrigin).hostname)) {
    warn(
      'cors_loopback_origin',
      "cors.allowedOrigins lists http:// loopback origins while publicOrigin is a public host: any page served on the user's machine at those origins can call the APIs as the user; remove them outside development",
      { origins: loopbackOrigins },
    )
  }
  if (config.session.sameSite === 'none') {
    warn(
      'samesite_none',
      'session.sameSite is "none": the session cookie goes with cross-site requests; CSRF protection rests on the anti-forgery header alone (it forces a CORS preflight, which only cors.allowedOrigins pass) — local routes must use protect(), not getSession() alone',
    )
  }
  if (config.diagnostics)
    warn(
      'diagnostics_on',
      'diagnostics is on: /bff/diagnostics shows access tokens to the logged-in browser; never enable it in production',
    )
  if (config.session.mode === 'cookie') {
    warn(
      'session_mode_cookie',
      'session.mode is "cookie": sessions cannot be revoked on the server and back-channel logout is off; see docs/sessions.md',
    )
  } else if (config.session.store === 'memory')
    warn(
      'session_store_memory',
      'session.store is "memory": sessions are lost on restart and not shared between instances',
    )
  if (config.admin && !config.admin.token)
    warn(
      'admin_token_unset',
      'admin.token is not set: /metrics on the admin listener is open to whoever can reach it, and the admin session API is off (403)',
    )
  if (config.admin && !isLoopbackHost(config.admin.listen.host)) {
    const exposed = config.admin.token
      ? '/metrics and the admin session API (behind admin.token)'
      : '/metrics without a token'
    warn(
      'admin_listen_public',
      `admin.listen.host is "${config.admin.listen.host}"${everyInterface(config.admin.listen.host)}, not a loopback address: whoever reaches that port gets ${exposed}; let only your monitoring and operators reach it, never the public network`,
      { host: config.admin.listen.host },
    )
  }
  if (config.oidc.authority.startsWith('http:'))
    info('authority_http', 'oidc.authority uses http:// (allowed for loopback only)')
  if (config.oidc.clientAuth === 'none')
    warn(
      'client_auth_none',
      'oidc.clientAuth is "none": gatehouse is a public client; the browser-based-apps BCP requires a confidential BFF',
    )
  config.remoteApis.forEach((api, i) => {
    const target = new URL(api.target)
    if (target.protocol === 'http:' && !isLoopbackHost(target.hostname) && api.token !== 'none') {
      warn(
        'upstream_http',
        `remoteApis[${i}].target is http:// to ${target.hostname}: access tokens travel unencrypted; use https:// unless the network path is otherwise protected`,
        { api: api.path },
      )
    }
  })
  return out
}

function everyInterface(host: string): string {
  return host === '0.0.0.0' || host === '::' || host === '[::]' ? ' (every interface)' : ''
}
