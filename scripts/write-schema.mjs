// npm run build: writes gatehouse.schema.json (the configuration's JSON Schema, generated from the
// zod schema in src/config/validate.ts) at the package root, where the package ships it. Same
// document as `gatehouse schema`.
import { writeFileSync } from 'node:fs'

const { configJsonSchema } = await import('../dist/config/json-schema.js')
const out = new URL('../gatehouse.schema.json', import.meta.url)
writeFileSync(out, `${JSON.stringify(configJsonSchema(), null, 2)}\n`)
