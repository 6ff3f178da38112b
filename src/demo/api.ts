import { createHash } from 'node:crypto'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { calculateJwkThumbprint, EmbeddedJWK, jwtVerify } from 'jose'

export interface DemoApi {
  url: string
  server: Server
  close(): Promise<void>
}

/** How long a DPoP proof is accepted after its iat, and its jti remembered against replay. */
const PROOF_MAX_AGE_SEC = 60

/**
 * The demo's separate API process (a plain HTTP service on its own port): it trusts nothing but the
 * access token gatehouse attaches, checks it at the IdP (RFC 7662 introspection) and answers what
 * it learned — subject and scopes — never the token. A DPoP-bound token (oidc.dpop) is accepted only
 * with a valid proof of the key it is bound to (RFC 9449 §7), as a resource server must.
 */
export async function startDemoApi(options: {
  introspectionEndpoint: string
  clientId: string
  clientSecret: string
  port?: number
}): Promise<DemoApi> {
  const basic = `Basic ${Buffer.from(`${options.clientId}:${options.clientSecret}`).toString('base64')}`
  const seenProofs = new Map<string, number>()
  let origin = ''
  const server = createServer(async (req, res) => {
    const send = (status: number, body: unknown) =>
      res
        .writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' })
        .end(JSON.stringify(body))
    if (req.method !== 'GET' || !req.url?.startsWith('/hello')) return send(404, { error: 'not_found' })
    const match = /^(Bearer|DPoP) (\S+)$/i.exec(req.headers.authorization ?? '')
    if (!match) return send(401, { error: 'no access token' })
    const token = match[2]!
    const dpop = match[1]!.toLowerCase() === 'dpop'
    const provenKey = dpop ? await verifyProof(req, `${origin}${req.url.split('?')[0]}`, token, seenProofs) : undefined
    if (dpop && !provenKey) return send(401, { error: 'invalid DPoP proof' })
    try {
      const answer = await fetch(options.introspectionEndpoint, {
        method: 'POST',
        headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token }),
        signal: AbortSignal.timeout(5_000),
      })
      const info = (await answer.json()) as {
        active?: boolean
        sub?: string
        scope?: string
        client_id?: string
        exp?: number
        cnf?: { jkt?: string }
      }
      if (!info.active) return send(401, { error: 'token not active' })
      // A bound token without a proof of its key is a stolen one; a proof is only worth the token it is bound to.
      if (info.cnf?.jkt !== provenKey)
        return send(401, {
          error: info.cnf?.jkt
            ? 'the token is DPoP-bound: a proof of its key is required'
            : "the token is not bound to the proof's key",
        })
      send(200, {
        message: 'Hello from the demo API',
        tokenSeenByApi: {
          active: true,
          sub: info.sub,
          scope: info.scope,
          clientId: info.client_id,
          expiresAt: info.exp ? new Date(info.exp * 1000).toISOString() : undefined,
          dpopBoundTo: info.cnf?.jkt ?? null,
        },
        cookieSeenByApi: req.headers.cookie ?? null,
        at: new Date().toISOString(),
      })
    } catch {
      send(502, { error: 'the IdP could not be reached' })
    }
  })
  // A port in use rejects (EADDRINUSE) rather than crashing the process with an unhandled 'error' event.
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    url: origin,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

/**
 * RFC 9449 §4.3: signed by the key it embeds, typ dpop+jwt, this request's method and URL, recent,
 * for this access token (ath), and never seen before (jti). Returns the key's thumbprint.
 */
async function verifyProof(
  req: IncomingMessage,
  url: string,
  accessToken: string,
  seen: Map<string, number>,
): Promise<string | undefined> {
  const proof = req.headers.dpop
  if (typeof proof !== 'string') return undefined
  try {
    const { payload, protectedHeader } = await jwtVerify(proof, EmbeddedJWK, {
      typ: 'dpop+jwt',
      algorithms: ['ES256', 'ES384', 'ES512'],
      maxTokenAge: PROOF_MAX_AGE_SEC,
      clockTolerance: 5,
    })
    const ath = createHash('sha256').update(accessToken).digest('base64url')
    if (
      payload.htm !== req.method ||
      payload.htu !== url ||
      payload.ath !== ath ||
      typeof payload.jti !== 'string' ||
      seen.has(payload.jti)
    )
      return undefined
    const now = Date.now()
    for (const [jti, at] of seen) if (now - at > PROOF_MAX_AGE_SEC * 1000) seen.delete(jti)
    seen.set(payload.jti, now)
    return await calculateJwkThumbprint(protectedHeader.jwk!)
  } catch {
    return undefined
  }
}
