import { errorMessage, StrataOptionError } from '../errors.js'
import { postgresInstallSql, type Queryable } from '../tiers/postgres.js'
import { connectWithin, withTimeout } from '../timeout.js'
import { ChangeLogReader } from './change-log.js'
import {
  type PostgresChangesOptions,
  postgresChangesSql,
  QUERY_TIMEOUT_MS,
  type Session,
  type Settings,
  validateChangesOptions,
} from './postgres-changes-options.js'
import type { ChangeSink, ChangeSource, ChangeSourceStatus } from './source.js'

/** A VACUUM of the change tables that takes longer is abandoned (it runs on the pool). */
const MAINTENANCE_TIMEOUT_MS = 300_000

/**
 * The leader's session lock. It changes with each version of change capture, so that during a
 * rolling upgrade each version elects its own leader: a version 1 leader would not drain at all, and
 * a version 2 leader whose install put back its own `drain()` would drain only the text inbox.
 */
function leaderLock(schema: string): string {
  return `graphql-strata changes v3 ${schema}`
}

/** Database changes, captured by triggers (`strata.watch(...)`) into a change log, invalidate the cache. */
export function postgresChanges(options: PostgresChangesOptions): ChangeSource {
  const settings = validateChangesOptions(options)
  return new PostgresChanges(settings)
}

class PostgresChanges implements ChangeSource {
  readonly name = 'postgres-changes'
  readonly #s: Settings
  #sink: ChangeSink | undefined
  #reader: ChangeLogReader | undefined
  #session: Session | undefined
  #unlisten: (() => Promise<void>) | undefined
  #state: ChangeSourceStatus['state'] = 'starting'
  #leader = false
  readonly #timers = new Set<ReturnType<typeof setTimeout>>()
  #backoff = 100
  #reconnects = 0
  #installed = false
  /**
   * Bumped on every loss and on close: a connection attempt that finds it changed was superseded,
   * releases the session it opened and stops, so that one attempt at most is ever under way (two
   * would leave a stray session, possibly holding the leader lock, and nobody would drain). The
   * read loop of a connection stops with it too.
   */
  #attempt = 0
  /** Whether the sink was told `up` since it was last told `down`: one `down` per outage. */
  #up = false
  #lastError: string | null = null
  #closed = false

  constructor(settings: Settings) {
    this.#s = settings
  }

