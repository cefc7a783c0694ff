import { BusEnvelope } from './bus-envelope.js'
import type { RedisClientLike } from './redis.js'
import type { BusHandlers, BusMessage, CacheBus } from './tier.js'

/**
 * Invalidation bus over Redis pub/sub (cluster-wide on Redis Cluster). Publishes on the
 * tier's client; listens on a duplicate connection. Any disconnect of the listener is a gap:
 * messages may have been lost, so the instance must flush its local tiers.
 */
export class RedisBus implements CacheBus {
  readonly name = 'redis-pubsub'
  readonly #envelope = new BusEnvelope()
  #subscriber: RedisClientLike | undefined
  #closed = false

  constructor(
    readonly client: RedisClientLike,
    readonly channel: string,
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
      } catch {
        return // the next 'ready' tries again
      }
      if (up || this.#closed) return
      up = true
      handlers.onUp()
    }
    subscriber.on('ready', () => {
      if (!this.#closed) void subscribe()
    })
    subscriber.on('error', () => {
      // Reported through 'close' / 'ready'; ioredis reconnects on its own.
    })
    await subscribe()
  }

  async publish(message: BusMessage): Promise<void> {
    await this.client.publish(this.channel, this.#envelope.wrap(message))
  }

  async close(): Promise<void> {
    this.#closed = true
    await this.#subscriber?.quit().catch(() => undefined)
  }
}
