import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { Agent, createServer, get, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { generateKey } from '../../src/session/seal.ts'
import { startCli } from '../helpers/cli.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

const TOKEN = 'shutdown-test-admin-token-0123'
const CHUNK = Buffer.alloc(64 * 1024, 0x62)
const CHUNKS = 48 // 3 MiB
const CHUNK_GAP_MS = 40 // about 2 s for the whole download

/** An API that sends a 3 MiB download slowly, so that a SIGTERM lands in the middle of it. */
async function startSlowApi(): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(CHUNK.length * CHUNKS) })
    let sent = 0
    const timer = setInterval(() => {
      res.write(CHUNK)
      if (++sent === CHUNKS) {
        clearInterval(timer)
        res.end()
      }
    }, CHUNK_GAP_MS)
    res.once('close', () => clearInterval(timer))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server }
}

/** A GET through a keep-alive agent (as a browser keeps its connection): resolves with the response once its headers are in. */
function open(url: string, agent: Agent): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => get(url, { agent }, resolve).on('error', reject))
}

/** Whether a new connection to `url` is accepted now. */
function accepts(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    get(`${url}/healthz`, { agent: false }, (res) => {
      res.resume()
      resolve(true)
    }).on('error', () => resolve(false))
  })
}

describe('gatehouse serve on SIGTERM', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-shutdown-'))
  let slow: Awaited<ReturnType<typeof startSlowApi>>
  let upstream: Upstream

  before(async () => {
    slow = await startSlowApi()
    upstream = await startUpstream()
  })
  after(async () => {
    slow.server.closeAllConnections()
    await new Promise<void>((resolve) => slow.server.close(() => resolve()))
    await upstream.close()
    rmSync(dir, { recursive: true, force: true })
  })

  test('stops accepting, lets streamed proxied answers finish in full, closes the admin listener and exits 0', async () => {
    const configPath = join(dir, 'gatehouse.json')
    writeFileSync(
      configPath,
      JSON.stringify({
        listen: { host: '127.0.0.1', port: 0 },
        // Discovery is lazy: remote APIs with token "none" never need the IdP.
        oidc: { authority: 'http://127.0.0.1:9', clientId: 'spa', clientSecret: 'x' },
        keys: [generateKey()],
        session: { store: 'memory' },
        remoteApis: [
          { path: '/files', target: slow.url, token: 'none', antiForgery: false },
          { path: '/events', target: upstream.url, token: 'none', antiForgery: false },
        ],
        admin: { listen: { host: '127.0.0.1', port: 0 }, token: TOKEN },
        log: { level: 'info' },
      }),
    )
    const running = await startCli(
      ['serve', '--config', configPath],
      /"event":"admin_listening","url":"(http:\/\/127\.0\.0\.1:\d+)"/,
    )
    const adminUrl = running.match[1]!
    const url = /"event":"listening","url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(running.output())![1]!
    const agent = new Agent({ keepAlive: true })
    try {
      assert.equal(
        (await fetch(`${adminUrl}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).status,
        200,
        'the admin listener is up',
      )

      const download = await open(`${url}/files/big`, agent)
      const events = await open(`${url}/events/sse?events=8&gapMs=150`, agent)
      assert.equal(download.statusCode, 200)
      assert.equal(events.statusCode, 200)
      let bytes = 0
      let text = ''
      const downloaded = new Promise<void>((resolve, reject) => {
        download.on('data', (chunk: Buffer) => (bytes += chunk.length))
        download.on('end', resolve)
        download.on('error', reject)
        download.on('aborted', () => reject(new Error('download aborted')))
      })
      const streamed = new Promise<void>((resolve, reject) => {
        events.setEncoding('utf8')
        events.on('data', (chunk: string) => (text += chunk))
        events.on('end', resolve)
        events.on('error', reject)
        events.on('aborted', () => reject(new Error('event stream aborted')))
      })
      // Mid-stream: some bytes and the first event are in, most are still to come.
      while (bytes < 4 * CHUNK.length || !text.includes('event 0'))
        await new Promise((resolve) => setTimeout(resolve, 10))
      assert.ok(bytes < (CHUNK.length * CHUNKS) / 2, 'the download is still under way')

      running.child.kill('SIGTERM')
      for (let i = 0; i < 40 && (await accepts(url)); i++) await new Promise((resolve) => setTimeout(resolve, 50))
      assert.equal(await accepts(url), false, 'no new connections once stopping')
      assert.equal(await accepts(adminUrl), false, 'the admin listener is closed too')

      await Promise.all([downloaded, streamed])
      const finishedAt = Date.now()
      assert.equal(bytes, CHUNK.length * CHUNKS, 'the whole download arrived')
      for (let n = 0; n < 8; n++) assert.ok(text.includes(`data: event ${n}\n`), `event ${n} arrived`)
      const code = await running.exited
      assert.equal(code, 0, running.output())
      // Keep-alive connections left idle by the finished answers are closed at once, not after the grace period.
      assert.ok(Date.now() - finishedAt < 3_000, `exited ${Date.now() - finishedAt} ms after the last answer`)
    } finally {
      agent.destroy()
      running.child.kill('SIGKILL')
    }
  })
})
