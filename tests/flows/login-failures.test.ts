import assert from 'node:assert/strict'
import { request } from 'node:http'
import { after, before, describe, test } from 'node:test'
import { pino } from 'pino'
import { CLIENT_SECRET, CSRF, startFlow, stopIdp, type Flow } from '../helpers/flow.ts'
import { logLines } from '../helpers/log-lines.ts'

/**
 * Every failed login, callback or discovery is explained by one structured warn line (event, cause,
 * what explains it) — and none of them is a 500 or leaves a session.
 */

const WARN = 40
const COOKIE = '__Host-gatehouse'

interface Logged {
  flow: Flow
  entries(): Array<Record<string, unknown>>
  lines: string[]
}

async function startLogged(options: Parameters<typeof startFlow>[0] = {}): Promise<Logged> {
  const { sink, entries, lines } = logLines()
  const flow = await startFlow({ ...options, runtime: { logger: pino({ level: 'debug' }, sink), ...options.runtime } })
  return { flow, entries, lines }
}

function failureLines(logged: Logged, event: string): Array<Record<string, unknown>> {
  return logged.entries().filter((e) => e.event === event)
}

/** Starts a login in `browser` and returns the state the IdP would send back. */
async function pendingState(
  logged: Logged,
  browser = logged.flow.browser(),
): Promise<{ browser: typeof browser; state: string }> {
  const res = await browser.get(`${logged.flow.origin}/bff/login`)
  assert.equal(res.status, 302)
  return { browser, state: new URL(res.headers.get('location')!).searchParams.get('state')! }
}

describe('a failed callback says why in one warn line', () => {
  let logged: Logged
  before(async () => {
    logged = await startLogged()
  })
  after(() => logged.flow.close())

  test("an IdP error (access_denied) is logged with the IdP's error and error_description; the user gets a 400 page and no session", async () => {
    const { browser, state } = await pendingState(logged)
    const description = 'The user denied the request\u0000<script>'
    const res = await browser.get(
      `${logged.flow.origin}/signin-oidc?${new URLSearchParams({ state, error: 'access_denied', error_description: description })}`,
    )
    assert.equal(res.status, 400)
    assert.equal(browser.cookies.has(COOKIE), false)
    const line = failureLines(logged, 'login_failed').at(-1)!
    assert.equal(line.level, WARN)
    assert.equal(line.cause, 'idp_error')
    assert.equal(line.error, 'access_denied')
    assert.equal(
      line.error_description,
      'The user denied the request?<script>',
      "the description is kept to OAuth's charset",
    )
    assert.equal(line.status, 400)
  })

  test('a callback from a browser without the login cookie logs state_missing and says the browser sent no login cookie', async () => {
    const { state } = await pendingState(logged)
    const stranger = logged.flow.browser()
    const res = await stranger.get(`${logged.flow.origin}/signin-oidc?state=${state}&code=abc`)
    assert.equal(res.status, 400)
    const line = failureLines(logged, 'login_failed').at(-1)!
    assert.equal(line.cause, 'state_missing')
    assert.match(String(line.problem), /no login cookie/)
    assert.ok(typeof line.hint === 'string' && line.hint.length > 0)
  })

  test('a replayed callback logs state_missing: the pending login is single-use', async () => {
    const { browser, state } = await pendingState(logged)
    const first = await browser.get(`${logged.flow.origin}/signin-oidc?state=${state}&error=access_denied`)
    assert.equal(first.status, 400)
    // The cookie was deleted by the first answer; a browser that kept it anyway (replay) gets the same.
    const replay = await browser.get(`${logged.flow.origin}/signin-oidc?state=${state}&code=abc`)
    assert.equal(replay.status, 400)
    assert.equal(failureLines(logged, 'login_failed').at(-1)!.cause, 'state_missing')
  })

  test('a callback reaching another host name than publicOrigin is refused before the callback runs: 421, or a 308 to publicOrigin for a navigation', async () => {
    const { state } = await pendingState(logged)
    const { port } = new URL(logged.flow.origin)
    const failures = failureLines(logged, 'login_failed').length
    const callAt = (accept: string | undefined) =>
      new Promise<{ status: number; location: string | undefined }>((resolve, reject) => {
        request(
          {
            host: '127.0.0.1',
            port,
            path: `/signin-oidc?state=${state}&code=abc`,
            headers: { host: `localhost:${port}`, ...(accept ? { accept } : {}) },
          },
          (res) => {
            res.resume()
            resolve({ status: res.statusCode!, location: res.headers.location })
          },
        )
          .on('error', reject)
          .end()
      })
    assert.deepEqual(await callAt(undefined), { status: 421, location: undefined })
    // The browser is sent on to publicOrigin, where its login cookie is.
    assert.deepEqual(await callAt('text/html'), {
      status: 308,
      location: `${logged.flow.origin}/signin-oidc?state=${state}&code=abc`,
    })
    assert.equal(failureLines(logged, 'login_failed').length, failures, 'no login was attempted on the wrong host')
  })

  test('a forged code is refused by the IdP: idp_error invalid_grant logged, 400, no session, no secret in any line', async () => {
    const { browser, state } = await pendingState(logged)
    const res = await browser.get(
      `${logged.flow.origin}/signin-oidc?state=${state}&code=forged-code&iss=${encodeURIComponent(logged.flow.idp.issuer)}`,
    )
    assert.equal(res.status, 400)
    assert.equal(browser.cookies.has(COOKIE), false)
    const line = failureLines(logged, 'login_failed').at(-1)!
    assert.equal(line.cause, 'idp_error')
    assert.equal(line.error, 'invalid_grant')
    assert.ok(
      !logged.lines.some((l) => l.includes(CLIENT_SECRET) || l.includes('forged-code')),
      'neither the secret nor the code is logged',
    )
  })
})

