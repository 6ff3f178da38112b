import type { IncomingMessage } from 'node:http'
import { GatehouseError } from '../errors.ts'

/** Reads an `application/x-www-form-urlencoded` body of at most `limitBytes`; anything else is a 400. */
export async function readForm(req: IncomingMessage, limitBytes: number): Promise<URLSearchParams> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
  if (type !== 'application/x-www-form-urlencoded')
    throw new GatehouseError('bad_request', 'the body must be application/x-www-form-urlencoded')
  const declared = Number(req.headers['content-length'] ?? 0)
  if (declared > limitBytes) throw new GatehouseError('bad_request', `the body is larger than ${limitBytes} bytes`)
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > limitBytes) throw new GatehouseError('bad_request', `the body is larger than ${limitBytes} bytes`)
    chunks.push(chunk)
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'))
}