  get #channel(): string {
    return `${this.#s.schema}_changes`
  }

  async start(sink: ChangeSink): Promise<void> {
    this.#sink = sink
    const { schema, batch, mode } = this.#s
    this.#reader = new ChangeLogReader({
      schema,
      batch,
      mode,
      channel: this.#channel,
      sink,
      query: (text, params) => this.#q(text, params),
      maintain: (text, params) => withTimeout(this.#s.pool.query(text, params), MAINTENANCE_TIMEOUT_MS),
      leader: () => this.#leader,
    })
    // A database that is down at start is retried like a lost connection, install included.
    this.#state = 'down'
    const attempt = this.#attempt
    try {
      await this.#connect(attempt)
    } catch (error) {
      if (attempt === this.#attempt) this.#lost(error, true)
    }
    this.#every(this.#s.pruneIntervalMs, async () => this.#reader?.prune(this.#s.retentionMs))
  }

  status(): ChangeSourceStatus {
    const cursor = this.#reader?.cursor
    const lastRead = this.#reader?.lastRead
    return {
      state: this.#state,
      appliedThrough: cursor?.low ?? 0,
      seen: cursor?.maxSeen ?? 0,
      pending: cursor?.holes.length ?? 0,
      reconnects: this.#reconnects,
      flushes: this.#reader?.flushes ?? 0,
      sinceLastRead: lastRead === undefined ? null : Date.now() - lastRead,
      lastError: this.#lastError,
    }
  }

  /** Reads the log until caught up. */
  #read(): Promise<void> {
    return (this.#reader as ChangeLogReader).read()
  }

  async close(): Promise<void> {
    this.#closed = true
    this.#attempt++
    this.#state = 'closed'
    for (const timer of this.#timers) clearTimeout(timer)
    this.#timers.clear()
    await this.#reader?.settled()
    await this.#unlisten?.()
    this.#release()
  }

  /**
   * Runs `query` on the dedicated session when there is one, else on the pool, with a timeout:
   * a silently dead connection never answers.
   */
  #q(text: string, params?: unknown[]) {
    return withTimeout((this.#session ?? this.#s.pool).query(text, params), QUERY_TIMEOUT_MS)
  }

  /**
   * Installs the scripts (once), on `db`: the listener's session in listen mode, whatever the pool's
   * default isolation level; the pool otherwise, where the scripts refuse one other than READ COMMITTED.
   */
  async #install(db: Queryable): Promise<void> {
    if (!this.#s.autoInstall || this.#installed) return
    const sql = `${postgresInstallSql(this.#s.schema)}\n${postgresChangesSql(this.#s.schema)}`
    await withTimeout(db.exec ? db.exec(sql) : db.query(sql), QUERY_TIMEOUT_MS)
    this.#installed = true
  }

  /**
   * Connects (and installs, the first time), catches up, then trusts local tiers again. Returns
   * quietly if superseded meanwhile (a loss or close bumped `#attempt`); throws if it failed.
   */
  async #connect(attempt: number): Promise<void> {
    const current = () => attempt === this.#attempt
    try {
      await this.#listen(attempt)
      if (current()) await this.#read() // catch up before trusting local tiers again
    } catch (error) {
      if (!current()) return
      this.#state = 'down'
      this.#leader = false
      this.#release()
      throw error
    }
    if (!current()) return
    this.#backoff = 100
    this.#lastError = null
    this.#up = true
    this.#sink?.up()
    this.#schedule(attempt)
  }

  async #listen(attempt: number): Promise<void> {
    const { pool, mode } = this.#s
    if (mode === 'poll') {
      await this.#install(pool)
      this.#state = 'polling'
    } else if (pool.listen && !pool.connect) {
      await this.#install(pool)
      this.#unlisten = await pool.listen(this.#channel, () => this.#wake())
      this.#leader = true // PGlite: a single process
      this.#state = 'leader'
    } else if (pool.connect) {
      const session = await connectWithin(pool.connect(), QUERY_TIMEOUT_MS, (late) => late.release(true))
      if (attempt !== this.#attempt) {
        session.release(true) // superseded while connecting
        return
      }
      // Only the current session's death matters: a replaced one's 'end' must not start a retry.
      session.on('error', (error) => {
        if (this.#session === session) this.#lost(error)
      })
      session.on('end', () => {
        if (this.#session === session) this.#lost(new Error('listener connection ended'))
      })
      session.on('notification', (message) => {
        if ((message as { channel?: string }).channel === this.#channel) this.#wake()
      })
      this.#session = session
      // On this session only, never on the pool: a pooled connection must not LISTEN, nor keep the
      // leader lock once returned. A loss releases the session, and these then fail.
      const q = (text: string) => withTimeout(session.query(text), QUERY_TIMEOUT_MS)
      // Named, so operators (and tests) can find the listener in pg_stat_activity.
      await q(`SET application_name = '${`graphql-strata changes ${this.#s.schema}`.slice(0, 63)}'`)
      // Strata's own connection: its statements need READ COMMITTED (sql/install.sql), whatever the
      // database's, the role's or the pool's default.
      await q(`SET default_transaction_isolation = 'read committed'`)
      await this.#install(session)
      await q(`LISTEN ${this.#channel}`)
      await this.#campaign(session)
      this.#ping(session)
    } else {
      throw new StrataOptionError(
        'postgresChanges.pool',
        'listen mode needs a pg.Pool (connect) or PGlite (listen); use mode: "poll" otherwise',
      )
    }
  }

  /** Tries to become the leader (session advisory lock, released if this connection dies). */
  async #campaign(session: Session): Promise<void> {
    const { rows } = await withTimeout(
      session.query(`SELECT pg_try_advisory_lock(hashtext($1)) AS won`, [leaderLock(this.#s.schema)]),
      QUERY_TIMEOUT_MS,
    )
    if (session !== this.#session) return // lost meanwhile: released, and the lock with it
    const won = rows[0]?.won === true
    if (won && !this.#leader) this.#sink?.logger.info('strata: this instance now leads change capture')
    this.#leader = won
    this.#state = won ? 'leader' : 'follower'
  }

  /** Runs `run` once after `ms` (unref'd, cancelled by close). */
  #after(ms: number, run: () => void | Promise<void>): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer)
      if (!this.#closed) void run()
    }, ms)
    timer.unref?.()
    this.#timers.add(timer)
  }

  #schedule(attempt: number): void {
    const { mode, pollMs, followerPollMs } = this.#s
    const interval = mode === 'poll' || this.#leader ? pollMs : followerPollMs
    this.#after(interval, async () => {
      if (attempt !== this.#attempt) return
      try {
        if (mode === 'listen' && this.#session && !this.#leader) await this.#campaign(this.#session)
        await this.#read()
      } catch (error) {
        if (attempt === this.#attempt) this.#lost(error)
        return
      }
      this.#schedule(attempt)
    })
  }

  #wake(): void {
    if (!this.#leader) void this.#read().catch((error: unknown) => this.#lost(error))
  }

  /** Pings the listener connection until it is replaced; a silent failure is a lost connection. */
  #ping(session: Session): void {
    this.#after(this.#s.pingMs, async () => {
      if (this.#session !== session) return
      try {
        await withTimeout(session.query('SELECT 1'), Math.min(this.#s.pingMs, QUERY_TIMEOUT_MS))
        this.#ping(session)
      } catch (error) {
        this.#lost(error)
      }
    })
  }

  #every(ms: number, run: () => Promise<void>): void {
    this.#after(ms, async () => {
      await run().catch(() => undefined)
      this.#every(ms, run)
    })
  }

  #release(): void {
    const session = this.#session
    this.#session = undefined
    try {
      session?.release(true)
    } catch {
      // already released
    }
  }

  /**
   * The connection is lost (or never came up, `starting`): supersedes any attempt under way, then
   * reconnects with backoff, forever, in one chain of attempts.
   */
  #lost(error: unknown, starting = false): void {
    if (this.#closed) return
    const attempt = ++this.#attempt
    const wasUp = this.#up || starting
    this.#up = false
    this.#lastError = errorMessage(error)
    this.#state = 'down'
    this.#leader = false
    this.#release()
    if (wasUp) {
      this.#sink?.down(`change listener: ${this.#lastError}`)
      this.#sink?.logger.warn(
        { err: error, retryInMs: this.#backoff },
        'strata: change listener lost; reconnecting',
      )
    }
    const retry = (): void =>
      this.#after(this.#backoff, async () => {
        if (attempt !== this.#attempt) return
        this.#reconnects++
        try {
          await this.#connect(attempt)
        } catch (next) {
          if (attempt !== this.#attempt) return
          this.#lastError = errorMessage(next)
          this.#backoff = Math.min(this.#backoff * 2, 30_000)
          retry()
          return
        }
        if (attempt === this.#attempt) {
          this.#sink?.logger.info(
            { reconnects: this.#reconnects },
            'strata: change listener reconnected and caught up',
          )
        }
      })
    retry()
  }
}
