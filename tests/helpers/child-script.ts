import { spawn } from 'node:child_process'

/**
 * Runs `script` as an ES module in a child node process and resolves with its exit code and stderr once it
 * exits; SIGKILLed (code null) if it has not exited by itself within `limitMs` (a leftover connection or timer).
 */
export async function runScript(script: string, limitMs = 15_000): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const killer = setTimeout(() => child.kill('SIGKILL'), limitMs)
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
  clearTimeout(killer)
  return { code, stderr }
}
