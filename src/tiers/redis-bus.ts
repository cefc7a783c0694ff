import { errorMessage } from '../errors.js'
import { withTimeout } from '../timeout.js'
import { BusEnvelope } from './bus-envelope.js'
import type { RedisClientLike } from './redis.js'
import type { BusHandlers, BusMessage, CacheBus } from './tier.js'

/** How often the listening connection is pinged, and how long it may take to answer. */
export interface RedisBusTiming {
  readonly pingMs: number
  readonly pingTimeoutMs: number
}

/**
 * Invalidation bus over Redis pub/sub (cluster-wide on Redis Cluster). Publishes on the
 * tier's client; listens on a duplicate connection. Any disconnect of the listener is a gap:
 * messages may have been lost, so the instance must flush its local tiers. The listener is
 * pinged periodically: one that stopped answering (a stalled server keeps the TCP connection
 * open) is reported down and reconnected.
 */
export class RedisBus implements CacheBus {
  readonly name = 'redis-pubsub'
  readonly #envelope = new BusEnvelope()
  #subscriber: RedisClientLike | undefined
  #closed = false
  #pinger: ReturnType<typeof setInterval> | undefined

  constructor(
    readonly client: RedisClientLike,
    readonly channel: string,
    readonly timing: RedisBusTiming = { pingMs: 10_000, pingTimeoutMs: 5000 },
  ) {}

  async start(handlers: BusHandlers): Promise<void> {
    const subscriber = this.client.duplicate()
    this.#subscriber = subscriber
    let up = false
    subscriber.on('message', (...args: unknown[]) => {
      const [channel, raw] = args as [string, string]
      if (channel !== this.channel) return
      const message = this.#envelope.unwrap(raw)
      if (message) handlers.onMessage(message)
    })
    subscriber.on('close', () => {
      if (!up || this.#closed) return
      up = false
      handlers.onDown('redis bus connection closed')
    })
    // Up only once SUBSCRIBE is acknowledged, on every (re)connection: ioredis forgets a channel
    // whose first SUBSCRIBE failed, and 'ready' comes before its own resubscription completes.
    const subscribe = async () => {
      try {
        await subscriber.subscribe(this.channel)
      } catch (error) {
        if (!up && !this.#closed)
          handlers.onConnectError?.(`redis bus could not subscribe: ${errorMessage(error)}`)
        return // the next 'ready' tries again
      }
      if (up || this.#closed) return
      up = true
      handlers.onUp()
    }
    subscriber.on('ready', () => {
      if (!this.#closed) void subscribe()
    })
    subscriber.on('error', (error: unknown) => {
      // ioredis reconnects on its own. A connection that was up is reported through 'close'; one that
      // is not (yet) up says why it cannot connect.
      if (!up && !this.#closed)
        handlers.onConnectError?.(`redis bus could not connect: ${errorMessage(error)}`)
    })
    const ping = subscriber.ping?.bind(subscriber)
    if (ping) {
      let pinging = false
      this.#pinger = setInterval(() => {
        if (!up || pinging) return
        pinging = true
        withTimeout(ping(), this.timing.pingTimeoutMs)
          .catch(() => {
            if (!up || this.#closed) return
            up = false
            handlers.onDown('redis bus connection stopped answering')
            subscriber.disconnect?.(true) // 'ready', then SUBSCRIBE, reports it up again
          })
          .finally(() => {
            pinging = false
          })
      }, this.timing.pingMs)
      this.#pinger.unref?.()
    }
    // A Redis that is not there yet leaves the SUBSCRIBE queued until it is (ioredis retries): start
    // resolves after the ping timeout all the same, and the queued SUBSCRIBE (or the next 'ready')
    // reports the bus up when it answers. Until then local tiers stay unused; startup goes on.
    await withTimeout(subscribe(), this.timing.pingTimeoutMs).catch(() => undefined)
  }

  async publish(message: BusMessage): Promise<void> {
    await this.client.publish(this.channel, this.#envelope.wrap(message))
  }

  async close(): Promise<void> {
    this.#closed = true
    clearInterval(this.#pinger)
    const subscriber = this.#subscriber
    // The listening connection is ours and holds nothing to flush: drop it. A QUIT would wait in
    // ioredis' offline queue for as long as Redis is unreachable.
    if (subscriber?.disconnect) subscriber.disconnect()
    else await subscriber?.quit().catch(() => undefined)
  }
}
