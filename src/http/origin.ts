import type { IncomingMessage } from 'node:http'

export function isLoopbackHost(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || hostname === '::1' || /^127(\.\d{1,3}){3}$/.test(hostname)
}

const HOST = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)(:\d{1,5})?$/

/**
 * The origin the browser used. A configured publicOrigin always wins; without it the Host header
 * is used, and X-Forwarded-Proto/Host only when the operator said a proxy in front is trusted.
 */
export function requestOrigin(req: IncomingMessage, publicOrigin: string | undefined, trustProxy: boolean): string | undefined {
  if (publicOrigin) return publicOrigin
  let host = req.headers.host
  let proto = (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http'
  if (trustProxy) {
    const fwdHost = firstListValue(req.headers['x-forwarded-host'])
    const fwdProto = firstListValue(req.headers['x-forwarded-proto'])
    if (fwdHost) host = fwdHost
    if (fwdProto === 'http' || fwdProto === 'https') proto = fwdProto
  }
  if (!host || !HOST.test(host)) return undefined
  return `${proto}://${host.toLowerCase()}`
}

function firstListValue(value: string | string[] | undefined): string | undefined {
  const text = Array.isArray(value) ? value[0] : value
  return text?.split(',')[0]?.trim() || undefined
}
