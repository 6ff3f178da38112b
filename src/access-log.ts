import { fstatSync, writeSync } from 'node:fs'
import type { Logger } from 'pino'

/** What the one access line per request says. Never headers, query strings, cookies or tokens. */
export interface AccessEntry {
  requestId: string
  method: string | undefined
  /** The path as received, without the query. */
  path: string
  /** The remote API's path, for a proxied call. */
  api?: string | undefined
  status: number
  /** Milliseconds from the request to the end of the answer (absent for requests refused at the door). */
  ms?: number | undefined
}

/** `request`: one of gatehouse's own endpoints or a refusal at the door; `proxy`: a remote API call. */
export type AccessKind = 'request' | 'proxy'

export interface AccessLog {
  line(kind: AccessKind, entry: AccessEntry): void
  /** Access lines dropped because the output could not keep up (the buffer was full) or failed. */
  readonly dropped: number
  /** Writes what is buffered now, synchronously: before the process exits. */
  flushSync(): void
  /** Writes what is buffered and waits for it: at shutdown. */
  close(): Promise<void>
}

/**
 * The access log through a pino logger, one line per call: for a logger the application passed in,
 * pretty output on a terminal, and tests that collect lines. Redaction would walk each line for
 * nothing (the fields are fixed), and costs about as much as writing it.
 */
export function loggerAccessLog(log: Logger): AccessLog {
  const access = log.child({}, { redact: [] })
  return {
    line: (kind, entry) => access.info(entry, kind),
    dropped: 0,
    flushSync() {},
    close: async () => {},
  }
}

export interface BatchedAccessLogOptions {
  /** File descriptor to write to (1: stdout). */
  fd: number
  /** Flush at most this long after a line was buffered. */
  flushMs?: number
  /** Lines beyond this many bytes waiting are dropped and counted, rather than holding memory or the event loop. */
  maxBufferBytes?: number
  now?: () => number
}

/** A lone line waits at most this long. */
const FLUSH_MS = 100
/** About 6,000 lines: what may wait while the output refuses writes (a non-blocking pipe that is full). */
const MAX_BUFFER_BYTES = 1024 * 1024
/**
 * Bytes per write into a pipe or socket. Security events are written by the main logger to the same
 * file descriptor; a write to a pipe of at most PIPE_BUF (4096 on Linux) bytes is never split, so an
 * access batch and a security line never interleave mid-line.
 */
const PIPE_CHUNK_BYTES = 4096
/** Into a file (or /dev/null), where each write lands whole at the file's end: fewer, larger writes. */
const FILE_CHUNK_BYTES = 64 * 1024
/** A longer path is logged as its first and last 512 characters around "...": the line stays one write. */
const MAX_PATH_CHARS = 1024
const PATH_END_CHARS = 512
/** While the output answers EAGAIN (a full non-blocking pipe), try again this often. */
const EAGAIN_RETRY_MS = 10
/** At exit, a non-blocking output that does not take the remaining lines within this long loses them. */
const EXIT_FLUSH_BUDGET_MS = 1_000

/**
 * The access log as pino JSON lines identical to the main logger's (same level, time, bindings and
 * key order), serialised by hand — the fields are fixed — and written in batches: a chunk of whole
 * lines (4 KiB into a pipe, 64 KiB into a file) is written as soon as it is full, whatever is left at
 * most `flushMs` after it arrived, so one write carries ~27 lines or more instead of one each. The
 * writes are synchronous, from the event loop's thread, as the main logger's are: the threadpool
 * would take one write per loop iteration and fall behind a busy server. Past `maxBufferBytes`
 * waiting — only when the output refuses writes (EAGAIN) or fails — lines are dropped and counted
 * (`dropped`, exported as `gatehouse_log_dropped_lines_total`). Undefined when `log` does not log at
 * `info`.
 */
export function batchedAccessLog(log: Logger, options: BatchedAccessLogOptions): AccessLog | undefined {
  if (!log.isLevelEnabled('info')) return undefined
  return new BatchedAccessLog(log, options)
}

/** Open batched access logs, flushed before the process exits (a fatal error, process.exit()). */
const open = new Set<BatchedAccessLog>()
let exitHook = false

class BatchedAccessLog implements AccessLog {
  readonly #fd: number
  readonly #flushMs: number
  readonly #maxBytes: number
  readonly #now: () => number
  /** `{"level":30,"time":` … then the time … then `,"name":"gatehouse",` and any other bindings. */
  readonly #head: string
  readonly #bindings: string
  readonly #chunkBytes: number
  /** Whole lines waiting, in chunks of at most #chunkBytes bytes (one longer line makes a chunk of its own). */
  #chunks: string[] = []
  /** Byte length of each chunk. */
  #sizes: number[] = []
  #pendingBytes = 0
  /** What is left of a chunk a write took only part of (the first to go). */
  #rest: Buffer | undefined
  #timer: NodeJS.Timeout | undefined
  #dropped = 0

