import { readFileSync } from 'node:fs'

/**
 * The admin console's files (src/ops/console, copied beside the compiled code by the build): one
 * HTML page, its script and its styles, served by the admin listener. The page holds no secret: it
 * asks for the admin token and calls the JSON admin API with it, so the files need no token.
 */
const FILES: ReadonlyMap<string, { file: string; type: string }> = new Map([
  ['/', { file: 'index.html', type: 'text/html; charset=utf-8' }],
  ['/console/app.js', { file: 'app.js', type: 'text/javascript; charset=utf-8' }],
  ['/console/app.css', { file: 'app.css', type: 'text/css; charset=utf-8' }],
])

/** Scripts and styles from the listener's own origin only: no inline code, no eval, no other host. */
export const CONSOLE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

export const CONSOLE_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': CONSOLE_CSP,
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
}

export interface ConsoleFile {
  type: string
  body: Buffer
}

/** Whether `path` is one of the console's files. */
export function isConsolePath(path: string): boolean {
  return FILES.has(path)
}

const loaded = new Map<string, ConsoleFile | undefined>()

/** The console file at `path`, read once; undefined when the install lacks it (a build without the console). */
export function consoleFile(path: string): ConsoleFile | undefined {
  if (loaded.has(path)) return loaded.get(path)
  const entry = FILES.get(path)
  let file: ConsoleFile | undefined
  if (entry) {
    try {
      file = { type: entry.type, body: readFileSync(new URL(`./console/${entry.file}`, import.meta.url)) }
    } catch {
      file = undefined
    }
  }
  loaded.set(path, file)
  return file
}
