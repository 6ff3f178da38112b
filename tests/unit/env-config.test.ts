import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import { envNameOf, envVariables, parseEnvValue, readEnvConfig, toUpperSnake } from '../../src/config/env-config.ts'
import { readConfig } from '../../src/config/read-config.ts'
import { generateKey } from '../../src/session/seal.ts'

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-env-config-'))
after(() => rmSync(dir, { recursive: true, force: true }))
const KEY = generateKey()
const KEY2 = generateKey()
const SECRET = 'very-secret-client-secret-value'
const base = {
  GATEHOUSE_OIDC__AUTHORITY: 'https://idp.example.com',
  GATEHOUSE_OIDC__CLIENT_ID: 'spa',
  GATEHOUSE_OIDC__CLIENT_SECRET: SECRET,
  GATEHOUSE_KEYS: KEY,
}
const absent = join(dir, 'absent.json')
const noFile = (env: NodeJS.ProcessEnv) => readConfig(absent, env, { fileOptional: true })
const text = (issues: { path: string; message: string }[]) => issues.map((i) => `${i.path}: ${i.message}`).join('\n')

describe('variable names come from the schema', () => {
  test('camelCase → UPPER_SNAKE, __ between levels', () => {
    assert.equal(toUpperSnake('publicOrigin'), 'PUBLIC_ORIGIN')
    assert.equal(toUpperSnake('clientId'), 'CLIENT_ID')
    assert.equal(envNameOf(['oidc', 'privateKeyJwk']), 'GATEHOUSE_OIDC__PRIVATE_KEY_JWK')
    const names = envVariables().map((v) => v.name)
    for (const n of [
      'GATEHOUSE_PUBLIC_ORIGIN',
      'GATEHOUSE_OIDC__AUTHORITY',
      'GATEHOUSE_OIDC__CLIENT_ID',
      'GATEHOUSE_SESSION__STORE',
      'GATEHOUSE_LISTEN__PORT',
      'GATEHOUSE_KEYS',
      'GATEHOUSE_REMOTE_APIS',
      'GATEHOUSE_ADMIN__TOKEN',
      'GATEHOUSE_LIMITS__PER_CLIENT',
    ])
      assert.ok(names.includes(n), n)
    assert.ok(!names.some((n) => n.includes('$')))
  })
  test('each leaf gets the kind its schema expects', () => {
    const kind = (name: string) => envVariables().find((v) => v.name === name)?.kind
    assert.equal(kind('GATEHOUSE_LISTEN__PORT'), 'number')
    assert.equal(kind('GATEHOUSE_TRUST_PROXY'), 'boolean')
    assert.equal(kind('GATEHOUSE_KEYS'), 'stringList')
    assert.equal(kind('GATEHOUSE_REMOTE_APIS'), 'json')
    assert.equal(kind('GATEHOUSE_OIDC__DPOP'), 'booleanOrJson')
    assert.equal(kind('GATEHOUSE_ANONYMOUS_SESSION_RESPONSE'), 'number')
    assert.equal(kind('GATEHOUSE_OIDC__TIMEOUT'), 'string')
  })
})

describe('values', () => {
  test('parsing per type', () => {
    assert.deepEqual(parseEnvValue('9000', 'number'), { value: 9000 })
    assert.ok('error' in parseEnvValue('nine', 'number'))
    assert.deepEqual(parseEnvValue('true', 'boolean'), { value: true })
    assert.deepEqual(parseEnvValue('false', 'boolean'), { value: false })
    assert.ok('error' in parseEnvValue('yes', 'boolean'))
    assert.deepEqual(parseEnvValue('k1,k2', 'stringList'), { value: ['k1', 'k2'] })
    assert.deepEqual(parseEnvValue('["k1","k2"]', 'stringList'), { value: ['k1', 'k2'] })
    assert.deepEqual(parseEnvValue('openid, profile', 'stringList'), { value: ['openid', 'profile'] })
    assert.deepEqual(parseEnvValue('[{"path":"/api"}]', 'json'), { value: [{ path: '/api' }] })
    assert.deepEqual(parseEnvValue('{"signingAlg":"ES384"}', 'booleanOrJson'), { value: { signingAlg: 'ES384' } })
  })
  test('a whole configuration from the environment, no file', async () => {
    const result = await noFile({
      ...base,
      GATEHOUSE_LISTEN__PORT: '9000',
      GATEHOUSE_TRUST_PROXY: 'true',
      GATEHOUSE_OIDC__SCOPES: 'openid,profile',
      GATEHOUSE_KEYS: `${KEY},${KEY2}`,
      GATEHOUSE_SESSION__STORE: 'memory',
      GATEHOUSE_REMOTE_APIS: '[{"path":"/api","target":"https://api.example.com"}]',
    })
    assert.equal(result.file, undefined)
    assert.ok(result.config, text(result.issues))
    assert.equal(result.config.listen.port, 9000)
    assert.equal(result.config.trustProxy, true)
    assert.deepEqual(result.config.oidc.scopes, ['openid', 'profile'])
    assert.deepEqual(result.config.keys, [KEY, KEY2])
    assert.equal(result.config.remoteApis[0]!.target, 'https://api.example.com')
  })
  test('environment values override the file key by key', async () => {
    const path = join(dir, 'file.json')
    writeFileSync(
      path,
      JSON.stringify({
        oidc: { authority: 'https://idp.example.com', clientId: 'from-file', clientSecret: 'file-secret' },
        keys: [KEY],
        listen: { host: '0.0.0.0' },
      }),
    )
    const result = await readConfig(path, { GATEHOUSE_OIDC__CLIENT_ID: 'from-env', GATEHOUSE_LISTEN__PORT: '9001' })
    assert.ok(result.config, text(result.issues))
    assert.equal(result.config.oidc.clientId, 'from-env')
    assert.equal(result.config.oidc.clientSecret, 'file-secret')
    assert.deepEqual(result.config.listen, { host: '0.0.0.0', port: 9001 })
  })
  test('a named file that is missing stays an error; the absent default with no variables says so', async () => {
    assert.match(text((await readConfig(absent, base)).issues), /file not found/)
    assert.match(text((await noFile({})).issues), /file not found/)
  })
})

