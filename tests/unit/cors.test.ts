import assert from 'node:assert/strict'
import type { IncomingHttpHeaders } from 'node:http'
import { describe, test } from 'node:test'
import type { ConfigIssue } from '../../src/config/types.ts'
import { validateConfig } from '../../src/config/validate.ts'
import {
  createCorsPolicy,
  GET_ROUTE_CORS,
  isPreflight,
  LOCAL_ROUTE_CORS,
  matchOrigin,
  preflight,
  READ_ROUTE_CORS,
  requestedHeaders,
  type CorsRule,
} from '../../src/http/cors.ts'
import { exposedHeaders, varyWithOrigin } from '../../src/proxy/headers.ts'
import { returnUrlParam, toReturnUrl } from '../../src/http/return-url.ts'
import { serializeCookie } from '../../src/http/cookies.ts'
import { generateKey } from '../../src/session/seal.ts'

const SPA = 'https://spa.example.com'
const DEV = 'http://localhost:5173'
const policy = createCorsPolicy([SPA, DEV], 'X-CSRF')!
const API: CorsRule = { methods: ['GET', 'HEAD', 'POST'], otherHeaders: true }

const ask = (headers: IncomingHttpHeaders, rule: CorsRule = READ_ROUTE_CORS) => preflight(policy, headers, rule)

