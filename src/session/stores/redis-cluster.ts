import type { Cluster, Redis, RedisOptions } from 'ioredis'
import { GatehouseError } from '../../errors.ts'
import { hostPort, parseRedisTopologyUrl, type RedisTopologyUrl } from '../../config/store-url.ts'
import { RedisStore, type RedisDeployment, type RedisStoreOptions } from './redis.ts'
import { CONNECT_TIMEOUT_MS, copyOf, loadRedisDriver, probeNode, serverOptions } from './redis-open.ts'
import { decodeCredential, oneLine, startupError } from './startup-error.ts'

/** The commands the store sends (scripts go as EVALSHA, then EVAL when the server lost them). */
const NEEDED_COMMANDS = [
  'eval',
  'evalsha',
  'hgetall',
  'zadd',
  'zrem',
  'zcount',
  'zrangebyscore',
  'sadd',
  'srem',
  'smembers',
  'scan',
  'ping',
  'publish',
  'subscribe',
] as const
/** Sharded pub/sub (Redis 7): a notice goes to the nodes of one shard, not over the whole cluster bus. */
const SHARDED_COMMANDS = ['spublish', 'ssubscribe'] as const

/** How often the notice link checks that its node still serves the channel's slot (failover, resharding). */
const OWNER_CHECK_MS = 1_000
const SLOTS_REFRESH_MS = 2_000
/** How long opening waits for the driver to see every slot's primary. */
const CLUSTER_READY_MS = 10_000
const RELINK_MAX_DELAY_MS = 2_000
/** The wait before a notice link's attempt number `attempt` (from 0): 100 ms, doubling, at most 2 s. */
const relinkDelay = (attempt: number) => Math.min(100 * 2 ** attempt, RELINK_MAX_DELAY_MS)
/** Retries of a subscription's first link (100 ms doubling to 2 s: about 7 s in all). */
const FIRST_LINK_ATTEMPTS = 6

/** Reads `redis[s]-cluster://` or `redis[s]-sentinel://` into what the openers need, or fails naming session.store. */
export function topologyOf(location: string, kind: 'cluster' | 'sentinel'): RedisTopologyUrl {
  const parsed = parseRedisTopologyUrl(location)
  if (typeof parsed === 'string') throw new GatehouseError('config_invalid', `session.store ${parsed}`)
  if (parsed.kind !== kind) throw new TypeError(`not a redis-${kind}:// URL`)
  return parsed
}

/** The options every connection to a node of the deployment gets (credentials decoded). */
export function nodeOptions(topology: RedisTopologyUrl): RedisOptions {
  return serverOptions({
    username: topology.username ? decodeCredential(topology.username) : undefined,
    password: topology.password ? decodeCredential(topology.password) : undefined,
    tls: topology.tls,
  })
}

/**
 * Opens a store on a Redis Cluster from `redis[s]-cluster://h1:p1,h2:p2[?prefix=…]`'s seed nodes.
 * A seed is asked first whether it is a cluster node, whether the cluster serves every slot and has
 * the commands gatehouse sends: each refusal is one line naming the cause. Keys are laid out for
 * Cluster already (redis.ts); what differs is in clusterDeployment.
 */
