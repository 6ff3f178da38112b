import { configJsonSchema } from '../config/json-schema.ts'

/** `gatehouse schema` — the configuration file's JSON Schema (draft 2020-12) on stdout. */
export function printSchema(): number {
  process.stdout.write(`${JSON.stringify(configJsonSchema(), null, 2)}\n`)
  return 0
}
