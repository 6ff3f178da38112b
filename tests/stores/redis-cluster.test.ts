import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import { Redis } from 'ioredis'
import { GatehouseError } from '../../src/errors.ts'
import { openStore } from '../../src/session/stores/open-store.ts'
import { openRedisClusterStore } from '../../src/session/stores/redis-cluster.ts'
import type { SessionEndNotice } from '../../src/session/store.ts'
import type { RedisStore } from '../../src/session/stores/redis.ts'
import { runScript } from '../helpers/child-script.ts'
import { startRedisCluster, type RedisCluster } from '../helpers/redis-topology.ts'
import { freePort, startupError } from '../helpers/startup-errors.ts'
import { runStoreContract, sampleRecord } from './contract.ts'

// The Redis store on a real Redis Cluster (3 primaries, 3 replicas) started by this file from the
// machine's redis-server: the store contract, what differs from one server (SCAN over every primary,
// notices by sharded pub/sub on the channel's slot), and the start-up checks of redis-cluster:// URLs.

const NOW = 1_700_000_000_000
const DAY = 24 * 3_600_000
const run = randomBytes(4).toString('hex')
let n = 0
const freshPrefix = () => `gatehouse-test:${run}:${n++}:`

const cluster: RedisCluster = await startRedisCluster()
after(() => cluster.stop())

/** The contract runs at a fixed instant in 2023: the TTL clock sits a day earlier so keys outlive the test. */
const openTestStore = (prefix = freshPrefix()): Promise<RedisStore> =>
  openRedisClusterStore(cluster.url(prefix), { now: () => NOW - DAY })

runStoreContract('redis-cluster', () => openTestStore())

