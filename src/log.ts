import { isatty } from 'node:tty'
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino'
import type { Config } from './config/types.ts'
import { batchedAccessLog, loggerAccessLog, type AccessLog } from './access-log.ts'
import { prettyDestination } from './log-pretty.ts'

/**
 * gatehouse's logger: JSON lines for machines, or with `format` "pretty" one readable line per
 * event for people; "auto" is pretty when the output is a terminal. gatehouse never logs headers,
 * query strings or tokens on purpose; the redaction list is the second line of defence for
 * whatever slips into a log object by those names, and applies to both formats. Lines go to stdout,
 * or to `destination` (tests collect them to check that no secret is ever written).
 */
export function createLogger(
  level: Config['log']['level'],
  destination?: DestinationStream,
  format: Config['log']['format'] = 'json',
): Logger {
  const options: LoggerOptions = {
    level,
    base: { name: 'gatehouse' },
    redact: {
      paths: [
        'cookie',
        'authorization',
        'dpop',
        'token',
        'accessToken',
        'refreshToken',
        'idToken',
        'clientSecret',
        'keys',
        '*.cookie',
        '*.authorization',
        '*.dpop',
        '*.token',
        '*.accessToken',
        '*.refreshToken',
        '*.idToken',
        '*.clientSecret',
        'headers.cookie',
        'headers.authorization',
        'headers.dpop',
        'dpopKey',
        '*.dpopKey',
      ],
      censor: '[redacted]',
    },
  }
  // Synchronous writes: a line is in the kernel once logged, so a hard kill or an OOM loses none,
  // and no buffer grows while the log reader is slow. (pino's own default stdout stream is
  // asynchronous.) Asynchronous writes saved 1–3 µs a line in the bench; security events are worth more.
  const out = destination ?? pino.destination({ dest: 1, sync: true })
  const terminal = destination ? (destination as { isTTY?: boolean }).isTTY === true : isatty(1)
  const pretty = isPretty(format, terminal)
  return pino(options, pretty ? prettyDestination(out, { colors: terminal && colorsWanted(process.env) }) : out)
}

/** Colours unless NO_COLOR (no-color.org: set and not empty) or a terminal that cannot show them. */
function colorsWanted(env: NodeJS.ProcessEnv): boolean {
  return !env.NO_COLOR && env.TERM !== 'dumb'
}

/**
 * The access log for a logger createLogger made for stdout: JSON lines written in batches, or line by
 * line through the logger when the output is pretty (a person at a terminal) or info is not logged.
 */
export function stdoutAccessLog(log: Logger, format: Config['log']['format'] = 'json'): AccessLog {
  if (isPretty(format, isatty(1))) return loggerAccessLog(log)
  return batchedAccessLog(log, { fd: 1 }) ?? loggerAccessLog(log)
}

function isPretty(format: Config['log']['format'], terminal: boolean): boolean {
  return format === 'pretty' || (format === 'auto' && terminal)
}
