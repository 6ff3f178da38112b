import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import { closeSync, constants, mkdtempSync, openSync, readFileSync, readSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { batchedAccessLog, type AccessLog } from '../../src/access-log.ts'
import { createLogger } from '../../src/log.ts'
import { Telemetry } from '../../src/ops/metrics.ts'
import { logLines } from '../helpers/log-lines.ts'

const dir = mkdtempSync(join(tmpdir(), 'gh-access-log-'))
after(() => rmSync(dir, { recursive: true, force: true }))
let files = 0

/** A batched access log writing to a fresh file; `text()` is what reached the file so far. */
function toFile(
  options: { flushMs?: number; maxBufferBytes?: number; level?: 'info' | 'warn'; bindings?: object } = {},
): { access: AccessLog | undefined; text: () => string; lines: () => Array<Record<string, unknown>>; fd: number } {
  const path = join(dir, `access-${files++}.log`)
  const fd = openSync(path, 'w')
  after(() => closeSync(fd))
  let log = createLogger(options.level ?? 'info', logLines().sink)
  if (options.bindings) log = log.child(options.bindings)
  const access = batchedAccessLog(log, { fd, flushMs: options.flushMs ?? 20, maxBufferBytes: options.maxBufferBytes })
  const text = () => readFileSync(path, 'utf8')
  return {
    access,
    fd,
    text,
    lines: () =>
      text()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  }
}

const ENTRY = { requestId: 'r-1', method: 'GET', path: '/api/items', api: '/api', status: 200, ms: 3 }

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200 && !condition(); i++) await sleep(10)
  assert.ok(condition(), `timed out waiting for ${what}`)
}