describe('CORS policy (src/http/cors.ts)', () => {
  test('no allowed origins means no policy at all: CORS stays off', () => {
    assert.equal(createCorsPolicy(undefined, 'X-CSRF'), undefined)
    assert.equal(createCorsPolicy([], 'X-CSRF'), undefined)
  })

  test('an Origin header matches only an allowed origin exactly as browsers serialise it', () => {
    assert.equal(matchOrigin(policy, SPA), SPA)
    assert.equal(matchOrigin(policy, DEV), DEV)
    for (const other of [
      'https://evil.example',
      'https://spa.example.com.evil.com',
      'http://spa.example.com',
      'https://SPA.example.com',
      'https://spa.example.com:443',
      'https://spa.example.com/',
      'null',
      '',
      `${SPA}, https://evil.example`,
    ]) {
      assert.equal(matchOrigin(policy, other), undefined, other)
    }
    assert.equal(matchOrigin(policy, undefined), undefined)
    assert.equal(matchOrigin(policy, [SPA, SPA]), undefined)
  })

  test('a preflight is OPTIONS with an Origin and Access-Control-Request-Method, nothing less', () => {
    assert.equal(isPreflight('OPTIONS', { origin: SPA, 'access-control-request-method': 'GET' }), true)
    assert.equal(isPreflight('OPTIONS', { origin: SPA }), false)
    assert.equal(isPreflight('OPTIONS', { 'access-control-request-method': 'GET' }), false)
    assert.equal(isPreflight('GET', { origin: SPA, 'access-control-request-method': 'GET' }), false)
  })

  test("a preflight of an allowed origin for /bff/user is granted with credentials, the route's methods, the anti-forgery header and a max age", () => {
    const outcome = ask({
      origin: SPA,
      'access-control-request-method': 'GET',
      'access-control-request-headers': 'x-csrf',
    })
    assert.deepEqual(outcome, {
      granted: true,
      headers: {
        'access-control-allow-origin': SPA,
        'access-control-allow-credentials': 'true',
        'access-control-allow-methods': 'GET, HEAD',
        'access-control-allow-headers': 'x-csrf',
        'access-control-max-age': '600',
        vary: 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers',
      },
    })
  })

  test("gatehouse's own endpoints allow only the anti-forgery header and Content-Type", () => {
    assert.equal(
      ask({
        origin: SPA,
        'access-control-request-method': 'GET',
        'access-control-request-headers': 'X-CSRF, Content-Type',
      }).granted,
      true,
    )
    const other = ask({
      origin: SPA,
      'access-control-request-method': 'GET',
      'access-control-request-headers': 'x-csrf, x-tenant',
    })
    assert.deepEqual(other, { granted: false, reason: 'the request header x-tenant is not allowed here' })
  })

  test('an API allows the headers the SPA asks for, but never credentials, forwarding claims or method overrides', () => {
    const granted = ask(
      {
        origin: SPA,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type,x-csrf,x-tenant, If-Match',
      },
      API,
    )
    assert.equal(granted.granted, true)
    assert.equal(
      granted.granted && granted.headers['access-control-allow-headers'],
      'x-csrf, content-type, x-tenant, if-match',
    )
    assert.equal(granted.granted && granted.headers['access-control-allow-methods'], 'GET, HEAD, POST')
    for (const denied of [
      'authorization',
      'Cookie',
      'dpop',
      'proxy-authorization',
      'x-forwarded-for',
      'x-forwarded-host',
      'forwarded',
      'x-real-ip',
      'x-http-method-override',
      'connection',
      'transfer-encoding',
      'host',
      'sec-fetch-site',
    ]) {
      const outcome = ask(
        { origin: SPA, 'access-control-request-method': 'POST', 'access-control-request-headers': `x-csrf, ${denied}` },
        API,
      )
      assert.equal(outcome.granted, false, denied)
    }
  })

  test('a method the route does not accept is refused, and CONNECT and TRACE are never granted', () => {
    assert.deepEqual(ask({ origin: SPA, 'access-control-request-method': 'DELETE' }), {
      granted: false,
      reason: 'DELETE is not allowed here (allowed: GET, HEAD)',
    })
    assert.equal(ask({ origin: SPA, 'access-control-request-method': 'POST' }, GET_ROUTE_CORS).granted, false)
    const any = ask({ origin: SPA, 'access-control-request-method': 'PATCH' }, LOCAL_ROUTE_CORS)
    assert.equal(
      any.granted && any.headers['access-control-allow-methods'],
      'PATCH',
      'a route that takes any method grants the one asked for',
    )
    for (const method of ['TRACE', 'CONNECT', 'TRACK', 'trace', 'GE T', ''])
      assert.equal(
        ask({ origin: SPA, 'access-control-request-method': method }, LOCAL_ROUTE_CORS).granted,
        false,
        method,
      )
  })

  test('a preflight of another origin is refused whatever it asks for', () => {
    for (const origin of ['https://evil.example', 'null', 'https://spa.example.com.evil.com']) {
      assert.deepEqual(ask({ origin, 'access-control-request-method': 'GET' }), {
        granted: false,
        reason: 'this origin is not in cors.allowedOrigins',
      })
    }
  })

  test('requested header lists are parsed leniently in spacing and case, strictly in syntax and size', () => {
    assert.deepEqual(requestedHeaders(undefined), [])
    assert.deepEqual(requestedHeaders(' X-CSRF ,content-type,,x-csrf '), ['x-csrf', 'content-type'])
    assert.equal(requestedHeaders('x-a, x b'), undefined)
    assert.equal(requestedHeaders('x-a, x:b'), undefined)
    assert.equal(requestedHeaders(Array.from({ length: 65 }, (_, i) => `x-h${i}`).join(',')), undefined)
  })

  test('Vary gains Origin once, keeping what the upstream said', () => {
    assert.equal(varyWithOrigin(undefined), 'Origin')
    assert.equal(varyWithOrigin(''), 'Origin')
    assert.equal(varyWithOrigin('Accept-Encoding'), 'Accept-Encoding, Origin')
    assert.equal(varyWithOrigin(['Accept', 'Accept-Language']), 'Accept, Accept-Language, Origin')
    assert.equal(varyWithOrigin('accept-encoding, origin'), 'accept-encoding, origin')
    assert.equal(varyWithOrigin('*'), '*')
  })

  test('an API answer exposes its own headers but not the safelisted ones, Set-Cookie or CORS fields', () => {
    assert.equal(
      exposedHeaders([
        'content-type',
        'content-length',
        'etag',
        'location',
        'set-cookie',
        'vary',
        'access-control-allow-origin',
        'X-Total-Count',
      ]),
      'etag, location, x-total-count',
    )
    assert.equal(exposedHeaders(['content-type', 'cache-control']), undefined)
  })
})

