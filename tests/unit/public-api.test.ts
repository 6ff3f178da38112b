// The public API (every export of gatehouse-bff, gatehouse-bff/client and gatehouse-bff/testing,
// with its types) is checked in as api/public-api.md, so a change to it shows in review as a diff of
// that file. This test fails when the code's API and the file differ.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { renderPublicApi, snapshotPath } from '../../scripts/public-api.ts'

/** A unified diff of two texts by lines, with `context` unchanged lines around each change. */
function lineDiff(expected: string, actual: string, context = 3): string {
  const a = expected.split('\n')
  const b = actual.split('\n')
  // Longest common subsequence table, from the end, so the walk below can go forwards.
  const lcs = Array.from({ length: a.length + 1 }, () => new Array<number>(b.length + 1).fill(0))
  for (let i = a.length - 1; i >= 0; i--)
    for (let j = b.length - 1; j >= 0; j--)
      lcs[i]![j] = a[i] === b[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!)
  const ops: { kind: ' ' | '-' | '+'; line: string; at: number }[] = []
  let i = 0
  let j = 0
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) ops.push({ kind: ' ', line: a[i++]!, at: j++ })
    else if (i < a.length && (j === b.length || lcs[i + 1]![j]! >= lcs[i]![j + 1]!))
      ops.push({ kind: '-', line: a[i++]!, at: j })
    else ops.push({ kind: '+', line: b[j]!, at: j++ })
  }
  const shown = ops.map(
    (op, k) => op.kind !== ' ' || ops.slice(Math.max(0, k - context), k + context + 1).some((o) => o.kind !== ' '),
  )
  const out: string[] = []
  ops.forEach((op, k) => {
    if (!shown[k]) return
    if (k === 0 || !shown[k - 1]) out.push(`@@ near line ${op.at + 1} of the current API @@`)
    out.push(`${op.kind} ${op.line}`)
  })
  return out.join('\n')
}

test('the public API matches api/public-api.md (run `npm run api:update` when the change is intended)', () => {
  const current = renderPublicApi()
  let recorded = ''
  try {
    recorded = readFileSync(snapshotPath, 'utf8')
  } catch {
    assert.fail('api/public-api.md is missing: run `npm run api:update` and commit it')
  }
  if (current !== recorded) {
    assert.fail(
      [
        'The public API differs from api/public-api.md (- recorded, + current):',
        '',
        lineDiff(recorded, current),
        '',
        'If the change is intended, run `npm run api:update` and commit api/public-api.md with it;',
        'otherwise an export or one of its types changed by accident.',
      ].join('\n'),
    )
  }
})

test('the API diff shows what was removed and added, with the lines around it', () => {
  const before = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j'].join('\n')
  const after = ['a', 'b', 'c', 'D', 'e', 'f', 'g', 'h', 'i', 'j', 'k'].join('\n')
  assert.equal(
    lineDiff(before, after, 1),
    [
      '@@ near line 3 of the current API @@',
      '  c',
      '- d',
      '+ D',
      '  e',
      '@@ near line 10 of the current API @@',
      '  j',
      '+ k',
    ].join('\n'),
  )
  assert.equal(lineDiff('same\ntext', 'same\ntext'), '')
})
