import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { pino } from 'pino'
import type { SessionRecord } from '../../src/session/store.ts'
import { MemoryStore } from '../../src/session/stores/memory.ts'
import { CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import { logLines } from '../helpers/log-lines.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

// A browser that leaves while gatehouse is still resolving its session (a tab closed during a slow
// store read) has already had its connection's 'close' when gatehouse would call the API. Such a
// call could never be cancelled: the answer would be piped into a closed response, pause forever
// and pin one of the API's pooled connections (an endless stream: for good). gatehouse makes no
// call then, logs the request as 499, and keeps serving. A client leaving mid-answer must not end
// the process either (an undici body erroring after it was destroyed, with no listener).

const COOKIE = '__Host-gatehouse'
const STORE_DELAY_MS = 400

/** The memory store, with reads that take STORE_DELAY_MS while `slow` is on. */
class SlowStore extends MemoryStore {
  slow = false

  override async get(idHash: string, now: number): Promise<SessionRecord | undefined> {
    if (this.slow) await new Promise((resolve) => setTimeout(resolve, STORE_DELAY_MS))
    return super.get(idHash, now)
  }
}

/** Sends a raw request and resets the connection after `afterMs`, as a closed tab does. */
function requestThenLeave(origin: string, path: string, cookie: string, afterMs: number): Promise<void> {
  const { hostname, port, host } = new URL(origin)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => {
      socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nX-CSRF: 1\r\nCookie: ${COOKIE}=${cookie}\r\n\r\n`)
      setTimeout(() => {
        socket.resetAndDestroy()
        resolve()
      }, afterMs)
    })
    socket.on('error', reject)
  })
}

describe('a client that leaves before or during the proxied answer', () => {
  const store = new SlowStore()
  const log = logLines()
  const logger = pino({ level: 'info' }, log.sink)
  let upstream: Upstream
  let flow: Flow
  let cookie: string

  before(async () => {
    upstream = await startUpstream()
    flow = await startFlow({
      runtime: { store, logger },
      gatehouse: { remoteApis: [{ path: '/api', target: upstream.url, token: 'user' }] },
    })
    const browser = flow.browser()
    await flow.login(browser)
    cookie = browser.cookies.get(COOKIE)!
    assert.ok(cookie)
  })
  after(async () => {
    await flow?.close()
    await upstream?.close()
  })

  const accessLines = (path: string) => log.entries().filter((l) => l.msg === 'proxy' && l.path === path)

  /** The access line of the next request to `path` after `seen` earlier ones (bounded wait: not a timing assertion). */
  async function nextAccessLine(path: string, seen: number): Promise<Record<string, unknown>> {
    const deadline = Date.now() + 10_000
    for (;;) {
      const line = accessLines(path)[seen]
      if (line || Date.now() > deadline) return line ?? assert.fail(`no access line for ${path}`)
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
  }

  test('gone while the session is being read: no API call is made, the request is logged as 499, and gatehouse keeps serving', async () => {
    const before = upstream.received.length
    const seen = accessLines('/api/sse').length
    store.slow = true
    try {
      await requestThenLeave(flow.origin, '/api/sse?events=1000&gapMs=50', cookie, 50)
      assert.equal((await nextAccessLine('/api/sse', seen)).status, 499)
    } finally {
      store.slow = false
    }
    assert.equal(upstream.received.length, before, 'the API was never called for a client that had left')
    const res = await fetch(`${flow.origin}/api/echo`, { headers: { ...CSRF, cookie: `${COOKIE}=${cookie}` } })
    assert.equal(res.status, 200)
  })

  test('gone mid-stream: the upstream call ends, the process survives, and the next call works', async () => {
    const seen = accessLines('/api/sse').length
    await requestThenLeave(flow.origin, '/api/sse?events=1000&gapMs=20', cookie, 300)
    assert.equal((await nextAccessLine('/api/sse', seen)).status, 200, 'the answer had started when the client left')
    const sse = upstream.received.filter((r) => r.url.startsWith('/sse'))
    assert.equal(sse.length, 1, 'the stream reached the upstream once')
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${flow.origin}/api/echo?i=${i}`, { headers: { ...CSRF, cookie: `${COOKIE}=${cookie}` } })
      assert.equal(res.status, 200)
    }
  })
})
