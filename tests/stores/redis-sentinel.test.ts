import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import { Redis } from 'ioredis'
import { openStore } from '../../src/session/stores/open-store.ts'
import type { RedisStore } from '../../src/session/stores/redis.ts'
import { openRedisSentinelStore } from '../../src/session/stores/redis-sentinel.ts'
import { runScript } from '../helpers/child-script.ts'
import { startRedisSentinel, type RedisSentinel } from '../helpers/redis-topology.ts'
import { freePort, startupError } from '../helpers/startup-errors.ts'
import { runStoreContract, sampleRecord } from './contract.ts'

// The Redis store on the primary a real Redis Sentinel names (a primary, a replica and a sentinel
// started by this file): the store contract, the database of ?db=, and the start-up checks of
// redis-sentinel:// URLs. Failover under load is in tests/flows/failover-redis.test.ts.

const NOW = 1_700_000_000_000
const DAY = 24 * 3_600_000
const run = randomBytes(4).toString('hex')
let n = 0
const freshPrefix = () => `gatehouse-test:${run}:${n++}:`

const sentinel: RedisSentinel = await startRedisSentinel()
const dir = mkdtempSync(join(tmpdir(), 'gatehouse-sentinel-errors-'))
const servers: ChildProcess[] = []
after(async () => {
  for (const server of servers) server.kill('SIGKILL')
  await sentinel.stop()
  rmSync(dir, { recursive: true, force: true })
})

const openTestStore = (prefix = freshPrefix(), db?: number): Promise<RedisStore> =>
  openRedisSentinelStore(sentinel.url(prefix, db), { now: () => NOW - DAY })

runStoreContract('redis-sentinel', () => openTestStore())

describe('Redis Sentinel: the store on the primary the sentinel names', () => {
  test('?db=N: a record written through the store is in database N of the primary', async () => {
    const prefix = freshPrefix()
    const store = await openTestStore(prefix, 5)
    const primary = new Redis({ host: '127.0.0.1', port: await sentinel.currentPrimary(), db: 5, lazyConnect: true })
    try {
      await store.set(sampleRecord({ idHash: 'in-db-5' }))
      await primary.connect()
      assert.equal(await primary.exists(`${prefix}{s:in-db-5}`), 1)
      await primary.select(0)
      assert.equal(await primary.exists(`${prefix}{s:in-db-5}`), 0, 'not in database 0')
    } finally {
      primary.disconnect()
      await store.close()
    }
  })

  test('a dead sentinel listed first: no driver noise on stderr; close() closes every link (the child exits by itself)', async () => {
    // The failover detector links to every listed sentinel; ioredis would print each refused connection.
    const dead = await freePort()
    const location = sentinel.url(freshPrefix()).replace('//127.0.0.1:', `//127.0.0.1:${dead},127.0.0.1:`)
    const script = `
      import { openRedisSentinelStore } from ${JSON.stringify(new URL('../../src/session/stores/redis-sentinel.ts', import.meta.url).href)}
      const store = await openRedisSentinelStore(${JSON.stringify(location)})
      await new Promise((resolve) => setTimeout(resolve, 500))
      const stop = await store.subscribeEnded(() => {})
      await store.ping()
      await stop()
      await store.close()
    `
    const { code, stderr } = await runScript(script)
    assert.equal(code, 0, `the child exited by itself once the store was closed ${stderr}`)
    assert.doesNotMatch(stderr, /Unhandled error event|ECONNREFUSED/)
  })
})

describe('redis-sentinel:// start-up errors: one line naming the cause', () => {
  test('an unknown master name: says no sentinel knows it, and where to look', async () => {
    const err = await startupError(`redis-sentinel://127.0.0.1:${sentinel.sentinelPort}/no-such-master`)
    assert.equal(
      err.message,
      `session store redis-sentinel://127.0.0.1:${sentinel.sentinelPort}/no-such-master: no sentinel knows a master named "no-such-master" (asked 127.0.0.1:${sentinel.sentinelPort}: check the name in the sentinels' "sentinel monitor" line)`,
    )
  })

  test('no sentinel reachable: each named with its cause, never the password', async () => {
    const [p1, p2] = [await freePort(), await freePort()]
    const err = await startupError(`redis-sentinel://gh:s3cret-pw@127.0.0.1:${p1},127.0.0.1:${p2}/m`, ['s3cret-pw'])
    assert.equal(
      err.message,
      `session store redis-sentinel://127.0.0.1:${p1},127.0.0.1:${p2}/m: no sentinel can be asked (127.0.0.1:${p1}: connection refused (is Redis running at 127.0.0.1:${p1}?); 127.0.0.1:${p2}: connection refused (is Redis running at 127.0.0.1:${p2}?))`,
    )
  })

  test('a sentinel address that is a Redis server, not a sentinel: says so', async () => {
    const err = await startupError(`redis-sentinel://127.0.0.1:${sentinel.primaryPort}/${sentinel.masterName}`)
    assert.match(err.message, /127\.0\.0\.1:\d+ is not a sentinel \(it does not know the SENTINEL command\)$/)
  })

  test("a database beyond the primary's: named, on the primary the sentinel named", async () => {
    const err = await startupError(sentinel.url(freshPrefix(), 99))
    assert.match(
      err.message,
      /database 99 cannot be selected on primary 127\.0\.0\.1:\d+ \(ERR DB index is out of range\)$/,
    )
  })

  test('a sentinel that needs a password: says to give ?sentinelPassword=; a wrong one is refused; the right one opens', async () => {
    const port = await freePort()
    const conf = join(dir, `sentinel-${port}.conf`)
    writeFileSync(
      conf,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        'requirepass sentinel-S3cret',
        `sentinel monitor ${sentinel.masterName} 127.0.0.1 ${await sentinel.currentPrimary()} 1`,
        '',
      ].join('\n'),
    )
    const server = spawn('redis-server', [conf, '--sentinel'], { stdio: ['ignore', 'pipe', 'ignore'] })
    servers.push(server)
    await new Promise<void>((resolve) =>
      server.stdout!.on('data', (chunk: Buffer) => /Sentinel ID is|monitor master/.test(chunk.toString()) && resolve()),
    )
    const base = `redis-sentinel://127.0.0.1:${port}/${sentinel.masterName}`
    const missing = await startupError(base)
    assert.match(missing.message, /the sentinel needs a password: give it as \?sentinelPassword=/)
    const wrong = await startupError(`${base}?sentinelPassword=nope-S3cret`, ['nope-S3cret'])
    assert.match(
      wrong.message,
      /the sentinel refused the credentials \(check \?sentinelUser= and \?sentinelPassword=\)/,
    )
    const store = await openStore(`${base}?sentinelPassword=sentinel-S3cret&prefix=${freshPrefix()}`)
    try {
      await store.ping()
    } finally {
      await store.close()
    }
  })
})
