/**
 * Summarises a V8 .cpuprofile (what `node --cpu-prof` writes): self time per function, self time per
 * area (gatehouse's src/ by file, undici, pino, prom-client, node internals, GC, idle), and inclusive
 * time of gatehouse's own functions. The file itself opens as a flame graph in Chrome DevTools
 * (Performance → Load profile) or https://www.speedscope.app.
 */
import { readFileSync } from 'node:fs'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number }
  children?: number[]
}

interface CpuProfile {
  nodes: ProfileNode[]
  startTime: number
  endTime: number
  samples: number[]
  timeDeltas: number[]
}

export interface FunctionTime {
  name: string
  /** file:line, relative to the repo for gatehouse's own code. */
  where: string
  area: string
  /** The nearest caller in this repository (src/ or bench/) on the stacks that spent most of this time. */
  via?: string
  ms: number
  /** Share of the busy (non-idle) time. */
  percent: number
}

export interface ProfileSummary {
  file: string
  /** Wall time the profile covers, and the part not spent idle. */
  totalMs: number
  busyMs: number
  topSelf: FunctionTime[]
  byArea: Array<{ area: string; ms: number; percent: number }>
  /** Inclusive (self + callees) time of the functions under src/, busiest first. */
  gatehouseInclusive: FunctionTime[]
  /** Time with a frame of the area anywhere on the stack (packages and gatehouse's files; node's own areas left out). */
  inclusiveByArea: Array<{ area: string; ms: number; percent: number }>
  /** Every function's self time (for comparing two profiles; not written to the results). */
  allSelf?: FunctionTime[]
}

/**
 * Self time per request that `profile` spends beyond `baseline` (µs/request per function, both
 * normalised by their own request counts): where the extra CPU of gatehouse over the bare proxy goes.
 */
export function extraPerRequest(
  profile: ProfileSummary,
  requests: number,
  baseline: ProfileSummary,
  baselineRequests: number,
  top = 25,
): Array<{
  name: string
  where: string
  area: string
  via?: string | undefined
  usPerRequest: number
  baselineUsPerRequest: number
}> {
  const base = new Map((baseline.allSelf ?? []).map((f) => [`${f.name}@${f.where}`, f.ms]))
  const seen = new Set<string>()
  const out = (profile.allSelf ?? []).map((f) => {
    const key = `${f.name}@${f.where}`
    seen.add(key)
    const b = ((base.get(key) ?? 0) * 1000) / baselineRequests
    return {
      name: f.name,
      where: f.where,
      area: f.area,
      via: f.via,
      usPerRequest: round((f.ms * 1000) / requests - b, 2),
      baselineUsPerRequest: round(b, 2),
    }
  })
  for (const f of baseline.allSelf ?? []) {
    const key = `${f.name}@${f.where}`
    if (!seen.has(key))
      out.push({
        name: f.name,
        where: f.where,
        area: f.area,
        via: f.via,
        usPerRequest: round(-(f.ms * 1000) / baselineRequests, 2),
        baselineUsPerRequest: round((f.ms * 1000) / baselineRequests, 2),
      })
  }
  return out.sort((a, b) => b.usPerRequest - a.usPerRequest).slice(0, top)
}

/**
 * `window` (µs on the monotonic clock V8 stamps samples with, which is process.hrtime's on Linux)
 * keeps only the samples taken while the load ran: no start-up, login or warm-up.
 */
