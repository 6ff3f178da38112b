import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'

/**
 * Private Redis topologies for tests, from the machine's `redis-server`: a 3-primary/3-replica Cluster and a
 * primary + replica + one Sentinel, on random loopback ports, each server a child process of the test (never
 * daemonized) so the test owns its PID. Silent unless something fails; failures throw with the servers' log tails.
 */

const REDIS_SERVER = process.env.GATEHOUSE_TEST_REDIS_SERVER ?? 'redis-server'
const REDIS_CLI = process.env.GATEHOUSE_TEST_REDIS_CLI ?? 'redis-cli'
const HOST = '127.0.0.1'
const POLL_MS = 50

// --- child processes -----------------------------------------------------------------------------------------

const live = new Set<ChildProcess>()
let exitHookInstalled = false

function killAll(): void {
  for (const c of live) {
    try {
      c.kill('SIGKILL')
    } catch {
      // already gone
    }
  }
}

/**
 * Whatever happens to the test (a failed assertion, a forgotten stop(), the test runner's SIGTERM on Ctrl-C or
 * a file timeout), no server outlives the test process.
 */
function track(child: ChildProcess): void {
  live.add(child)
  child.once('exit', () => live.delete(child))
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on('exit', killAll)
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    // Only where nothing else handles the signal: kill the servers, then die of the signal as before.
    if (process.listenerCount(signal) > 0) continue
    const onSignal = () => {
      killAll()
      process.removeListener(signal, onSignal)
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
    }
    process.on(signal, onSignal)
  }
}

interface ServerProcess {
  name: string
  port: number
  pid: number
  alive(): boolean
  /** The last 20 lines of the server's stdout/stderr (its log: `logfile ""`). */
  tail(): string
  /** SIGKILL, then resolves once the process is reaped. */
  kill(): Promise<void>
}

function spawnServer(name: string, port: number, args: string[]): ServerProcess {
  const child = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let log = ''
  const append = (chunk: Buffer | string) => {
    log = (log + chunk.toString()).slice(-8000)
  }
  child.stdout?.on('data', append)
  child.stderr?.on('data', append)
  let exited = child.exitCode !== null || child.signalCode !== null
  let done: () => void = () => {}
  const exit = new Promise<void>((resolve) => {
    done = resolve
  })
  child.once('exit', (code, signal) => {
    exited = true
    append(`\n[${name} exited: ${signal ?? `code ${code}`}]`)
    done()
  })
  child.once('error', (err) => {
    append(`\n[${name}: ${err.message}]`)
    if (child.pid === undefined) {
      exited = true
      done()
    }
  })
  // A test that forgets stop() must still end: the 'exit' hook kills the servers then.
  child.unref()
  for (const stream of [child.stdout, child.stderr]) (stream as unknown as { unref?: () => void } | null)?.unref?.()
  track(child)
  return {
    name,
    port,
    pid: child.pid ?? -1,
    alive: () => !exited,
    tail: () => log.trim().split('\n').slice(-20).join('\n'),
    async kill() {
      if (!exited) child.kill('SIGKILL')
      // The timer also keeps the event loop alive while waiting (the child and its pipes are unref'd).
      let timer: NodeJS.Timeout | undefined
      await Promise.race([exit, new Promise<void>((resolve) => (timer = setTimeout(resolve, 5000)))])
      clearTimeout(timer)
      if (!exited) throw new Error(`${name} (pid ${child.pid}) did not exit after SIGKILL`)
    },
  }
}

function tails(servers: readonly ServerProcess[]): string {
  return servers
    .map((s) => `--- ${s.name} (port ${s.port}, pid ${s.pid}${s.alive() ? '' : ', exited'}) log tail:\n${s.tail()}`)
    .join('\n')
}

// --- ports ---------------------------------------------------------------------------------------------------

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen({ port, host: HOST, exclusive: true }, () => server.close(() => resolve(true)))
  })
}

/**
 * `count` free loopback ports; with `bus`, port+10000 (the cluster bus) is free too. Drawn below 32768 so the
 * bus ports stay out of the kernel's ephemeral range (outgoing connections do not take them meanwhile).
 */
