import type { Redis } from 'ioredis'
import { quietSentinelLinks, RedisStore, type RedisStoreOptions } from './redis.ts'
import {
  COMMAND_TIMEOUT_MS,
  connectCollecting,
  copyOf,
  isSelectError,
  loadRedisDriver,
  nodeUrl,
  probeNode,
  redisFailure,
} from './redis-open.ts'
import { nodeOptions, topologyOf } from './redis-cluster.ts'
import { hostPort } from '../../config/store-url.ts'
import { oneLine, startupError } from './startup-error.ts'

const SENTINEL_RETRY_MAX_MS = 1_000

/**
 * Opens a store on the primary that Redis Sentinel names, from
 * `redis[s]-sentinel://[user:pass@]h1:p1,h2:p2/masterName[?prefix=…&db=N&sentinelUser=…&sentinelPassword=…]`.
 * The URL's credentials are the primary's; sentinels get `sentinelUser`/`sentinelPassword` when given.
 * The sentinels are asked first for the master's address, so an unreachable sentinel, a server that
 * is no sentinel or an unknown master name each fail the start with one line. The driver then follows
 * failovers: a switch closes the link, and reconnecting asks the sentinels for the new primary.
 */
export async function openRedisSentinelStore(location: string, options: RedisStoreOptions = {}): Promise<RedisStore> {
  const topology = topologyOf(location, 'sentinel')
  const { Redis: Driver } = await loadRedisDriver(`${topology.tls ? 'rediss' : 'redis'}-sentinel:`)
  const perNode = nodeOptions(topology)
  const sentinelCredentials = {
    ...(topology.sentinelUsername ? { username: topology.sentinelUsername } : {}),
    ...(topology.sentinelPassword ? { password: topology.sentinelPassword } : {}),
  }
  const { username: _user, password: _password, ...withoutCredentials } = perNode
  const perSentinel = { ...withoutCredentials, ...sentinelCredentials }
  const fail = (cause: string, err?: unknown) =>
    startupError(topology.shown, cause, err === undefined ? undefined : copyOf(err))

  const causes: string[] = []
  const unaware: string[] = []
  let primary: { host: string; port: number } | undefined
  for (const sentinel of topology.nodes) {
    const probe = await probeNode(Driver, sentinel, perSentinel)
    if (!('client' in probe)) {
      causes.push(`${hostPort(sentinel)}: ${sentinelCause(probe.cause)}`)
      continue
    }
    try {
      const reply = await probe.client.call('SENTINEL', 'get-master-addr-by-name', topology.masterName)
      if (Array.isArray(reply) && reply.length === 2) {
        primary = { host: String(reply[0]), port: Number(reply[1]) }
        break
      }
      unaware.push(hostPort(sentinel))
    } catch (err) {
      const message = oneLine(err instanceof Error ? err.message : String(err))
      causes.push(
        /unknown command/i.test(message)
          ? `${hostPort(sentinel)} is not a sentinel (it does not know the SENTINEL command)`
          : `${hostPort(sentinel)}: ${message}`,
      )
    } finally {
      probe.client.disconnect()
    }
  }
  if (!primary) {
    if (unaware.length > 0)
      throw fail(
        `no sentinel knows a master named "${topology.masterName}" (asked ${unaware.join(', ')}: check the name in the sentinels' "sentinel monitor" line)`,
      )
    throw fail(
      topology.nodes.length === 1
        ? causes[0]!.replace(`${hostPort(topology.nodes[0]!)}: `, '')
        : `no sentinel can be asked (${causes.join('; ')})`,
    )
  }

  const client: Redis = new Driver({
    ...perNode,
    sentinels: topology.nodes,
    name: topology.masterName,
    role: 'master',
    db: topology.db,
    ...(topology.sentinelUsername ? { sentinelUsername: topology.sentinelUsername } : {}),
    ...(topology.sentinelPassword ? { sentinelPassword: topology.sentinelPassword } : {}),
    ...(topology.tls ? { enableTLSForSentinelMode: true, sentinelTLS: {} } : {}),
    sentinelCommandTimeout: COMMAND_TIMEOUT_MS,
    sentinelRetryStrategy: (times: number) => Math.min(100 * times, SENTINEL_RETRY_MAX_MS),
    // Listens to the sentinels' +switch-master: a failover closes the old link at once.
    failoverDetector: true,
    lazyConnect: true,
  })
  quietSentinelLinks(client)
  const { ok, errors } = await connectCollecting(client)
  if (!ok) {
    const failure = await redisFailure(nodeUrl(primary, topology.tls), topology.db, errors)
    throw fail(`primary ${hostPort(primary)}: ${failure.cause}`, failure.err)
  }
  const failedSelect = errors.find(isSelectError)
  if (failedSelect) {
    client.disconnect()
    throw fail(
      `database ${topology.db} cannot be selected on primary ${hostPort(primary)} (${oneLine((failedSelect as Error).message)})`,
      failedSelect,
    )
  }
  try {
    return new RedisStore(client, {
      ...options,
      ...(options.keyPrefix === undefined && topology.prefix !== undefined ? { keyPrefix: topology.prefix } : {}),
    })
  } catch (err) {
    client.disconnect()
    throw err
  }
}

/** A probe's cause, said of a sentinel: its credentials are the URL's ?sentinelUser= and ?sentinelPassword=. */
function sentinelCause(cause: string): string {
  if (/^authentication required/.test(cause))
    return 'the sentinel needs a password: give it as ?sentinelPassword= (and ?sentinelUser=), percent-encoded'
  if (/^authentication failed/.test(cause))
    return 'the sentinel refused the credentials (check ?sentinelUser= and ?sentinelPassword=)'
  return cause
}
