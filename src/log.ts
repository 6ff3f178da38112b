import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino'
import type { Config } from './config/types.ts'

/**
 * JSON logs. gatehouse never logs headers, query strings or tokens on purpose; the redaction list is
 * the second line of defence for anything that slips into a log object by those names. Lines go to
 * stdout, or to `destination` (tests collect them to check that no secret is ever written).
 */
export function createLogger(level: Config['log']['level'], destination?: DestinationStream): Logger {
  const options: LoggerOptions = {
    level,
    base: { name: 'gatehouse' },
    redact: {
      paths: ['cookie', 'authorization', 'dpop', 'token', 'accessToken', 'refreshToken', 'idToken', 'clientSecret', 'keys', '*.cookie', '*.authorization', '*.dpop', '*.token', '*.accessToken', '*.refreshToken', '*.idToken', '*.clientSecret', 'headers.cookie', 'headers.authorization', 'headers.dpop', 'dpopKey', '*.dpopKey'],
      censor: '[redacted]',
    },
  }
  return destination ? pino(options, destination) : pino(options)
}
