import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import { generateKey } from '../../src/session/seal.ts'
import { CLI } from '../helpers/cli.ts'

// A directory without gatehouse.json: the configuration comes from the environment alone.
const dir = mkdtempSync(join(tmpdir(), 'gatehouse-env-cli-'))
after(() => rmSync(dir, { recursive: true, force: true }))

/** The parent's environment without any GATEHOUSE_* variable, plus `extra`. */
function envWith(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('GATEHOUSE_')))
  return { ...env, ...extra }
}

const config = {
  GATEHOUSE_OIDC__AUTHORITY: 'http://127.0.0.1:65530',
  GATEHOUSE_OIDC__CLIENT_ID: 'spa',
  GATEHOUSE_OIDC__CLIENT_SECRET: 'not-a-real-secret',
  GATEHOUSE_KEYS: generateKey(),
  GATEHOUSE_SESSION__STORE: 'memory',
  GATEHOUSE_LISTEN__PORT: '0',
}

function run(args: string[], env: NodeJS.ProcessEnv) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

describe('configuration from the environment, no file', () => {
  test('check-config exits 0', async () => {
    const r = await run(['check-config'], envWith(config))
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /configuration is valid/)
  })

  test('a typo variable exits 1 naming it', async () => {
    const r = await run(['check-config'], envWith({ ...config, GATEHOUSE_OIDC__CLIENTID: 'spa' }))
    assert.equal(r.code, 1)
    assert.match(r.stderr, /GATEHOUSE_OIDC__CLIENTID/)
  })

  test('an explicitly named missing file stays an error', async () => {
    const r = await run(['check-config', 'missing.json'], envWith(config))
    assert.equal(r.code, 1)
    assert.match(r.stderr, /missing\.json: file not found/)
  })

  test('serve starts and answers /healthz', { timeout: 30_000 }, async () => {
    const child = spawn(process.execPath, [CLI, 'serve'], {
      cwd: dir,
      env: envWith(config),
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
    try {
      let out = ''
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`serve did not start: ${out}`)), 20_000)
        const check = (chunk: Buffer) => {
          out += chunk
          const m = /"event":"listening","url":"(http:\/\/[^"]+)"/.exec(out)
          if (m) {
            clearTimeout(timer)
            resolve(m[1]!)
          }
        }
        child.stdout.on('data', check)
        child.stderr.on('data', (chunk: Buffer) => (out += chunk))
        child.on('close', () => {
          clearTimeout(timer)
          reject(new Error(`serve exited early: ${out}`))
        })
      })
      const health = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(5_000) })
      assert.equal(health.status, 200)
    } finally {
      if (child.exitCode === null) process.kill(child.pid!, 'SIGTERM')
      const timer = setTimeout(() => child.exitCode === null && process.kill(child.pid!, 'SIGKILL'), 5_000)
      await exited
      clearTimeout(timer)
    }
  })
})
