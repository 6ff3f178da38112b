import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { JWK } from 'jose'
import type { DpopSigningAlg } from '../../src/config/types.ts'
import { validateConfig } from '../../src/config/validate.ts'
import { GatehouseError } from '../../src/errors.ts'
import { createLogger } from '../../src/log.ts'
import { OidcClient } from '../../src/oidc/client.ts'
import { Telemetry } from '../../src/ops/metrics.ts'
import { generateKey, KeyRing } from '../../src/session/seal.ts'
import type { SessionData } from '../../src/session/session.ts'
import { Sessions } from '../../src/session/sessions.ts'
import { MemoryStore } from '../../src/session/stores/memory.ts'
import { ClientCredentials } from '../../src/tokens/client-credentials.ts'
import { DpopKeys } from '../../src/tokens/dpop.ts'
import { TokenService } from '../../src/tokens/tokens.ts'
import { logLines } from '../helpers/log-lines.ts'

// A DPoP key that cannot be imported (a session's) or made (the client's own) fails the token grant
// it is for, as an IdP failure would: 502 idp_unavailable with its refresh_failed line and metric —
// never a 500, and for diagnostics a null client token. The keys fail for real: a stored private JWK
// whose coordinates are no point of the curve, an algorithm the crypto library does not have.
// The IdP is never reached: the key is awaited before discovery (its address does not resolve).

const NOW = 1_700_000_000_000
const HOUR = 3_600_000
/** A P-256 private JWK as a session stores it, with coordinates that are not on the curve. */
const BROKEN_SESSION_KEY: JWK = { kty: 'EC', crv: 'P-256', x: 'AAAA', y: 'AAAA', d: 'AAAA', alg: 'ES256' }

function setup(clientKeyAlg: string = 'ES256') {
  const { config, issues } = validateConfig({
    oidc: { authority: 'https://idp.example.invalid', clientId: 'spa-bff', clientSecret: 'spa-bff-secret', dpop: true },
    keys: [generateKey()],
  })
  assert.deepEqual(issues, [])
  const oidc = new OidcClient(config!.oidc)
  const now = () => NOW
  const clientCredentials = new ClientCredentials({
    oidc,
    scopes: [],
    skewMs: 60_000,
    now,
    dpop: { signingAlg: clientKeyAlg as DpopSigningAlg },
  })
  const sessions = new Sessions({
    store: new MemoryStore(),
    keyRing: new KeyRing([generateKey()]),
    policy: { lifetimeMs: HOUR, sliding: false, absoluteLifetimeMs: HOUR },
    now,
  })
  const log = logLines()
  const telemetry = new Telemetry()
  const tokens = new TokenService({
    sessions,
    clients: () => ({ oidc, clientCredentials }),
    dpopKeys: new DpopKeys(),
    telemetry,
    skewMs: 60_000,
    idpTimeoutMs: 1_000,
    now,
    log: createLogger('info', log.sink),
  })
  return { sessions, tokens, telemetry, log }
}

function sessionData(accessTokenExpiresAt: number): SessionData {
  return {
    claims: [{ type: 'sub', value: 'alice' }],
    tokens: {
      accessToken: 'at-SECRET',
      refreshToken: 'rt-SECRET',
      idToken: 'it-SECRET',
      accessTokenExpiresAt,
      scope: 'openid',
    },
    logoutSid: 'sid-1',
    sessionState: undefined,
    dpopKey: BROKEN_SESSION_KEY,
  }
}

async function refreshCount(telemetry: Telemetry, result: string): Promise<number> {
  const metric = await telemetry.registry.getSingleMetric('gatehouse_token_refreshes_total')!.get()
  return metric.values.find((v) => v.labels.result === result)?.value ?? 0
}

describe('DPoP keys that fail', () => {
  test('an expired token whose session key fails to import: 502 idp_unavailable, a refresh_failed line naming the import, the unavailable metric, the session kept', async () => {
    const { sessions, tokens, telemetry, log } = setup()
    const { session } = await sessions.create({
      sub: 'alice',
      sid: 'sid-1',
      partition: 'app',
      data: sessionData(NOW - 1_000),
    })
    const err = await tokens.tokenFor(session, 'user', 'app').then(
      () => assert.fail('no token without its key'),
      (e: unknown) => e,
    )
    assert.ok(err instanceof GatehouseError, `a GatehouseError, not ${String(err)}`)
    assert.equal(err.code, 'idp_unavailable')
    assert.equal(err.status, 502)
    const line = log.entries().find((e) => e.event === 'refresh_failed')
    assert.ok(line, `a refresh_failed line (got ${log.lines.join(' | ')})`)
    assert.equal(line.cause, 'idp_unavailable')
    assert.match(String(line.err), /DataError/, 'the line names the failed import, not an IdP call')
    assert.equal(await refreshCount(telemetry, 'unavailable'), 1)
    assert.ok(await sessions.current(session), 'the session is kept: the key may import after a restart')
    assert.doesNotMatch(log.lines.join('\n'), /SECRET|"d":/, 'no token or private key in the log')
  })

  test('a client key that cannot be made: the client token is refused as idp_unavailable (diagnostics shows null), and the next grant makes a new key', async () => {
    const { tokens } = setup('ES999')
    const first = await tokens.clientToken('app').then(
      () => assert.fail('no client token without its key'),
      (e: unknown) => e,
    )
    assert.ok(first instanceof GatehouseError, `a GatehouseError, not ${String(first)}`)
    assert.equal(first.code, 'idp_unavailable')
    assert.equal(first.status, 502)
    assert.equal((first.cause as Error).name, 'JOSENotSupported', 'the key generation is the cause, not the IdP')
    const second = await tokens.tokenFor(undefined, 'client', 'app').then(
      () => assert.fail('no client token without its key'),
      (e: unknown) => e,
    )
    assert.ok(second instanceof GatehouseError)
    assert.equal(second.code, 'idp_unavailable')
    assert.notEqual(second.cause, first.cause, 'a failed key is not kept: the next grant tries to make one again')
  })
})
