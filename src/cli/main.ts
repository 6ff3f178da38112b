#!/usr/bin/env node
// The entry point checks the Node.js version before loading anything else: an older Node.js cannot
// even load gatehouse's modules (node:sqlite), and would print a stack trace instead of the reason.
import { unsupportedNode } from './node-version.ts'

const problem = unsupportedNode(process.version)
if (problem) {
  process.stderr.write(`${problem}\n`)
  process.exit(1)
}
await import('./run.ts')
