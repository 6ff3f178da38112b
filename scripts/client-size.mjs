// npm run size:client — the browser helper's size as a SPA would ship it: minified (esbuild) and gzipped.
import { gzipSync } from 'node:zlib'
import { readFileSync } from 'node:fs'
import { transform } from 'esbuild'

const source = readFileSync(new URL('../dist/client/index.js', import.meta.url), 'utf8')
const { code } = await transform(source, { minify: true, format: 'esm', target: 'es2022' })
const gzipped = gzipSync(code, { level: 9 }).length
console.log(
  `gatehouse/client: ${source.length} bytes compiled, ${code.length} bytes minified, ${gzipped} bytes minified+gzipped`,
)
