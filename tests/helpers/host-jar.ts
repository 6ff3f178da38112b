import { request } from 'node:http'
import type { LookupFunction } from 'node:net'

/**
 * A browser-like client for host-name tests: every host name resolves to 127.0.0.1 (so
 * `http://localhost:PORT` and `http://127.0.0.1:PORT` reach the same gatehouse, each with its own
 * `Host`), and cookies are kept per host as browsers keep host-only cookies (the `__Host-` ones).
 * Redirects are followed by hand. Like BrowserJar it ignores `Secure` (everything here is loopback http).
 */
export interface HostJarResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  url: string
  text: string
}

const toLoopback: LookupFunction = (_hostname, options, callback) => {
  if (options.all)
    return (callback as unknown as (err: null, addresses: Array<{ address: string; family: number }>) => void)(null, [
      { address: '127.0.0.1', family: 4 },
    ])
  callback(null, '127.0.0.1', 4)
}

export class HostJar {
  /** Cookies by host ("localhost:8080"), then by name. */
  readonly jars = new Map<string, Map<string, string>>()
  /** Every URL requested, in order. */
  readonly visited: string[] = []

  cookiesOf(origin: string): Map<string, string> {
    const host = new URL(origin).host
    let jar = this.jars.get(host)
    if (!jar) this.jars.set(host, (jar = new Map()))
    return jar
  }

  get(url: string, headers: Record<string, string> = {}): Promise<HostJarResponse> {
    return this.request('GET', url, undefined, headers)
  }

  request(method: string, url: string, body?: string, headers: Record<string, string> = {}): Promise<HostJarResponse> {
    this.visited.push(url)
    const jar = this.cookiesOf(url)
    const all: Record<string, string> = { ...headers }
    if (jar.size) all.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ')
    if (body !== undefined) {
      all['content-type'] ??= 'application/x-www-form-urlencoded'
      all['content-length'] = String(Buffer.byteLength(body))
    }
    return new Promise((resolve, reject) => {
      const req = request(url, { method, headers: all, agent: false, lookup: toLoopback }, (res) => {
        for (const line of res.headers['set-cookie'] ?? []) {
          const [pair] = line.split(';')
          const eq = pair!.indexOf('=')
          const name = pair!.slice(0, eq).trim()
          if (/;\s*max-age=0/i.test(line) || /expires=Thu, 01 Jan 1970/i.test(line)) jar.delete(name)
          else jar.set(name, pair!.slice(eq + 1).trim())
        }
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => (text += chunk))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, url, text }))
        res.on('error', reject)
      })
      req.on('error', reject)
      req.end(body)
    })
  }

  location(res: HostJarResponse): string {
    return new URL(String(res.headers.location), res.url).href
  }

  /** Follows 3xx Location headers (GET) until a non-redirect answer, or until `stop` says so. */
  async follow(
    first: HostJarResponse,
    stop: (url: string) => boolean = () => false,
    limit = 15,
  ): Promise<HostJarResponse> {
    let res = first
    for (let i = 0; i < limit && res.status >= 300 && res.status < 400 && res.headers.location; i++) {
      const next = this.location(res)
      if (stop(next)) break
      res = await this.get(next)
    }
    return res
  }

  /** Submits the first form of an HTML page with the given field values (hidden inputs kept). */
  submitForm(page: HostJarResponse, values: Record<string, string>): Promise<HostJarResponse> {
    const form = /<form\b([^>]*)>([\s\S]*?)<\/form>/i.exec(page.text)
    if (!form) throw new Error(`no form on ${page.url}: ${page.text.slice(0, 300)}`)
    const action = /action="([^"]*)"/.exec(form[1]!)?.[1] ?? page.url
    const fields = new URLSearchParams()
    for (const input of form[2]!.matchAll(/<input\b([^>]*)>/gi)) {
      const name = /name="([^"]*)"/.exec(input[1]!)?.[1]
      const value = /value="([^"]*)"/.exec(input[1]!)?.[1] ?? ''
      if (name && !(name in values)) fields.set(name, decodeEntities(value))
    }
    for (const [k, v] of Object.entries(values)) fields.set(k, v)
    return this.request('POST', new URL(decodeEntities(action), page.url).href, fields.toString())
  }
}

function decodeEntities(text: string): string {
  return text
    .replace(/&amp;/g, '&')
    .replace(/&#(\d+);/g, (_, n: string) => String.fromCharCode(Number(n)))
    .replace(/&quot;/g, '"')
}
