// Runs the fuzz targets: `node tests/fuzz/run.ts [--iterations N] [--seed S] [--target logout-token|cookie-decoder]`.
// `npm run fuzz` runs 100,000 iterations of each; `npm test` runs a bounded number with a fixed seed
// (tests/fuzz/fuzz.test.ts). A failure prints the seed and iteration that reproduce it and exits 1.
import { parseArgs } from 'node:util'
import { fuzzCookieDecoder } from './cookie-decoder.fuzz.ts'
import { fuzzLogoutToken } from './logout-token.fuzz.ts'
import type { FuzzStats } from './rng.ts'

const TARGETS: Record<
  string,
  (options: { iterations: number; seed: number; timeLimitMs?: number }) => Promise<FuzzStats>
> = {
  'logout-token': fuzzLogoutToken,
  'cookie-decoder': fuzzCookieDecoder,
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      iterations: { type: 'string', default: '10000' },
      seed: { type: 'string' },
      target: { type: 'string', multiple: true },
    },
  })
  const iterations = Number(values.iterations)
  const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed)
  if (!Number.isSafeInteger(iterations) || iterations < 1 || !Number.isSafeInteger(seed)) {
    console.error('usage: node tests/fuzz/run.ts [--iterations N] [--seed S] [--target logout-token|cookie-decoder]')
    return 2
  }
  const names = values.target ?? Object.keys(TARGETS)
  for (const name of names) {
    if (!TARGETS[name]) {
      console.error(`unknown target "${name}" (known: ${Object.keys(TARGETS).join(', ')})`)
      return 2
    }
  }
  let failed = false
  for (const name of names) {
    const started = Date.now()
    console.log(`fuzz ${name}: ${iterations} iterations, seed ${seed}`)
    try {
      const stats = await TARGETS[name]!({ iterations, seed })
      console.log(
        `  ok in ${((Date.now() - started) / 1000).toFixed(1)} s — outcomes ${JSON.stringify(stats.outcomes)}`,
      )
      console.log(`  strategies ${JSON.stringify(stats.strategies)}`)
    } catch (err) {
      failed = true
      console.error(`  FAILED: ${err instanceof Error ? err.message : String(err)}`)
      console.error(`  reproduce: node tests/fuzz/run.ts --target ${name} --seed ${seed} --iterations ${iterations}`)
    }
  }
  return failed ? 1 : 0
}

process.exitCode = await main()
