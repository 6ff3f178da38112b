import { GatehouseError } from '../errors.ts'
import { deleteCookie, serializeCookie } from '../http/cookies.ts'
import { singleParam, type Handler } from '../http/context.ts'
import { redirect } from '../http/reply.ts'
import { isReturnUrlAccepted, returnUrlParam, returnUrlRule } from '../http/return-url.ts'
import { withoutReserved } from '../hooks.ts'
import { LOGIN_STATE_MAX_AGE_MS, loginCookieName, sealLoginState, staleLoginCookies } from '../oidc/login-state.ts'
import { loginResources } from '../tokens/resource.ts'

/** What a loginParams hook cannot set: the parameters that carry the flow's own protection. */
const RESERVED_AUTHORIZE_PARAMS: ReadonlySet<string> = new Set([
  'client_id',
  'redirect_uri',
  'response_type',
  'response_mode',
  'scope',
  'state',
  'nonce',
  'code_challenge',
  'code_challenge_method',
  'request',
  'request_uri',
  'resource',
  'prompt',
])

/**
 * GET /bff/login?returnUrl=/local&prompt=… — starts the authorization code flow with PKCE S256,
 * binding state, nonce and verifier to this browser in a sealed cookie. Also with a session (re-login).
 */
export const login: Handler = async (ctx) => {
  const { config, keyRing, now } = ctx.services
  const { oidc: client, oidcConfig, prefix } = ctx.frontend
  const errors: Record<string, string[]> = {}
  const promptParam = singleParam(ctx.url, 'prompt')
  // prompt=none is the silent (iframe) login: without a returnUrl it ends on the page that tells the app.
  const silent = promptParam.value === 'none'
  // Without a returnUrl: the frontend's own root (as Duende's PathBase), "/" for the root frontend.
  const returnUrl =
    silent && !ctx.url.searchParams.has('returnUrl')
      ? `${prefix}${config.managementBasePath}/silent-login-callback`
      : returnUrlParam(ctx.url, ctx.services.cors?.origins, `${prefix}/`)
  if (returnUrl === undefined || !(await isReturnUrlAccepted(ctx, returnUrl)))
    errors.returnUrl = [returnUrlRule(ctx.services.cors?.origins)]
  if (promptParam.repeated) errors.prompt = ['must be given at most once']
  else if (promptParam.value !== undefined && !(await client.promptValuesSupported()).includes(promptParam.value)) {
    errors.prompt = ["is not one of the identity provider's prompt_values_supported"]
  }
  if (Object.keys(errors).length)
    throw new GatehouseError(errors.returnUrl ? 'return_url_invalid' : 'prompt_invalid', undefined, { errors })

  const apis = loginResources(config.remoteApis)
  const request = await client.authorizationRequest({
    extraParams: {
      ...oidcConfig.extraAuthParams,
      ...withoutReserved(await ctx.services.hooks.loginParams?.(ctx.req), RESERVED_AUTHORIZE_PARAMS),
    },
    redirectUri: new URL(`${prefix}${config.oidc.redirectPath}`, ctx.origin).href,
    scope: [...new Set([...oidcConfig.scopes, ...apis.scopes])].join(' '),
    // The grant must cover every API's resource, or the IdP refuses its resource tokens (invalid_target).
    resources: apis.resources,
    prompt: promptParam.value,
  })
  const { state, nonce, codeVerifier, resources } = request
  const cookie = serializeCookie(
    loginCookieName(config.session.cookieName, state),
    sealLoginState(keyRing, {
      state,
      nonce,
      codeVerifier,
      returnUrl: returnUrl!,
      frontend: ctx.frontend.name,
      silent,
      resources,
      createdAt: now(),
    }),
    // Lax even when sessions are Strict: the IdP's redirect back is a cross-site top-level navigation.
    { sameSite: 'lax', maxAgeSec: LOGIN_STATE_MAX_AGE_MS / 1000 },
  )
  const stale = staleLoginCookies(keyRing, ctx.cookies, config.session.cookieName).map((name) =>
    deleteCookie(name, 'lax'),
  )
  return redirect(request.url.href, [...stale, cookie])
}

/** GET /bff/silent-login — the legacy entry of the iframe login: /bff/login?prompt=none (SPEC §3). */
export const silentLogin: Handler = async (ctx) => {
  const url = new URL(ctx.url)
  url.search = ''
  url.searchParams.set('prompt', 'none')
  return login({ ...ctx, url })
}
