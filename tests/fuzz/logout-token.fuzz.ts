import {
  constants,
  createHmac,
  generateKeyPairSync,
  randomUUID,
  sign as cryptoSign,
  verify as cryptoVerify,
  type KeyObject,
} from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import {
  BACKCHANNEL_EVENT,
  createLogoutTokenVerifier,
  LogoutTokenError,
  type LogoutClaims,
} from '../../src/oidc/logout-token.ts'
import { count, FuzzFailure, mutateString, Rng, show, type FuzzStats } from './rng.ts'

/**
 * Fuzz target: the back-channel logout token verifier (SPEC §3, OIDC Back-Channel Logout 1.0 §2.6).
 *
 * Each iteration builds a token — valid, mutated as a string (bit flips, truncations, splices…),
 * re-signed with the IdP's key after changing claims or header, or signed with a wrong key (another
 * RSA key under the IdP's kid, an EC key, HS256 with the client secret or the IdP's public key,
 * "none") — and checks the verifier against an independent oracle:
 *   - it never throws anything but LogoutTokenError (a JWKS that answers is not an IdP fault);
 *   - it never accepts a token whose signature does not verify with a key of the IdP's JWKS under an
 *     allowed algorithm, nor one whose claims break §2.4/§2.6 (iss, aud, iat age ±60 s tolerance,
 *     exp, nbf, jti, events, nonce, sub/sid, typ);
 *   - it accepts every token the oracle finds valid, and returns its claims.
 */

const ISSUER = 'https://idp.fuzz.example'
const CLIENT_ID = 'fuzz-bff'
const CLIENT_SECRET = 'fuzz-client-secret-0123456789'
/** The verifier's clock, in seconds: fixed, so that iterations reproduce. */
const NOW = 1_800_000_000
const TOLERANCE = 60
const MAX_AGE = 300
/** The IdP's id_token_signing_alg_values_supported: the verifier must drop HS256 and none itself. */
const IDP_ALGORITHMS = ['RS256', 'PS256', 'ES256', 'HS256', 'none']
const ALLOWED = new Set(['RS256', 'PS256', 'ES256'])
const TYPES = ['logout+jwt', 'application/logout+jwt', 'jwt']

interface Key {
  kid: string
  /** The JWK's alg member, when the JWKS names one. */
  jwkAlg: string | undefined
  kty: 'RSA' | 'EC'
  privateKey: KeyObject
  publicKey: KeyObject
}

function rsaKey(kid: string, jwkAlg: string | undefined): Key {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  return { kid, jwkAlg, kty: 'RSA', privateKey, publicKey }
}

function ecKey(kid: string): Key {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return { kid, jwkAlg: 'ES256', kty: 'EC', privateKey, publicKey }
}

const b64 = (data: string | Buffer): string => Buffer.from(data).toString('base64url')

/** Signs `header`/`payload` exactly as given (any JSON, any bytes) with `alg` and `key`. */
function signRaw(
  headerText: string,
  payloadBytes: string | Buffer,
  alg: string,
  key: KeyObject | Buffer | undefined,
): string {
  const input = `${b64(headerText)}.${b64(payloadBytes)}`
  let signature: Buffer
  if (alg === 'none' || key === undefined) signature = Buffer.alloc(0)
  else if (alg.startsWith('HS'))
    signature = createHmac('sha256', key as Buffer)
      .update(input)
      .digest()
  else if (alg === 'PS256')
    signature = cryptoSign('sha256', Buffer.from(input), {
      key: key as KeyObject,
      padding: constants.RSA_PKCS1_PSS_PADDING,
      saltLength: 32,
    })
  else if (alg === 'ES256')
    signature = cryptoSign('sha256', Buffer.from(input), { key: key as KeyObject, dsaEncoding: 'ieee-p1363' })
  else signature = cryptoSign('sha256', Buffer.from(input), key as KeyObject)
  return `${input}.${b64(signature)}`
}

// ---------------------------------------------------------------------------------------------
// The oracle: what OIDC Back-Channel Logout 1.0 and JWS (RFC 7515) say about a token, written
// independently of the verifier (node:crypto for signatures, plain checks for claims).
// ---------------------------------------------------------------------------------------------

type Verdict = { verdict: 'accept' } | { verdict: 'refuse'; why: string }
const refuse = (why: string): Verdict => ({ verdict: 'refuse', why })

