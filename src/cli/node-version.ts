/** The oldest Node.js gatehouse runs on (package.json `engines`): node:sqlite and the test runner's features. */
export const MIN_NODE = [22, 13] as const

/** The message for a Node.js that is too old, or undefined when `version` (`v24.1.0`, `24.1.0`) is new enough. */
export function unsupportedNode(version: string): string | undefined {
  const [major = 0, minor = 0] = version.replace(/^v/, '').split('.').map(Number)
  if (major > MIN_NODE[0] || (major === MIN_NODE[0] && minor >= MIN_NODE[1])) return undefined
  return `gatehouse needs Node.js >= ${MIN_NODE.join('.')} (this is ${version.startsWith('v') ? version : `v${version}`})`
}
