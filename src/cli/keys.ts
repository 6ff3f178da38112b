import { generateKey } from '../session/seal.ts'

/** `gatehouse keys generate` — the new key is the last line of stdout (SPEC §10). */
export function keysGenerate(): number {
  process.stderr.write('New key-ring entry (put it first in "keys" to make it current; keep older keys after it):\n')
  process.stdout.write(`${generateKey()}\n`)
  return 0
}
