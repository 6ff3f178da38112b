export { createGatehouse } from './gatehouse.ts'
export type { Gatehouse, RuntimeOptions, Middleware, NodeHandler } from './gatehouse.ts'
export type { Hooks, SessionInfo, SessionEndEvent } from './hooks.ts'
export type { EndReason } from './session/session-events.ts'
export type { GatehouseOptions } from './config/validate.ts'
export type { Config, ConfigIssue, TokenRequirement } from './config/types.ts'
export { GatehouseError, ERRORS, type ErrorCode } from './errors.ts'
export {
  matchesFilter,
  type SessionStore,
  type SessionRecord,
  type SessionFilter,
  type SessionEndNotice,
} from './session/store.ts'
export type { Claim } from './session/session.ts'
