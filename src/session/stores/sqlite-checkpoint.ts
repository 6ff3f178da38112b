import { DatabaseSync, type StatementSync } from 'node:sqlite'
import { Worker } from 'node:worker_threads'

/** How often the write-ahead log is checkpointed, off the request path. */
export const CHECKPOINT_INTERVAL_MS = 1_000

/**
 * Commits checkpoint by themselves only past this many WAL pages (SQLite's default is 1,000, which
 * one request's commit would pay every 1,000 pages): a safety net for when the checkpoints cannot
 * keep up, far above what gatehouse writes between two of them.
 */
export const AUTO_CHECKPOINT_PAGES = 10_000

/**
 * The write-ahead log is cut back to this size when it starts over after a complete checkpoint
 * (journal_size_limit), and a log holding more than this is truncated when that needs no waiting.
 */
export const WAL_LIMIT_BYTES = 16 * 1024 * 1024

/** What one checkpoint did: `log` frames in the WAL, `checkpointed` of them in the database file. */
export interface CheckpointResult {
  /** A reader or writer (of any process) kept the checkpoint from completing; the next one continues. */
  busy: boolean
  log: number
  checkpointed: number
  /** A TRUNCATE checkpoint emptied the WAL file. */
  truncated: boolean
}

/** Leaves checkpoints to WalCheckpointer: the connection's commits no longer checkpoint every 1,000 pages. */
export function deferCheckpoints(db: DatabaseSync): void {
  db.exec(`PRAGMA wal_autocheckpoint = ${AUTO_CHECKPOINT_PAGES}; PRAGMA journal_size_limit = ${WAL_LIMIT_BYTES};`)
}

/**
 * Checkpoints a WAL-mode connection from an unref'd timer: a PASSIVE checkpoint, and a TRUNCATE one
 * with no busy wait when the log has grown past WAL_LIMIT_BYTES. Neither waits for a reader or writer
 * of this or another process sharing the file, so no request is held up or refused for them, and the
 * checkpoints of several processes do not queue (one finds the work done or the lock taken, and returns).
 */
export class WalCheckpointer {
  readonly #db: DatabaseSync
  readonly #passive: StatementSync
  readonly #truncate: StatementSync
  readonly #pageSize: number
  readonly #busyTimeoutMs: number
  readonly #timer: NodeJS.Timeout