describe('a broken discovery document fails logins with 502, never 500, and says why', () => {
  const cases: Array<{
    name: string
    rewrite: (doc: Record<string, unknown>) => Record<string, unknown>
    cause: string
  }> = [
    {
      name: 'a document without token_endpoint',
      rewrite: ({ token_endpoint: _t, ...doc }) => doc,
      cause: 'invalid_document',
    },
    {
      name: 'a document whose jwks_uri is not a URL',
      rewrite: (doc) => ({ ...doc, jwks_uri: 'not a url' }),
      cause: 'invalid_document',
    },
    {
      name: 'a document whose issuer is a number',
      rewrite: (doc) => ({ ...doc, issuer: 42 }),
      cause: 'invalid_document',
    },
  ]
  for (const { name, rewrite, cause } of cases) {
    test(`${name}: /bff/login 502, /readyz 503, a discovery_failed ${cause} line`, async () => {
      const logged = await startLogged({ idp: { discovery: rewrite } })
      try {
        const res = await logged.flow.browser().get(`${logged.flow.origin}/bff/login`)
        assert.equal(res.status, 502, res.text)
        assert.equal((await fetch(`${logged.flow.origin}/readyz`)).status, 503)
        const line = failureLines(logged, 'discovery_failed').at(-1)!
        assert.equal(line.cause, cause)
        assert.equal(line.level, 50, 'a 502 is logged at error level')
      } finally {
        await logged.flow.close()
      }
    })
  }

  test('a discovery answer that is not JSON: 502 and discovery_failed not_json', async () => {
    const logged = await startLogged({
      idp: {
        intercept: (_req, res, path) => {
          if (!path.endsWith('/.well-known/openid-configuration')) return false
          res.writeHead(200, { 'content-type': 'text/html' }).end('<html>maintenance</html>')
          return true
        },
      },
    })
    try {
      assert.equal((await logged.flow.browser().get(`${logged.flow.origin}/bff/login`)).status, 502)
      assert.equal(failureLines(logged, 'discovery_failed').at(-1)!.cause, 'not_json')
      assert.equal(
        (await logged.flow.browser().get(`${logged.flow.origin}/bff/user`, CSRF)).status,
        401,
        'gatehouse keeps serving',
      )
    } finally {
      await logged.flow.close()
    }
  })
})

describe('a logout while the IdP is down', () => {
  test("ends the session, still redirects to the IdP's end-session endpoint, and logs logout_failed for the failed revocation", async () => {
    const logged = await startLogged()
    try {
      const browser = logged.flow.browser()
      await logged.flow.login(browser)
      const claims = JSON.parse((await browser.get(`${logged.flow.origin}/bff/user`, CSRF)).text) as Array<{
        type: string
        value: string
      }>
      const logoutUrl = claims.find((c) => c.type === 'bff:logout_url')!.value
      const restart = await stopIdp(logged.flow)
      let status: number
      try {
        status = (await browser.get(`${logged.flow.origin}${logoutUrl}`)).status
      } finally {
        await restart()
      }
      assert.equal(status, 302)
      assert.equal((await browser.get(`${logged.flow.origin}/bff/user`, CSRF)).status, 401, 'the session ended anyway')
      const line = failureLines(logged, 'logout_failed').at(-1)!
      assert.equal(line.level, WARN)
      assert.equal(line.stage, 'revocation')
      assert.equal(line.cause, 'idp_unavailable')
    } finally {
      await logged.flow.close()
    }
  })
})
