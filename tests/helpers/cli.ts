import { spawn, type ChildProcess } from 'node:child_process'

export const CLI = new URL('../../dist/cli/main.js', import.meta.url).pathname

/** Runs the built CLI to completion. */
export function runCli(
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

/** Starts a long-running CLI command and waits until stdout matches `ready`. */
export async function startCli(
  args: string[],
  ready: RegExp,
  options: { cwd?: string } = {},
): Promise<{ child: ChildProcess; match: RegExpMatchArray; output: () => string; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
  const match = await new Promise<RegExpMatchArray>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`CLI did not become ready: ${out}`)), 30_000)
    const check = (chunk: Buffer) => {
      out += chunk
      const m = out.match(ready)
      if (m) {
        clearTimeout(timer)
        resolve(m)
      }
    }
    child.stdout!.on('data', check)
    child.stderr!.on('data', (chunk: Buffer) => (out += chunk))
    child.on('close', () => reject(new Error(`CLI exited early: ${out}`)))
  })
  return { child, match, output: () => out, exited }
}