describe('batched access log', () => {
  test('a line has the shape, keys and key order of the logger’s own JSON line', async () => {
    const out = logLines()
    const log = createLogger('info', out.sink).child({ worker: 2 })
    log.child({}, { redact: [] }).info(ENTRY, 'proxy')
    const file = toFile({ bindings: { worker: 2 } })
    file.access!.line('proxy', ENTRY)
    await file.access!.close()
    const [ours] = file.lines()
    const [pinos] = out.entries()
    assert.deepEqual(Object.keys(ours!), Object.keys(pinos!))
    assert.deepEqual({ ...ours, time: 0 }, { ...pinos, time: 0 })
    assert.equal(typeof ours!.time, 'number')
    assert.ok(Math.abs((ours!.time as number) - Date.now()) < 60_000, 'time is epoch milliseconds, as pino writes it')
  })

  test('absent fields are left out, as pino leaves out undefined', async () => {
    const file = toFile()
    file.access!.line('request', { requestId: 'r-2', method: undefined, path: '/x', status: 421 })
    await file.access!.close()
    assert.deepEqual(Object.keys(file.lines()[0]!), ['level', 'time', 'name', 'requestId', 'path', 'status', 'msg'])
  })

  test('a lone line is written within the flush interval, without close()', async () => {
    const file = toFile({ flushMs: 20 })
    file.access!.line('request', ENTRY)
    assert.equal(file.text(), '', 'not written synchronously')
    await until(() => file.text().length > 0, 'the timer flush')
    assert.equal(file.lines().length, 1)
  })

  test('many lines arrive complete and in order, none dropped', async () => {
    const file = toFile()
    for (let i = 0; i < 2_000; i++) file.access!.line('proxy', { ...ENTRY, requestId: `r-${i}` })
    await file.access!.close()
    const lines = file.lines()
    assert.equal(lines.length, 2_000)
    assert.deepEqual(
      lines.map((l) => l.requestId),
      Array.from({ length: 2_000 }, (_, i) => `r-${i}`),
    )
    assert.equal(file.access!.dropped, 0)
  })

  test('a non-blocking pipe that is full: lines wait up to the bound, the rest are dropped and counted; the waiting ones follow once it drains', async () => {
    const fifo = join(dir, `fifo-${files++}`)
    execFileSync('mkfifo', [fifo])
    // Read-write keeps the FIFO open without a second process; non-blocking, a full pipe answers EAGAIN.
    const writer = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK)
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK)
    after(() => {
      closeSync(writer)
      closeSync(reader)
    })
    const access = batchedAccessLog(createLogger('info', logLines().sink), {
      fd: writer,
      flushMs: 5,
      maxBufferBytes: 16 * 1024,
    })!
    const total = 2_000 // ~330 KB: five times what the pipe holds
    for (let i = 0; i < total; i++) access.line('proxy', { ...ENTRY, requestId: `r-${i}` })
    assert.ok(access.dropped > 1_000, `dropped ${access.dropped}`)
    let text = ''
    const drain = () => {
      const buffer = Buffer.alloc(1 << 16)
      for (;;) {
        try {
          const n = readSync(reader, buffer)
          if (n === 0) return
          text += buffer.subarray(0, n).toString()
        } catch {
          return // EAGAIN: empty for now
        }
      }
    }
    drain()
    const readFirst = text.split('\n').filter(Boolean).length
    // The lines that waited are written by the retry timer once there is room.
    await until(() => (drain(), text.split('\n').filter(Boolean).length > readFirst), 'the waiting lines')
    await access.close()
    drain()
    const ids = text
      .split('\n')
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as { requestId: string }).requestId)
    assert.equal(ids.length + access.dropped, total, 'every line is either written or counted')
    // Whole lines, the first ones in order: dropping never cuts a line or reorders them.
    assert.deepEqual(
      ids,
      Array.from({ length: ids.length }, (_, i) => `r-${i}`),
    )
  })

  test('a failing output drops and counts its lines instead of throwing', async () => {
    const path = join(dir, 'read-only.log')
    closeSync(openSync(path, 'w'))
    const fd = openSync(path, 'r')
    after(() => closeSync(fd))
    const access = batchedAccessLog(createLogger('info', logLines().sink), { fd, flushMs: 5 })!
    for (let i = 0; i < 3; i++) access.line('request', ENTRY)
    await until(() => access.dropped === 3, 'the failed write to be counted')
    access.line('request', ENTRY)
    await access.close()
    assert.equal(access.dropped, 4)
  })

  test('flushSync writes what waits at once (the exit path)', () => {
    const file = toFile({ flushMs: 60_000 })
    for (let i = 0; i < 3; i++) file.access!.line('request', { ...ENTRY, requestId: `r-${i}` })
    file.access!.flushSync()
    assert.deepEqual(
      file.lines().map((l) => l.requestId),
      ['r-0', 'r-1', 'r-2'],
    )
  })

  test('hostile paths stay one parseable line with their own fields; very long ones keep their head and tail', async () => {
    const file = toFile()
    const forged = '/a"},"status":200,"msg":"x\n{"level":60}\u0000\u001b[31m\u2028'
    file.access!.line('request', { ...ENTRY, path: forged, status: 400 })
    file.access!.line('request', { ...ENTRY, path: `/${'a'.repeat(10_000)}${'b'.repeat(10_000)}`, status: 414 })
    await file.access!.close()
    const lines = file.lines()
    assert.equal(lines.length, 2)
    assert.equal(lines[0]!.path, forged)
    assert.equal(lines[0]!.status, 400)
    assert.equal(lines[1]!.path, `/${'a'.repeat(511)}...${'b'.repeat(512)}`)
  })

  test('nothing is batched when the level does not log info', () => {
    assert.equal(toFile({ level: 'warn' }).access, undefined)
  })

  test('lines waiting when the process dies of an uncaught error are written before it exits', () => {
    const code = `
      import { batchedAccessLog } from './src/access-log.ts'
      import { createLogger } from './src/log.ts'
      const access = batchedAccessLog(createLogger('info'), { fd: 1, flushMs: 60_000 })
      for (let i = 0; i < 5; i++) access.line('request', { requestId: 'r-' + i, method: 'GET', path: '/', status: 200 })
      setImmediate(() => { throw new Error('boom') })
    `
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8' })
    assert.equal(child.status, 1)
    assert.match(child.stderr, /boom/)
    const lines = child.stdout.split('\n').filter(Boolean)
    assert.deepEqual(
      lines.map((l) => (JSON.parse(l) as { requestId: string }).requestId),
      ['r-0', 'r-1', 'r-2', 'r-3', 'r-4'],
    )
  })
})

test('gatehouse_log_dropped_lines_total counts dropped access lines', async () => {
  let dropped = 0
  const telemetry = new Telemetry({ droppedLogLines: () => dropped })
  assert.match(await telemetry.metrics(), /^gatehouse_log_dropped_lines_total 0$/m)
  dropped = 7
  assert.match(await telemetry.metrics(), /^gatehouse_log_dropped_lines_total 7$/m)
  dropped = 9
  assert.match(await telemetry.metrics(), /^gatehouse_log_dropped_lines_total 9$/m)
})