async function freePorts(count: number, bus: boolean): Promise<number[]> {
  const ports: number[] = []
  const taken = new Set<number>()
  for (let attempt = 0; ports.length < count; attempt++) {
    if (attempt > 500) throw new Error(`no ${count} free loopback ports found`)
    const port = 10_240 + Math.floor(Math.random() * (bus ? 12_500 : 22_000))
    if (taken.has(port) || (bus && taken.has(port + 10_000))) continue
    if (!(await canBind(port)) || (bus && !(await canBind(port + 10_000)))) continue
    ports.push(port)
    taken.add(port)
    if (bus) taken.add(port + 10_000)
  }
  return ports
}

// --- talking to the servers ------------------------------------------------------------------------------------

/** One command on a fresh connection (no retries, no offline queue): the answer or a throw. */
async function command(port: number, args: readonly (string | number)[], timeoutMs = 2000): Promise<unknown> {
  const client = new Redis({
    host: HOST,
    port,
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    enableReadyCheck: false,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
  })
  client.on('error', () => {})
  try {
    await client.connect()
    const [name, ...rest] = args
    return await client.call(String(name), rest.map(String))
  } finally {
    client.disconnect()
  }
}

async function text(port: number, ...args: (string | number)[]): Promise<string> {
  const reply = await command(port, args)
  if (typeof reply === 'string') return reply
  if (Buffer.isBuffer(reply)) return reply.toString()
  throw new Error(`${args.join(' ')} on :${port} answered ${JSON.stringify(reply)}`)
}

function infoField(info: string, field: string): string | undefined {
  return new RegExp(`^${field}:(.*?)\\r?$`, 'm').exec(info)?.[1]
}

/** `ROLE`'s first element: 'master', 'slave' or 'sentinel'. */
async function role(port: number): Promise<string> {
  const reply = await command(port, ['ROLE'])
  return Array.isArray(reply) ? String(reply[0]) : ''
}

/**
 * Polls `check` until it returns a value (not undefined) or the deadline passes; then throws with the last
 * reason (`check` returns a string via `why`) and the log tails of `servers`.
 */
async function until<T>(
  what: string,
  timeoutMs: number,
  servers: () => readonly ServerProcess[],
  check: (why: (reason: string) => undefined) => Promise<T | undefined>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let reason = 'never checked'
  const why = (r: string) => {
    reason = r
    return undefined
  }
  for (;;) {
    try {
      const value = await check(why)
      if (value !== undefined) return value
    } catch (err) {
      reason = err instanceof Error ? err.message : String(err)
    }
    const dead = servers().filter((s) => !s.alive())
    if (Date.now() >= deadline || dead.length > 0) {
      const cause = dead.length > 0 ? `${dead.map((s) => s.name).join(', ')} exited` : `timed out after ${timeoutMs} ms`
      throw new Error(`${what}: ${cause} (last state: ${reason})\n${tails(servers())}`)
    }
    await sleep(POLL_MS)
  }
}

/** A topology being started: its temp dir, the servers spawned so far, and stop() (idempotent) for both. */
interface Workspace {
  dir: string
  servers: ServerProcess[]
  stop(): Promise<void>
}

/**
 * Runs `build` in a fresh temp dir named after `name`; if it fails, kills what it spawned and removes the dir.
 * Another test may take a port between the bind check and redis-server's bind: then it tries other ports
 * (three attempts in all).
 */
async function startTopology<T>(name: string, build: (ws: Workspace) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const dir = mkdtempSync(join(tmpdir(), `gatehouse-${name}-`))
    const servers: ServerProcess[] = []
    let stopped = false
    const stop = async () => {
      if (stopped) return
      stopped = true
      try {
        await Promise.all(servers.map((s) => s.kill()))
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }
    try {
      return await build({ dir, servers, stop })
    } catch (err) {
      await stop().catch(() => {})
      if (attempt >= 3 || !isPortClash(err)) throw err
    }
  }
}

/** The arguments every data server (not a sentinel) starts with: loopback only, no persistence, log to stdout. */
function dataServerArgs(port: number, dir: string): string[] {
  return [
    '--port',
    String(port),
    '--bind',
    HOST,
    '--save',
    '',
    // A replica's first sync would wait 5 s (the default) for more replicas to share the transfer.
    '--repl-diskless-sync-delay',
    '0',
    '--appendonly',
    'no',
    '--dir',
    dir,
    '--dbfilename',
    `dump-${port}.rdb`,
    '--daemonize',
    'no',
    '--logfile',
    '',
  ]
}

async function waitForPing(server: ServerProcess, timeoutMs = 10_000): Promise<void> {
  await until(
    `${server.name} did not start`,
    timeoutMs,
    () => [server],
    async () => ((await text(server.port, 'PING')) === 'PONG' ? true : undefined),
  )
}

