import type { IncomingMessage, ServerResponse } from 'node:http'
import { GatehouseError } from '../errors.ts'
import { sessionInfo, type SessionInfo } from '../hooks.ts'
import type { Session } from '../session/session.ts'
import { credentialsFor } from '../tokens/credentials.ts'
import { isAntiForgeryValid } from './antiforgery.ts'
import { contextFor, resolveSession, type Services } from './context.ts'
import { applyCors, LOCAL_ROUTE_CORS } from './cors.ts'
import { runFrontend, type Next } from './dispatch.ts'
import { abort, failureReply, writeReply } from './render.ts'

export type NodeHandler = (req: IncomingMessage, res: ServerResponse) => void
export type Middleware = (req: IncomingMessage, res: ServerResponse, next: Next) => void

/** What gatehouse offers an app's own routes (docs/frameworks.md); documented on the Gatehouse interface. */
export interface Library {
  protect(): Middleware
  protect(handler: NodeHandler): NodeHandler
  getSession(req: IncomingMessage, res?: ServerResponse): Promise<SessionInfo | undefined>
  getAccessToken(
    req: IncomingMessage,
    type?: 'user' | 'client' | 'userOrClient',
    res?: ServerResponse,
  ): Promise<string | undefined>
  frontendFallback(req: IncomingMessage, res: ServerResponse, next?: Next): void
}

/**
 * The library calls for the app's own routes. They share one context per request (contextFor) and
 * read the session once per request, whichever of them asks first.
 */
export function createLibrary(services: Services): Library {
  const { config, sessions, log } = services
  const sessionOf = new WeakMap<IncomingMessage, Promise<Session | undefined>>()
  const lookup = (req: IncomingMessage): Promise<Session | undefined> => {
    let found = sessionOf.get(req)
    if (!found) sessionOf.set(req, (found = resolveSession(contextFor(req, services), true)))
    return found
  }

  /** The app's response for a request, so cookie changes made in library calls reach the browser. */
  const responses = new WeakMap<IncomingMessage, ServerResponse>()
  const flushCookies = (req: IncomingMessage): void => {
    const ctx = contextFor(req, services)
    const res = responses.get(req)
    if (!res || res.headersSent || ctx.setCookies.length === 0) return
    for (const line of ctx.setCookies.splice(0)) res.appendHeader('set-cookie', line)
  }

  const guard = async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    const ctx = contextFor(req, services)
    responses.set(req, res)
    try {
      if (ctx.invalid) throw ctx.invalid
      // A preflight from the SPA's other origin is answered here, before the anti-forgery header it asks about.
      const preflight =
        services.cors === undefined ? undefined : applyCors(services.cors, req, res, LOCAL_ROUTE_CORS, ctx.requestId)
      if (preflight) {
        writeReply(res, preflight, ctx)
        return false
      }
      if (!isAntiForgeryValid(req.headers, config.antiForgery)) throw new GatehouseError('antiforgery_failed')
      if (!(await lookup(req))) throw new GatehouseError('session_required')
      flushCookies(req)
      return true
    } catch (err) {
      writeReply(res, failureReply(err, ctx, 'api'), ctx)
      return false
    }
  }

  function protect(): Middleware
  function protect(handler: NodeHandler): NodeHandler
  function protect(handler?: NodeHandler): Middleware | NodeHandler {
    // A handler that throws or rejects gets a 500 problem instead of an unhandled rejection.
    const fail = (req: IncomingMessage, res: ServerResponse) => (err: unknown) =>
      abort(res, contextFor(req, services), err)
    if (handler)
      return (req: IncomingMessage, res: ServerResponse) =>
        void guard(req, res)
          .then((ok) => ok && handler(req, res))
          .catch(fail(req, res))
    return (req: IncomingMessage, res: ServerResponse, next: Next) =>
      void guard(req, res)
        .then((ok) => ok && next())
        .catch(fail(req, res))
  }

  return {
    protect,
    async getSession(req, res) {
      if (res) responses.set(req, res)
      const session = await lookup(req)
      flushCookies(req)
      return session && sessionInfo(session)
    },
    async getAccessToken(req, type = 'user', res) {
      if (res) responses.set(req, res)
      const ctx = contextFor(req, services)
      ctx.session = await lookup(req)
      const { token } = await credentialsFor(
        ctx,
        type === 'user' ? USER_OR_NONE : type === 'client' ? CLIENT : USER_OR_CLIENT,
      )
      if (token.kind === 'none') return undefined
      if (token.refreshed) {
        if (!sessions.shared && !responses.has(req)) {
          log.warn(
            { event: 'cookie_not_written' },
            'getAccessToken refreshed a cookie-mode session without a response to write it to; pass res',
          )
        }
        flushCookies(req)
      }
      return token.value
    },
    frontendFallback(req, res, next) {
      const ctx = contextFor(req, services)
      if (!ctx.frontend.serve || ctx.invalid || (req.method !== 'GET' && req.method !== 'HEAD')) {
        return next ? next() : void writeReply(res, failureReply(new GatehouseError('not_found'), ctx, 'api'), ctx)
      }
      void runFrontend(ctx, res, next, true)
    },
  }
}

const USER_OR_NONE = { token: 'userOrNone' } as const
const CLIENT = { token: 'client' } as const
const USER_OR_CLIENT = { token: 'userOrClient' } as const
