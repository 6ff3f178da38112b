import { Writable } from 'node:stream'

/**
 * A pino destination that keeps every line written to it, for tests that read what gatehouse logged
 * (`createLogger(level, sink)` or `pino(options, sink)`). `entries()` parses them.
 */
export function logLines(): { lines: string[]; sink: Writable; entries: () => Array<Record<string, unknown>> } {
  const lines: string[] = []
  const sink = new Writable({
    decodeStrings: false,
    write(chunk: string | Buffer, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line.trim()) lines.push(line)
      done()
    },
  })
  return { lines, sink, entries: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>) }
}