  constructor(log: Logger, options: BatchedAccessLogOptions) {
    this.#fd = options.fd
    this.#flushMs = options.flushMs ?? FLUSH_MS
    this.#maxBytes = options.maxBufferBytes ?? MAX_BUFFER_BYTES
    this.#now = options.now ?? Date.now
    this.#chunkBytes = Math.min(this.#maxBytes, isFileOrDevice(options.fd) ? FILE_CHUNK_BYTES : PIPE_CHUNK_BYTES)
    this.#head = `{"level":${log.levels.values.info},"time":`
    const bindings = JSON.stringify(log.bindings())
    this.#bindings = bindings === '{}' ? ',' : `,${bindings.slice(1, -1)},`
    open.add(this)
    if (!exitHook) {
      exitHook = true
      process.once('exit', () => {
        for (const access of open) access.flushSync()
      })
    }
  }

  get dropped(): number {
    return this.#dropped
  }

  line(kind: AccessKind, entry: AccessEntry): void {
    const text = this.#serialise(kind, entry)
    const bytes = Buffer.byteLength(text)
    if (this.#pendingBytes + bytes > this.#maxBytes) {
      this.#dropped++
      return
    }
    const last = this.#chunks.length - 1
    // Never onto a chunk a write has taken part of: its rest is already cut.
    if (last >= 0 && this.#sizes[last]! + bytes <= this.#chunkBytes && !(last === 0 && this.#rest)) {
      this.#chunks[last] += text
      this.#sizes[last] = this.#sizes[last]! + bytes
    } else {
      this.#chunks.push(text)
      this.#sizes.push(bytes)
    }
    this.#pendingBytes += bytes
    // A full chunk goes now; the one being filled waits for more lines, at most #flushMs.
    if (this.#chunks.length > 1) this.#write(this.#chunks.length - 1)
    if (this.#chunks.length > 0) this.#timer ??= setTimeout(() => this.#flush(), this.#flushMs).unref()
  }

  #serialise(kind: AccessKind, e: AccessEntry): string {
    const path =
      e.path.length > MAX_PATH_CHARS ? `${e.path.slice(0, PATH_END_CHARS)}...${e.path.slice(-PATH_END_CHARS)}` : e.path
    let text = `${this.#head}${this.#now()}${this.#bindings}"requestId":${JSON.stringify(e.requestId)}`
    if (e.method !== undefined) text += `,"method":${JSON.stringify(e.method)}`
    text += `,"path":${JSON.stringify(path)}`
    if (e.api !== undefined) text += `,"api":${JSON.stringify(e.api)}`
    text += `,"status":${e.status}`
    if (e.ms !== undefined) text += `,"ms":${e.ms}`
    return `${text},"msg":"${kind}"}\n`
  }

  #flush(): void {
    this.#timer = undefined
    this.#write(this.#chunks.length)
    // The output refused (EAGAIN): try again soon; lines arriving meanwhile wait, up to the bound.
    if (this.#chunks.length > 0) this.#timer = setTimeout(() => this.#flush(), EAGAIN_RETRY_MS).unref()
  }

  /**
   * Writes the first `count` chunks, in order, until the output refuses one (EAGAIN: it stays first).
   * A chunk the output failed (EPIPE, disk full) is lost, and its lines counted as dropped.
   */
  #write(count: number): boolean {
    for (let i = 0; i < count; i++) {
      const data = this.#rest ?? Buffer.from(this.#chunks[0]!)
      let written: number
      try {
        written = writeSync(this.#fd, data)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return false
        this.#dropped += countLines(this.#chunks[0]!)
        written = data.length
      }
      if (written < data.length) {
        this.#rest = data.subarray(written)
        return false
      }
      this.#rest = undefined
      this.#pendingBytes -= this.#sizes[0]!
      this.#chunks.shift()
      this.#sizes.shift()
    }
    return true
  }

  flushSync(): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    const deadline = performance.now() + EXIT_FLUSH_BUDGET_MS
    while (!this.#write(this.#chunks.length)) {
      if (performance.now() > deadline) return
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1)
    }
  }

  close(): Promise<void> {
    this.flushSync()
    open.delete(this)
    return Promise.resolve()
  }
}

/** Lines in a chunk (each ends with a newline; none contains one: JSON.stringify escapes it). */
function countLines(text: string): number {
  let lines = 0
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) lines++
  return lines
}

/** A regular file or a character device (/dev/null, a terminal): not a pipe or socket, where PIPE_BUF matters. */
function isFileOrDevice(fd: number): boolean {
  try {
    const stat = fstatSync(fd)
    return stat.isFile() || stat.isCharacterDevice()
  } catch {
    return false
  }
}
