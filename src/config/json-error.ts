/**
 * Why `text` is not JSON, as `what at line L, column C`, from JSON.parse's error. Never V8's own
 * message as it is: some forms quote the text around the error ("Unexpected token 'S', ..."tSecret":
 * SUPERSECRE"... is not valid JSON"), which may be a secret written without quotes.
 */
export function describeJsonError(text: string, err: unknown): string {
  const message = err instanceof Error ? err.message : ''
  const positioned = /^(.*?) in JSON at position (\d+)/.exec(message)
  if (positioned) return `${lowerFirst(positioned[1]!)} at ${lineAndColumn(text, Number(positioned[2]))}`
  if (/^Unexpected end of JSON input/.test(message))
    return `unexpected end of input at ${lineAndColumn(text, text.length)}`
  return `unexpected character at ${lineAndColumn(text, errorOffset(text))}`
}

function lowerFirst(text: string): string {
  return text.charAt(0).toLowerCase() + text.slice(1)
}

/** `line L, column C` (both from 1) of a UTF-16 offset. */
export function lineAndColumn(text: string, offset: number): string {
  const before = text.slice(0, offset)
  const line = before.split('\n').length
  return `line ${line}, column ${offset - before.lastIndexOf('\n')}`
}

const NUMBER = /-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y

/** The offset of the first character that stops `text` from being JSON (RFC 8259), or its length. */
function errorOffset(text: string): number {
  let i = 0
  const space = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++
  }
  // Each returns false at the offending character, leaving i on it.
  const value = (): boolean => {
    space()
    const c = text[i]
    if (c === '{') return object()
    if (c === '[') return array()
    if (c === '"') return string()
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return number()
    for (const word of ['true', 'false', 'null']) {
      if (text.startsWith(word, i)) {
        i += word.length
        return true
      }
    }
    // Point at the first character that differs from a literal it began.
    for (const word of ['true', 'false', 'null']) {
      if (c === word[0]) {
        let k = 0
        while (text[i + k] === word[k]) k++
        i += k
        return false
      }
    }
    return false
  }
  const object = (): boolean => {
    i++
    space()
    if (text[i] === '}') return (i++, true)
    for (;;) {
      space()
      if (text[i] !== '"' || !string()) return false
      space()
      if (text[i] !== ':') return false
      i++
      if (!value()) return false
      space()
      if (text[i] === '}') return (i++, true)
      if (text[i] !== ',') return false
      i++
    }
  }
  const array = (): boolean => {
    i++
    space()
    if (text[i] === ']') return (i++, true)
    for (;;) {
      if (!value()) return false
      space()
      if (text[i] === ']') return (i++, true)
      if (text[i] !== ',') return false
      i++
    }
  }
  const string = (): boolean => {
    i++
    while (i < text.length) {
      const c = text[i]!
      if (c === '"') return (i++, true)
      if (c < ' ') return false
      if (c === '\\') {
        const e = text[i + 1]
        if (e === 'u') {
          if (!/^[0-9A-Fa-f]{4}$/.test(text.slice(i + 2, i + 6))) return (i++, false)
          i += 6
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i += 2
        else return (i++, false)
      } else i++
    }
    return false
  }
  const number = (): boolean => {
    NUMBER.lastIndex = i
    const match = NUMBER.exec(text)
    if (!match) return (text[i] === '-' && i++, false)
    i += match[0].length
    return true
  }
  if (!value()) return Math.min(i, text.length)
  space()
  return i
}