function isPortClash(err: unknown): boolean {
  return err instanceof Error && /Address already in use|Failed listening on port/i.test(err.message)
}

function runCli(args: string[], timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(REDIS_CLI, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    track(child)
    let output = ''
    child.stdout.on('data', (c: Buffer) => (output += c.toString()))
    child.stderr.on('data', (c: Buffer) => (output += c.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('error', (err) => {
      clearTimeout(timer)
      reject(new Error(`${REDIS_CLI} ${args.join(' ')}: ${err.message}`))
    })
    child.once('close', (code) => {
      clearTimeout(timer)
      resolve({ code, output })
    })
  })
}

// --- Redis Cluster ---------------------------------------------------------------------------------------------

export interface RedisClusterNode {
  port: number
  pid: number
  /** The role at formation (a failover changes it: ask primaries()/replicasOf()). */
  role: 'primary' | 'replica'
  /** For a replica: its primary's port at formation. */
  primaryPort?: number
}

export interface RedisCluster {
  kind: 'redis-cluster'
  /** The temp dir holding the nodes' config files (removed by stop()). */
  dir: string
  nodes: readonly RedisClusterNode[]
  /** The primaries at formation: "127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3". */
  seeds(): string
  /** `redis-cluster://<seeds>/?prefix=<prefix>` for gatehouse's `session.store`. */
  url(prefix: string): string
  /** Ports of the primaries that serve slots now, as a live node sees the cluster. */
  primaries(): Promise<number[]>
  /** Ports of the replicas of a primary now, as a live node sees the cluster. */
  replicasOf(primaryPort: number): Promise<number[]>
  /** Port of the primary serving `key`'s slot now. */
  primaryOf(key: string): Promise<number>
  /** PIDs of every server this cluster started (killed ones included). */
  pids(): number[]
  /** SIGKILL one node; resolves once its process is reaped. */
  kill(port: number): Promise<void>
  /**
   * Resolves with the ms from kill(deadPort) until, on every surviving node, the dead node is flagged `fail`, a
   * node that was its replica owns slots as a primary (and answers ROLE master), and `cluster_state:ok`.
   */
  waitForFailover(deadPort: number, timeoutMs?: number): Promise<number>
  /** Kills every node and removes the temp dir. Idempotent. */
  stop(): Promise<void>
}

interface ViewNode {
  id: string
  port: number
  flags: string[]
  primaryId: string | undefined
  linkState: string
  slots: string[]
}

function parseClusterNodes(raw: string): ViewNode[] {
  return raw
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0)
    .map((line) => {
      const [id = '', addr = '', flags = '', primary = '-', , , , linkState = '', ...slots] = line.split(' ')
      const port = Number(/:(\d+)@/.exec(addr)?.[1] ?? NaN)
      return {
        id,
        port,
        flags: flags.split(','),
        primaryId: primary === '-' ? undefined : primary,
        linkState,
        slots,
      }
    })
}

async function clusterView(port: number): Promise<{ state: string; nodes: ViewNode[] }> {
  const info = await text(port, 'CLUSTER', 'INFO')
  const nodes = parseClusterNodes(await text(port, 'CLUSTER', 'NODES'))
  return { state: infoField(info, 'cluster_state') ?? '?', nodes }
}

const isPrimary = (n: ViewNode) => n.flags.includes('master')
const isFailed = (n: ViewNode) => n.flags.includes('fail') || n.flags.includes('fail?')

export interface RedisClusterOptions {
  primaries?: 3
  replicasPerPrimary?: 1
  /** `cluster-node-timeout`: how long a silent node takes to be suspected failing. Default 1000. */
  nodeTimeoutMs?: number
}