describe('_FILE variables', () => {
  test('secrets from files, trailing newline trimmed; keys one per line', async () => {
    const secret = join(dir, 'secret')
    const keys = join(dir, 'keys')
    const token = join(dir, 'token')
    writeFileSync(secret, `${SECRET}\n`)
    writeFileSync(keys, `${KEY}\n${KEY2}\n`)
    writeFileSync(token, 'an-admin-token-of-32-characters!\n')
    const { GATEHOUSE_OIDC__CLIENT_SECRET: _, GATEHOUSE_KEYS: __, ...rest } = base
    const result = await noFile({
      ...rest,
      GATEHOUSE_OIDC__CLIENT_SECRET_FILE: secret,
      GATEHOUSE_KEYS_FILE: keys,
      GATEHOUSE_ADMIN__TOKEN_FILE: token,
    })
    assert.ok(result.config, text(result.issues))
    assert.equal(result.config.oidc.clientSecret, SECRET)
    assert.deepEqual(result.config.keys, [KEY, KEY2])
    assert.equal(result.config.admin?.token, 'an-admin-token-of-32-characters!')
  })
  test('both VAR and VAR_FILE set is an error naming both', async () => {
    const result = await noFile({ ...base, GATEHOUSE_OIDC__CLIENT_SECRET_FILE: join(dir, 'secret') })
    assert.match(
      text(result.issues),
      /oidc\.clientSecret \(GATEHOUSE_OIDC__CLIENT_SECRET\): both GATEHOUSE_OIDC__CLIENT_SECRET and GATEHOUSE_OIDC__CLIENT_SECRET_FILE are set/,
    )
  })
  test('an unreadable file names the variable and the path', async () => {
    const missing = join(dir, 'nope')
    const result = await noFile({ ...base, GATEHOUSE_SESSION__STORE_FILE: missing })
    assert.match(
      text(result.issues),
      new RegExp(
        `session\\.store \\(GATEHOUSE_SESSION__STORE_FILE\\): ${missing.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: file not found`,
      ),
    )
  })
})

describe('errors', () => {
  test('an unknown GATEHOUSE_ variable is an error naming it; reserved ${…} names are left alone', () => {
    const overlay = readEnvConfig({
      ...base,
      GATEHOUSE_OIDC__CLIENTID: 'x',
      GATEHOUSE_CONFIG: 'a.json',
      GATEHOUSE_KEY: KEY,
      GATEHOUSE_KEY_NEXT: KEY2,
      GATEHOUSE_ADMIN_TOKEN: 't',
      GATEHOUSE_SESSION_STORE: 'memory',
      GATEHOUSE_REDIS_URL: 'redis://x',
    })
    assert.equal(overlay.issues.length, 1, text(overlay.issues))
    assert.match(
      text(overlay.issues),
      /GATEHOUSE_OIDC__CLIENTID: unknown variable .*did you mean GATEHOUSE_OIDC__CLIENT_ID\?/,
    )
  })
  test('validation problems name the key path and the variable', async () => {
    const result = await noFile({ ...base, GATEHOUSE_OIDC__CLIENT_ID: '' })
    assert.match(text(result.issues), /^oidc\.clientId \(GATEHOUSE_OIDC__CLIENT_ID\): must not be empty$/m)
  })
  test('a secret value never appears in an error message', async () => {
    const jwk = join(dir, 'jwk')
    writeFileSync(jwk, `not json ${SECRET}`)
    const result = await noFile({
      ...base,
      GATEHOUSE_OIDC__PRIVATE_KEY_JWK_FILE: jwk,
      GATEHOUSE_KEYS: `${SECRET}`,
      GATEHOUSE_ADMIN__TOKEN: 'short',
      GATEHOUSE_OIDC__DPOP: SECRET,
      GATEHOUSE_LISTEN__PORT: SECRET,
    })
    assert.ok(result.issues.length >= 4, text(result.issues))
    assert.ok(!text(result.issues).includes(SECRET), text(result.issues))
    assert.ok(!text(result.issues).includes('short'), text(result.issues))
  })
})
