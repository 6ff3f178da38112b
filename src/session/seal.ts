import { createCipheriv, createDecipheriv, createHash, createSecretKey, randomBytes, type KeyObject } from 'node:crypto'

const KEY_BYTES = 32
const IV_BYTES = 12
const TAG_BYTES = 16

/** A key-ring entry is 32 random bytes in base64url (what `gatehouse keys generate` prints). */
export function decodeKey(text: string): Buffer | undefined {
  if (!/^[A-Za-z0-9_-]{43}=?$/.test(text)) return undefined
  const bytes = Buffer.from(text, 'base64url')
  return bytes.length === KEY_BYTES ? bytes : undefined
}

export function generateKey(): string {
  return randomBytes(KEY_BYTES).toString('base64url')
}

interface RingKey {
  id: string
  secret: Buffer
  /** The same key as a KeyObject, made once: a raw Buffer is converted on every cipher call. */
  keyObject: KeyObject
}

/**
 * Authenticated encryption (AES-256-GCM) under a key ring: the first key seals, every key unseals,
 * so a new key can be put first while sessions sealed under the old one stay readable.
 * The key id travels in the sealed text; `purpose` is bound as additional data so a value sealed
 * for one use (a session's tokens, a login state) cannot be replayed as another.
 * Format: `<kid>.<iv>.<ciphertext>.<tag>`, base64url parts.
 */
export class KeyRing {
  readonly #keys: RingKey[]

  constructor(keys: readonly string[]) {
    this.#keys = keys.map((text, i) => {
      const secret = decodeKey(text)
      if (!secret) throw new TypeError(`keys[${i}] is not a 32-byte base64url key`)
      return {
        id: createHash('sha256').update(secret).digest('base64url').slice(0, 8),
        secret,
        keyObject: createSecretKey(secret),
      }
    })
    if (this.#keys.length === 0) throw new TypeError('the key ring needs at least one key')
  }

  /** The sealing key, for formats that do their own encryption (cookie-mode JWE). */
  current(): { id: string; secret: Uint8Array } {
    return this.#keys[0]!
  }

  /** A key of the ring by id, or undefined. */
  find(id: string): { id: string; secret: Uint8Array } | undefined {
    return this.#keys.find((k) => k.id === id)
  }

  seal(plaintext: string, purpose: string): string {
    const key = this.#keys[0]!
    const iv = randomBytes(IV_BYTES)
    const cipher = createCipheriv('aes-256-gcm', key.keyObject, iv)
    cipher.setAAD(Buffer.from(`${key.id}|${purpose}`))
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()])
    return `${key.id}.${iv.toString('base64url')}.${ciphertext.toString('base64url')}.${cipher.getAuthTag().toString('base64url')}`
  }

  /** undefined for anything not sealed by a key of this ring for this purpose: tampered, truncated, foreign. */
  unseal(sealed: string, purpose: string): string | undefined {
    const parts = sealed.split('.')
    if (parts.length !== 4) return undefined
    const [kid, ivText, ctText, tagText] = parts as [string, string, string, string]
    const key = this.#keys.find((k) => k.id === kid)
    if (!key) return undefined
    const iv = Buffer.from(ivText, 'base64url')
    const tag = Buffer.from(tagText, 'base64url')
    if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) return undefined
    try {
      const decipher = createDecipheriv('aes-256-gcm', key.keyObject, iv, { authTagLength: TAG_BYTES })
      decipher.setAAD(Buffer.from(`${key.id}|${purpose}`))
      decipher.setAuthTag(tag)
      return Buffer.concat([decipher.update(Buffer.from(ctText, 'base64url')), decipher.final()]).toString('utf8')
    } catch {
      return undefined
    }
  }
}