/** base64url as a strict JOSE decoder reads it: a length of 4n+1 is not base64. */
function unb64(text: string): Buffer | undefined {
  return text.length % 4 === 1 ? undefined : Buffer.from(text, 'base64url')
}

function parseJsonObject(bytes: Buffer | undefined): Record<string, unknown> | undefined {
  if (!bytes) return undefined
  let value: unknown
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
  } catch {
    return undefined
  }
  return value !== null && typeof value === 'object' && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined
}

function signatureVerifies(alg: string, key: Key, input: string, signature: Buffer): boolean {
  try {
    if (alg === 'ES256')
      return cryptoVerify('sha256', Buffer.from(input), { key: key.publicKey, dsaEncoding: 'ieee-p1363' }, signature)
    if (alg === 'PS256')
      return cryptoVerify(
        'sha256',
        Buffer.from(input),
        { key: key.publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 },
        signature,
      )
    return cryptoVerify('sha256', Buffer.from(input), key.publicKey, signature)
  } catch {
    return false
  }
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value)
const nonEmptyString = (value: unknown): boolean => typeof value === 'string' && value.length > 0

function oracle(token: string, jwks: readonly Key[]): Verdict {
  if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)) return refuse('not a compact JWS')
  const [h, p, s] = token.split('.') as [string, string, string]
  const header = parseJsonObject(unb64(h))
  if (!header) return refuse('header is not a JSON object')
  if (Object.hasOwn(header, 'crit')) {
    // The only extension a JWS library knows is b64, and a JWT must not use an unencoded payload:
    // crit may name b64 (RFC 7515 does not forbid repeating it) only when b64 is true, a no-op.
    const crit = header.crit
    if (!(Array.isArray(crit) && crit.length > 0 && crit.every((name) => name === 'b64') && header.b64 === true))
      return refuse('crit')
  }
  const alg = header.alg
  if (typeof alg !== 'string' || !ALLOWED.has(alg)) return refuse(`alg ${show(alg)} not allowed`)
  const kid = header.kid
  const family = alg === 'ES256' ? 'EC' : 'RSA'
  const candidates = jwks.filter(
    (k) =>
      k.kty === family &&
      (k.jwkAlg === undefined || k.jwkAlg === alg) &&
      (kid === undefined || (typeof kid === 'string' && kid === k.kid)),
  )
  // OIDC Core §10.1: with several keys a kid is required; a JWKS client must not guess.
  if (candidates.length !== 1) return refuse(`${candidates.length} keys match`)
  const signature = unb64(s)
  if (!signature || !signatureVerifies(alg, candidates[0]!, `${h}.${p}`, signature)) return refuse('signature')
  const claims = parseJsonObject(unb64(p))
  if (!claims) return refuse('payload is not a JSON object')
  for (const name of ['iss', 'aud', 'iat', 'jti', 'events'])
    if (!Object.hasOwn(claims, name)) return refuse(`${name} missing`)
  if (claims.iss !== ISSUER) return refuse('iss')
  const aud = claims.aud
  if (!(aud === CLIENT_ID || (Array.isArray(aud) && aud.includes(CLIENT_ID)))) return refuse('aud')
  if (typeof claims.iat !== 'number') return refuse('iat type')
  if (claims.nbf !== undefined && (typeof claims.nbf !== 'number' || claims.nbf > NOW + TOLERANCE)) return refuse('nbf')
  if (claims.exp !== undefined && (typeof claims.exp !== 'number' || claims.exp <= NOW - TOLERANCE))
    return refuse('exp')
  const age = NOW - claims.iat
  if (age - TOLERANCE > MAX_AGE) return refuse('iat too old')
  if (age < -TOLERANCE) return refuse('iat in the future')
  const typ = header.typ
  if (typ !== undefined && !(typeof typ === 'string' && TYPES.includes(typ.toLowerCase()))) return refuse('typ')
  const jti = claims.jti
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > 256) return refuse('jti')
  if (!isObject(claims.events) || !isObject(claims.events[BACKCHANNEL_EVENT])) return refuse('events')
  if ('nonce' in claims) return refuse('nonce')
  if (claims.sub !== undefined && !nonEmptyString(claims.sub)) return refuse('sub')
  if (claims.sid !== undefined && !nonEmptyString(claims.sid)) return refuse('sid')
  if (claims.sub === undefined && claims.sid === undefined) return refuse('neither sub nor sid')
  return { verdict: 'accept' }
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

