import { z } from 'zod'
import { configSchema } from './validate.ts'

/** Where the published schema lives (its `$id`); `gatehouse schema` prints the same document. */
export const SCHEMA_ID = 'https://gatehouse.dev/schemas/gatehouse.schema.json'

/**
 * The configuration file's JSON Schema (draft 2020-12), generated from the zod schema that
 * validates it, so the two cannot drift. It describes what users write (`io: 'input'`): durations
 * and sizes as strings, defaults as defaults. Checks zod runs in code (key format, URL rules,
 * cross-key rules) have no JSON Schema form and are left to `gatehouse check-config`; the JSON Schema
 * is for editors (completion, typos, types), not a replacement for it.
 */
export function configJsonSchema(): Record<string, unknown> {
  const generated = z.toJSONSchema(configSchema, {
    target: 'draft-2020-12',
    io: 'input',
    // Transforms and refinements validate beyond what JSON Schema can say: keep their input type.
    unrepresentable: 'any',
  }) as Record<string, unknown>
  const { $schema, ...rest } = generated
  return {
    $schema: $schema ?? 'https://json-schema.org/draft/2020-12/schema',
    $id: SCHEMA_ID,
    title: 'gatehouse configuration',
    description:
      'The configuration file of gatehouse (gatehouse.json). `${NAME}` inside a string is replaced by the environment variable NAME before validation. `gatehouse check-config` checks more than this schema can (URL and key formats, rules that span several keys).',
    ...rest,
  }
}
