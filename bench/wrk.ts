/**
 * wrk as the bench's closed-loop load generator: runs `wrk --latency` with the request headers set by
 * a temporary Lua script, and reads its text output (parseWrk, unit-tested against real output in
 * tests/unit/bench-wrk.test.ts).
 */
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** What wrk reports for a run; latencies in ms. */
export interface WrkResult {
  /** Seconds, as wrk measured them. */
  duration: number
  /** Every answer, 2xx or not. */
  requests: number
  /** 2xx (and 3xx) answers per second: wrk's Requests/sec scaled by the share of such answers. */
  rps: number
  /** wrk's percentiles cover every answer, not only the 2xx ones; NaN when no answer was 2xx. */
  p50: number
  p99: number
  max: number
  /** Socket errors: connect + read + write + timeout. */
  errors: number
  non2xx: number
}

/** A Lua string literal: printable ASCII as is, every other byte as a three-digit decimal escape. */
export function luaString(text: string): string {
  let out = '"'
  for (const byte of Buffer.from(text, 'utf8'))
    out +=
      byte >= 0x20 && byte < 0x7f && byte !== 0x22 && byte !== 0x5c
        ? String.fromCharCode(byte)
        : `\\${String(byte).padStart(3, '0')}`
  return `${out}"`
}

const UNIT_MS = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const

/** A wrk time (850.00us, 1.23ms, 2.00s, 1.00m, 1.00h) in ms. */
export function wrkMs(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m|h)$/.exec(text)
  if (!m) throw new Error(`wrk: unreadable time "${text}"`)
  return Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS]
}

/** Reads `wrk --latency` output. wrk counts 3xx answers as fine; the bench's targets never send one. */
export function parseWrk(output: string): WrkResult {
  const find = (re: RegExp, what: string): string => {
    const m = re.exec(output)
    if (!m) throw new Error(`wrk: no ${what} in its output:\n${output}`)
    return m[1]!
  }
  const requests = Number(find(/(\d+) requests in /, 'request count'))
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output)
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0)
  // Percentiles of nothing but non-2xx answers would pass for the target's latency: none then.
  const answered = requests > non2xx
  return {
    duration: wrkMs(find(/ requests in (\S+?),/, 'duration')) / 1000,
    requests,
    // Requests/sec counts every answer; the bench counts 2xx answers only.
    rps: requests ? (Number(find(/Requests\/sec:\s+([\d.]+)/, 'Requests/sec')) * (requests - non2xx)) / requests : 0,
    p50: answered ? wrkMs(find(/^\s*50%\s+(\S+)/m, '50% latency')) : NaN,
    p99: answered ? wrkMs(find(/^\s*99%\s+(\S+)/m, '99% latency')) : NaN,
    max: answered ? wrkMs(find(/^\s*Latency\s+\S+\s+\S+\s+(\S+)/m, 'Latency Max')) : NaN,
    errors: socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0,
    non2xx,
  }
}

/**
 * A closed-loop max load: `wrk -t1 -c<connections> -d<seconds> --latency`, the headers going in through
 * a Lua script. wrk runs in whatever CPU set this process has (the bench pins itself before).
 */
export async function runWrk(options: {
  url: string
  headers: Record<string, string>
  seconds: number
  connections: number
}): Promise<WrkResult> {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-wrk-'))
  try {
    const script = join(dir, 'headers.lua')
    writeFileSync(
      script,
      Object.entries(options.headers)
        .map(([name, value]) => `wrk.headers[${luaString(name)}] = ${luaString(value)}\n`)
        .join(''),
    )
    // wrk takes whole seconds only.
    const seconds = Math.max(1, Math.round(options.seconds))
    const args = ['-t1', `-c${options.connections}`, `-d${seconds}s`, '--latency', '-s', script, options.url]
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject)
      child.once('close', resolve)
    })
    if (code !== 0) throw new Error(`wrk exited with ${code}: ${(stderr || stdout).trim()}`)
    return parseWrk(stdout)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