function validClaims(rng: Rng): Record<string, unknown> {
  const claims: Record<string, unknown> = {
    iss: ISSUER,
    aud: rng.chance(0.8) ? CLIENT_ID : [CLIENT_ID, 'other-client'],
    iat: NOW - rng.int(MAX_AGE),
    jti: randomUUID(),
    events: { [BACKCHANNEL_EVENT]: {} },
  }
  const who = rng.int(3)
  if (who !== 1) claims.sid = `sid-${rng.string(12, 'abcdef0123456789')}x`
  if (who !== 0) claims.sub = `sub-${rng.string(12, 'abcdef0123456789')}x`
  if (rng.chance(0.3)) claims.exp = NOW + rng.range(1, 600)
  return claims
}

const TIMES = [0, 1, 59, 60, 61, 299, 300, 301, 359, 360, 361, 600, 3600, 0.5, 59.5, 60.5, 360.5]

/** One change to the claims: a member dropped, replaced by any JSON, or set to an edge value. */
function mutateClaims(rng: Rng, claims: Record<string, unknown>): string {
  const names = ['iss', 'aud', 'iat', 'jti', 'events', 'sub', 'sid', 'exp', 'nbf', 'nonce']
  const name = rng.pick(names)
  const strategy = rng.int(4)
  if (strategy === 0) {
    delete claims[name]
    return `drop ${name}`
  }
  if (strategy === 1) {
    claims[name] = rng.json()
    return `random ${name}`
  }
  if (strategy === 2 && ['iat', 'exp', 'nbf'].includes(name)) {
    claims[name] = NOW + (rng.chance(0.5) ? 1 : -1) * rng.pick(TIMES)
    return `edge ${name}`
  }
  const edges: Record<string, unknown[]> = {
    iss: [`${ISSUER}/`, ISSUER.toUpperCase(), 'https://evil.example', '', null, [ISSUER]],
    aud: [
      [],
      ['other'],
      [CLIENT_ID],
      [null, CLIENT_ID],
      `${CLIENT_ID} `,
      CLIENT_ID.toUpperCase(),
      { [CLIENT_ID]: true },
    ],
    iat: [String(NOW), null, true, NOW * 1000, -1],
    jti: ['', 'x'.repeat(256), 'x'.repeat(257), 5, null, ['a']],
    events: [
      { [BACKCHANNEL_EVENT]: null },
      { [BACKCHANNEL_EVENT]: [] },
      { [BACKCHANNEL_EVENT]: 'yes' },
      { [BACKCHANNEL_EVENT]: { extra: 1 } },
      [],
      BACKCHANNEL_EVENT,
      { 'http://schemas.openid.net/event/other': {} },
      null,
    ],
    sub: ['', null, 5, ['s'], 'someone-else'],
    sid: ['', null, 5, {}, 'another-sid'],
    exp: [NOW - 61, NOW - 60, NOW - 59, NOW, null, String(NOW + 100)],
    nbf: [NOW + 61, NOW + 60, NOW, null],
    nonce: ['n-0S6_WzA2Mj', '', null],
  }
  claims[name] = rng.pick(edges[name]!)
  return `edge ${name}`
}

function validHeader(rng: Rng, key: Key, alg: string): Record<string, unknown> {
  const header: Record<string, unknown> = { alg }
  if (rng.chance(0.9)) header.kid = key.kid
  if (rng.chance(0.8)) header.typ = rng.pick(['logout+jwt', 'application/logout+jwt', 'JWT', 'Logout+JWT'])
  return header
}

function mutateHeader(rng: Rng, header: Record<string, unknown>): string {
  switch (rng.int(6)) {
    case 0:
      header.typ = rng.pick<unknown>([
        'at+jwt',
        'JOSE',
        '',
        'logout+jwt ',
        'application/jwt',
        5,
        null,
        true,
        [],
        {},
        ['logout+jwt'],
        rng.json(),
      ])
      return 'typ'
    case 1:
      if (rng.chance(0.5)) delete header.kid
      else header.kid = rng.pick<unknown>(['rsa-1', 'rsa-2', 'ec-1', 'unknown', '', 5, null, ['rsa-1'], rng.json()])
      return 'kid'
    case 2:
      header.crit = rng.pick<unknown>([['b64'], ['exp'], [], 'b64', [''], ['b64', 'b64'], null])
      if (rng.chance(0.7)) header.b64 = rng.pick<unknown>([false, true, 'false'])
      return 'crit'
    case 3:
      header[rng.pick(['jku', 'x5u', 'jwk', 'x5c', 'cty', 'zip', '__proto__'])] = rng.json()
      return 'extra header member'
    case 4:
      header.alg = rng.pick<unknown>([
        'RS256',
        'PS256',
        'ES256',
        'RS384',
        'RS512',
        'ES384',
        'HS256',
        'none',
        'None',
        'rs256',
        '',
        null,
        5,
      ])
      return 'alg'
    default:
      header.b64 = false
      return 'b64 without crit'
  }
}

