import { withTimeout } from '../timeout.js'
import { BusEnvelope } from './bus-envelope.js'
import type { Queryable } from './postgres.js'
import type { BusHandlers, BusMessage, CacheBus } from './tier.js'

/** A dedicated connection, as `pg.Pool#connect()` returns. */
interface ListenClient {
  query(text: string): Promise<unknown>
  on(event: 'notification', listener: (message: { channel: string; payload?: string }) => void): unknown
  on(event: 'error' | 'end', listener: (error?: unknown) => void): unknown
  release(destroy?: boolean | Error): void
}

interface PoolLike extends Queryable {
  connect?(): Promise<ListenClient>
  /** PGlite: LISTEN in process. */
  listen?(channel: string, callback: (payload: string) => void): Promise<() => Promise<void>>
}

/** NOTIFY payloads must stay under 8000 bytes (UTF-8), envelope included. */
const MAX_PAYLOAD = 7000
const PING_MS = 10_000
const PING_TIMEOUT_MS = 5000

/**
 * Invalidation bus over PostgreSQL LISTEN/NOTIFY. Listens on a dedicated pool connection,
 * pinged periodically so a silently dead connection is noticed; reconnects with backoff,
 * forever, reporting each gap. On PGlite it uses the in-process `listen` API.
 */
export class PostgresBus implements CacheBus {
  readonly name = 'postgres-notify'
  readonly #envelope = new BusEnvelope()
  #client: ListenClient | undefined
  #unlisten: (() => Promise<void>) | undefined
  #closed = false
  #timer: ReturnType<typeof setTimeout> | undefined
  #handlers: BusHandlers | undefined
  #backoff = 100

  constructor(
    readonly pool: PoolLike,
    readonly channel: string,
  ) {}

  async start(handlers: BusHandlers): Promise<void> {
    this.#handlers = handlers
    if (this.pool.listen) {
      this.#unlisten = await this.pool.listen(this.channel, (payload) => this.#receive(payload))
      handlers.onUp()
      return
    }
    if (!this.pool.connect) throw new Error('the PostgreSQL bus needs a pg.Pool (connect) or PGlite (listen)')
    await this.#connect()
  }

  async #connect(): Promise<void> {
    const handlers = this.#handlers as BusHandlers
    const client = await (this.pool.connect as () => Promise<ListenClient>)()
    let released = false
    const release = () => {
      if (released) return
      released = true
      try {
        client.release(true)
      } catch {
        // the pool already dropped it
      }
    }
    let down = false
    const lost = (reason: string) => {
      if (down || this.#closed) return
      down = true
      clearTimeout(this.#timer)
      if (this.#client === client) this.#client = undefined
      release()
      handlers.onDown(reason)
      this.#retry()
    }
    client.on('notification', (message) => {
      if (message.channel === this.channel && message.payload) this.#receive(message.payload)
    })
    client.on('error', (error) =>
      lost(`listener connection error: ${String((error as Error)?.message ?? error)}`),
    )
    client.on('end', () => lost('listener connection ended'))
    try {
      await withTimeout(client.query(`LISTEN ${this.channel}`), PING_TIMEOUT_MS)
    } catch (error) {
      down = true // the 'end' that release() causes must not start another retry
      release()
      throw error
    }
    this.#client = client
    this.#backoff = 100
    handlers.onUp()
    const ping = () => {
      this.#timer = setTimeout(() => {
        withTimeout(client.query('SELECT 1'), PING_TIMEOUT_MS).then(ping, () =>
          lost('listener connection stopped answering'),
        )
      }, PING_MS)
      this.#timer.unref?.()
    }
    ping()
  }

  #retry(): void {
    if (this.#closed) return
    this.#timer = setTimeout(() => {
      this.#connect().catch(() => {
        this.#backoff = Math.min(this.#backoff * 2, 30_000)
        this.#retry()
      })
    }, this.#backoff)
    this.#timer.unref?.()
  }

  #receive(payload: string): void {
    const message = this.#envelope.unwrap(payload)
    if (message) this.#handlers?.onMessage(message)
  }

  async publish(message: BusMessage): Promise<void> {
    for (const part of split(message)) {
      await this.pool.query('SELECT pg_notify($1, $2)', [this.channel, this.#envelope.wrap(part)])
    }
  }

  async close(): Promise<void> {
    this.#closed = true
    clearTimeout(this.#timer)
    await this.#unlisten?.()
    const client = this.#client
    this.#client = undefined
    try {
      client?.release(true) // destroyed: a pooled connection must not keep LISTENing
    } catch {
      // already released
    }
  }
}

/**
 * Splits an invalidation whose tags (or a purge whose keys) would not fit in one NOTIFY payload. A
 * purge's filter goes with the first part only: receivers apply it once.
 */
function split(message: BusMessage): BusMessage[] {
  if (message.kind === 'clear' || Buffer.byteLength(JSON.stringify(message)) < MAX_PAYLOAD) return [message]
  const items = message.kind === 'invalidate' ? message.tags : message.keys
  const where = message.kind === 'delete' ? message.where : undefined
  const budget = MAX_PAYLOAD - (where ? Buffer.byteLength(JSON.stringify(where)) : 0)
  const make = (part: string[]): BusMessage => {
    if (message.kind === 'invalidate') return { kind: 'invalidate', tags: part }
    return parts.length === 0 && where
      ? { kind: 'delete', keys: part, where }
      : { kind: 'delete', keys: part }
  }
  const parts: BusMessage[] = []
  let tags: string[] = []
  let size = 0
  for (const tag of items) {
    const bytes = Buffer.byteLength(JSON.stringify(tag)) + 1
    if (size + bytes > budget && tags.length > 0) {
      parts.push(make(tags))
      tags = []
      size = 0
    }
    tags.push(tag)
    size += bytes
  }
  if (tags.length > 0) parts.push(make(tags))
  return parts
}
