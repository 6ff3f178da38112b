/**
 * A cookie-keeping HTTP client that follows redirects by hand, like a browser without JavaScript.
 * It ignores cookie Domain/Secure (everything here is loopback http), but honours Max-Age=0 deletion.
 */
export interface JarResponse {
  status: number
  headers: Headers
  url: string
  text: string
}

export class BrowserJar {
  readonly cookies = new Map<string, string>()
  /** Every URL visited, in order (tests assert where redirects went). */
  readonly visited: string[] = []

  async get(url: string, headers: Record<string, string> = {}): Promise<JarResponse> {
    return this.request('GET', url, undefined, headers)
  }

  async request(
    method: string,
    url: string,
    body?: string,
    headers: Record<string, string> = {},
  ): Promise<JarResponse> {
    this.visited.push(url)
    const all: Record<string, string> = { ...headers }
    const cookie = this.cookieHeader()
    if (cookie) all.cookie = cookie
    if (body !== undefined) all['content-type'] ??= 'application/x-www-form-urlencoded'
    const res = await fetch(url, { method, headers: all, body, redirect: 'manual' })
    this.store(res.headers)
    return { status: res.status, headers: res.headers, url, text: await res.text() }
  }

  /** Follows 3xx Location headers (GET) until a non-redirect answer. */
  async follow(first: JarResponse, limit = 15): Promise<JarResponse> {
    let res = first
    for (let i = 0; i < limit && res.status >= 300 && res.status < 400; i++) {
      const location = res.headers.get('location')
      if (!location) break
      res = await this.get(new URL(location, res.url).href)
    }
    return res
  }

  /** Submits the first form of an HTML page with the given field values (hidden inputs kept). */
  async submitForm(page: JarResponse, values: Record<string, string>, formId?: string): Promise<JarResponse> {
    const forms = [...page.text.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)]
    const form = formId ? forms.find((f) => f[1]!.includes(`id="${formId}"`)) : forms[0]
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

  cookieHeader(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ')
  }

  private store(headers: Headers): void {
    for (const line of headers.getSetCookie()) {
      const [pair] = line.split(';')
      const eq = pair!.indexOf('=')
      const name = pair!.slice(0, eq).trim()
      const value = pair!.slice(eq + 1).trim()
      if (/;\s*max-age=0/i.test(line) || /expires=Thu, 01 Jan 1970/i.test(line)) this.cookies.delete(name)
      else this.cookies.set(name, value)
    }
  }
}

function decodeEntities(text: string): string {
  return text
    .replace(/&amp;/g, '&')
    .replace(/&#(\d+);/g, (_, n: string) => String.fromCharCode(Number(n)))
    .replace(/&quot;/g, '"')
}
