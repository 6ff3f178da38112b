import { pino, type Logger } from 'pino'
import type { Config } from './config/types.ts'

/**
 * JSON logs. gatehouse never logs headers, query strings or tokens on purpose; the redaction list is
 * the second line of defence for anything that slips into a log object by those names.
 */
export function createLogger(level: Config['log']['level']): Logger {
  return pino({
    level,
    base: { name: 'gatehouse' },
    redact: {
      paths: ['cookie', 'authorization', 'token', 'accessToken', 'refreshToken', 'idToken', 'clientSecret', 'keys', '*.cookie', '*.authorization', '*.token', '*.accessToken', '*.refreshToken', '*.idToken', '*.clientSecret', 'headers.cookie', 'headers.authorization'],
      censor: '[redacted]',
    },
  })
}
