import { readFileSync } from 'node:fs'

/** gatehouse's version, from its package.json; "unknown" when that cannot be read (a bundled copy). */
export function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string })
      .version
  } catch {
    return 'unknown'
  }
}
