import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { KeyRing, decodeKey, generateKey } from '../../src/session/seal.ts'

const PURPOSE = 'session|abc'

/** Flips one bit in the base64url-encoded part `index` of a sealed string. */
function flipBit(sealed: string, index: number): string {
  const parts = sealed.split('.')
  const bytes = Buffer.from(parts[index]!, 'base64url')
  bytes[0] = bytes[0]! ^ 0x01
  parts[index] = bytes.toString('base64url')
  return parts.join('.')
}

describe('KeyRing', () => {
  test('a sealed value unseals to the same text with the same purpose', () => {
    const ring = new KeyRing([generateKey()])
    for (const text of ['', 'hello', '{"tokens":{"accessToken":"a.b.c"}}', 'ünïcødé ✓ 🔐', 'x'.repeat(100_000)]) {
      assert.equal(ring.unseal(ring.seal(text, PURPOSE), PURPOSE), text)
    }
  })

  test('the sealed text does not contain the plaintext and differs on every seal', () => {
    const ring = new KeyRing([generateKey()])
    const a = ring.seal('secret-refresh-token', PURPOSE)
    const b = ring.seal('secret-refresh-token', PURPOSE)
    assert.ok(!a.includes('secret-refresh-token'))
    assert.notEqual(a, b)
    assert.match(a, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+$/)
  })

  test('after rotation (new key first) values sealed under the older key still unseal', () => {
    const oldKey = generateKey()
    const newKey = generateKey()
    const sealedBefore = new KeyRing([oldKey]).seal('before rotation', PURPOSE)
    const rotated = new KeyRing([newKey, oldKey])
    assert.equal(rotated.unseal(sealedBefore, PURPOSE), 'before rotation')
    assert.equal(rotated.unseal(rotated.seal('after rotation', PURPOSE), PURPOSE), 'after rotation')
  })

  test('a rotated ring seals with its first key', () => {
    const oldKey = generateKey()
    const newKey = generateKey()
    const sealed = new KeyRing([newKey, oldKey]).seal('v', PURPOSE)
    assert.equal(new KeyRing([newKey]).unseal(sealed, PURPOSE), 'v')
    assert.equal(new KeyRing([oldKey]).unseal(sealed, PURPOSE), undefined)
  })

  test('a ring without the sealing key cannot unseal', () => {
    const sealed = new KeyRing([generateKey()]).seal('v', PURPOSE)
    assert.equal(new KeyRing([generateKey(), generateKey()]).unseal(sealed, PURPOSE), undefined)
  })

  test('a value sealed for one purpose does not unseal for another', () => {
    const ring = new KeyRing([generateKey()])
    const sealed = ring.seal('v', 'session|abc')
    assert.equal(ring.unseal(sealed, 'session|abd'), undefined)
    assert.equal(ring.unseal(sealed, 'login-state'), undefined)
    assert.equal(ring.unseal(sealed, ''), undefined)
  })

  test('a flipped bit in the iv, the ciphertext or the tag makes unseal return undefined', () => {
    const ring = new KeyRing([generateKey()])
    const sealed = ring.seal('some session data', PURPOSE)
    for (const part of [1, 2, 3]) assert.equal(ring.unseal(flipBit(sealed, part), PURPOSE), undefined, `part ${part}`)
  })

  test('a key id swapped for another key of the ring makes unseal return undefined', () => {
    const first = generateKey()
    const second = generateKey()
    const ring = new KeyRing([first, second])
    const sealedA = ring.seal('v', PURPOSE)
    const sealedB = new KeyRing([second]).seal('v', PURPOSE)
    const kidB = sealedB.split('.')[0]!
    const swapped = [kidB, ...sealedA.split('.').slice(1)].join('.')
    assert.equal(ring.unseal(swapped, PURPOSE), undefined)
    assert.equal(ring.unseal(`x${sealedA}`, PURPOSE), undefined)
  })

  test('truncated sealed values return undefined', () => {
    const ring = new KeyRing([generateKey()])
    const sealed = ring.seal('some session data', PURPOSE)
    for (let length = 0; length < sealed.length; length++) {
      assert.equal(ring.unseal(sealed.slice(0, length), PURPOSE), undefined, `first ${length} characters`)
    }
    const parts = sealed.split('.')
    assert.equal(ring.unseal(parts.slice(0, 3).join('.'), PURPOSE), undefined)
    assert.equal(ring.unseal([parts[0], parts[1], parts[2]!.slice(2), parts[3]].join('.'), PURPOSE), undefined)
  })

  test('garbage and empty strings return undefined without throwing', () => {
    const ring = new KeyRing([generateKey()])
    const kid = ring.seal('v', PURPOSE).split('.')[0]!
    const garbage = [
      '',
      '.',
      '...',
      '....',
      'a.b.c.d',
      `${kid}...`,
      `${kid}.${'A'.repeat(16)}.${'A'.repeat(10)}.${'A'.repeat(22)}`,
      `${kid}.!!!!.%%%%.****`,
      'not sealed at all',
      '\u0000\u0001\u0002',
      '🔐.🔐.🔐.🔐',
      'x'.repeat(50_000),
      `${kid}.${'A'.repeat(16)}.${'A'.repeat(10)}.${'A'.repeat(22)}.extra`,
    ]
    for (const text of garbage) assert.equal(ring.unseal(text, PURPOSE), undefined, JSON.stringify(text.slice(0, 40)))
  })

  test('changing any single character never yields a different plaintext and never throws', () => {
    const ring = new KeyRing([generateKey()])
    const sealed = ring.seal('original', PURPOSE)
    for (let i = 0; i < sealed.length; i++) {
      for (const c of ['A', 'z', '-', '.', '+']) {
        if (sealed[i] === c) continue
        const changed = sealed.slice(0, i) + c + sealed.slice(i + 1)
        // A change confined to the unused low bits of a part's last base64url character decodes to
        // the same bytes; anything else must fail authentication.
        const result = ring.unseal(changed, PURPOSE)
        assert.ok(result === undefined || result === 'original', `position ${i} → ${c}`)
      }
    }
  })

  test('a ring needs at least one key and refuses malformed keys, naming the index', () => {
    assert.throws(() => new KeyRing([]), TypeError)
    assert.throws(() => new KeyRing([generateKey(), 'too-short']), { name: 'TypeError', message: /keys\[1\]/ })
  })
})

