import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { after, before, describe, test } from 'node:test'
import { Cluster, Redis } from 'ioredis'
import { storeFixture } from '../helpers/instances.ts'
import {
  startRedisCluster,
  startRedisSentinel,
  type RedisCluster,
  type RedisSentinel,
} from '../helpers/redis-topology.ts'

// The private topologies the Cluster/Sentinel store and failover tests run on, from the machine's redis-server.

/** Gone: no such process, or a zombie (dead, its parent not having reaped it yet). */
function gone(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH'
  }
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return false
  }
}

async function on<T>(port: number, use: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis({
    host: '127.0.0.1',
    port,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  })
  client.on('error', () => {})
  await client.connect()
  try {
    return await use(client)
  } finally {
    client.disconnect()
  }
}

const clusterState = (port: number) =>
  on(port, async (c) => /^cluster_state:(\w+)/m.exec(String(await c.call('CLUSTER', ['INFO'])))?.[1])

describe('startRedisCluster: 3 primaries, 3 replicas on loopback', () => {
  let cluster: RedisCluster
  let startMs = 0

  before(async () => {
    const t0 = Date.now()
    cluster = await startRedisCluster()
    startMs = Date.now() - t0
  })
  after(() => cluster?.stop())

  test('forms with 3 primaries each with a replica, and every node says cluster_state:ok', async (t) => {
    t.diagnostic(`cluster formed in ${startMs} ms`)
    const primaries = cluster.nodes.filter((n) => n.role === 'primary').map((n) => n.port)
    assert.equal(primaries.length, 3)
    assert.deepEqual(
      await cluster.primaries(),
      [...primaries].sort((a, b) => a - b),
    )
    for (const p of primaries) {
      const replicas = await cluster.replicasOf(p)
      assert.equal(replicas.length, 1, `primary :${p} has one replica`)
      assert.deepEqual(
        replicas,
        cluster.nodes.filter((n) => n.primaryPort === p).map((n) => n.port),
      )
      assert.equal(
        await on(replicas[0]!, async (c) => /^master_link_status:(\w+)/m.exec(await c.info('replication'))?.[1]),
        'up',
      )
    }
    for (const n of cluster.nodes) assert.equal(await clusterState(n.port), 'ok', `:${n.port}`)
    assert.equal(cluster.seeds(), primaries.map((p) => `127.0.0.1:${p}`).join(','))
    assert.equal(cluster.url('gh:t/1'), `redis-cluster://${cluster.seeds()}/?prefix=gh%3At%2F1`)
  })

  test('a cluster client from the seeds writes keys to every primary and reads them back', async () => {
    const client = new Cluster(
      cluster
        .seeds()
        .split(',')
        .map((s) => ({ host: '127.0.0.1', port: Number(s.split(':')[1]) })),
    )
    try {
      const owners = new Set<number>()
      for (let i = 0; i < 30; i++) {
        await client.set(`topology:${i}`, `v${i}`)
        owners.add(await cluster.primaryOf(`topology:${i}`))
      }
      for (let i = 0; i < 30; i++) assert.equal(await client.get(`topology:${i}`), `v${i}`)
      assert.deepEqual(
        [...owners].sort((a, b) => a - b),
        await cluster.primaries(),
      )
    } finally {
      await client.quit()
    }
  })

  test('after SIGKILL of a primary, its replica takes over its slots and the cluster is ok again', async (t) => {
    const key = 'topology:failover'
    const dead = await cluster.primaryOf(key)
    const [heir] = await cluster.replicasOf(dead)
    assert.ok(heir)
    await on(dead, async (c) => {
      await c.set(key, 'kept')
      assert.equal(await c.call('WAIT', ['1', '5000']), 1, 'the write reached the replica')
    })
    const pid = cluster.nodes.find((n) => n.port === dead)!.pid
    await cluster.kill(dead)
    assert.ok(gone(pid), `pid ${pid} is gone after kill()`)

    const ms = await cluster.waitForFailover(dead, 20_000)
    t.diagnostic(`replica :${heir} took over from :${dead} ${ms} ms after the SIGKILL`)

    const primaries = await cluster.primaries()
    assert.equal(primaries.length, 3)
    assert.ok(primaries.includes(heir) && !primaries.includes(dead), `${primaries} has :${heir}, not :${dead}`)
    assert.equal(await cluster.primaryOf(key), heir)
    assert.equal(await on(heir, (c) => c.get(key)), 'kept')
    for (const n of cluster.nodes.filter((x) => x.port !== dead)) {
      assert.equal(await clusterState(n.port), 'ok', `:${n.port}`)
    }
  })

  test('stop() kills every node (checked by PID) and removes its temp dir', async () => {
    const pids = cluster.pids()
    assert.equal(pids.length, 6)
    await cluster.stop()
    for (const pid of pids) assert.ok(gone(pid), `pid ${pid} is gone`)
    assert.equal(existsSync(cluster.dir), false)
  })
})

