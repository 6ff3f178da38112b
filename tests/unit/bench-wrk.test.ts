import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, test } from 'node:test'
import { luaString, parseWrk, runWrk, wrkMs } from '../../bench/wrk.ts'

// Real output of wrk 4.1.0 (Debian's package), `wrk -t1 -c<n> -d<s>s --latency <url>` against small
// node:http servers on loopback, kept verbatim.

/** Every answer 200. */
const ALL_OK = `Running 2s test @ http://127.0.0.1:18431/ok
  1 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.88ms    2.37ms  33.82ms   95.28%
    Req/Sec    22.79k     7.00k   28.36k    85.00%
  Latency Distribution
     50%  372.00us
     75%  449.00us
     90%    1.27ms
     99%   14.06ms
  45250 requests in 2.00s, 7.16MB read
Requests/sec:  22584.92
Transfer/sec:      3.58MB
`

/** Every fourth answer a 503. */
const NON_2XX = `Running 2s test @ http://127.0.0.1:18431/mixed
  1 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   541.95us    1.08ms  18.91ms   95.80%
    Req/Sec    25.42k     3.21k   28.97k    80.00%
  Latency Distribution
     50%  359.00us
     75%  398.00us
     90%  559.00us
     99%    4.63ms
  50435 requests in 2.00s, 7.66MB read
  Non-2xx or 3xx responses: 12609
Requests/sec:  25199.37
Transfer/sec:      3.83MB
`

/** The server destroys every fifth request's socket. */
const READ_ERRORS = `Running 2s test @ http://127.0.0.1:18431/reset
  1 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   596.46us    1.49ms  23.30ms   94.74%
    Req/Sec    16.88k     5.15k   25.03k    55.00%
  Latency Distribution
     50%  194.00us
     75%  371.00us
     90%    1.02ms
     99%    7.80ms
  33560 requests in 2.00s, 5.31MB read
  Socket errors: connect 0, read 8390, write 0, timeout 0
Requests/sec:  16765.06
Transfer/sec:      2.65MB
`

/** 500s, destroyed sockets and answers slower than `--timeout 1s`, all in one run. */
const MIXED_FAILURES = `Running 3s test @ http://127.0.0.1:18433/
  1 threads and 20 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   600.35us    1.84ms  28.64ms   94.41%
    Req/Sec     7.72k     5.25k   12.12k    75.00%
  Latency Distribution
     50%  115.00us
     75%  454.00us
     90%    1.42ms
     99%    6.39ms
  3671 requests in 3.01s, 453.97KB read
  Socket errors: connect 0, read 309, write 0, timeout 20
  Non-2xx or 3xx responses: 566
Requests/sec:   1220.56
Transfer/sec:    150.94KB
`

/** A server that never answers. */
const NO_ANSWER = `Running 2s test @ http://127.0.0.1:18434/
  1 threads and 5 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec     0.00      0.00     0.00      -nan%
  Latency Distribution
     50%    0.00us
     75%    0.00us
     90%    0.00us
     99%    0.00us
  0 requests in 2.00s, 0.00B read
Requests/sec:      0.00
Transfer/sec:       0.00B
`

const close = (actual: number, expected: number, what: string) =>
  assert.ok(Math.abs(actual - expected) < 1e-9 * Math.max(1, Math.abs(expected)), `${what}: ${actual} ≠ ${expected}`)