describe('decodeKey and generateKey', () => {
  test('generateKey returns 43 base64url characters that decodeKey accepts as 32 bytes', () => {
    const seen = new Set<string>()
    for (let i = 0; i < 20; i++) {
      const key = generateKey()
      assert.match(key, /^[A-Za-z0-9_-]{43}$/)
      assert.equal(decodeKey(key)?.length, 32)
      seen.add(key)
    }
    assert.equal(seen.size, 20)
  })

  test('decodeKey returns the bytes the key encodes', () => {
    const bytes = Buffer.alloc(32, 7)
    assert.deepEqual(decodeKey(bytes.toString('base64url')), bytes)
  })

  test('decodeKey refuses keys of the wrong length', () => {
    const key = generateKey()
    for (const text of [
      '',
      key.slice(0, 42),
      `${key}A`,
      `${key}AA`,
      Buffer.alloc(16).toString('base64url'),
      Buffer.alloc(64).toString('base64url'),
    ]) {
      assert.equal(decodeKey(text), undefined, `length ${text.length}`)
    }
  })

  test('decodeKey refuses characters outside the base64url alphabet', () => {
    const key = generateKey()
    for (const bad of ['+', '/', ' ', '.', '%', 'é', '\n']) {
      assert.equal(decodeKey(bad + key.slice(1)), undefined, JSON.stringify(bad))
    }
    assert.equal(decodeKey(Buffer.alloc(32, 0xfb).toString('base64')), undefined, 'standard base64 with +/')
    assert.equal(decodeKey(` ${key}`), undefined)
    assert.equal(decodeKey(`${key}\n`), undefined)
  })
})
