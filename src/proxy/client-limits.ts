import { isIP } from 'node:net'
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import { nearestListValue } from './headers.ts'

/** An ordinary proxied request, or a long-lived stream (WebSocket, Server-Sent Events) with a cap of its own. */
export type PlaceKind = 'request' | 'stream'

/**
 * Proxied requests in flight per client, so that one client (one session, or one address without
 * a session) cannot hold every upstream connection. A count per client and kind, nothing else: no
 * timers, and an entry only while the client has something in flight.
 */
export class ClientLimits {
  readonly #requests = new Map<string, number>()
  readonly #streams = new Map<string, number>()
  readonly #perClient: number
  readonly #perClientStreams: number

  constructor(limits: { perClient: number; perClientStreams: number }) {
    this.#perClient = limits.perClient
    this.#perClientStreams = limits.perClientStreams
  }

  /** The cap of `kind`. */
  limit(kind: PlaceKind): number {
    return kind === 'stream' ? this.#perClientStreams : this.#perClient
  }

  /** A place of `kind` for `client`, or undefined when it holds all of them. */
  take(client: string, kind: PlaceKind): ClientPlace | undefined {
    if (!this.#take(client, kind)) return undefined
    let current = kind
    let held = true
    return {
      get kind() {
        return current
      },
      toStream: () => {
        if (current === 'stream' || !held) return true
        if (!this.#take(client, 'stream')) return false
        this.#give(client, 'request')
        current = 'stream'
        return true
      },
      release: () => {
        if (!held) return
        held = false
        this.#give(client, current)
      },
    }
  }

  /** How many places of `kind` the client holds now. */
  held(client: string, kind: PlaceKind): number {
    return (kind === 'stream' ? this.#streams : this.#requests).get(client) ?? 0
  }

  /** Clients holding a place now. */
  get clients(): number {
    return new Set([...this.#requests.keys(), ...this.#streams.keys()]).size
  }

  #take(client: string, kind: PlaceKind): boolean {
    const counts = kind === 'stream' ? this.#streams : this.#requests
    const now = counts.get(client) ?? 0
    if (now >= this.limit(kind)) return false
    counts.set(client, now + 1)
    return true
  }

  #give(client: string, kind: PlaceKind): void {
    const counts = kind === 'stream' ? this.#streams : this.#requests
    const now = counts.get(client) ?? 0
    if (now <= 1) counts.delete(client)
    else counts.set(client, now - 1)
  }
}

/** One request's place of a client. */
export interface ClientPlace {
  readonly kind: PlaceKind
  /**
   * An ordinary request turned out to be a stream (the API answered `text/event-stream`): it moves to
   * a stream place. False, and nothing changes, when the client holds all of those.
   */
  toStream(): boolean
  /** Gives the place back; any further call does nothing, so every way a request ends may call it. */
  release(): void
}

/** A request that asks for an event stream (what `EventSource` sends): counted as a stream from the start. */
export function isEventStreamRequest(headers: IncomingHttpHeaders): boolean {
  const accept = headers.accept
  return accept !== undefined && accept.includes('text/event-stream')
}

/** An answer that is an event stream (RFC 8895 media type; parameters and case aside). */
export function isEventStreamAnswer(contentType: string | string[] | undefined): boolean {
  const value = Array.isArray(contentType) ? contentType[0] : contentType
  return value !== undefined && /^\s*text\/event-stream\s*(;|$)/i.test(value)
}

/**
 * The client's address: the peer's, or with `trustProxy` the one the proxy in front appended to
 * X-Forwarded-For (the nearest value; the ones before it may come from the client itself).
 */
export function clientAddress(req: IncomingMessage, trustProxy: boolean): string | undefined {
  if (trustProxy) {
    const forwarded = nearestListValue(req.headers['x-forwarded-for'])
    if (forwarded) return forwarded
  }
  return req.socket.remoteAddress
}

/**
 * The key of a client without a session: its address; an IPv6 address by its /64, the block one
 * host usually gets (it could otherwise take a fresh address for every request). IPv4-mapped IPv6
 * addresses count as the IPv4 address.
 */
export function addressKey(address: string | undefined): string {
  const bare = plainAddress(address)
  if (bare === undefined) return 'unknown'
  if (isIP(bare) === 4) return bare
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(bare)
  if (mapped) return mapped[1]!
  const [head = '', tail] = bare.split('::', 2) as [string, string | undefined]
  const front = head === '' ? [] : head.split(':')
  const back = tail === undefined || tail === '' ? [] : tail.split(':')
  const groups =
    tail === undefined
      ? front
      : [...front, ...Array<string>(Math.max(0, 8 - front.length - back.length)).fill('0'), ...back]
  return `${groups
    .slice(0, 4)
    .map((g) => (parseInt(g, 16) || 0).toString(16))
    .join(':')}::/64`
}

/**
 * The address alone, as net.isIP accepts it: proxies write `1.2.3.4:5678` or `[2001:db8::1]:443`
 * into X-Forwarded-For; a port must not make every connection a new client. Undefined when it is
 * no address at all.
 */
function plainAddress(value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  let text = value.trim()
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(text)
  if (bracketed) text = bracketed[1]!
  else if (/^\d{1,3}(?:\.\d{1,3}){3}:\d+$/.test(text)) text = text.slice(0, text.lastIndexOf(':'))
  const zoneless = text.split('%', 1)[0]!.toLowerCase()
  return isIP(zoneless) === 0 ? undefined : zoneless
}
