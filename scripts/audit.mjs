// Part of `npm test`: no known high or critical vulnerability in what gatehouse ships (runtime
// dependencies only). When the registry's audit endpoint cannot be reached, say so loudly and go on:
// the policy cannot be checked from here, which is not the same as passing it.
import { spawnSync } from 'node:child_process'

const run = spawnSync('npm', ['audit', '--omit=dev', '--json'], { encoding: 'utf8', timeout: 60_000 })
let report
try {
  report = JSON.parse(run.stdout)
} catch {
  report = undefined
}
const counts = report?.metadata?.vulnerabilities
if (!counts) {
  const reason = (report?.error?.summary ?? run.stderr ?? '').split('\n').find((line) => line.trim()) ?? 'no answer'
  console.warn(`audit: NOT CHECKED — the npm audit endpoint could not be used here (${reason.trim()})`)
  process.exit(0)
}
const blocking = (counts.high ?? 0) + (counts.critical ?? 0)
console.log(
  `audit: runtime dependencies — critical ${counts.critical ?? 0}, high ${counts.high ?? 0}, moderate ${counts.moderate ?? 0}, low ${counts.low ?? 0}`,
)
if (blocking > 0) {
  console.error(
    'audit: high or critical vulnerabilities in runtime dependencies; run `npm audit --omit=dev` for details',
  )
  process.exit(1)
}
