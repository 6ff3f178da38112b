import type { DestinationStream } from 'pino'

/**
 * `log.format: "pretty"`: pino's JSON lines turned into one line per event for a person,
 * `HH:MM:SS.mmm LEVEL message key=value …`. pino has already redacted the line when it gets here.
 * Formatting never throws: whatever is not a JSON object is written as it came.
 */
export function prettyDestination(out: DestinationStream, options: { colors: boolean }): DestinationStream {
  return {
    write(chunk: string) {
      let text = ''
      for (const line of String(chunk).split('\n')) if (line) text += `${formatLine(line, options.colors)}\n`
      if (text) out.write(text)
    },
  }
}

const LEVEL_NAMES: Readonly<Record<number, string>> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
}
const LEVEL_COLORS: Readonly<Record<number, string>> = { 10: '90', 20: '36', 30: '32', 40: '33', 50: '31', 60: '1;31' }
/** The line's own header fields, and the logger's base (always the same, so noise for a reader). */
const SHOWN_ELSEWHERE: ReadonlySet<string> = new Set(['level', 'time', 'msg', 'name', 'pid', 'hostname'])

/** One pino JSON line → one readable line (without its newline). */
export function formatLine(line: string, colors: boolean): string {
  try {
    const record: unknown = JSON.parse(line)
    if (record === null || typeof record !== 'object' || Array.isArray(record)) return escapeControls(line)
    return formatRecord(record as Record<string, unknown>, colors)
  } catch {
    return escapeControls(line)
  }
}

function formatRecord(record: Record<string, unknown>, colors: boolean): string {
  const paint = (code: string, text: string) => (colors ? `\x1b[${code}m${text}\x1b[0m` : text)
  const level = record.level
  const levelName =
    typeof level === 'number'
      ? (LEVEL_NAMES[level] ?? `LEVEL${level}`)
      : typeof level === 'string'
        ? escapeControls(level.toUpperCase())
        : 'LOG'
  const levelColor = typeof level === 'number' ? LEVEL_COLORS[level] : undefined
  const parts = [
    paint('2', clock(record.time)),
    levelColor ? paint(levelColor, levelName.padEnd(5)) : levelName.padEnd(5),
  ]
  // The message is bare unless it could pass for fields ("ok user=admin"): then it is quoted, as
  // keys that are not plain words are, so every key=value on the line is one the record holds.
  if (record.msg !== undefined)
    parts.push(
      typeof record.msg === 'string' && !record.msg.includes('=')
        ? escapeControls(record.msg)
        : value(record.msg, true),
    )
  for (const [key, field] of Object.entries(record)) {
    if (SHOWN_ELSEWHERE.has(key)) continue
    parts.push(`${paint('2', `${PLAIN_KEY.test(key) ? key : escapeControls(JSON.stringify(key))}=`)}${value(field)}`)
  }
  return parts.join(' ').trimEnd()
}

/** Local wall-clock time of the event (pino's `time`, epoch milliseconds); now when the line has none. */
function clock(time: unknown): string {
  const parsed = typeof time === 'number' ? time : typeof time === 'string' ? Date.parse(time) : NaN
  const at = new Date(Number.isFinite(parsed) ? parsed : Date.now())
  const two = (n: number) => String(n).padStart(2, '0')
  return `${two(at.getHours())}:${two(at.getMinutes())}:${two(at.getSeconds())}.${String(at.getMilliseconds()).padStart(3, '0')}`
}

/** A key shown bare: letters, digits and `_ . - $ @ [ ]` (pino's and gatehouse's keys); others are quoted. */
const PLAIN_KEY = /^[A-Za-z0-9_.$@[\]-]+$/

/** A field's value: plain words bare (`quoted`: never), other strings quoted, objects and arrays as compact JSON. */
function value(field: unknown, quoted = false): string {
  if (typeof field === 'string')
    return !quoted && /^[^\s"=\\\p{C}\u2028\u2029]+$/u.test(field) ? field : escapeControls(JSON.stringify(field))
  if (field !== null && typeof field === 'object') return escapeControls(JSON.stringify(field))
  return String(field)
}

const NAMED_ESCAPES: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' }

/**
 * Control and format characters (a newline, an escape sequence, a right-to-left override) in a
 * value could fake a second line, drive the terminal or reorder what is shown; they stay escaped.
 */
export function escapeControls(text: string): string {
  return text.replace(/[\p{Cc}\p{Cf}\u2028\u2029]/gu, (c) => {
    const code = c.codePointAt(0)!
    return (
      NAMED_ESCAPES[c] ?? (code > 0xffff ? `\\u{${code.toString(16)}}` : `\\u${code.toString(16).padStart(4, '0')}`)
    )
  })
}