describe('parseWrk', () => {
  test('all answers 2xx: req/s, p50, p99 and max in ms, no errors', () => {
    const r = parseWrk(ALL_OK)
    assert.equal(r.requests, 45250)
    assert.equal(r.duration, 2)
    close(r.rps, 22584.92, 'rps')
    close(r.p50, 0.372, 'p50')
    close(r.p99, 14.06, 'p99')
    close(r.max, 33.82, 'max')
    assert.equal(r.non2xx, 0)
    assert.equal(r.errors, 0)
  })

  test('non-2xx answers are counted and left out of req/s', () => {
    const r = parseWrk(NON_2XX)
    assert.equal(r.requests, 50435)
    assert.equal(r.non2xx, 12609)
    assert.equal(r.errors, 0)
    close(r.rps, (25199.37 * (50435 - 12609)) / 50435, 'rps')
    close(r.p50, 0.359, 'p50')
    close(r.p99, 4.63, 'p99')
  })

  test('socket errors (read) are counted', () => {
    const r = parseWrk(READ_ERRORS)
    assert.equal(r.errors, 8390)
    assert.equal(r.non2xx, 0)
    close(r.rps, 16765.06, 'rps')
    close(r.p50, 0.194, 'p50')
    close(r.p99, 7.8, 'p99')
  })

  test('connect, read, write and timeout errors add up; non-2xx alongside them', () => {
    const r = parseWrk(MIXED_FAILURES)
    assert.equal(r.errors, 309 + 20)
    assert.equal(r.non2xx, 566)
    assert.equal(r.duration, 3.01)
    close(r.rps, (1220.56 * (3671 - 566)) / 3671, 'rps')
    close(r.p50, 0.115, 'p50')
    close(r.p99, 6.39, 'p99')
    close(r.max, 28.64, 'max')
  })

  test('no answer at all: 0 req/s and no latency figures (not wrk’s 0.00us)', () => {
    const r = parseWrk(NO_ANSWER)
    assert.equal(r.requests, 0)
    assert.equal(r.rps, 0)
    assert.ok(Number.isNaN(r.p50) && Number.isNaN(r.p99) && Number.isNaN(r.max))
  })

  test('only non-2xx answers: no latency figures either', () => {
    const r = parseWrk(NON_2XX.replace('Non-2xx or 3xx responses: 12609', 'Non-2xx or 3xx responses: 50435'))
    assert.equal(r.rps, 0)
    assert.ok(Number.isNaN(r.p50) && Number.isNaN(r.p99))
  })

  test('output that is not wrk’s is refused, naming what is missing', () => {
    assert.throws(() => parseWrk('unable to connect to 127.0.0.1:18432 Connection refused\n'), /no request count/)
    assert.throws(() => parseWrk(ALL_OK.replace(/^\s+99%.*$/m, '')), /no 99% latency/)
  })
})

describe('wrkMs', () => {
  test('every unit wrk prints', () => {
    close(wrkMs('850.00us'), 0.85, 'us')
    close(wrkMs('1.23ms'), 1.23, 'ms')
    close(wrkMs('2.00s'), 2000, 's')
    close(wrkMs('1.50m'), 90_000, 'm')
    close(wrkMs('1.00h'), 3_600_000, 'h')
  })

  test('refuses what is not a wrk time', () => {
    assert.throws(() => wrkMs('12'), /unreadable time "12"/)
    assert.throws(() => wrkMs('-nan%'), /unreadable time/)
  })
})

describe('luaString', () => {
  test('quotes, backslashes and non-ASCII bytes become decimal escapes', () => {
    assert.equal(luaString('a"b\\c'), '"a\\034b\\092c"')
    assert.equal(luaString('é'), '"\\195\\169"')
    assert.equal(luaString('x=1; y=2'), '"x=1; y=2"')
  })
})

const hasWrk = !spawnSync('wrk', ['-v']).error

describe('runWrk', () => {
  test(
    'sends the headers it is given and reads the run back',
    { skip: hasWrk ? false : 'wrk is not installed' },
    async () => {
      let answered = 0
      const seen = new Set<string>()
      const server = createServer((req, res) => {
        seen.add(`${req.headers['x-quote']}|${req.headers.cookie}`)
        answered++
        res.writeHead(200, { 'content-length': '2' }).end('ok')
      })
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      try {
        const r = await runWrk({
          url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
          headers: { 'x-quote': 'say "hi" \\ there', cookie: '__Host-gatehouse=abc' },
          seconds: 1,
          connections: 2,
        })
        assert.deepEqual([...seen], ['say "hi" \\ there|__Host-gatehouse=abc'])
        assert.ok(r.requests > 0 && r.requests <= answered, `${r.requests} requests, ${answered} answered`)
        assert.equal(r.non2xx, 0)
        assert.equal(r.errors, 0)
        assert.ok(r.p50 > 0 && r.p99 >= r.p50)
      } finally {
        server.closeAllConnections()
        await new Promise<void>((resolve) => server.close(() => resolve()))
      }
    },
  )
})
