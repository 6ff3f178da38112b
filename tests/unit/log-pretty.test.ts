import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { describe, test } from 'node:test'
import { loggerAccessLog } from '../../src/access-log.ts'
import { createLogger } from '../../src/log.ts'
import { formatLine, prettyDestination } from '../../src/log-pretty.ts'

/** A destination that keeps what is written to it; `isTTY` makes it look like a terminal. */
function sink(isTTY = false): { lines: () => string[]; text: () => string; stream: Writable & { isTTY?: boolean } } {
  let text = ''
  const stream: Writable & { isTTY?: boolean } = new Writable({
    decodeStrings: false,
    write(chunk: string | Buffer, _encoding, done) {
      text += String(chunk)
      done()
    },
  })
  if (isTTY) stream.isTTY = true
  return { stream, text: () => text, lines: () => text.split('\n').filter(Boolean) }
}

const ESC = '\x1b'
const TIME = /^\d\d:\d\d:\d\d\.\d{3} /

describe('pretty log lines', () => {
  test('one line per event: local time, level name, message, then key=value', () => {
    const at = new Date(2026, 0, 2, 3, 4, 5, 67).getTime()
    const line = formatLine(
      JSON.stringify({
        level: 30,
        time: at,
        pid: 42,
        hostname: 'box',
        name: 'gatehouse',
        msg: 'gatehouse 0.1.0 started',
        event: 'listening',
        url: 'http://127.0.0.1:8080',
        remoteApis: 2,
        publicOrigin: null,
        ok: true,
      }),
      false,
    )
    assert.equal(
      line,
      '03:04:05.067 INFO  gatehouse 0.1.0 started event=listening url=http://127.0.0.1:8080 remoteApis=2 publicOrigin=null ok=true',
    )
  })

  test('every level gets its name, from a real logger writing in the pretty format', () => {
    const out = sink()
    const log = createLogger('trace', out.stream, 'pretty')
    log.trace('t')
    log.debug('d')
    log.info('i')
    log.warn('w')
    log.error('e')
    log.fatal('f')
    const lines = out.lines()
    assert.equal(lines.length, 6)
    for (const line of lines) assert.match(line, TIME)
    assert.deepEqual(
      lines.map((line) => line.slice(13)),
      ['TRACE t', 'DEBUG d', 'INFO  i', 'WARN  w', 'ERROR e', 'FATAL f'],
    )
    assert.doesNotMatch(out.text(), /\{"level"/, 'no JSON line')
    assert.doesNotMatch(out.text(), /name=|pid=|hostname=/, 'the logger base is left out')
  })

  test('strings with spaces, quotes or = are quoted; nested objects and arrays are compact JSON', () => {
    const out = sink()
    createLogger('info', out.stream, 'pretty').info(
      {
        event: 'login_failed',
        hint: 'check the redirect URI',
        eq: 'a=b',
        empty: '',
        err: { error: 'TypeError: fetch failed', cause1: 'Error(ECONNREFUSED): connect' },
        origins: ['https://a.example', 'https://b.example'],
      },
      'login failed',
    )
    const [line] = out.lines()
    assert.ok(
      line!.endsWith(
        'INFO  login failed event=login_failed hint="check the redirect URI" eq="a=b" empty="" err={"error":"TypeError: fetch failed","cause1":"Error(ECONNREFUSED): connect"} origins=["https://a.example","https://b.example"]',
      ),
      line,
    )
  })

  test('redaction applies before formatting: a redacted key reads [redacted]', () => {
    const out = sink()
    const log = createLogger('info', out.stream, 'pretty')
    log.info(
      {
        token: 'tok-SECRET-1',
        headers: { authorization: 'Bearer tok-SECRET-2', cookie: '__Host-gatehouse=SECRET-3' },
        session: { refreshToken: 'tok-SECRET-4' },
      },
      'slipped',
    )
    const text = out.text()
    assert.match(text, / token=\[redacted\] /)
    assert.match(text, /headers=\{"authorization":"\[redacted\]","cookie":"\[redacted\]"\}/)
    assert.match(text, /session=\{"refreshToken":"\[redacted\]"\}/)
    assert.doesNotMatch(text, /SECRET/)
  })

  test('the access logger writes through the same pretty destination', () => {
    const out = sink()
    const access = loggerAccessLog(createLogger('info', out.stream, 'pretty'))
    access.line('request', { requestId: 'r-1', method: 'GET', path: '/bff/user', status: 401, ms: 3 })
    const [line] = out.lines()
    assert.match(line!, TIME)
    assert.ok(line!.endsWith('INFO  request requestId=r-1 method=GET path=/bff/user status=401 ms=3'), line)
  })

  test('odd input never throws: what is not a JSON object is written as it came', () => {
    assert.equal(formatLine('plain text, not JSON', false), 'plain text, not JSON')
    assert.equal(formatLine('{"level":30,', false), '{"level":30,')
    assert.equal(formatLine('[1,2]', false), '[1,2]')
    assert.equal(formatLine('42', false), '42')
    assert.equal(formatLine('null', false), 'null')
    assert.match(formatLine('{}', false), /^\d\d:\d\d:\d\d\.\d{3} LOG$/)
    assert.match(
      formatLine('{"level":35,"time":"not a time","msg":{"an":"object"}}', false),
      /^\d\d:\d\d:\d\d\.\d{3} LEVEL35 \{"an":"object"\}$/,
    )
    assert.match(formatLine('{"level":"warn","msg":"labelled"}', false), /^\d\d:\d\d:\d\d\.\d{3} WARN  labelled$/)
    const out = sink()
    const destination = prettyDestination(out.stream, { colors: false })
    destination.write('')
    destination.write('\n\n')
    destination.write('{"level":30,"time":0,"msg":"one"}\nnot json\n{"level":40,"time":0,"msg":"two"}\n')
    const lines = out.lines()
    assert.equal(lines.length, 3, 'one line for each line written, none for empty ones')
    assert.match(lines[0]!, /^\d\d:\d\d:\d\d\.\d{3} INFO  one$/)
    assert.equal(lines[1], 'not json')
    assert.match(lines[2]!, /^\d\d:\d\d:\d\d\.\d{3} WARN  two$/)
  })

  test('control characters in a message or value cannot fake a line or drive the terminal', () => {
    const out = sink()
    createLogger('info', out.stream, 'pretty').info(
      { path: '/x\n12:00:00.000 INFO  forged', reason: `\u001b[2Jcleared`, rtl: 'abc\u202Edef' },
      'bad\r\nmessage\u001b[31m',
    )
    const lines = out.lines()
    assert.equal(lines.length, 1, 'still one line')
    assert.ok(!lines[0]!.includes(ESC), 'no escape character reaches the terminal')
    assert.ok(!lines[0]!.includes('\u202E'), 'no right-to-left override')
    assert.match(
      lines[0]!,
      /bad\\r\\nmessage\\u001b\[31m path="\/x\\n12:00:00\.000 INFO  forged" reason="\\u001b\[2Jcleared" rtl="abc\\u202edef"/,
    )
    assert.equal(formatLine('raw \u001b[2J line', false), 'raw \\u001b[2J line')
  })

  test('a message or key cannot fake a field within the line: a message with "=" and keys that are not plain words are quoted', () => {
    const line = formatLine(
      JSON.stringify({
        level: 30,
        time: 0,
        msg: 'login ok event=login_ok sub=admin',
        event: 'login_failed',
        'a=1 user': 'x',
        'k\nINFO fake': 'v',
        'with space': 1,
        'remoteApis[0].path': '/api',
      }),
      false,
    )
    assert.equal(
      line.replace(TIME, ''),
      'INFO  "login ok event=login_ok sub=admin" event=login_failed "a=1 user"=x "k\\nINFO fake"=v "with space"=1 remoteApis[0].path=/api',
    )
    // What a person reads stays as it was for the usual lines.
    assert.equal(
      formatLine(
        JSON.stringify({
          level: 40,
          time: 0,
          msg: 'publicOrigin is not set: redirect URIs are built from the Host header',
          event: 'public_origin_unset',
        }),
        false,
      ).replace(TIME, ''),
      'WARN  publicOrigin is not set: redirect URIs are built from the Host header event=public_origin_unset',
    )
  })

  test('colours only when asked for: level and key colours, reset after each', () => {
    const line = JSON.stringify({ level: 50, time: 0, msg: 'boom', event: 'x' })
    const coloured = formatLine(line, true)
    assert.ok(coloured.includes(`${ESC}[31mERROR${ESC}[0m`), coloured)
    assert.ok(coloured.includes(`${ESC}[2mevent=${ESC}[0mx`), coloured)
    assert.ok(!formatLine(line, false).includes(ESC))
  })
})

describe('log.format', () => {
  test('"json" (and createLogger without a format) writes JSON lines', () => {
    for (const format of ['json', undefined] as const) {
      const out = sink(true)
      createLogger('info', out.stream, format).info({ event: 'x' }, 'hello')
      const entry = JSON.parse(out.lines()[0]!) as Record<string, unknown>
      assert.equal(entry.msg, 'hello')
      assert.equal(entry.level, 30)
      assert.equal(entry.name, 'gatehouse')
    }
  })

  test('"auto" is JSON when the output is not a terminal', () => {
    const out = sink(false)
    createLogger('info', out.stream, 'auto').info('hello')
    assert.equal((JSON.parse(out.lines()[0]!) as { msg: string }).msg, 'hello')
  })

  test('"auto" is pretty, in colour, when the output is a terminal; NO_COLOR turns colours off', () => {
    const saved = process.env.NO_COLOR
    try {
      delete process.env.NO_COLOR
      const coloured = sink(true)
      createLogger('info', coloured.stream, 'auto').warn('hello')
      assert.match(coloured.text(), /\x1b\[33mWARN /)
      assert.ok(coloured.text().includes('hello'))

      process.env.NO_COLOR = '1'
      const plain = sink(true)
      createLogger('info', plain.stream, 'auto').warn('hello')
      assert.match(plain.lines()[0]!, /^\d\d:\d\d:\d\d\.\d{3} WARN  hello$/)
    } finally {
      if (saved === undefined) delete process.env.NO_COLOR
      else process.env.NO_COLOR = saved
    }
  })

  test('"pretty" into something that is not a terminal has no colours', () => {
    const out = sink(false)
    createLogger('info', out.stream, 'pretty').error('hello')
    assert.match(out.lines()[0]!, /^\d\d:\d\d:\d\d\.\d{3} ERROR hello$/)
  })
})
