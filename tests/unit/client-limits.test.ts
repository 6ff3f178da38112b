import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import { test } from 'node:test'
import { ApiPool } from '../../src/proxy/api-pool.ts'
import {
  addressKey,
  clientAddress,
  ClientLimits,
  isEventStreamAnswer,
  isEventStreamRequest,
} from '../../src/proxy/client-limits.ts'

test('a client gets limits.perClient places and no more; a place given back any number of times counts once', () => {
  const limits = new ClientLimits({ perClient: 2, perClientStreams: 1 })
  const a = limits.take('client', 'request')!
  const b = limits.take('client', 'request')!
  assert.ok(a && b)
  assert.equal(limits.take('client', 'request'), undefined)
  assert.ok(limits.take('other', 'request'), 'another client has its own places')
  a.release()
  a.release()
  a.release()
  assert.equal(limits.held('client', 'request'), 1)
  const c = limits.take('client', 'request')
  assert.ok(c)
  assert.equal(limits.take('client', 'request'), undefined, 'a repeated release gave back one place, not three')
  b.release()
  c.release()
  assert.equal(limits.held('client', 'request'), 0)
})

test('streams have their own places; a request that turns out to be a stream moves to one, or stays put when none is left', () => {
  const limits = new ClientLimits({ perClient: 2, perClientStreams: 1 })
  const first = limits.take('client', 'request')!
  assert.equal(first.toStream(), true)
  assert.equal(first.kind, 'stream')
  assert.equal(limits.held('client', 'request'), 0)
  assert.equal(limits.held('client', 'stream'), 1)
  const second = limits.take('client', 'request')!
  assert.equal(second.toStream(), false)
  assert.equal(second.kind, 'request')
  assert.equal(limits.held('client', 'request'), 1)
  first.release()
  second.release()
  assert.equal(limits.clients, 0, 'no entry is kept for a client with nothing in flight')
})

test('clients without a session are keyed by address: IPv4 as is, IPv4-mapped IPv6 as IPv4, other IPv6 by its /64', () => {
  assert.equal(addressKey('203.0.113.7'), '203.0.113.7')
  assert.equal(addressKey('::ffff:203.0.113.7'), '203.0.113.7')
  assert.equal(addressKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64')
  assert.equal(addressKey('2001:DB8:1:2:bbbb:cccc:dddd:eeee'), '2001:db8:1:2::/64')
  assert.equal(addressKey('2001:db8::1'), '2001:db8:0:0::/64')
  assert.equal(addressKey('fe80::1%eth0'), 'fe80:0:0:0::/64')
  assert.equal(addressKey('::1'), '0:0:0:0::/64')
  assert.equal(addressKey(undefined), 'unknown')
})

test('a forwarded address with a port or brackets is keyed by the address alone; garbage is no address', () => {
  assert.equal(addressKey('203.0.113.7:5678'), '203.0.113.7', 'a new source port is not a new client')
  assert.equal(addressKey('203.0.113.7:5679'), '203.0.113.7')
  assert.equal(addressKey('[2001:db8::1]:443'), '2001:db8:0:0::/64')
  assert.equal(addressKey('[2001:db8::1]'), '2001:db8:0:0::/64')
  assert.equal(addressKey(' 203.0.113.7 '), '203.0.113.7')
  for (const garbage of ['', 'unknown', 'not-an-ip', '1.2.3', '203.0.113.7:x', '[nope]:1', '999.1.1.1'])
    assert.equal(addressKey(garbage), 'unknown', garbage)
})

test('the client address is the peer, or with trustProxy the X-Forwarded-For value the proxy appended (the last), never one the client prepended', () => {
  const req = (forwarded?: string) =>
    ({
      headers: forwarded === undefined ? {} : { 'x-forwarded-for': forwarded },
      socket: { remoteAddress: '10.0.0.2' },
    }) as unknown as IncomingMessage
  assert.equal(clientAddress(req('198.51.100.1, 203.0.113.9'), false), '10.0.0.2')
  assert.equal(clientAddress(req('198.51.100.1, 203.0.113.9'), true), '203.0.113.9')
  assert.equal(clientAddress(req(), true), '10.0.0.2')
  assert.equal(clientAddress(req(' '), true), '10.0.0.2')
})

test("event streams are recognised by Accept or by the answer's media type", () => {
  assert.equal(isEventStreamRequest({ accept: 'text/event-stream' }), true)
  assert.equal(isEventStreamRequest({ accept: 'application/json' }), false)
  assert.equal(isEventStreamRequest({}), false)
  assert.equal(isEventStreamAnswer('text/event-stream; charset=utf-8'), true)
  assert.equal(isEventStreamAnswer('Text/Event-Stream'), true)
  assert.equal(isEventStreamAnswer('text/event-streamx'), false)
  assert.equal(isEventStreamAnswer(undefined), false)
})

test('an API pool hands out its connections, then queues first come first served up to its queue length', async () => {
  const pool = new ApiPool('http://127.0.0.1:9', 1, 2)
  try {
    assert.equal(pool.tryAcquire(), true)
    assert.equal(pool.tryAcquire(), false)
    const order: string[] = []
    const first = pool.wait(5_000).then((o) => order.push(`first:${o}`))
    const second = pool.wait(5_000).then((o) => order.push(`second:${o}`))
    assert.equal(await pool.wait(5_000), 'full')
    assert.equal(pool.queued, 2)
    pool.release()
    await first
    pool.release()
    await second
    assert.deepEqual(order, ['first:granted', 'second:granted'])
    assert.equal(pool.inFlight, 1, 'each release handed the connection on')
    pool.release()
    assert.equal(pool.inFlight, 0)
  } finally {
    await pool.close()
  }
})

test('a wait for a connection ends at its timeout or when its request is abandoned, and leaves the queue', async () => {
  const pool = new ApiPool('http://127.0.0.1:9', 1, 5)
  try {
    assert.equal(pool.tryAcquire(), true)
    assert.equal(await pool.wait(20), 'timeout')
    const abandon = new AbortController()
    const abandoned = pool.wait(5_000, abandon.signal)
    abandon.abort()
    assert.equal(await abandoned, 'aborted')
    assert.equal(pool.queued, 0)
    pool.release()
    assert.equal(pool.inFlight, 0, 'nothing was handed to a request that stopped waiting')
  } finally {
    await pool.close()
  }
})