export function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisCluster> {
  const primaryCount = options.primaries ?? 3
  const replicas = options.replicasPerPrimary ?? 1
  const nodeTimeout = options.nodeTimeoutMs ?? 1000
  const total = primaryCount * (1 + replicas)
  return startTopology('redis-cluster', async ({ dir, servers, stop }) => {
    const killedAt = new Map<number, { at: number; replicas: number[] }>()
    const ports = await freePorts(total, true)
    for (const port of ports) {
      servers.push(
        spawnServer(`cluster node :${port}`, port, [
          ...dataServerArgs(port, dir),
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          join(dir, `nodes-${port}.conf`),
          '--cluster-node-timeout',
          String(nodeTimeout),
          // A replica may take over however long it was cut off from its primary (the default factor 10
          // would refuse after 10 node-timeouts); the cluster refuses every command while a slot is uncovered.
          '--cluster-replica-validity-factor',
          '0',
          '--cluster-require-full-coverage',
          'yes',
          '--cluster-allow-reads-when-down',
          'no',
        ]),
      )
    }
    await Promise.all(servers.map((s) => waitForPing(s)))

    const created = await runCli(
      [
        '--cluster',
        'create',
        ...ports.map((p) => `${HOST}:${p}`),
        '--cluster-replicas',
        String(replicas),
        '--cluster-yes',
      ],
      30_000,
    )
    if (created.code !== 0) {
      throw new Error(`redis-cli --cluster create failed (${created.code}):\n${created.output}\n${tails(servers)}`)
    }

    const formed = await until(
      'the cluster did not form',
      20_000,
      () => servers,
      async (why) => {
        let view: ViewNode[] = []
        for (const s of servers) {
          const { state, nodes } = await clusterView(s.port)
          if (state !== 'ok') return why(`:${s.port} says cluster_state:${state}`)
          if (nodes.length !== total) return why(`:${s.port} knows ${nodes.length} nodes`)
          const bad = nodes.find((n) => isFailed(n) || n.flags.includes('handshake') || n.linkState !== 'connected')
          if (bad) return why(`:${s.port} sees :${bad.port} ${bad.flags.join(',')} ${bad.linkState}`)
          const owners = nodes.filter((n) => isPrimary(n) && n.slots.length > 0)
          if (owners.length !== primaryCount) return why(`:${s.port} sees ${owners.length} primaries with slots`)
          for (const p of owners) {
            const reps = nodes.filter((n) => n.primaryId === p.id)
            if (reps.length < replicas) return why(`:${s.port} sees ${reps.length} replicas of :${p.port}`)
          }
          view = nodes
        }
        for (const n of view.filter((v) => v.primaryId !== undefined)) {
          const info = await text(n.port, 'INFO', 'replication')
          if (infoField(info, 'master_link_status') !== 'up') return why(`replica :${n.port} master link not up`)
        }
        return view
      },
    )

    const byId = new Map(formed.map((n) => [n.id, n]))
    const pidOf = new Map(servers.map((s) => [s.port, s.pid]))
    const nodes: RedisClusterNode[] = formed
      .map((n): RedisClusterNode => {
        const primary = n.primaryId === undefined ? undefined : byId.get(n.primaryId)
        return primary
          ? { port: n.port, pid: pidOf.get(n.port) ?? -1, role: 'replica', primaryPort: primary.port }
          : { port: n.port, pid: pidOf.get(n.port) ?? -1, role: 'primary' }
      })
      .sort((a, b) => (a.role === b.role ? a.port - b.port : a.role === 'primary' ? -1 : 1))
    const seeds = nodes
      .filter((n) => n.role === 'primary')
      .map((n) => `${HOST}:${n.port}`)
      .join(',')

    const liveView = async () => {
      let last: unknown
      for (const s of servers.filter((x) => x.alive())) {
        try {
          return (await clusterView(s.port)).nodes
        } catch (err) {
          last = err
        }
      }
      throw new Error(`no cluster node answers: ${String(last)}`)
    }

    return {
      kind: 'redis-cluster',
      dir,
      nodes,
      seeds: () => seeds,
      url: (prefix) => `redis-cluster://${seeds}/?prefix=${encodeURIComponent(prefix)}`,
      async primaries() {
        return (await liveView())
          .filter((n) => isPrimary(n) && !isFailed(n) && n.slots.length > 0)
          .map((n) => n.port)
          .sort((a, b) => a - b)
      },
      async replicasOf(primaryPort) {
        const view = await liveView()
        const primary = view.find((n) => n.port === primaryPort)
        if (!primary) throw new Error(`no cluster node on port ${primaryPort}`)
        return view
          .filter((n) => n.primaryId === primary.id)
          .map((n) => n.port)
          .sort((a, b) => a - b)
      },
      async primaryOf(key) {
        const alive = servers.find((s) => s.alive())
        if (!alive) throw new Error('every cluster node is dead')
        const slot = Number(await command(alive.port, ['CLUSTER', 'KEYSLOT', key]))
        for (const n of await liveView()) {
          if (!isPrimary(n) || isFailed(n)) continue
          for (const range of n.slots) {
            if (range.startsWith('[')) continue // a slot being migrated or imported
            const [from = '', to = from] = range.split('-')
            if (slot >= Number(from) && slot <= Number(to)) return n.port
          }
        }
        throw new Error(`no live primary serves slot ${slot} (key ${JSON.stringify(key)})`)
      },
      pids: () => servers.map((s) => s.pid),
      async kill(port) {
        const server = servers.find((s) => s.port === port)
        if (!server) throw new Error(`no cluster node on port ${port}`)
        const view = await liveView().catch(() => [])
        const self = view.find((n) => n.port === port)
        const reps = self ? view.filter((n) => n.primaryId === self.id).map((n) => n.port) : []
        killedAt.set(port, { at: Date.now(), replicas: reps })
        await server.kill()
      },
      async waitForFailover(deadPort, timeoutMs = 20_000) {
        const killed = killedAt.get(deadPort)
        const since = killed?.at ?? Date.now()
        const candidates = killed?.replicas ?? []
        if (candidates.length === 0) throw new Error(`:${deadPort} was not a primary with a replica when killed`)
        const survivors = () => servers.filter((s) => s.alive())
        let promoted = 0
        await until(
          `no replica of :${deadPort} took over`,
          timeoutMs,
          () => [],
          async (why) => {
            for (const s of survivors()) {
              const { state, nodes: view } = await clusterView(s.port)
              const dead = view.find((n) => n.port === deadPort)
              if (!dead?.flags.includes('fail')) return why(`:${s.port} sees :${deadPort} as ${dead?.flags.join(',')}`)
              if (dead.slots.length > 0) return why(`:${s.port} still gives :${deadPort} slots`)
              const heir = view.find((n) => candidates.includes(n.port) && isPrimary(n) && n.slots.length > 0)
              if (!heir) return why(`:${s.port} sees no replica of :${deadPort} promoted`)
              if (promoted !== 0 && heir.port !== promoted) return why(`nodes disagree on the new primary`)
              promoted = heir.port
              if (state !== 'ok') return why(`:${s.port} says cluster_state:${state}`)
            }
            if ((await role(promoted)) !== 'master') return why(`:${promoted} does not answer ROLE master yet`)
            return true
          },
        ).catch((err: unknown) => {
          throw new Error(`${err instanceof Error ? err.message : String(err)}\n${tails(servers)}`)
        })
        return Date.now() - since
      },
      stop,
    }
  })
}