describe('returnUrl on an allowed origin (toReturnUrl)', () => {
  const allowed = new Set([SPA, DEV])

  const ACCEPTED: Array<[label: string, value: string, expected: string]> = [
    ['the origin alone', 'https://spa.example.com', 'https://spa.example.com/'],
    [
      'a path, query and fragment',
      'https://spa.example.com/orders/7?tab=a#x',
      'https://spa.example.com/orders/7?tab=a#x',
    ],
    ['a query right after the host', 'https://spa.example.com?x=1', 'https://spa.example.com/?x=1'],
    ['a loopback development origin with its port', 'http://localhost:5173/cb', 'http://localhost:5173/cb'],
    [
      'upper-case scheme and host (the same origin, normalised)',
      'HTTPS://SPA.EXAMPLE.COM/x',
      'https://spa.example.com/x',
    ],
    [
      'the default port spelled out (the same origin, normalised)',
      'https://spa.example.com:443/x',
      'https://spa.example.com/x',
    ],
    ['dot segments in the path (resolved)', 'https://spa.example.com/a/../b', 'https://spa.example.com/b'],
  ]
  for (const [label, value, expected] of ACCEPTED) {
    test(`accepts ${label}: ${value} → ${expected}`, () => {
      assert.equal(toReturnUrl(value, allowed), expected)
    })
  }

  const REFUSED: Array<[label: string, value: string]> = [
    ['another host that starts with the allowed one', 'https://spa.example.com.evil.com/'],
    ['userinfo that looks like the allowed host', 'https://spa.example.com@evil.com/'],
    ['userinfo in front of the allowed host', 'https://user:pw@spa.example.com/'],
    ['protocol-relative', '//spa.example.com/'],
    ['scheme with a backslash', 'https:/\\evil.example'],
    ['backslash after the host', 'https://spa.example.com\\@evil.example'],
    ['scheme without slashes', 'https:spa.example.com'],
    ['three slashes', 'https:///spa.example.com'],
    ['http:// for an https origin', 'http://spa.example.com/'],
    ['another port', 'https://spa.example.com:8443/'],
    ['a trailing dot on the host (another origin)', 'https://spa.example.com./'],
    ['a percent-encoded dot in the host', 'https://spa%2Eexample.com/'],
    ['a Cyrillic "а" (IDN homograph)', 'https://spа.example.com/'],
    ['full-width letters (IDNA would map them to the allowed host)', 'https://ｓｐａ.example.com/'],
    ['an ideographic full stop (IDNA would map it to ".")', 'https://spa。example.com/'],
    ['a leading space', ' https://spa.example.com/'],
    ['a tab inside the scheme (URL parsers strip it)', 'ht\ttps://spa.example.com/'],
    ['a protocol-relative path on the allowed origin', 'https://spa.example.com//evil.example'],
    ['an encoded protocol-relative path', 'https://spa.example.com/%2F%2Fevil.example'],
    ['a CRLF in the path', 'https://spa.example.com/x\r\nSet-Cookie: a=b'],
    ['an encoded CRLF in the path', 'https://spa.example.com/x%0d%0aSet-Cookie:a=b'],
    ['javascript: with the host in a comment', 'javascript://spa.example.com/%0aalert(1)'],
    ['a blob: URL of the allowed origin', 'blob:https://spa.example.com/0b5e2a3c'],
    ['an origin not on the list', 'https://evil.example/'],
    ['an over-long URL', `https://spa.example.com/${'a'.repeat(2048)}`],
  ]
  for (const [label, value] of REFUSED) {
    test(`refuses ${label}: ${JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value)}`, () => {
      assert.equal(toReturnUrl(value, allowed), undefined)
    })
  }

  test('without allowed origins an absolute URL is refused exactly as before', () => {
    assert.equal(toReturnUrl('https://spa.example.com/'), undefined)
    assert.equal(toReturnUrl('https://spa.example.com/', new Set()), undefined)
    assert.equal(
      returnUrlParam(
        new URL(`https://app.example/bff/login?returnUrl=${encodeURIComponent('https://spa.example.com/')}`),
      ),
      undefined,
    )
  })

  test('local paths keep the local-path rules when origins are allowed', () => {
    assert.equal(toReturnUrl('/orders?x=1', allowed), '/orders?x=1')
    assert.equal(toReturnUrl('//spa.example.com', allowed), undefined)
    assert.equal(toReturnUrl('/\\spa.example.com', allowed), undefined)
  })

  test('every accepted absolute returnUrl takes a browser to the allowed origin, also once decoded', () => {
    for (const [, value] of [...ACCEPTED, ...REFUSED]) {
      const out = toReturnUrl(value, allowed)
      if (out === undefined) continue
      assert.match(out, /^[\x21-\x7E]+$/, 'printable ASCII, safe in a Location header')
      for (const form of [out, decodeURIComponent(out)])
        assert.ok(allowed.has(new URL(form, 'https://gatehouse.example/').origin), form)
      assert.equal(toReturnUrl(out, allowed), out, 'normalising is idempotent')
    }
  })
})

