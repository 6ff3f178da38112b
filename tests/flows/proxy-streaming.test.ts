import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { request, type IncomingMessage, type ServerResponse } from 'node:http'
import { after, before, describe, test } from 'node:test'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const MiB = 1024 * 1024
const BODY_MB = 50
/** Gatehouse, upstream and client share this process: a buffered 50 MiB body would show up here. */
const MAX_GROWTH = 30 * MiB

setFlagsFromString('--expose-gc')
const exposedGc = runInNewContext('gc') as (options?: object) => void
/** A full, synchronous collection (array buffer backing stores included), so what is left is what is held. */
const collect = () => exposedGc({ type: 'major', execution: 'sync', flavor: 'last-resort' })

/**
 * Samples memory while `work` runs; returns the largest growth over the level before it started.
 * Each sample follows a full collection: 50 MiB passing through leaves that much garbage behind,
 * only memory still held (a buffered body) counts.
 */
async function peakGrowth<T>(work: () => Promise<T>): Promise<{ result: T; rss: number; heap: number }> {
  collect()
  const base = process.memoryUsage()
  const baseHeap = base.heapUsed + base.arrayBuffers
  let rss = 0
  let heap = 0
  const sample = () => {
    collect()
    const now = process.memoryUsage()
    rss = Math.max(rss, now.rss - base.rss)
    heap = Math.max(heap, now.heapUsed + now.arrayBuffers - baseHeap)
  }
  const timer = setInterval(sample, 50)
  try {
    return { result: await work(), rss, heap }
  } finally {
    clearInterval(timer)
  }
}

/** The chunks of a fetch response body as they arrive. */
async function* chunksOf(res: Response): AsyncGenerator<Uint8Array> {
  const reader = res.body!.getReader()
  for (;;) {
    const { done, value } = await reader.read()
    if (done) return
    yield value
  }
}

