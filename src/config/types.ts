import type { z } from 'zod'
import type { CLIENT_AUTH_METHODS, configSchema, DPOP_SIGNING_ALGS, TOKEN_REQUIREMENTS } from './validate.ts'

/**
 * The configuration's types, derived from the validation schema (validate.ts): a key added there is
 * a key here. Only ConfigIssue, validation's own output, is written by hand.
 */

export interface ConfigIssue {
  /** Dotted key path with array indexes, e.g. `remoteApis[0].target`. */
  path: string
  message: string
}

/** Validated, frozen configuration: durations in ms, defaults filled in. What the schema outputs. */
export type Config = z.output<typeof configSchema>
export type OidcConfig = Config['oidc']
export type SessionConfig = Config['session']
export type RemoteApiConfig = Config['remoteApis'][number]
export type FrontendConfig = Config['frontends'][number]
export type LimitsConfig = Config['limits']
/** DPoP (RFC 9449) sender-constrained tokens: proofs signed with a key of this algorithm. */
export type DpopConfig = NonNullable<OidcConfig['dpop']>

export type TokenRequirement = (typeof TOKEN_REQUIREMENTS)[number]
export type ClientAuthMethod = (typeof CLIENT_AUTH_METHODS)[number]
export type DpopSigningAlg = (typeof DPOP_SIGNING_ALGS)[number]