describe('config: cors.allowedOrigins and session.sameSite "none"', () => {
  const KEY = generateKey()
  const base = {
    oidc: { authority: 'https://idp.example.com', clientId: 'spa-bff', clientSecret: 'spa-bff-secret' },
    keys: [KEY],
  }
  const issuesOf = (extra: Record<string, unknown>): ConfigIssue[] => validateConfig({ ...base, ...extra }).issues

  test('allowed origins are normalised as browsers send them, duplicates dropped', () => {
    const { config, issues } = validateConfig({
      ...base,
      cors: {
        allowedOrigins: [
          'https://SPA.Example.com',
          'https://spa.example.com:443',
          'https://spa.example.com/',
          'http://localhost:5173',
          'https://bücher.example',
        ],
      },
    })
    assert.deepEqual(issues, [])
    assert.deepEqual(config!.cors, {
      allowedOrigins: ['https://spa.example.com', 'http://localhost:5173', 'https://xn--bcher-kva.example'],
    })
  })

  test('without cors the config has none, and sameSite stays "lax"', () => {
    const { config } = validateConfig(base)
    assert.equal(config!.cors, undefined)
    assert.equal(config!.session.sameSite, 'lax')
  })

  test('a wildcard, "null", a path, a query, user info, http:// off loopback and non-URLs are each one line naming the entry', () => {
    const bad = [
      '*',
      'https://*.example.com',
      'null',
      'https://spa.example.com/app',
      'https://spa.example.com?x=1',
      'https://u@spa.example.com',
      'http://spa.example.com',
      'spa.example.com',
      'ftp://spa.example.com',
    ]
    const issues = issuesOf({ cors: { allowedOrigins: bad } })
    assert.deepEqual(
      issues.map((i) => i.path),
      bad.map((_, i) => `cors.allowedOrigins[${i}]`),
    )
    assert.match(issues[0]!.message, /no wildcards/)
    assert.match(issues[1]!.message, /no wildcards/)
    assert.match(issues[2]!.message, /must not be "null"/)
    assert.match(issues[3]!.message, /no path/)
    assert.match(issues[6]!.message, /must be https:\/\//)
  })

  test('an empty list or a missing one is refused (leave cors out instead)', () => {
    assert.deepEqual(
      issuesOf({ cors: { allowedOrigins: [] } }).map((i) => i.path),
      ['cors.allowedOrigins'],
    )
    assert.deepEqual(issuesOf({ cors: {} }), [{ path: 'cors.allowedOrigins', message: 'is required' }])
    assert.deepEqual(issuesOf({ cors: { allowedOrigins: [SPA], origins: [] } }), [
      { path: 'cors.origins', message: 'unknown key' },
    ])
  })

  test('session.sameSite "none" without cors.allowedOrigins is one line naming the key', () => {
    const issues = issuesOf({ session: { sameSite: 'none' } })
    assert.equal(issues.length, 1)
    assert.equal(issues[0]!.path, 'session.sameSite')
    assert.match(`${issues[0]!.path}: ${issues[0]!.message}`, /^session\.sameSite: "none" needs cors\.allowedOrigins/)
    assert.deepEqual(
      issuesOf({ session: { sameSite: 'none' }, cors: { allowedOrigins: [] } })
        .map((i) => i.path)
        .sort(),
      ['cors.allowedOrigins', 'session.sameSite'],
    )
  })

  test('session.sameSite "none" with cors.allowedOrigins is accepted', () => {
    const { config, issues } = validateConfig({
      ...base,
      session: { sameSite: 'none' },
      cors: { allowedOrigins: [SPA] },
    })
    assert.deepEqual(issues, [])
    assert.equal(config!.session.sameSite, 'none')
  })

  test('session.sameSite "none" refuses a session-using API without the anti-forgery header', () => {
    const issues = issuesOf({
      session: { sameSite: 'none' },
      cors: { allowedOrigins: [SPA] },
      remoteApis: [
        { path: '/open', target: 'https://open.example.com', token: 'none', antiForgery: false },
        { path: '/api', target: 'https://api.example.com', antiForgery: false },
      ],
    })
    assert.deepEqual(
      issues.map((i) => i.path),
      ['remoteApis[1].antiForgery'],
    )
  })

  test('a SameSite=None cookie is still Secure, HttpOnly and host-only at Path=/', () => {
    assert.equal(
      serializeCookie('__Host-gatehouse', 'v', { sameSite: 'none' }),
      '__Host-gatehouse=v; Path=/; Secure; HttpOnly; SameSite=None',
    )
  })
})
