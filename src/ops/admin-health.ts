import { withTimeout, type ApiStats, type RecentFailure, type Telemetry } from './metrics.ts'

/** What the admin console's health panel shows (`GET /admin/health`). */
export interface AdminHealth {
  version: string
  uptimeSec: number
  startedAt: number
  /** `worker N` under `serve --workers` (the figures are that process's), else null. */
  instance: string | null
  idp: {
    issuer: string | null
    discovery: 'ok' | 'failing'
    jwks: 'ok' | 'failing' | 'unknown'
    lastRefreshAt: number | null
  }
  store: { kind: string; reachable: boolean; sessions: number | null }
  apis: ApiStats[]
  failures: RecentFailure[]
}

export interface HealthSources {
  version: string
  startedAt: number
  instance: string | null
  idp: (timeoutMs: number) => Promise<AdminHealth['idp']>
  store: { kind: string; ping?: () => Promise<void>; count?: () => Promise<number> }
  telemetry: Pick<Telemetry, 'apiStats' | 'recentFailures'>
  /** The remote APIs' paths, as configured. */
  apis: readonly string[]
}

/** How long each live check (IdP, store) may take before it counts as failing. */
const CHECK_TIMEOUT_MS = 2_000

/** The health report, its live checks run side by side, each bounded. */
export async function adminHealth(sources: HealthSources, now = Date.now()): Promise<AdminHealth> {
  const { store } = sources
  const [idp, reachable, sessions, apis] = await Promise.all([
    sources.idp(CHECK_TIMEOUT_MS),
    store.ping
      ? withTimeout(store.ping(), CHECK_TIMEOUT_MS).then(
          () => true,
          () => false,
        )
      : Promise.resolve(true),
    store.count
      ? withTimeout(store.count(), CHECK_TIMEOUT_MS).then(
          (n) => (Number.isNaN(n) ? null : n),
          () => null,
        )
      : Promise.resolve(null),
    sources.telemetry.apiStats(sources.apis),
  ])
  return {
    version: sources.version,
    uptimeSec: Math.max(0, Math.round((now - sources.startedAt) / 1000)),
    startedAt: sources.startedAt,
    instance: sources.instance,
    idp,
    store: { kind: store.kind, reachable, sessions },
    apis,
    failures: sources.telemetry.recentFailures(),
  }
}
