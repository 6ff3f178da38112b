import type { Handler } from '../http/context.ts'
import { json } from '../http/reply.ts'

const READY_TIMEOUT_MS = 2_000

/** GET /healthz — the process is up. */
export const healthz: Handler = async () => json(200, { status: 'ok' })

/** GET /readyz — the store and the IdP's discovery document answer now. */
export const readyz: Handler = async (ctx) => {
  const { sessions, oidc } = ctx.services
  const [storeOk, idpOk] = await Promise.all([
    Promise.race([
      sessions.ping().then(
        () => true,
        () => false,
      ),
      sleep(READY_TIMEOUT_MS).then(() => false),
    ]),
    oidc.isReachable(READY_TIMEOUT_MS),
  ])
  const ready = storeOk && idpOk
  return json(ready ? 200 : 503, {
    status: ready ? 'ready' : 'not_ready',
    checks: { store: storeOk ? 'ok' : 'failing', idp: idpOk ? 'ok' : 'failing' },
  })
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref())
}