// --- Redis Sentinel ----------------------------------------------------------------------------------------------

export interface RedisSentinel {
  kind: 'redis-sentinel'
  /** The temp dir holding sentinel.conf (removed by stop()). */
  dir: string
  masterName: string
  sentinelPort: number
  /** The primary at start (killPrimary() kills it). */
  primaryPort: number
  /** The replica at start (the one the sentinel promotes). */
  replicaPort: number
  /** `redis-sentinel://127.0.0.1:<sentinelPort>/<masterName>?prefix=<prefix>[&db=N]` */
  url(prefix: string, db?: number): string
  /** The primary the sentinel names now (`SENTINEL get-master-addr-by-name`). */
  currentPrimary(): Promise<number>
  /** PIDs of the primary, the replica and the sentinel. */
  pids(): number[]
  /** SIGKILL the primary; resolves once its process is reaped. */
  killPrimary(): Promise<void>
  /** Resolves with the ms from killPrimary() until the sentinel names the replica and it answers ROLE master. */
  waitForFailover(timeoutMs?: number): Promise<number>
  /** Kills all three servers and removes the temp dir. Idempotent. */
  stop(): Promise<void>
}

export interface RedisSentinelOptions {
  /** `sentinel down-after-milliseconds`. Default 1000. */
  downAfterMs?: number
  /** `sentinel failover-timeout`. Default 5000. */
  failoverTimeoutMs?: number
  /** Default `gh-primary-<random>`. */
  masterName?: string
}

