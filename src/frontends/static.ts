import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { extname, resolve, sep } from 'node:path'
import { pipeline } from 'node:stream/promises'
import type { IndexFallback } from './frontends.ts'

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.xml': 'application/xml; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.avif': 'image/avif',
  '.ico': 'image/x-icon',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.ttf': 'font/ttf',
  '.otf': 'font/otf',
  '.wasm': 'application/wasm',
  '.mp4': 'video/mp4',
  '.webm': 'video/webm',
  '.mp3': 'audio/mpeg',
  '.pdf': 'application/pdf',
}

/** `app.3f9a2b1c.js`, `index-BXk3a9_z.js` (Vite), `chunk.a1b2c3d4e5.css`: a content hash in the name. */
const HASHED = /[.-][A-Za-z0-9_]{8,}\.[a-z0-9]+$/

export type StaticOutcome = 'served' | 'not_found' | 'bad_path'

/**
 * Serves a SPA's files from one folder (SPEC §6): correct content types, ETag and Last-Modified
 * with 304s, long-lived caching for content-hashed assets and `no-cache` for everything else,
 * index.html for client-side routes, and nothing outside the folder (no traversal, no dotfiles).
 */
export class StaticFolder {
  readonly #root: string
  readonly #vary: string | undefined

  /** `vary`: the `Vary` of index.html on a client-side route (the request headers that chose it). */
  constructor(root: string, options: { vary?: string } = {}) {
    this.#root = resolve(root)
    this.#vary = options.vary
  }

  /**
   * `relativePath` is the request path below the frontend's prefix, still percent-encoded. Existing
   * files (index.html at the root included) are served whatever `fallback` says.
   */
  async serve(
    req: IncomingMessage,
    res: ServerResponse,
    relativePath: string,
    fallback: IndexFallback = 'routes',
  ): Promise<StaticOutcome> {
    const file = this.#resolve(relativePath)
    if (file === undefined) return 'bad_path'
    const found = file && (await fileInfo(file))
    if (found) return this.#send(req, res, file, found, false)
    // A miss: client-side routes get index.html when navigated to, asset requests (a file extension) get 404.
    if (fallback !== 'routes' || extname(relativePath) !== '') return 'not_found'
    const index = resolve(this.#root, 'index.html')
    const indexInfo = await fileInfo(index)
    if (!indexInfo) return 'not_found'
    return this.#send(req, res, index, indexInfo, true)
  }

  /** The file a path names inside the root; '' for the root itself (→ index.html); undefined for a refused path. */
  #resolve(relativePath: string): string | undefined {
    let decoded: string
    try {
      decoded = decodeURIComponent(relativePath)
    } catch {
      return undefined
    }
    if (/[\u0000-\u001F\\]/.test(decoded)) return undefined
    const segments = decoded.split('/').filter((s) => s !== '')
    // No dot segments and no dotfiles (.env, .git): never part of a built SPA.
    if (segments.some((s) => s.startsWith('.'))) return undefined
    if (segments.length === 0) return resolve(this.#root, 'index.html')
    const file = resolve(this.#root, ...segments)
    return file.startsWith(this.#root + sep) ? file : undefined
  }

  async #send(
    req: IncomingMessage,
    res: ServerResponse,
    file: string,
    info: { size: number; mtimeMs: number },
    isFallback: boolean,
  ): Promise<StaticOutcome> {
    const etag = `W/"${info.size.toString(16)}-${Math.floor(info.mtimeMs).toString(16)}"`
    const lastModified = new Date(Math.floor(info.mtimeMs / 1000) * 1000).toUTCString()
    const isHtml = extname(file) === '.html'
    const headers: Record<string, string> = {
      'content-type': TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
      etag,
      'last-modified': lastModified,
      'cache-control': !isHtml && !isFallback && HASHED.test(file) ? 'public, max-age=31536000, immutable' : 'no-cache',
      'x-content-type-options': 'nosniff',
    }
    if (isFallback && this.#vary !== undefined) headers.vary = this.#vary
    if (isFresh(req, etag, info.mtimeMs)) {
      res.writeHead(304, headers)
      res.end()
      return 'served'
    }
    headers['content-length'] = String(info.size)
    res.writeHead(200, headers)
    if (req.method === 'HEAD') {
      res.end()
      return 'served'
    }
    await pipeline(createReadStream(file), res).catch(() => res.destroy())
    return 'served'
  }
}

async function fileInfo(file: string): Promise<{ size: number; mtimeMs: number } | undefined> {
  try {
    const info = await stat(file)
    return info.isFile() ? { size: info.size, mtimeMs: info.mtimeMs } : undefined
  } catch {
    return undefined
  }
}

/** RFC 9110 §13.1: If-None-Match wins over If-Modified-Since. */
function isFresh(req: IncomingMessage, etag: string, mtimeMs: number): boolean {
  const noneMatch = req.headers['if-none-match']
  if (noneMatch !== undefined)
    return noneMatch.split(',').some((tag) => tag.trim() === etag || tag.trim() === '*' || tag.trim() === etag.slice(2))
  const since = req.headers['if-modified-since']
  if (since === undefined) return false
  const time = Date.parse(since)
  return !Number.isNaN(time) && Math.floor(mtimeMs / 1000) * 1000 <= time
}
