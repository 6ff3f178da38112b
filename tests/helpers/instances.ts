import { randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Redis } from 'ioredis'
import pg from 'pg'
import { pino } from 'pino'
import { createGatehouse, type Gatehouse, type GatehouseOptions, type RuntimeOptions } from '../../src/index.ts'
import { CLIENT_ID, CLIENT_SECRET, type Flow } from './flow.ts'
import { startRedisCluster, startRedisSentinel, type RedisCluster, type RedisSentinel } from './redis-topology.ts'

/** The real servers the shared-store tests run against (CI starts them). Unreachable → the test file fails; it never skips. */
export const REDIS_URL = process.env.GATEHOUSE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
export const POSTGRES_URL = process.env.GATEHOUSE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

/** 'redis-cluster' and 'redis-sentinel' start private servers of their own (see redis-topology.ts). */
export type SharedStoreKind = 'redis' | 'postgres' | 'redis-cluster' | 'redis-sentinel'

/**
 * An isolated place in a real Redis or PostgreSQL: a key prefix or a schema of its own, removed by cleanup().
 * For 'redis-cluster' and 'redis-sentinel', a private topology (its own servers), stopped by cleanup().
 */
export interface StoreFixture {
  kind: SharedStoreKind
  /**
   * `session.store` for gatehouse, optionally through another host:port (e.g. a TCP proxy in front of the server).
   * Cluster and Sentinel URLs take no `via` (the servers hand out their own addresses to clients): it throws.
   */
  url(via?: { host: string; port: number }): string
  /** Where the real server listens (Cluster: the first seed; Sentinel: the sentinel). */
  target: { host: string; port: number }
  /** Deletes every key with the prefix (SCAN + UNLINK) or drops the schema (CASCADE); stops a private topology. */
  cleanup(): Promise<void>
  /** 'redis-cluster': the private cluster, to kill nodes and wait for failover. */
  cluster?: RedisCluster
  /** 'redis-sentinel': the private primary, replica and sentinel, to kill the primary and wait for failover. */
  sentinel?: RedisSentinel
}

const defaultPort = (kind: SharedStoreKind) => (kind === 'postgres' ? 5432 : 6379)

function noVia(kind: SharedStoreKind, via: { host: string; port: number } | undefined): void {
  if (via) {
    throw new Error(
      `storeFixture('${kind}').url(via): not supported (the servers hand their own addresses to clients, past any proxy)`,
    )
  }
}

async function topologyFixture(kind: 'redis-cluster' | 'redis-sentinel', prefix: string): Promise<StoreFixture> {
  if (kind === 'redis-cluster') {
    const cluster = await startRedisCluster()
    const [seed = ''] = cluster.seeds().split(',')
    return {
      kind,
      cluster,
      target: { host: '127.0.0.1', port: Number(seed.split(':')[1]) },
      url(via) {
        noVia(kind, via)
        return cluster.url(prefix)
      },
      cleanup: () => cluster.stop(),
    }
  }
  const sentinel = await startRedisSentinel()
  return {
    kind,
    sentinel,
    target: { host: '127.0.0.1', port: sentinel.sentinelPort },
    url(via) {
      noVia(kind, via)
      return sentinel.url(prefix)
    },
    cleanup: () => sentinel.stop(),
  }
}

function withHost(base: string, via: { host: string; port: number } | undefined): URL {
  const url = new URL(base)
  if (via) {
    url.hostname = via.host
    url.port = String(via.port)
  }
  return url
}