export function startRedisSentinel(options: RedisSentinelOptions = {}): Promise<RedisSentinel> {
  const downAfter = options.downAfterMs ?? 1000
  const failoverTimeout = options.failoverTimeoutMs ?? 5000
  const masterName = options.masterName ?? `gh-primary-${Math.random().toString(36).slice(2, 8)}`
  return startTopology('redis-sentinel', async ({ dir, servers, stop }) => {
    let killedAt: number | undefined
    const [primaryPort = 0, replicaPort = 0, sentinelPort = 0] = await freePorts(3, false)
    const primary = spawnServer(`primary :${primaryPort}`, primaryPort, dataServerArgs(primaryPort, dir))
    servers.push(primary)
    const replica = spawnServer(`replica :${replicaPort}`, replicaPort, [
      ...dataServerArgs(replicaPort, dir),
      '--replicaof',
      HOST,
      String(primaryPort),
    ])
    servers.push(replica)
    const conf = join(dir, 'sentinel.conf')
    writeFileSync(
      conf,
      [
        `port ${sentinelPort}`,
        `bind ${HOST}`,
        `dir ${dir}`,
        'daemonize no',
        'logfile ""',
        'sentinel resolve-hostnames no',
        `sentinel monitor ${masterName} ${HOST} ${primaryPort} 1`,
        `sentinel down-after-milliseconds ${masterName} ${downAfter}`,
        `sentinel failover-timeout ${masterName} ${failoverTimeout}`,
        `sentinel parallel-syncs ${masterName} 1`,
        // Else the sentinel learns of the replica from the primary's INFO, which it reads every 10 s.
        `sentinel known-replica ${masterName} ${HOST} ${replicaPort}`,
        '',
      ].join('\n'),
    )
    await Promise.all([waitForPing(primary), waitForPing(replica)])
    await until(
      'the replica did not sync',
      20_000,
      () => servers,
      async (why) => {
        const info = await text(replicaPort, 'INFO', 'replication')
        const link = infoField(info, 'master_link_status')
        return link === 'up' ? true : why(`replica master_link_status:${link}`)
      },
    )
    // Started once the replica is in sync, so the sentinel's first look finds both up.
    const sentinel = spawnServer(`sentinel :${sentinelPort}`, sentinelPort, [conf, '--sentinel'])
    servers.push(sentinel)
    await waitForPing(sentinel)
    await until(
      'the sentinel did not discover the replica',
      20_000,
      () => servers,
      async (why) => {
        const master = fields(await command(sentinelPort, ['SENTINEL', 'master', masterName]))
        if (master.get('flags') !== 'master') return why(`sentinel sees the primary as ${master.get('flags')}`)
        const reps = await command(sentinelPort, ['SENTINEL', 'replicas', masterName])
        const known = (Array.isArray(reps) ? reps : []).map(fields).find((r) => r.get('port') === String(replicaPort))
        if (!known) return why('sentinel knows no replica yet')
        if (known.get('flags') !== 'slave') return why(`sentinel sees the replica as ${known.get('flags')}`)
        if (known.get('master-link-status') !== 'ok')
          return why(`sentinel: replica link ${known.get('master-link-status')}`)
        return true
      },
    )

    const currentPrimary = async () => {
      const reply = await command(sentinelPort, ['SENTINEL', 'get-master-addr-by-name', masterName])
      if (!Array.isArray(reply)) throw new Error(`sentinel does not know ${masterName}`)
      return Number(reply[1])
    }

    return {
      kind: 'redis-sentinel',
      dir,
      masterName,
      sentinelPort,
      primaryPort,
      replicaPort,
      url(prefix, db) {
        const query = `prefix=${encodeURIComponent(prefix)}${db === undefined ? '' : `&db=${db}`}`
        return `redis-sentinel://${HOST}:${sentinelPort}/${encodeURIComponent(masterName)}?${query}`
      },
      currentPrimary,
      pids: () => servers.map((s) => s.pid),
      async killPrimary() {
        killedAt = Date.now()
        await primary.kill()
      },
      async waitForFailover(timeoutMs = 20_000) {
        const since = killedAt ?? Date.now()
        await until(
          `the sentinel did not promote the replica`,
          timeoutMs,
          () => [replica, sentinel],
          async (why) => {
            const named = await currentPrimary()
            if (named !== replicaPort) return why(`sentinel names :${named}`)
            const r = await role(replicaPort)
            return r === 'master' ? true : why(`replica answers ROLE ${r}`)
          },
        )
        return Date.now() - since
      },
      stop,
    }
  })
}

/** A flat [k1, v1, k2, v2…] reply (SENTINEL master/replicas) as a map. */
function fields(reply: unknown): Map<string, string> {
  const map = new Map<string, string>()
  if (!Array.isArray(reply)) return map
  for (let i = 0; i + 1 < reply.length; i += 2) map.set(String(reply[i]), String(reply[i + 1]))
  return map
}
