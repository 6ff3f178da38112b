import { request } from 'node:http'

/** What Chromium sends when the user opens a page (fetch() in Node cannot: it always sends Sec-Fetch-Mode: cors). */
export const NAVIGATE = {
  'sec-fetch-mode': 'navigate',
  'sec-fetch-dest': 'document',
  accept:
    'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7',
}

/** What a browser without Sec-Fetch headers (Safari before 16.4, Firefox before 90) sends on a navigation. */
export const OLD_BROWSER_NAVIGATE = { accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8' }

/** What the SPA's own fetch() sends to its origin. */
export const SPA_FETCH = { 'sec-fetch-mode': 'cors', 'sec-fetch-dest': 'empty', accept: '*/*' }

export interface RawResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
}

/** One HTTP request over node:http, sending exactly the given headers (no Sec-Fetch-Mode, Accept or other defaults added). */
export function rawRequest(url: string, method = 'GET', headers: Record<string, string> = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, agent: false }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (text += chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}