export async function openRedisClusterStore(location: string, options: RedisStoreOptions = {}): Promise<RedisStore> {
  const topology = topologyOf(location, 'cluster')
  const { Redis: Driver, Cluster: ClusterDriver } = await loadRedisDriver(
    `${topology.tls ? 'rediss' : 'redis'}-cluster:`,
  )
  const perNode = nodeOptions(topology)
  const fail = (cause: string, err?: unknown) =>
    startupError(topology.shown, cause, err === undefined ? undefined : copyOf(err))

  const causes: string[] = []
  let seed: { client: Redis; node: string } | undefined
  for (const node of topology.nodes) {
    const probe = await probeNode(Driver, node, perNode)
    if ('client' in probe) {
      seed = { client: probe.client, node: hostPort(node) }
      break
    }
    causes.push(
      `${hostPort(node)}: ${probe.cause.replace('(redis://:PASSWORD@host:port)', '(redis-cluster://:PASSWORD@host:port,…)')}`,
    )
  }
  if (!seed)
    throw fail(
      topology.nodes.length === 1
        ? causes[0]!.replace(`${hostPort(topology.nodes[0]!)}: `, '')
        : `no seed node can be used (${causes.join('; ')})`,
    )
  let sharded: boolean
  try {
    const info = await seed.client.call('CLUSTER', 'INFO').then(String, (err: unknown) => {
      const message = oneLine(err instanceof Error ? err.message : String(err))
      throw fail(
        /cluster support disabled/i.test(message)
          ? `${seed.node} is not a cluster node (cluster support disabled): use redis://… for one server or redis-sentinel://… for Sentinel`
          : `${seed.node} refused CLUSTER INFO (${message})`,
        err,
      )
    })
    const state = /cluster_state:(\w+)/.exec(info)?.[1]
    if (state !== 'ok')
      throw fail(`the cluster's state is "${state ?? 'unknown'}" at ${seed.node}: not every hash slot is served`)
    const known = (await seed.client
      .call('COMMAND', 'INFO', ...NEEDED_COMMANDS, ...SHARDED_COMMANDS)
      .catch((err: unknown) => {
        throw fail(
          `${seed.node} refused COMMAND INFO (${oneLine(err instanceof Error ? err.message : String(err))})`,
          err,
        )
      })) as unknown[]
    const missing = NEEDED_COMMANDS.filter((_, i) => known[i] == null)
    if (missing.length > 0)
      throw fail(
        `the cluster lacks the command${missing.length > 1 ? 's' : ''} ${missing.map((c) => c.toUpperCase()).join(', ')} (renamed or disabled?): gatehouse needs ${missing.length > 1 ? 'them' : 'it'}`,
      )
    sharded = SHARDED_COMMANDS.every((_, i) => known[NEEDED_COMMANDS.length + i] != null)
  } finally {
    seed.client.disconnect()
  }

  const cluster = new ClusterDriver(topology.nodes, {
    lazyConnect: true,
    // Fail fast while a slot has no primary (requests answer 503 within seconds), follow the cluster after.
    enableOfflineQueue: false,
    scaleReads: 'master',
    slotsRefreshTimeout: CONNECT_TIMEOUT_MS,
    slotsRefreshInterval: SLOTS_REFRESH_MS,
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 200,
    retryDelayOnTryAgain: 100,
    maxRedirections: 8,
    clusterRetryStrategy: (times: number) => Math.min(100 * times, RELINK_MAX_DELAY_MS),
    redisOptions: perNode,
  })
  const errors: unknown[] = []
  const collect = (err: unknown) => errors.push(err)
  cluster.on('error', collect)
  cluster.on('node error', () => {})
  // The driver retries a cluster it cannot make ready (nodes announcing no address, say) forever: bounded here.
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not ready within ${CLUSTER_READY_MS / 1000} s`)), CLUSTER_READY_MS)
  })
  try {
    await Promise.race([cluster.connect(), timeout])
  } catch (err) {
    cluster.disconnect()
    const last = [...errors, err].map((e) => oneLine(e instanceof Error ? e.message : String(e)))
    throw fail(`cannot connect to the cluster (${last.at(-1) ?? 'unknown error'})`, err)
  } finally {
    clearTimeout(timer)
  }
  cluster.off('error', collect)
  cluster.on('error', () => {})
  try {
    return new RedisStore(cluster as unknown as Redis, {
      ...options,
      ...(options.keyPrefix === undefined && topology.prefix !== undefined ? { keyPrefix: topology.prefix } : {}),
      deployment: () => clusterDeployment(cluster, Driver, perNode, sharded),
    })
  } catch (err) {
    cluster.disconnect()
    throw err
  }
}

/**
 * The store on a Redis Cluster. The driver routes every keyed command by slot; SCAN runs on every
 * primary; the store is reachable only while every slot has a primary the driver holds a link to
 * (a dead primary's slots have none until its replica is promoted); notices travel by sharded
 * pub/sub on the channel's slot where the cluster has it, else by classic pub/sub (broadcast).
 */
export function clusterDeployment(
  cluster: Cluster,
  Driver: typeof Redis,
  perNode: RedisOptions,
  sharded: boolean,
): RedisDeployment {
  return {
    scanNodes: () => slotPrimaries(cluster),
    async ping() {
      const primaries = slotPrimaries(cluster)
      await Promise.all(primaries.map((node) => node.ping()))
      const info = String(await primaries[0]!.call('CLUSTER', 'INFO'))
      if (!/cluster_state:ok/.test(info)) throw new Error('the cluster is not serving every hash slot')
    },
    // One hash tag: the channel lives on one slot, so sharded pub/sub keeps it on one shard.
    channel: (prefix) => `${prefix}{session-ended}`,
    publish: (channel, message) => (sharded ? cluster.spublish(channel, message) : cluster.publish(channel, message)),
    subscribe: (channel, onMessage, onLink) =>
      subscribeOnCluster({ cluster, Driver, perNode, sharded }, channel, onMessage, onLink),
  }
}

/**
 * The primary of every slot, as the driver's links: each once. Throws while a slot has no primary the
 * driver holds a link to (a dead primary's slots have none until its replica is promoted and the
 * driver has refreshed its slot map), so a SCAN never silently skips a shard.
 */
function slotPrimaries(cluster: Cluster): Redis[] {
  const pool = new Map(cluster.nodes('master').map((node) => [nodeKey(node), node]))
  const owners = new Map<string, Redis>()
  for (const slotNodes of cluster.slots) {
    const key = slotNodes?.[0]
    if (key !== undefined && owners.has(key)) continue
    const node = key === undefined ? undefined : pool.get(key)
    if (!node) throw new Error('a hash slot has no reachable primary')
    owners.set(key!, node)
  }
  if (owners.size === 0) throw new Error('no primary of the cluster is reachable')
  return [...owners.values()]
}

/**
 * A subscription on a connection of its own to the node that serves the channel: the primary of its
 * slot (sharded), or any primary (classic pub/sub reaches every node). When that link breaks or the
 * slot moves (failover, resharding), onLink(false), then a new link to the node the cluster now
 * names, retried with back-off; onLink(true) once its SUBSCRIBE is answered.
 */
async function subscribeOnCluster(
  via: { cluster: Cluster; Driver: typeof Redis; perNode: RedisOptions; sharded: boolean },
  channel: string,
  onMessage: (message: string) => void,
  onLink?: (listening: boolean) => void,
): Promise<() => void> {
  const { cluster, Driver, perNode, sharded } = via
  const slot = Number(await cluster.call('CLUSTER', 'KEYSLOT', channel))
  let current: { link: Redis; node: string } | undefined
  let stopped = false
  let listening = false
  let attempts = 0
  let retry: NodeJS.Timeout | undefined

  const target = (): string | undefined => {
    if (sharded) return cluster.slots[slot]?.[0]
    const node = cluster.nodes('master')[0]
    return node && nodeKey(node)
  }
  const link = async (): Promise<void> => {
    const node = target()
    if (node === undefined) throw new Error('no node serves the notice channel')
    const colon = node.lastIndexOf(':')
    const connection = new Driver({
      ...perNode,
      host: node.slice(0, colon),
      port: Number(node.slice(colon + 1)),
      lazyConnect: true,
      enableOfflineQueue: true,
      maxRetriesPerRequest: null,
      retryStrategy: () => null,
      autoResubscribe: false,
    })
    connection.on('error', () => {})
    connection.on(sharded ? 'smessage' : 'message', (from: string, message: string) => {
      if (from === channel) onMessage(message)
    })
    connection.on('close', () => {
      if (current?.link !== connection) return
      current = undefined
      lost()
    })
    try {
      await connection.connect()
      await (sharded ? connection.ssubscribe(channel) : connection.subscribe(channel))
    } catch (err) {
      connection.disconnect()
      throw err
    }
    if (stopped) connection.disconnect()
    else current = { link: connection, node }
  }
  const lost = () => {
    if (listening) {
      listening = false
      onLink?.(false)
    }
    relink()
  }
  const relink = () => {
    if (stopped || retry) return
    const delay = relinkDelay(attempts++)
    retry = setTimeout(() => {
      retry = undefined
      cluster.refreshSlotsCache()
      link().then(
        () => {
          attempts = 0
          if (stopped) return
          listening = true
          onLink?.(true)
        },
        () => relink(),
      )
    }, delay)
    retry.unref()
  }

  // A first link may meet a failover in progress: retried for a while before the subscription fails.
  for (let attempt = 0; ; attempt++) {
    try {
      await link()
      break
    } catch (err) {
      if (attempt >= FIRST_LINK_ATTEMPTS) throw err
      await new Promise((resolve) => setTimeout(resolve, relinkDelay(attempt)))
      cluster.refreshSlotsCache()
    }
  }
  listening = true
  // A failover or a resharding moves the slot: the node left behind delivers nothing more.
  const watch = setInterval(() => {
    if (!sharded || !current) return
    const owner = cluster.slots[slot]?.[0]
    if (owner !== undefined && owner !== current.node) current.link.disconnect()
  }, OWNER_CHECK_MS)
  watch.unref()
  return () => {
    stopped = true
    clearInterval(watch)
    clearTimeout(retry)
    current?.link.disconnect()
    current = undefined
  }
}

/** A node as the driver keys it in `cluster.slots`: "host:port", an IPv6 host unbracketed. */
function nodeKey(node: Redis): string {
  return `${node.options.host}:${node.options.port}`
}