/** Opens an admin connection first, so an absent server fails the caller loudly (with how to point at another). */
export async function storeFixture(kind: SharedStoreKind, label = 'gatehouse-test'): Promise<StoreFixture> {
  const run = randomBytes(6).toString('hex')
  if (kind === 'redis-cluster' || kind === 'redis-sentinel') return topologyFixture(kind, `${label}:${run}:`)
  if (kind === 'redis') {
    const admin = new Redis(REDIS_URL, {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      connectTimeout: 3000,
    })
    let connectError: unknown
    admin.on('error', (err) => {
      connectError = err
    })
    try {
      await admin.connect()
      await admin.ping()
    } catch (err) {
      admin.disconnect()
      throw new Error(
        `these tests need a Redis server at ${REDIS_URL} (set GATEHOUSE_TEST_REDIS_URL to use another): ${String(connectError ?? err)}`,
      )
    }
    const prefix = `${label}:${run}:`
    const base = new URL(REDIS_URL)
    return {
      kind,
      target: { host: base.hostname, port: Number(base.port || defaultPort(kind)) },
      url(via) {
        const url = withHost(REDIS_URL, via)
        url.searchParams.set('prefix', prefix)
        return url.toString()
      },
      async cleanup() {
        try {
          const keys: string[] = []
          let cursor = '0'
          do {
            const [next, batch] = await admin.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
            cursor = next
            keys.push(...batch)
          } while (cursor !== '0')
          for (let i = 0; i < keys.length; i += 500) await admin.unlink(...keys.slice(i, i + 500))
        } finally {
          await admin.quit().catch(() => admin.disconnect())
        }
      },
    }
  }
  const admin = new pg.Pool({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 3000, max: 2 })
  admin.on('error', () => {})
  try {
    await admin.query('SELECT 1')
  } catch (err) {
    await admin.end().catch(() => {})
    throw new Error(
      `these tests need a PostgreSQL server at ${POSTGRES_URL} (set GATEHOUSE_TEST_POSTGRES_URL to use another): ${String(err)}`,
    )
  }
  const schema = `${label.replace(/[^A-Za-z0-9_]/g, '_')}_${run}`
  const base = new URL(POSTGRES_URL)
  return {
    kind,
    target: { host: base.hostname, port: Number(base.port || defaultPort(kind)) },
    url(via) {
      const url = withHost(POSTGRES_URL, via)
      url.searchParams.set('schema', schema)
      return url.toString()
    },
    async cleanup() {
      try {
        await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
      } finally {
        await admin.end()
      }
    },
  }
}

/** One more gatehouse on its own loopback port, beside a Flow's (instance A's) gatehouse. */
export interface Instance {
  gatehouse: Gatehouse
  server: Server
  /** Where this instance listens (its own port); the browser-facing origin stays the flow's publicOrigin. */
  origin: string
  close(): Promise<void>
}

/**
 * The options of a second instance of `flow`'s gatehouse: same IdP client, keys and publicOrigin
 * (so cookies, redirect URIs and the logout-token audience agree), plus `overrides` (store, remote APIs…).
 */
export function instanceOptions(flow: Flow, overrides: Partial<GatehouseOptions> = {}): GatehouseOptions {
  return {
    publicOrigin: flow.origin,
    oidc: {
      authority: flow.idp.issuer,
      clientId: CLIENT_ID,
      clientSecret: CLIENT_SECRET,
      scopes: ['openid', 'profile', 'email', 'offline_access'],
    },
    keys: flow.keys,
    log: { level: 'silent' },
    ...overrides,
  } as GatehouseOptions
}

/**
 * createGatehouse + a node:http server on 127.0.0.1:0 serving it (unknown paths → 404). Requests get
 * publicOrigin's host as their `Host`, as a load balancer in front of several instances passes the
 * browser's (gatehouse answers no other host: 421).
 */
export async function startInstance(options: GatehouseOptions, runtime: RuntimeOptions = {}): Promise<Instance> {
  const gatehouse = await createGatehouse(options, { logger: pino({ level: 'silent' }), ...runtime })
  const publicHost = options.publicOrigin === undefined ? undefined : new URL(options.publicOrigin).host
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (publicHost !== undefined) req.headers.host = publicHost
    gatehouse.handle(req, res)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  let closed = false
  return {
    gatehouse,
    server,
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      if (closed) return
      closed = true
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await gatehouse.close()
    },
  }
}

/** gatehouse's clock: real time plus an offset a test moves forward (the IdP keeps real time). */
export function testClock(): { now: () => number; advance(ms: number): void } {
  let offset = 0
  return {
    now: () => Date.now() + offset,
    advance(ms) {
      offset += ms
    },
  }
}