  /** `db` must be in WAL mode with its busy timeout at `busyTimeoutMs`. */
  constructor(db: DatabaseSync, options: { intervalMs: number; busyTimeoutMs: number }) {
    this.#db = db
    this.#passive = db.prepare('PRAGMA wal_checkpoint(PASSIVE)')
    this.#truncate = db.prepare('PRAGMA wal_checkpoint(TRUNCATE)')
    this.#pageSize = Number((db.prepare('PRAGMA page_size').get() as { page_size: number }).page_size)
    this.#busyTimeoutMs = options.busyTimeoutMs
    this.#timer = setInterval(() => {
      try {
        this.checkpoint()
      } catch {
        // A locked or busy file (another process's VACUUM, a full disk): the next run tries again.
      }
    }, options.intervalMs)
    this.#timer.unref()
  }

  /** A PASSIVE checkpoint, then a TRUNCATE one without waiting when the log is still larger than WAL_LIMIT_BYTES. */
  checkpoint(): CheckpointResult {
    const passive = readResult(this.#passive.get())
    if (passive.log * (this.#pageSize + 24) <= WAL_LIMIT_BYTES) return passive
    return truncateWithoutWaiting(this.#db, this.#busyTimeoutMs, this.#truncate)
  }

  stop(): void {
    clearInterval(this.#timer)
  }
}

/** A TRUNCATE checkpoint that gives up at once (busy) instead of waiting for readers or writers. */
export function truncateWithoutWaiting(
  db: DatabaseSync,
  busyTimeoutMs: number,
  statement: StatementSync = db.prepare('PRAGMA wal_checkpoint(TRUNCATE)'),
): CheckpointResult {
  db.exec('PRAGMA busy_timeout = 0')
  try {
    const result = readResult(statement.get())
    return { ...result, truncated: !result.busy }
  } finally {
    db.exec(`PRAGMA busy_timeout = ${busyTimeoutMs}`)
  }
}

function readResult(row: unknown): CheckpointResult {
  const { busy, log, checkpointed } = row as { busy: number; log: number; checkpointed: number }
  return { busy: busy !== 0, log, checkpointed, truncated: false }
}

/** How long close() waits for the checkpoint thread to finish a checkpoint and close its connection. */
const STOP_TIMEOUT_MS = 5_000

/** The thread holds a connection and a timer: a small heap is plenty (it costs ≈ 15 MiB of RSS, mostly Node's own). */
const WORKER_LIMITS = { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 2 }

interface WorkerData {
  location: string
  intervalMs: number
  walLimitBytes: number
}

/**
 * The checkpoint thread: its own connection to the file, a PASSIVE checkpoint every `intervalMs`
 * and a TRUNCATE one when the log is past the limit (WalCheckpointer's steps, without ever waiting
 * for a lock: a busy file is tried again at the next run), until told to stop. Self-contained text,
 * loaded by no import: a thread that imported this module would, inside an application bundled into
 * one file, run the whole application's start-up again. getBuiltinModule works in CommonJS and ESM.
 */
const WORKER_CODE = `
const { workerData, parentPort } = process.getBuiltinModule('node:worker_threads')
const { DatabaseSync } = process.getBuiltinModule('node:sqlite')
const db = new DatabaseSync(workerData.location)
db.exec('PRAGMA busy_timeout = 0')
const passive = db.prepare('PRAGMA wal_checkpoint(PASSIVE)')
const truncate = db.prepare('PRAGMA wal_checkpoint(TRUNCATE)')
const frameBytes = Number(db.prepare('PRAGMA page_size').get().page_size) + 24
const timer = setInterval(() => {
  try {
    if (passive.get().log * frameBytes > workerData.walLimitBytes) truncate.get()
  } catch {}
}, workerData.intervalMs)
parentPort.once('message', () => {
  clearInterval(timer)
  db.close()
  parentPort.close()
})
`

/**
 * The store's checkpoints, off the request path: in a thread of its own, with its own connection,
 * so that copying the log into the database file and the fsyncs that go with it never hold the
 * event loop. The thread starts after `intervalMs` (a store open for less, such as a CLI command's,
 * never starts one); should it fail, the checkpoints run from a timer in this thread instead.
 */
export class BackgroundCheckpoints {
  readonly #db: DatabaseSync
  readonly #busyTimeoutMs: number
  readonly #start: NodeJS.Timeout
  #worker: Worker | undefined
  #exited: Promise<void> = Promise.resolve()
  #fallback: WalCheckpointer | undefined
  #stopped = false

  /** `location`: the path or URI `db` was opened with, for the thread's own connection. */
  constructor(db: DatabaseSync, location: string, options: { intervalMs: number; busyTimeoutMs: number }) {
    this.#db = db
    this.#busyTimeoutMs = options.busyTimeoutMs
    deferCheckpoints(db)
    const inThisThread = () => {
      if (!this.#stopped && this.#fallback === undefined) this.#fallback = new WalCheckpointer(db, options)
    }
    this.#start = setTimeout(() => {
      const workerData: WorkerData = { location, intervalMs: options.intervalMs, walLimitBytes: WAL_LIMIT_BYTES }
      let worker: Worker
      try {
        worker = new Worker(WORKER_CODE, { eval: true, workerData, resourceLimits: WORKER_LIMITS })
      } catch {
        inThisThread()
        return
      }
      worker.unref()
      worker.on('error', inThisThread)
      // Not events.once: it rejects on the 'error' that comes before the exit of a failed thread.
      this.#exited = new Promise((resolve) => worker.once('exit', resolve)).then(inThisThread)
      this.#worker = worker
    }, options.intervalMs)
    this.#start.unref()
  }

  /** Stops the checkpoints (waiting for the thread to close its connection), then empties the log if no other connection is using it. */
  async stop(): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#start)
    this.#fallback?.stop()
    const worker = this.#worker
    if (worker !== undefined) {
      worker.postMessage('stop')
      const stuck = setTimeout(() => void worker.terminate(), STOP_TIMEOUT_MS)
      await this.#exited
      clearTimeout(stuck)
    }
    try {
      truncateWithoutWaiting(this.#db, this.#busyTimeoutMs)
    } catch {
      // Closing goes on: SQLite checkpoints on close too when this is the last connection.
    }
  }
}
