import { fstatSync, write, writeSync } from 'node:fs'
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
/** About 6,000 lines: a minute of a stalled log reader at 100 requests a second, or under a second at 10k. */
const MAX_BUFFER_BYTES = 1024 * 1024
/**
 * Bytes per write into a pipe or socket. Security events are written synchronously by the main logger
 * to the same file descriptor; a write to a pipe of at most PIPE_BUF (4096 on Linux) bytes is never
 * split, so an access batch and a security line never interleave mid-line.
 */
const PIPE_CHUNK_BYTES = 4096
/** Into a file (or /dev/null), where each write lands whole at the file's end: fewer, larger writes. */
const FILE_CHUNK_BYTES = 64 * 1024
/** A path longer than this is cut in the log (with "…"): the line must stay one write. */
const MAX_PATH_CHARS = 1024
const EAGAIN_RETRY_MS = 10
/** At exit, a reader that does not take the remaining lines within this long loses them. */
const EXIT_FLUSH_BUDGET_MS = 1_000
const CLOSE_BUDGET_MS = 2_000

/**
 * The access log as pino JSON lines identical to the main logger's (same level, time, bindings and
 * key order), serialised by hand — the fields are fixed — and written in batches: asynchronously, one
 * write in flight at a time, at most `flushMs` after a line arrives. A slow reader never blocks a
 * request: past `maxBufferBytes` waiting, lines are dropped and counted (`dropped`, exported as
 * `gatehouse_log_dropped_lines_total`). Only the access log is batched: security events stay
 * synchronous on the main logger. Undefined when `log` does not log at `info`.
 */
export function batchedAccessLog(log: Logger, options: BatchedAccessLogOptions): AccessLog | undefined {
  if (!log.isLevelEnabled('info')) return undefined
  return new BatchedAccessLog(log, options)
}

class BatchedAccessLog implements AccessLog {
  readonly #fd: number
  readonly #flushMs: number
  readonly #maxBytes: number
  readonly #now: () => number
  /** `{"level":30,"time":` … then the time … then `,"name":"gatehouse",` and any other bindings. */
  readonly #head: string
  readonly #bindings: string
  readonly #chunkBytes: number
  /** Whole lines waiting, in chunks of at most #chunkBytes (one longer line makes a chunk of its own). */
  #chunks: string[] = []
  #pendingBytes = 0
  /** The lines of the write in flight, kept until it completed (a failed write drops and counts them). */
  #writing: { data: Buffer; lines: number; written: number } | undefined
  #timer: NodeJS.Timeout | undefined
  #closed: (() => void) | undefined
  #dropped = 0

  constructor(log: Logger, options: BatchedAccessLogOptions) {
    this.#fd = options.fd
    this.#flushMs = options.flushMs ?? FLUSH_MS
    this.#maxBytes = options.maxBufferBytes ?? MAX_BUFFER_BYTES
    this.#now = options.now ?? Date.now
    this.#chunkBytes = isFileOrDevice(options.fd) ? FILE_CHUNK_BYTES : PIPE_CHUNK_BYTES
    this.#head = `{"level":${log.levels.values.info},"time":`
    const bindings = JSON.stringify(log.bindings())
    this.#bindings = bindings === '{}' ? ',' : `,${bindings.slice(1, -1)},`
  }

  get dropped(): number {
    return this.#dropped
  }

  line(kind: AccessKind, entry: AccessEntry): void {
    const text = this.#serialise(kind, entry)
    // Counted in UTF-16 units: a path is percent-encoded ASCII in practice, and the bound is a memory bound.
    if (this.#pendingBytes + text.length > this.#maxBytes) {
      this.#dropped++
      return
    }
    const last = this.#chunks.length - 1
    if (last >= 0 && this.#chunks[last]!.length + text.length <= this.#chunkBytes) this.#chunks[last] += text
    else this.#chunks.push(text)
    this.#pendingBytes += text.length
    if (this.#writing) return
    if (this.#chunks.length > 1) this.#writeNext()
    else this.#timer ??= setTimeout(() => this.#flush(), this.#flushMs).unref()
  }

  #serialise(kind: AccessKind, e: AccessEntry): string {
    const path = e.path.length > MAX_PATH_CHARS ? `${e.path.slice(0, MAX_PATH_CHARS)}…` : e.path
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
    if (!this.#writing && this.#chunks.length > 0) this.#writeNext()
  }

  /** Writes the oldest chunk. */
  #writeNext(): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    const text = this.#chunks.shift()!
    this.#pendingBytes -= text.length
    this.#writing = { data: Buffer.from(text), lines: countLines(text), written: 0 }
    this.#send()
  }

  #send(): void {
    const writing = this.#writing!
    write(this.#fd, writing.data, writing.written, writing.data.length - writing.written, null, (err, n) => {
      if (this.#writing !== writing) return // flushSync at exit took over
      if (err) {
        // A pipe that is full (non-blocking fd): try again shortly; lines arriving meanwhile wait, up to the bound.
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN')
          return void setTimeout(() => this.#send(), EAGAIN_RETRY_MS).unref()
        // The output is gone (EPIPE, disk full): these lines are lost, and counted.
        this.#dropped += writing.lines
        return this.#done()
      }
      writing.written += n
      if (writing.written < writing.data.length) return this.#send()
      this.#done()
    })
  }

  #done(): void {
    this.#writing = undefined
    if (this.#chunks.length > 1 || (this.#closed && this.#chunks.length > 0)) return this.#writeNext()
    if (this.#closed) return this.#closed()
    if (this.#chunks.length > 0) this.#timer ??= setTimeout(() => this.#flush(), this.#flushMs).unref()
  }

  flushSync(): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    // A write in flight may or may not have reached the file; writing its remainder again risks a
    // duplicate line, skipping it a lost one. A duplicate is the lesser harm in an access log.
    const inFlight = this.#writing
    this.#writing = undefined
    const parts: Buffer[] = inFlight ? [inFlight.data.subarray(inFlight.written)] : []
    for (const chunk of this.#chunks) parts.push(Buffer.from(chunk))
    this.#chunks = []
    this.#pendingBytes = 0
    let data = Buffer.concat(parts)
    const deadline = performance.now() + EXIT_FLUSH_BUDGET_MS
    while (data.length > 0) {
      try {
        data = data.subarray(writeSync(this.#fd, data))
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || performance.now() > deadline) return
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1)
      }
    }
  }

  close(): Promise<void> {
    clearTimeout(this.#timer)
    this.#timer = undefined
    if (!this.#writing && this.#chunks.length === 0) return Promise.resolve()
    return new Promise((resolve) => {
      // A reader that takes nothing (EAGAIN for ever) must not hold the shutdown: the exit flush has the last word.
      const giveUp = setTimeout(resolve, CLOSE_BUDGET_MS)
      giveUp.unref()
      this.#closed = () => {
        clearTimeout(giveUp)
        resolve()
      }
      if (!this.#writing) this.#writeNext()
    })
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
