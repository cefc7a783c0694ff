import { errorMessage } from '../errors.js'
import { connectWithin, withTimeout } from '../timeout.js'
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
/** A connect that takes longer (a database accepting TCP but not answering) is retried. */
const CONNECT_TIMEOUT_MS = 5000

/**
 * Invalidation bus over PostgreSQL LISTEN/NOTIFY. Listens on a dedicated pool connection,
 * pinged periodically so a silently dead connection is noticed; reconnects with backoff,
 * forever, reporting each gap. On PGlite it uses the in-process `listen` API.
 *
 * A PostgreSQL that cannot be reached when start() runs is retried the same way: start() resolves
 * once its first attempt has failed, the bus keeps trying in the background and reports `onUp`
 * when it listens. (No `onDown` before that: nothing was received, so nothing was missed.)
 *
 * At most one connection attempt is live at a time. Each has a number; a loss, a failed attempt
 * and close() all move to the next number, so whatever an older attempt still has in flight (a
 * connect, a LISTEN, a ping, a late 'error' or 'end') finds itself superseded and only destroys
 * the connection it holds. Only the current attempt may schedule the next one.
 */
export class PostgresBus implements CacheBus {
  readonly name = 'postgres-notify'
  readonly #envelope = new BusEnvelope()
  #unlisten: (() => Promise<void>) | undefined
  #handlers: BusHandlers | undefined
  #attempt = 0
  /** Destroys the listening connection, once it listens. */
  #release: (() => void) | undefined
  /** onUp reported and onDown not since: an outage is reported once, however many retries fail. */
  #up = false
  /** The ping while listening, the next retry while not. */
  #timer: ReturnType<typeof setTimeout> | undefined
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
    // Resolves listening, or retrying until close(): an unreachable database is an outage like any other.
    await this.#try(this.#attempt)
  }

  /** Runs `attempt`; when it fails, the next one follows with backoff (unless superseded meanwhile). */
  #try(attempt: number): Promise<void> {
    return this.#connect(attempt).catch((error: unknown) =>
      this.#lose(attempt, `listener could not connect: ${errorMessage(error)}`),
    )
  }

  /** Connects and LISTENs as `attempt`. Once superseded, it destroys its connection and stops. */
  async #connect(attempt: number): Promise<void> {
    const handlers = this.#handlers as BusHandlers
    const current = () => attempt === this.#attempt
    const connecting = (this.pool.connect as () => Promise<ListenClient>)()
    const client = await connectWithin(connecting, CONNECT_TIMEOUT_MS, (late) => late.release(true))
    let released = false
    const release = () => {
      if (released) return
      released = true
      try {
        client.release(true) // destroyed: a pooled connection must not keep LISTENing
      } catch {
        // the pool already dropped it
      }
    }
    if (!current()) return release()
    // A connection dying during LISTEN both emits 'error' / 'end' and rejects the query: #lose
    // acts on the first report of an attempt only.
    const lost = (reason: string) => {
      release()
      this.#lose(attempt, reason)
    }
    client.on('notification', (message) => {
      if (message.channel === this.channel && message.payload) this.#receive(message.payload)
    })
    client.on('error', (error) => lost(`listener connection error: ${errorMessage(error)}`))
    client.on('end', () => lost('listener connection ended'))
    try {
      await withTimeout(client.query(`LISTEN ${this.channel}`), PING_TIMEOUT_MS)
    } catch (error) {
      release()
      throw error
    }
    if (!current()) return release() // lost or closed while LISTEN ran
    this.#release = release
    this.#backoff = 100
    this.#up = true
    handlers.onUp()
    const ping = () => {
      this.#timer = setTimeout(() => {
        if (!current()) return
        withTimeout(client.query('SELECT 1'), PING_TIMEOUT_MS).then(
          () => {
            if (current()) ping()
          },
          () => lost('listener connection stopped answering'),
        )
      }, PING_MS)
      this.#timer.unref?.()
    }
    ping()
  }

  /** `attempt` failed or lost its connection (already destroyed): report the outage once, retry once. */
  #lose(attempt: number, reason: string): void {
    if (attempt !== this.#attempt) return // already handled, or closed
    const next = ++this.#attempt
    clearTimeout(this.#timer)
    this.#release = undefined
    if (this.#up) {
      this.#up = false
      this.#handlers?.onDown(reason)
    } else {
      this.#handlers?.onConnectError?.(reason)
    }
    const delay = this.#backoff
    this.#backoff = Math.min(delay * 2, 30_000)
    this.#timer = setTimeout(() => void this.#try(next), delay)
    this.#timer.unref?.()
  }

  /** Supersedes every attempt: a connect still in flight destroys what it gets; no timer fires. */
  #abandon(): void {
    this.#attempt++
    this.#up = false
    clearTimeout(this.#timer)
    this.#release?.()
    this.#release = undefined
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
    this.#abandon()
    await this.#unlisten?.()
  }
}

/**
 * Splits an invalidation whose tags (or a purge whose keys) would not fit in one NOTIFY payload. A
 * purge's filter goes with the first part only: receivers apply it once. An invalidation naming a tag
 * that fits in no payload (a cache tag rendered from a long argument) becomes a clear of the other
 * instances' local tiers: sent as it is, its NOTIFY would fail, and the tag would stay valid there.
 */
function split(message: BusMessage): BusMessage[] {
  if (message.kind === 'clear' || Buffer.byteLength(JSON.stringify(message)) < MAX_PAYLOAD) return [message]
  const items = message.kind === 'invalidate' ? message.tags : message.keys
  const where = message.kind === 'delete' ? message.where : undefined
  const budget = MAX_PAYLOAD - (where ? Buffer.byteLength(JSON.stringify(where)) : 0)
  if (
    message.kind === 'invalidate' &&
    items.some((tag) => Buffer.byteLength(JSON.stringify(tag)) + 1 > budget)
  )
    return [{ kind: 'clear', tenant: undefined }]
  const parts: BusMessage[] = []
  const make = (part: string[]): BusMessage => {
    if (message.kind === 'invalidate') return { kind: 'invalidate', tags: part }
    return parts.length === 0 && where
      ? { kind: 'delete', keys: part, where }
      : { kind: 'delete', keys: part }
  }
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