const mb = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`

/**
 * POSTs `total` bytes made up while they are sent (64 KiB chunks of a changing pattern, written as
 * the socket drains) and hashes them on the way. node:http rather than fetch: fetch keeps every
 * chunk of a streamed request body until the response is complete, which would hide what gatehouse
 * does behind what the client does.
 */
function streamUpload(
  url: string,
  total: number,
  headers: Record<string, string>,
): Promise<{ status: number; text: string; sha256: string }> {
  const hash = createHash('sha256')
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: 'POST', headers: { ...headers, 'content-type': 'application/octet-stream' } },
      (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => (text += chunk))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text, sha256: hash.digest('hex') }))
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    let sent = 0
    let n = 0
    const pump = () => {
      while (sent < total) {
        const chunk = Buffer.alloc(Math.min(64 * 1024, total - sent), n++ % 251)
        sent += chunk.length
        hash.update(chunk)
        if (!req.write(chunk)) return void req.once('drain', pump)
      }
      req.end()
    }
    pump()
  })
}

describe('remote API proxy: streaming bodies', () => {
  let upstream: Upstream
  let flow: Flow
  /** Upstream responses by request URL, to observe when the upstream finished or lost its client. */
  const upstreamResponses = new Map<string, ServerResponse>()

  before(async () => {
    upstream = await startUpstream()
    upstream.server.prependListener('request', (req: IncomingMessage, res: ServerResponse) =>
      upstreamResponses.set(req.url ?? '', res),
    )
    flow = await startFlow({ gatehouse: { remoteApis: [{ path: '/api', target: upstream.url, token: 'none' }] } })
  })
  after(async () => {
    await flow.close()
    await upstream.close()
  })

  test('the memory meter sees a body of the test size that is held in memory', async () => {
    const { heap } = await peakGrowth(async () => {
      const res = await fetch(`${upstream.url}/download?mb=${BODY_MB}`)
      const held: Uint8Array[] = []
      for await (const chunk of chunksOf(res)) held.push(chunk)
      await new Promise((resolve) => setTimeout(resolve, 100))
      return held.length
    })
    assert.ok(heap > MAX_GROWTH, `a held ${BODY_MB} MiB body showed only ${mb(heap)}`)
  })

  test(`a ${BODY_MB} MiB upload streams through to the upstream byte for byte without being buffered`, async () => {
    const total = BODY_MB * MiB
    const { result, rss, heap } = await peakGrowth(() => streamUpload(`${flow.origin}/api/upload`, total, CSRF))
    assert.equal(result.status, 200, result.text)
    const seen = JSON.parse(result.text) as { bytes: number; sha256: string }
    assert.equal(seen.bytes, total)
    assert.equal(seen.sha256, result.sha256)
    assert.ok(rss < MAX_GROWTH, `rss grew by ${mb(rss)}`)
    assert.ok(heap < MAX_GROWTH, `heap + array buffers grew by ${mb(heap)}`)
  })

  test(`a ${BODY_MB} MiB download streams through to the client byte for byte without being buffered`, async () => {
    const total = BODY_MB * MiB
    const { result, rss, heap } = await peakGrowth(async () => {
      const res = await fetch(`${flow.origin}/api/download?mb=${BODY_MB}`, { headers: CSRF })
      assert.equal(res.status, 200)
      assert.equal(res.headers.get('content-length'), String(total))
      const expected = Buffer.alloc(1024 * 1024, 0x61)
      let bytes = 0
      let wrong = 0
      for await (const chunk of chunksOf(res)) {
        bytes += chunk.length
        for (let at = 0; at < chunk.length; at += expected.length) {
          const part = Buffer.from(chunk.buffer, chunk.byteOffset + at, Math.min(expected.length, chunk.length - at))
          if (!part.equals(expected.subarray(0, part.length))) wrong++
        }
      }
      return { bytes, wrong }
    })
    assert.equal(result.bytes, total)
    assert.equal(result.wrong, 0)
    assert.ok(rss < MAX_GROWTH, `rss grew by ${mb(rss)}`)
    assert.ok(heap < MAX_GROWTH, `heap + array buffers grew by ${mb(heap)}`)
  })

  test('Server-Sent Events reach the client one by one, the first before the upstream has finished', async () => {
    const url = '/sse?events=3&gapMs=300'
    const res = await fetch(`${flow.origin}/api${url}`, { headers: CSRF })
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('content-type'), 'text/event-stream')
    const upstreamRes = upstreamResponses.get(url)!
    assert.ok(upstreamRes, 'the upstream saw the SSE request')
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader()
    const first = await reader.read()
    assert.equal(first.done, false)
    assert.match(first.value!, /data: event 0\n\n/)
    assert.doesNotMatch(first.value!, /event 2/)
    // The upstream is still sending: the first event was not held back until the end.
    assert.equal(upstreamRes.writableEnded, false)
    let text = first.value!
    for (;;) {
      const next = await reader.read()
      if (next.done) break
      text += next.value
    }
    assert.equal(upstreamRes.writableEnded, true)
    assert.deepEqual(
      [...text.matchAll(/data: (event \d)/g)].map((m) => m[1]),
      ['event 0', 'event 1', 'event 2'],
    )
  })

  test('a client that aborts a long download ends the upstream call, and gatehouse keeps serving', async () => {
    const url = '/download?mb=2000'
    const controller = new AbortController()
    const res = await fetch(`${flow.origin}/api${url}`, { headers: CSRF, signal: controller.signal })
    assert.equal(res.status, 200)
    const reader = res.body!.getReader()
    let bytes = 0
    while (bytes < 4 * MiB) bytes += (await reader.read()).value!.length
    const upstreamRes = upstreamResponses.get(url)!
    const upstreamClosed = new Promise<boolean>((resolve) =>
      upstreamRes.destroyed
        ? resolve(upstreamRes.writableFinished)
        : upstreamRes.once('close', () => resolve(upstreamRes.writableFinished)),
    )
    controller.abort()
    await assert.rejects(reader.read())
    // The upstream connection is closed long before 2000 MiB were sent.
    assert.equal(await upstreamClosed, false)

    const next = await fetch(`${flow.origin}/api/echo/after-abort`, { headers: CSRF })
    assert.equal(next.status, 200)
    assert.equal(((await next.json()) as { url: string }).url, '/echo/after-abort')
    assert.equal((await fetch(`${flow.origin}/healthz`)).status, 200)
    const small = await fetch(`${flow.origin}/api/download?mb=1`, { headers: CSRF })
    assert.equal((await small.arrayBuffer()).byteLength, MiB)
  })

  test('a client that gives up while the upstream is still working ends the upstream call, and gatehouse keeps serving', async () => {
    const url = '/slow?ms=5000'
    const controller = new AbortController()
    const pending = fetch(`${flow.origin}/api${url}`, { headers: CSRF, signal: controller.signal })
    await new Promise<void>((resolve) => {
      const check = () => (upstreamResponses.has(url) ? resolve() : setTimeout(check, 10))
      check()
    })
    const upstreamRes = upstreamResponses.get(url)!
    const upstreamClosed = new Promise<boolean>((resolve) =>
      upstreamRes.destroyed
        ? resolve(upstreamRes.writableFinished)
        : upstreamRes.once('close', () => resolve(upstreamRes.writableFinished)),
    )
    controller.abort()
    await assert.rejects(pending)
    assert.equal(await upstreamClosed, false)
    const next = await fetch(`${flow.origin}/api/echo/after-give-up`, { headers: CSRF })
    assert.equal(next.status, 200)
  })

  test('a client that aborts an upload midway ends the upstream call, and gatehouse keeps serving', async () => {
    const url = '/upload?aborted'
    const req = request(`${flow.origin}/api${url}`, {
      method: 'POST',
      headers: { ...CSRF, 'content-type': 'application/octet-stream', 'content-length': String(100 * MiB) },
    })
    req.on('error', () => undefined)
    const chunk = Buffer.alloc(64 * 1024, 0x62)
    for (let i = 0; i < 32; i++) req.write(chunk)
    await new Promise<void>((resolve) => {
      const check = () => (upstreamResponses.has(url) ? resolve() : setTimeout(check, 10))
      check()
    })
    const upstreamRes = upstreamResponses.get(url)!
    const upstreamClosed = new Promise<boolean>((resolve) =>
      upstreamRes.destroyed
        ? resolve(upstreamRes.writableFinished)
        : upstreamRes.once('close', () => resolve(upstreamRes.writableFinished)),
    )
    req.destroy()
    assert.equal(await upstreamClosed, false)
    const next = await fetch(`${flow.origin}/api/upload`, { method: 'POST', headers: CSRF, body: 'after' })
    assert.equal(next.status, 200)
    assert.equal(((await next.json()) as { bytes: number }).bytes, 5)
  })

  test('an upstream that breaks off a download mid-stream cuts the client connection, and gatehouse keeps serving', async () => {
    const url = '/download?mb=2000&cut'
    const res = await fetch(`${flow.origin}/api${url}`, { headers: CSRF })
    assert.equal(res.status, 200)
    const reader = res.body!.getReader()
    let bytes = 0
    while (bytes < 1 * MiB) bytes += (await reader.read()).value!.length
    upstreamResponses.get(url)!.socket!.destroy()
    await assert.rejects(async () => {
      for (;;) if ((await reader.read()).done) break
    })
    const next = await fetch(`${flow.origin}/api/echo/after-cut`, { headers: CSRF })
    assert.equal(next.status, 200)
  })
})