/** `a` publishes `notice`; within 5 s it is the one notice in `received` (what another store's subscription got). */
async function publishedAndReceived(a: RedisStore, received: unknown[], notice: SessionEndNotice): Promise<void> {
  await a.publishEnded(notice)
  const deadline = Date.now() + 5_000
  while (received.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
  assert.deepEqual(received, [notice])
}

describe('Redis Cluster: what differs from one server', () => {
  test('list() without a filter finds the sessions on every primary (SCAN runs on each)', async () => {
    const prefix = freshPrefix()
    const store = await openTestStore(prefix)
    try {
      const records = Array.from({ length: 30 }, (_, i) => sampleRecord({ idHash: `id-${i}`, sub: `user-${i}` }))
      for (const record of records) assert.equal(await store.set(record), true)
      const owners = new Set(await Promise.all(records.map((r) => cluster.primaryOf(`${prefix}{s:${r.idHash}}`))))
      assert.equal(owners.size, 3, 'the records are spread over the three primaries')
      const listed = await store.list({ limit: 100 }, NOW)
      assert.deepEqual(listed.map((r) => r.idHash).sort(), records.map((r) => r.idHash).sort())
      assert.equal((await store.list({ limit: 7 }, NOW)).length, 7, 'the limit holds across primaries')
    } finally {
      await store.close()
    }
  })

  test('a notice published by one store reaches another by sharded pub/sub on the channel slot', async () => {
    const prefix = freshPrefix()
    const [a, b] = [await openTestStore(prefix), await openTestStore(prefix)]
    try {
      const received: unknown[] = []
      const stop = await b.subscribeEnded((notice) => received.push(notice))
      const channel = `${prefix}{session-ended}`
      const owner = await cluster.primaryOf(channel)
      const node = new Redis({ host: '127.0.0.1', port: owner, lazyConnect: true })
      await node.connect()
      const [, subscribers] = (await node.call('PUBSUB', 'SHARDNUMSUB', channel)) as [string, number]
      node.disconnect()
      assert.equal(subscribers, 1, "B's link is a sharded subscription on the primary of the channel's slot")
      await publishedAndReceived(a, received, { origin: 'a', reason: 'logout', idHash: 'x1' })
      await stop()
    } finally {
      await a.close()
      await b.close()
    }
  })

  test('ping() answers while every slot has a primary', async () => {
    const store = await openTestStore()
    try {
      await store.ping()
    } finally {
      await store.close()
    }
  })

  test('close() lets the process go: no connection or timer left (a child process exits by itself)', async () => {
    const script = `
      import { openRedisClusterStore } from ${JSON.stringify(new URL('../../src/session/stores/redis-cluster.ts', import.meta.url).href)}
      const store = await openRedisClusterStore(${JSON.stringify(cluster.url(freshPrefix()))})
      const stop = await store.subscribeEnded(() => {})
      await store.set({ idHash: 'c', sub: 's', sid: undefined, partition: 'p', createdAt: 1, renewedAt: 1, expiresAt: Date.now() + 60000, version: 1, sealed: 'x' })
      await stop()
      await store.close()
    `
    const { code, stderr } = await runScript(script)
    assert.equal(code, 0, `the child exited by itself once the store was closed ${stderr}`)
  })
})

describe('redis-cluster:// (and redis-sentinel://) start-up errors: one line naming the cause', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-cluster-errors-'))
  const servers: ChildProcess[] = []
  after(() => {
    for (const server of servers) server.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  })

  /** A one-node cluster-enabled redis-server with extra arguments; `slots`: it serves every slot (state ok). */
  async function clusterNode(args: string[], slots: boolean): Promise<number> {
    const port = await freePort()
    const server = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--cluster-enabled',
        'yes',
        // A lone node has met no other, so it knows no address of its own to announce in CLUSTER SLOTS.
        '--cluster-announce-ip',
        '127.0.0.1',
        '--cluster-config-file',
        join(dir, `nodes-${port}.conf`),
        '--dir',
        dir,
        ...args,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    servers.push(server)
    await new Promise<void>((resolve, reject) => {
      let out = ''
      server.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString()
        if (/Ready to accept connections/.test(out)) resolve()
      })
      server.on('exit', () => reject(new Error(`redis-server exited: ${out}`)))
    })
    if (slots) {
      const admin = new Redis({ host: '127.0.0.1', port, lazyConnect: true })
      await admin.connect()
      await admin.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383')
      for (let i = 0; i < 100 && !/cluster_state:ok/.test(String(await admin.call('CLUSTER', 'INFO'))); i++)
        await new Promise((r) => setTimeout(r, 50))
      admin.disconnect()
    }
    return port
  }

  test('no seed node reachable: each seed named with its cause, never the password', async () => {
    const [p1, p2] = [await freePort(), await freePort()]
    const err = await startupError(`redis-cluster://gh:s3cret-pw@127.0.0.1:${p1},127.0.0.1:${p2}`, ['s3cret-pw'])
    assert.equal(
      err.message,
      `session store redis-cluster://127.0.0.1:${p1},127.0.0.1:${p2}: no seed node can be used (127.0.0.1:${p1}: connection refused (is Redis running at 127.0.0.1:${p1}?); 127.0.0.1:${p2}: connection refused (is Redis running at 127.0.0.1:${p2}?))`,
    )
  })

  test('a seed that is a plain Redis (cluster support disabled): says to use redis:// or redis-sentinel://', async () => {
    const port = await freePort()
    const plain = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', ''], {
      stdio: ['ignore', 'pipe', 'ignore'],
    })
    servers.push(plain)
    await new Promise<void>((resolve) =>
      plain.stdout!.on('data', (chunk: Buffer) => /Ready to accept/.test(chunk.toString()) && resolve()),
    )
    const err = await startupError(`redis-cluster://127.0.0.1:${port}`)
    assert.match(err.message, /127\.0\.0\.1:\d+ is not a cluster node \(cluster support disabled\): use redis:\/\//)
  })

  test('a cluster whose slots are not all served: its state is named', async () => {
    const port = await clusterNode([], false)
    const err = await startupError(`redis-cluster://127.0.0.1:${port}`)
    assert.match(err.message, /the cluster's state is "fail" at 127\.0\.0\.1:\d+: not every hash slot is served/)
  })

  test('a cluster without a command gatehouse sends (EVALSHA renamed away): the command is named', async () => {
    const port = await clusterNode(['--rename-command', 'EVALSHA', ''], true)
    const err = await startupError(`redis-cluster://127.0.0.1:${port}`)
    assert.match(err.message, /the cluster lacks the command EVALSHA \(renamed or disabled\?\): gatehouse needs it$/)
  })

  test('a cluster without sharded pub/sub (SPUBLISH renamed away) still opens, with classic pub/sub notices', async () => {
    const port = await clusterNode(['--rename-command', 'SPUBLISH', ''], true)
    const prefix = freshPrefix()
    const [a, b] = [
      await openStore(`redis-cluster://127.0.0.1:${port}/?prefix=${prefix}`),
      await openStore(`redis-cluster://127.0.0.1:${port}/?prefix=${prefix}`),
    ]
    try {
      const received: unknown[] = []
      const stop = await (b as RedisStore).subscribeEnded((notice) => received.push(notice))
      await publishedAndReceived(a as RedisStore, received, { origin: 'a', reason: 'logout', idHash: 'x2' })
      await stop()
    } finally {
      await a.close()
      await b.close()
    }
  })

  test('malformed cluster URLs are refused before connecting, naming session.store, never the password', async () => {
    const cases: Array<[string, RegExp]> = [
      ['redis-cluster://', /names no seed node/],
      ['redis-cluster://:pw-secret@', /names no seed node/],
      ['redis-cluster://127.0.0.1:7000,,127.0.0.1:7001', /invalid host:port as its host number 2/],
      ['redis-cluster://127.0.0.1:99999', /invalid host:port as its host number 1/],
      ['redis-cluster://u:pw/secret@127.0.0.1:7000', /"@" after the hosts/],
      ['redis-cluster://127.0.0.1:7000/3', /has a path: a Redis Cluster has one database/],
      ['redis-cluster://127.0.0.1:7000?db=2', /a query parameter gatehouse does not read \(.*only \?prefix=\)/],
      ['redis-cluster://u:%zz@127.0.0.1:7000', /"%" that starts no percent-escape/],
      ['redis-cluster://127.0.0.1:7000?prefix=a&prefix=b', /repeats a query parameter/],
      ['redis-cluster://127.0.0.1:7000#frag-secret', /has a "#" fragment/],
      ['redis-cluster://127.0.0.1:7000\n', /white space or a control character/],
      ['redis-cluster://127.0.0.1:7000, 127.0.0.1:7001', /white space or a control character/],
      ['redis-cluster://127.0.0.1:0', /port 0 as its host number 1/],
      [
        'redis-sentinel://127.0.0.1:26379/m?sentinelPassword=Xy7&Secret9',
        /a query parameter gatehouse does not read .*percent-encode & # \+ %/,
      ],
      ['redis-sentinel://127.0.0.1:26379/m?sentinelPassword=Xy7#Secret9', /has a "#" fragment/],
      ['redis-sentinel://127.0.0.1:26379', /names no master/],
      ['redis-sentinel://127.0.0.1:26379/my master', /white space/],
      ['redis-sentinel://127.0.0.1:26379/m?db=x', /\?db= must be a database number/],
    ]
    for (const [location, expected] of cases) {
      const err = await openStore(location).then(
        () => assert.fail(`${location} opened`),
        (e: unknown) => e,
      )
      assert.ok(err instanceof GatehouseError, location)
      assert.equal(err.code, 'config_invalid', location)
      assert.match(err.message, /^session\.store /, location)
      assert.match(err.message, expected, location)
      assert.doesNotMatch(
        err.message,
        /pw-secret|frag-secret|Secret9|pw\/secret/,
        `${location}: no credential in the message`,
      )
    }
  })
})