describe('startRedisSentinel: a primary, a replica and one sentinel', () => {
  let sentinel: RedisSentinel
  let startMs = 0

  before(async () => {
    const t0 = Date.now()
    sentinel = await startRedisSentinel()
    startMs = Date.now() - t0
  })
  after(() => sentinel?.stop())

  test('the sentinel names the primary, and the replica is in sync', async (t) => {
    t.diagnostic(`primary, replica and sentinel ready in ${startMs} ms`)
    assert.equal(await sentinel.currentPrimary(), sentinel.primaryPort)
    assert.equal(await on(sentinel.primaryPort, (c) => c.call('ROLE')).then((r) => (r as unknown[])[0]), 'master')
    const replication = await on(sentinel.replicaPort, (c) => c.info('replication'))
    assert.match(replication, /^role:slave\r?$/m)
    assert.match(replication, new RegExp(`^master_port:${sentinel.primaryPort}\\r?$`, 'm'))
    assert.match(replication, /^master_link_status:up\r?$/m)
    assert.match(sentinel.masterName, /^gh-primary-/)
    assert.equal(
      sentinel.url('gh:s/1', 3),
      `redis-sentinel://127.0.0.1:${sentinel.sentinelPort}/${sentinel.masterName}?prefix=gh%3As%2F1&db=3`,
    )
    assert.equal(
      sentinel.url('p:'),
      `redis-sentinel://127.0.0.1:${sentinel.sentinelPort}/${sentinel.masterName}?prefix=p%3A`,
    )
  })

  test('after SIGKILL of the primary, the sentinel names the replica, which answers as primary with the data', async (t) => {
    await on(sentinel.primaryPort, async (c) => {
      await c.set('topology:sentinel', 'kept')
      assert.equal(await c.call('WAIT', ['1', '5000']), 1, 'the write reached the replica')
    })
    const pid = sentinel.pids()[0]!
    await sentinel.killPrimary()
    assert.ok(gone(pid), `pid ${pid} is gone after killPrimary()`)

    const ms = await sentinel.waitForFailover(20_000)
    t.diagnostic(`the sentinel named the replica :${sentinel.replicaPort} ${ms} ms after the SIGKILL`)

    assert.equal(await sentinel.currentPrimary(), sentinel.replicaPort)
    await on(sentinel.replicaPort, async (c) => {
      assert.equal(((await c.call('ROLE')) as unknown[])[0], 'master')
      assert.equal(await c.get('topology:sentinel'), 'kept')
      assert.equal(await c.set('topology:sentinel', 'written after failover'), 'OK')
    })
  })

  test('stop() kills the three servers (checked by PID) and removes its temp dir', async () => {
    const pids = sentinel.pids()
    assert.equal(pids.length, 3)
    await sentinel.stop()
    for (const pid of pids) assert.ok(gone(pid), `pid ${pid} is gone`)
    assert.equal(existsSync(sentinel.dir), false)
  })
})

test('a test process that dies of an uncaught error leaves no redis-server behind (the exit hook)', async () => {
  const helper = new URL('../helpers/redis-topology.ts', import.meta.url).pathname
  const script = `import { startRedisSentinel } from ${JSON.stringify(helper)}
const s = await startRedisSentinel()
console.log(JSON.stringify(s.pids()))
throw new Error('test failed before stop()')`
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    cwd: tmpdir(),
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  const code = await new Promise((resolve) => child.on('close', resolve))
  assert.equal(code, 1, stderr)
  assert.match(stderr, /test failed before stop\(\)/)
  const pids = JSON.parse(stdout) as number[]
  assert.equal(pids.length, 3)
  // SIGKILL is asynchronous: the orphans vanish within moments.
  for (let i = 0; i < 100 && !pids.every(gone); i++) await new Promise((r) => setTimeout(r, 20))
  for (const pid of pids) assert.ok(gone(pid), `pid ${pid} is gone`)
})

for (const kind of ['redis-cluster', 'redis-sentinel'] as const) {
  test(`storeFixture('${kind}'): private servers named by url() and target, url(via) refused, stopped by cleanup()`, async () => {
    const fixture = await storeFixture(kind, 'gatehouse_topology')
    let pids: number[] = []
    try {
      const topology = kind === 'redis-cluster' ? fixture.cluster : fixture.sentinel
      assert.ok(topology, `the fixture exposes its ${kind === 'redis-cluster' ? 'cluster' : 'sentinel'}`)
      pids = topology.pids()
      // WHATWG URL refuses the comma-separated hosts of a cluster URL: compare strings.
      const url = fixture.url()
      const prefix = /\?prefix=([^&]*)$/.exec(url)?.[1] ?? ''
      assert.match(decodeURIComponent(prefix), /^gatehouse_topology:[0-9a-f]{12}:$/)
      if (fixture.cluster) {
        assert.equal(url, `redis-cluster://${fixture.cluster.seeds()}/?prefix=${prefix}`)
        assert.equal(`127.0.0.1:${fixture.target.port}`, fixture.cluster.seeds().split(',')[0])
      } else {
        const { sentinelPort, masterName } = fixture.sentinel!
        assert.equal(url, `redis-sentinel://127.0.0.1:${sentinelPort}/${masterName}?prefix=${prefix}`)
        assert.equal(fixture.target.port, sentinelPort)
      }
      assert.equal(await on(fixture.target.port, (c) => c.ping()), 'PONG')
      assert.throws(() => fixture.url({ host: '127.0.0.1', port: 1 }), /url\(via\): not supported/)
    } finally {
      await fixture.cleanup()
    }
    assert.equal(pids.length, kind === 'redis-cluster' ? 6 : 3)
    for (const pid of pids) assert.ok(gone(pid), `pid ${pid} is gone`)
  })
}
