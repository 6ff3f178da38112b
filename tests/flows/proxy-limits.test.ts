import assert from 'node:assert/strict'
import { request } from 'node:http'
import { after, before, describe, test } from 'node:test'
import { CSRF, startFlow, type Flow } from '../helpers/flow.ts'
import { startUpstream, type Upstream } from '../helpers/upstream.ts'

/** A POST whose body is sent in chunks without a Content-Length (Transfer-Encoding: chunked). */
function chunkedPost(url: string, chunks: Buffer[]): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: 'POST', headers: { ...CSRF, 'content-type': 'application/octet-stream' } },
      (res) => {
        let body = ''
        res.on('data', (d) => (body += d))
        res.on('end', () => resolve({ status: res.statusCode!, body }))
      },
    )
    req.on('error', reject)
    for (const chunk of chunks) req.write(chunk)
    req.end()
  })
}

describe('remoteApis[].maxBodySize', () => {
  let upstream: Upstream
  let flow: Flow
  before(async () => {
    upstream = await startUpstream()
    flow = await startFlow({
      gatehouse: {
        remoteApis: [
          { path: '/api', target: upstream.url, token: 'none', maxBodySize: '1kb' },
          { path: '/big', target: upstream.url, token: 'none' },
        ],
      },
    })
  })
  after(async () => {
    await flow.close()
    await upstream.close()
  })

  test('a declared body over the limit is refused with 413 and never reaches the API', async () => {
    const before = upstream.received.length
    const res = await fetch(`${flow.origin}/api/upload`, { method: 'POST', headers: CSRF, body: Buffer.alloc(2048, 1) })
    assert.equal(res.status, 413)
    assert.match(res.headers.get('content-type')!, /problem\+json/)
    assert.equal(upstream.received.length, before)
  })

  test('a chunked body that grows over the limit is cut off with 413', async () => {
    const res = await chunkedPost(`${flow.origin}/api/upload`, [Buffer.alloc(700, 1), Buffer.alloc(700, 1)])
    assert.equal(res.status, 413)
  })

  test('bodies within the limit, and APIs without one, pass', async () => {
    const small = await fetch(`${flow.origin}/api/upload`, {
      method: 'POST',
      headers: CSRF,
      body: Buffer.alloc(1024, 1),
    })
    assert.equal(small.status, 200)
    assert.equal(((await small.json()) as { bytes: number }).bytes, 1024)
    const big = await fetch(`${flow.origin}/big/upload`, {
      method: 'POST',
      headers: CSRF,
      body: Buffer.alloc(200_000, 1),
    })
    assert.equal(((await big.json()) as { bytes: number }).bytes, 200_000)
  })
})