function serialise(value: unknown, rng: Rng): string {
  const text = JSON.stringify(value)
  // Sometimes a duplicate member (JSON.parse keeps the last): `{"iss":"evil","iss":"<real>"}` and vice versa.
  if (rng.chance(0.05) && text.startsWith('{"'))
    return `{"iss":${JSON.stringify(rng.pick([ISSUER, 'https://evil.example']))},${text.slice(1)}`
  return text
}

// ---------------------------------------------------------------------------------------------
// The target
// ---------------------------------------------------------------------------------------------

export interface FuzzRunOptions {
  iterations: number
  seed: number
  /** Stop early (without failing) once this much time has passed. */
  timeLimitMs?: number
}

export async function fuzzLogoutToken(options: FuzzRunOptions): Promise<FuzzStats> {
  // The IdP's JWKS: an RSA key without alg (RS256 and PS256), a second RSA key for RS256, an EC key.
  const idpKeys = [rsaKey('rsa-1', undefined), rsaKey('rsa-2', 'RS256'), ecKey('ec-1')]
  const jwks = {
    keys: idpKeys.map((k) => ({
      ...k.publicKey.export({ format: 'jwk' }),
      kid: k.kid,
      use: 'sig',
      ...(k.jwkAlg ? { alg: k.jwkAlg } : {}),
    })),
  }
  const server = createServer((req, res) => {
    if (req.url !== '/jwks') return void res.writeHead(404).end()
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(jwks))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const jwksUri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`
  const verify = createLogoutTokenVerifier({
    issuer: ISSUER,
    clientId: CLIENT_ID,
    jwks: jwksUri,
    algorithms: IDP_ALGORITHMS,
    now: () => NOW * 1000,
  })

  // Wrong keys: same kids, other key material; a symmetric secret; the IdP's public key as an HMAC secret.
  const impostors = [rsaKey('rsa-1', undefined), rsaKey('rsa-2', 'RS256'), ecKey('ec-1')]
  const publicPem = Buffer.from(idpKeys[0]!.publicKey.export({ format: 'pem', type: 'spki' }) as string)
  const stats: FuzzStats = { iterations: 0, outcomes: {}, strategies: {} }
  const started = Date.now()
  let previous = signRaw(
    JSON.stringify({ alg: 'RS256', kid: 'rsa-1' }),
    JSON.stringify(validClaims(new Rng(options.seed))),
    'RS256',
    idpKeys[0]!.privateKey,
  )

  const rightKeyAndAlg = (rng: Rng): [Key, string] => {
    const key = rng.pick(idpKeys)
    return [key, key.kty === 'EC' ? 'ES256' : key.kid === 'rsa-2' ? 'RS256' : rng.pick(['RS256', 'PS256'])]
  }

  try {
    for (let i = 0; i < options.iterations; i++) {
      if (options.timeLimitMs !== undefined && Date.now() - started > options.timeLimitMs) break
      const rng = Rng.forIteration(options.seed, i)
      const [key, alg] = rightKeyAndAlg(rng)
      const header = validHeader(rng, key, alg)
      const claims = validClaims(rng)
      let token: string
      let strategy: string
      const roll = rng.int(100)
      if (roll < 10) {
        strategy = 'valid'
        token = signRaw(JSON.stringify(header), JSON.stringify(claims), alg, key.privateKey)
      } else if (roll < 45) {
        strategy = 'string mutation'
        token = signRaw(JSON.stringify(header), JSON.stringify(claims), alg, key.privateKey)
        for (let n = rng.range(1, 3); n > 0; n--) token = mutateString(rng, token, previous)
      } else if (roll < 70) {
        const changes = Array.from({ length: rng.range(1, 3) }, () => mutateClaims(rng, claims))
        strategy = `claims re-signed (${changes[0]})`
        const payload = rng.chance(0.03)
          ? rng.pick([Buffer.from([0xff, 0xfe]), '[]', '"x"', 'null', '{"iss":'])
          : serialise(claims, rng)
        token = signRaw(JSON.stringify(header), payload, alg, key.privateKey)
      } else if (roll < 80) {
        strategy = `header re-signed (${mutateHeader(rng, header)})`
        if (rng.chance(0.3)) mutateClaims(rng, claims)
        const signingAlg =
          typeof header.alg === 'string' && ['RS256', 'PS256', 'ES256'].includes(header.alg) ? header.alg : alg
        const signingKey = signingAlg === 'ES256' ? idpKeys[2]! : key.kty === 'RSA' ? key : idpKeys[0]!
        token = signRaw(JSON.stringify(header), JSON.stringify(claims), signingAlg, signingKey.privateKey)
      } else if (roll < 95) {
        if (rng.chance(0.5)) mutateClaims(rng, claims)
        const wrong = rng.int(5)
        if (wrong === 0) {
          const impostor = rng.pick(impostors)
          const impostorAlg = impostor.kty === 'EC' ? 'ES256' : 'RS256'
          strategy = 'wrong key, IdP kid'
          token = signRaw(
            JSON.stringify({ ...header, alg: impostorAlg, kid: impostor.kid }),
            JSON.stringify(claims),
            impostorAlg,
            impostor.privateKey,
          )
        } else if (wrong === 1) {
          strategy = 'HS256 with the client secret'
          token = signRaw(
            JSON.stringify({ alg: 'HS256', typ: 'logout+jwt' }),
            JSON.stringify(claims),
            'HS256',
            Buffer.from(CLIENT_SECRET),
          )
        } else if (wrong === 2) {
          strategy = 'HS256 with the IdP public key (alg confusion)'
          token = signRaw(JSON.stringify({ alg: 'HS256', kid: 'rsa-1' }), JSON.stringify(claims), 'HS256', publicPem)
        } else if (wrong === 3) {
          strategy = 'alg none'
          token = signRaw(
            JSON.stringify({ alg: rng.pick(['none', 'None', 'NONE']), typ: 'logout+jwt' }),
            JSON.stringify(claims),
            'none',
            undefined,
          )
          if (rng.chance(0.5)) token += rng.pick(['A', 'sig', previous.split('.')[2] ?? 'x'])
        } else {
          strategy = 'signature of another token'
          const [h, p] = signRaw(JSON.stringify(header), JSON.stringify(claims), alg, key.privateKey).split('.')
          token = `${h}.${p}.${previous.split('.')[2] ?? ''}`
        }
      } else {
        strategy = 'garbage'
        token = rng.chance(0.5)
          ? rng.string(200)
          : Array.from({ length: rng.range(1, 5) }, () => b64(rng.bytes(rng.int(60)))).join('.')
      }
      count(stats.strategies, strategy.replace(/ \(.*\)$/, ''))
      previous = token

      const expected = oracle(token, idpKeys)
      let outcome: LogoutClaims | Error
      try {
        outcome = await verify(token)
      } catch (err) {
        outcome = err as Error
      }
      const context = () => `seed ${options.seed}, iteration ${i}, ${strategy}: ${show(token)}`
      if (outcome instanceof Error) {
        if (!(outcome instanceof LogoutTokenError))
          throw new FuzzFailure(
            `the verifier threw ${outcome.name}: ${outcome.message} (not a LogoutTokenError) — ${context()}`,
            { cause: outcome },
          )
        if (expected.verdict === 'accept')
          throw new FuzzFailure(`a valid token was refused (${outcome.message}) — ${context()}`)
        count(stats.outcomes, 'refused')
      } else {
        if (expected.verdict === 'refuse')
          throw new FuzzFailure(`a token was accepted although ${expected.why} — ${context()}`)
        const payload = parseJsonObject(unb64(token.split('.')[1]!))!
        if (
          outcome.jti !== payload.jti ||
          outcome.iss !== payload.iss ||
          outcome.sub !== payload.sub ||
          outcome.sid !== payload.sid ||
          outcome.iat !== payload.iat
        ) {
          throw new FuzzFailure(`the returned claims differ from the token's: ${show(outcome)} — ${context()}`)
        }
        count(stats.outcomes, 'accepted')
      }
      stats.iterations++
    }
  } finally {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
  return stats
}