export function summarizeProfile(
  file: string,
  root: string,
  window?: { startUs: number; endUs: number },
  top = 25,
): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const selfUs = new Map<number, number>()
  let at = profile.startTime
  let first = Number.POSITIVE_INFINITY
  let last = 0
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = profile.timeDeltas[i] ?? 0
    at += delta
    if (window && (at < window.startUs || at > window.endUs)) continue
    first = Math.min(first, at - delta)
    last = Math.max(last, at)
    const id = profile.samples[i]!
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta)
  }
  if (selfUs.size === 0)
    throw new Error(`${file}: no samples${window ? ' inside the measured window (clock mismatch?)' : ''}`)
  const totalUs = last - first
  const idleUs = [...byId.values()]
    .filter((n) => n.callFrame.functionName === '(idle)')
    .reduce((sum, n) => sum + (selfUs.get(n.id) ?? 0), 0)
  const busyUs = Math.max(1, totalUs - idleUs)

  const describe = (n: ProfileNode): { name: string; where: string; area: string } => {
    const { functionName, url, lineNumber } = n.callFrame
    const path = url.replace(/^file:\/\//, '')
    const relative = path.startsWith(root) ? path.slice(root.length + 1) : path
    const where = url ? `${relative.replace(/^.*node_modules\//, '')}:${lineNumber + 1}` : ''
    return { name: functionName || '(anonymous)', where, area: areaOf(functionName, path, root) }
  }

  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const ownCode = (n: ProfileNode): boolean => {
    const path = n.callFrame.url.replace(/^file:\/\//, '')
    return path.startsWith(`${root}/`) && !path.includes('/node_modules/')
  }

  // Self time per function (same name and place, wherever it was called from).
  const selfByFunction = new Map<string, FunctionTime>()
  const vias = new Map<string, Map<string, number>>()
  const byArea = new Map<string, number>()
  for (const [id, us] of selfUs) {
    const node = byId.get(id)!
    const d = describe(node)
    if (d.area === 'idle') continue
    const key = `${d.name}@${d.where}`
    const entry = selfByFunction.get(key) ?? { ...d, ms: 0, percent: 0 }
    entry.ms += us / 1000
    selfByFunction.set(key, entry)
    byArea.set(d.area, (byArea.get(d.area) ?? 0) + us / 1000)
    let cur: number | undefined = id
    while (cur !== undefined && !ownCode(byId.get(cur)!)) cur = parent.get(cur)
    const caller = cur === undefined ? undefined : describe(byId.get(cur)!)
    // '' = no frame of this repository on the stack (node's own callbacks: timers, stream ends…).
    const via = cur === id || !caller ? '' : `${caller.name} (${caller.where})`
    const callers = vias.get(key) ?? new Map<string, number>()
    callers.set(via, (callers.get(via) ?? 0) + us)
    vias.set(key, callers)
  }
  for (const [key, callers] of vias) {
    const via = [...callers].sort((a, b) => b[1] - a[1])[0]![0]
    if (via) selfByFunction.get(key)!.via = via
  }

  // Inclusive time per area: a sample counts for every area on its stack (a package's own code and
  // everything it calls, e.g. pino including its write to stdout).
  const inclusiveArea = new Map<string, number>()
  for (const [id, us] of selfUs) {
    const areas = new Set<string>()
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur))
      areas.add(describe(byId.get(cur)!).area)
    areas.delete('idle')
    for (const area of areas) inclusiveArea.set(area, (inclusiveArea.get(area) ?? 0) + us / 1000)
  }

  // Inclusive time of src/ functions: a function counts once per stack even when it recurses.
  const inclusive = new Map<string, FunctionTime>()
  for (const [id, us] of selfUs) {
    const seen = new Set<string>()
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const d = describe(byId.get(cur)!)
      if (!d.area.startsWith('gatehouse ')) continue
      const key = `${d.name}@${d.where}`
      if (seen.has(key)) continue
      seen.add(key)
      const entry = inclusive.get(key) ?? { ...d, ms: 0, percent: 0 }
      entry.ms += us / 1000
      inclusive.set(key, entry)
    }
  }

  const finish = (list: Iterable<FunctionTime>, n: number): FunctionTime[] =>
    [...list]
      .sort((a, b) => b.ms - a.ms)
      .slice(0, n)
      .map((f) => ({ ...f, ms: round(f.ms), percent: round((100 * f.ms * 1000) / busyUs) }))
  return {
    file,
    totalMs: round(totalUs / 1000),
    busyMs: round(busyUs / 1000),
    topSelf: finish(selfByFunction.values(), top),
    byArea: [...byArea]
      .sort((a, b) => b[1] - a[1])
      .map(([area, ms]) => ({ area, ms: round(ms), percent: round((100 * ms * 1000) / busyUs) })),
    gatehouseInclusive: finish(inclusive.values(), top),
    inclusiveByArea: [...inclusiveArea]
      .filter(([area]) => !['node internals', 'native (C++ builtins)', 'GC', 'V8/native (program)'].includes(area))
      .sort((a, b) => b[1] - a[1])
      .map(([area, ms]) => ({ area, ms: round(ms), percent: round((100 * ms * 1000) / busyUs) })),
    allSelf: finish(selfByFunction.values(), Number.POSITIVE_INFINITY),
  }
}

/** The same per area: gatehouse's µs/request minus the baseline's, per area. */
export function extraPerRequestByArea(
  profile: ProfileSummary,
  requests: number,
  baseline: ProfileSummary,
  baselineRequests: number,
): Array<{ area: string; usPerRequest: number; baselineUsPerRequest: number }> {
  const base = new Map(baseline.byArea.map((a) => [a.area, (a.ms * 1000) / baselineRequests]))
  const areas = new Set([...profile.byArea.map((a) => a.area), ...base.keys()])
  const own = new Map(profile.byArea.map((a) => [a.area, (a.ms * 1000) / requests]))
  return [...areas]
    .map((area) => ({
      area,
      usPerRequest: round((own.get(area) ?? 0) - (base.get(area) ?? 0), 2),
      baselineUsPerRequest: round(base.get(area) ?? 0, 2),
    }))
    .sort((a, b) => b.usPerRequest - a.usPerRequest)
}

function areaOf(functionName: string, path: string, root: string): string {
  if (functionName === '(idle)') return 'idle'
  if (functionName === '(garbage collector)') return 'GC'
  if (functionName === '(program)') return 'V8/native (program)'
  if (path.startsWith(`${root}/src/`)) return `gatehouse ${path.slice(root.length + 1)}`
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path)
  if (pkg) return pkg[1]!
  if (path.startsWith('node:')) return 'node internals'
  // undici parses HTTP/1.1 with llhttp compiled to WebAssembly.
  if (path.startsWith('wasm://')) return 'undici llhttp (wasm)'
  if (path === '') return 'native (C++ builtins)'
  return path.startsWith(root) ? path.slice(root.length + 1) : path
}

function round(value: number, digits = 1): number {
  const f = 10 ** digits
  return Math.round(value * f) / f
}
