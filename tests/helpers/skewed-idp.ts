import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { IdpClient } from '../../src/demo/idp.ts'

/**
 * The embedded IdP in a child process whose clock runs `offsetMs` ahead (or behind, when negative)
 * of this process's: every `Date.now()` and `new Date()` in the child is shifted before the IdP's
 * code loads. gatehouse, in the test process, keeps the real time — clock skew between gatehouse
 * and its IdP without faking gatehouse's own clock.
 */
export interface SkewedIdp {
  issuer: string
  /** The IdP's signing key (private JWK), for tests that sign their own logout tokens. */
  signingKey: Record<string, unknown> & { kid: string }
  close(): Promise<void>
}

const self = fileURLToPath(import.meta.url)

export async function startSkewedIdp(options: { offsetMs: number; clients: IdpClient[] }): Promise<SkewedIdp> {
  const child: ChildProcess = spawn(process.execPath, [self], {
    env: {
      ...process.env,
      SKEWED_IDP_OFFSET_MS: String(options.offsetMs),
      SKEWED_IDP_CLIENTS: JSON.stringify(options.clients),
    },
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const first = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! })
    lines.once('line', resolve)
    child.once('exit', (code) => reject(new Error(`the skewed IdP exited (${code}) before it was ready`)))
  })
  const { issuer, signingKey } = JSON.parse(first) as { issuer: string; signingKey: SkewedIdp['signingKey'] }
  return {
    issuer,
    signingKey,
    async close() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      await exited
    },
  }
}

/** In the child: shift the clock, then start the IdP and report where it listens. */
async function runChild(): Promise<void> {
  const offset = Number(process.env.SKEWED_IDP_OFFSET_MS)
  const RealDate = Date
  class SkewedDate extends RealDate {
    constructor(...args: unknown[]) {
      if (args.length === 0) super(RealDate.now() + offset)
      else super(...(args as [string | number]))
    }

    static override now(): number {
      return RealDate.now() + offset
    }
  }
  globalThis.Date = SkewedDate as DateConstructor
  const { startIdp } = await import('../../src/demo/idp.ts')
  const idp = await startIdp({ clients: JSON.parse(process.env.SKEWED_IDP_CLIENTS!) as IdpClient[] })
  process.stdout.write(`${JSON.stringify({ issuer: idp.issuer, signingKey: idp.signingKey })}\n`)
  process.once('SIGTERM', () => void idp.close().then(() => process.exit(0)))
  // The parent went away without closing us (a crashed test run): do not outlive it.
  process.once('disconnect', () => process.exit(0))
}

if (process.argv[1] === self) await runChild()
