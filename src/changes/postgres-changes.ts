import { readFileSync } from 'node:fs'
import { collectionTag, entityTag } from '../entities/tags.js'
import { StrataOptionError } from '../errors.js'
import { postgresInstallSql, type Queryable } from '../tiers/postgres.js'
import { type ChangeRow, LogCursor } from './cursor.js'
import type { ChangeSink, ChangeSource, ChangeSourceStatus } from './source.js'

/** A dedicated connection (`pg.Pool#connect()`). */
interface Session {
  query(text: string, params?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>
  on(event: string, listener: (...args: unknown[]) => void): unknown
  release(destroy?: boolean): void
}

interface Database extends Queryable {
  connect?(): Promise<Session>
  /** PGlite: LISTEN in process. */
  listen?(channel: string, callback: (payload: string) => void): Promise<() => Promise<void>>
}

/** Options of {@link postgresChanges}. */
export interface PostgresChangesOptions {
  /** A `pg.Pool` on the primary, or PGlite. `listen` mode takes one connection from it. */
  pool: Database
  /** @default 'strata' */
  schema?: string
  /**
   * Install `sql/install.sql` and `sql/changes.sql` (idempotent) before starting.
   * @default true
   */
  autoInstall?: boolean
  /**
   * `listen`: one instance (elected by advisory lock) reads the log, invalidates shared tiers and
   * sends one NOTIFY; every instance LISTENs and reads for its local tiers. `poll`: every instance
   * reads the log on a timer (for PgBouncer transaction pooling, where LISTEN and session locks fail).
   * @default 'listen'
   */
  mode?: 'listen' | 'poll'
  /** How often the leader (or, in poll mode, every instance) reads the log. @default 20 */
  pollMs?: number
  /** Safety-net read interval for followers, in case a NOTIFY is missed. @default 1000 */
  followerPollMs?: number
  /** Rows older than this, already applied, are pruned. @default 600000 */
  retentionMs?: number
  /** @default 30000 */
  pruneIntervalMs?: number
  /** Rows per read. @default 5000 */
  batch?: number
  /** How often the listener connection is pinged. @default 5000 */
  pingMs?: number
}

export const postgresChangesDefaults = {
  schema: 'strata',
  autoInstall: true,
  mode: 'listen' as 'listen' | 'poll',
  pollMs: 20,
  followerPollMs: 1000,
  retentionMs: 600_000,
  pruneIntervalMs: 30_000,
  batch: 5000,
  pingMs: 5000,
}

/** The change-capture script for `schema`; run it (after the install script) when `autoInstall` is off. */
export function postgresChangesSql(schema = 'strata'): string {
  const sql = readFileSync(new URL('../../sql/changes.sql', import.meta.url), 'utf8')
  return schema === 'strata'
    ? sql
    : sql.replace(/\bstrata\.|SCHEMA IF NOT EXISTS strata;/g, (m) => m.replace('strata', schema))
}

/** Database changes, captured by triggers (`strata.watch(...)`) into a change log, invalidate the cache. */
export function postgresChanges(options: PostgresChangesOptions): ChangeSource {
  const settings = validate(options)
  return new PostgresChanges(settings)
}

type Settings = typeof postgresChangesDefaults & { pool: Database }

class PostgresChanges implements ChangeSource {
  readonly name = 'postgres-changes'
  readonly #s: Settings
  #sink: ChangeSink | undefined
  #cursor: LogCursor | undefined
  #epoch: string | undefined
  #session: Session | undefined
  #unlisten: (() => Promise<void>) | undefined
  #state: ChangeSourceStatus['state'] = 'starting'
  #leader = false
  readonly #timers = new Set<ReturnType<typeof setTimeout>>()
  #reading: Promise<void> | undefined
  #again = false
  #backoff = 100
  #reconnects = 0
  #flushes = 0
  #lastRead: number | undefined
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
    if (this.#s.autoInstall) {
      const sql = `${postgresInstallSql(this.#s.schema)}\n${postgresChangesSql(this.#s.schema)}`
      await (this.#s.pool.exec ? this.#s.pool.exec(sql) : this.#s.pool.query(sql))
    }
    await this.#connect().catch((error: unknown) => this.#lost(error))
    this.#every(this.#s.pruneIntervalMs, () => this.#prune())
  }

  status(): ChangeSourceStatus {
    return {
      state: this.#state,
      appliedThrough: this.#cursor?.low ?? 0,
      seen: this.#cursor?.maxSeen ?? 0,
      pending: this.#cursor?.holes.length ?? 0,
      reconnects: this.#reconnects,
      flushes: this.#flushes,
      sinceLastRead: this.#lastRead === undefined ? null : Date.now() - this.#lastRead,
      lastError: this.#lastError,
    }
  }

  async close(): Promise<void> {
    this.#closed = true
    this.#state = 'closed'
    for (const timer of this.#timers) clearTimeout(timer)
    this.#timers.clear()
    await this.#reading?.catch(() => undefined)
    await this.#unlisten?.()
    this.#release()
  }

  /** Runs `query` on the dedicated session when there is one, else on the pool. */
  #q(text: string, params?: unknown[]) {
    return (this.#session ?? this.#s.pool).query(text, params)
  }

  async #connect(): Promise<void> {
    const { pool, mode } = this.#s
    const sink = this.#sink as ChangeSink
    if (mode === 'poll') {
      this.#state = 'polling'
    } else if (pool.listen && !pool.connect) {
      this.#unlisten = await pool.listen(this.#channel, () => this.#wake())
      this.#leader = true // PGlite: a single process
      this.#state = 'leader'
    } else if (pool.connect) {
      const session = await pool.connect()
      session.on('error', (error) => this.#lost(error))
      session.on('end', () => this.#lost(new Error('listener connection ended')))
      session.on('notification', (message) => {
        if ((message as { channel?: string }).channel === this.#channel) this.#wake()
      })
      this.#session = session
      // Named, so operators (and tests) can find the listener in pg_stat_activity.
      await session.query(
        `SET application_name = '${`graphql-strata changes ${this.#s.schema}`.slice(0, 63)}'`,
      )
      await session.query(`LISTEN ${this.#channel}`)
      await this.#campaign()
      this.#ping(session)
    } else {
      throw new StrataOptionError(
        'postgresChanges.pool',
        'listen mode needs a pg.Pool (connect) or PGlite (listen); use mode: "poll" otherwise',
      )
    }
    await this.#read() // catch up before trusting local tiers again
    this.#backoff = 100
    this.#lastError = null
    sink.up()
    this.#schedule()
  }

  /** Tries to become the leader (session advisory lock, released if this connection dies). */
  async #campaign(): Promise<void> {
    const { rows } = await this.#q(`SELECT pg_try_advisory_lock(hashtext($1)) AS won`, [
      `graphql-strata changes ${this.#s.schema}`,
    ])
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

  #schedule(): void {
    const { mode, pollMs, followerPollMs } = this.#s
    const interval = mode === 'poll' || this.#leader ? pollMs : followerPollMs
    this.#after(interval, async () => {
      if (this.#state === 'down') return
      try {
        if (mode === 'listen' && this.#session && !this.#leader) await this.#campaign()
        await this.#read()
      } catch (error) {
        return this.#lost(error)
      }
      this.#schedule()
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
        await session.query('SELECT 1')
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

  #lost(error: unknown): void {
    if (this.#closed || this.#state === 'down') return
    this.#lastError = String((error as Error)?.message ?? error)
    this.#state = 'down'
    this.#leader = false
    this.#release()
    this.#sink?.down(`change listener: ${this.#lastError}`)
    this.#sink?.logger.warn(
      { err: error, retryInMs: this.#backoff },
      'strata: change listener lost; reconnecting',
    )
    const retry = () =>
      this.#after(this.#backoff, async () => {
        this.#reconnects++
        try {
          await this.#connect()
          this.#sink?.logger.info(
            { reconnects: this.#reconnects },
            'strata: change listener reconnected and caught up',
          )
        } catch (next) {
          this.#release()
          this.#lastError = String((next as Error)?.message ?? next)
          this.#backoff = Math.min(this.#backoff * 2, 30_000)
          retry()
        }
      })
    retry()
  }

  /** Reads the log until caught up; one read at a time. */
  #read(): Promise<void> {
    if (this.#reading) {
      this.#again = true
      return this.#reading
    }
    this.#reading = (async () => {
      try {
        do {
          this.#again = false
          while (await this.#readBatch());
        } while (this.#again)
      } finally {
        this.#reading = undefined
      }
    })()
    return this.#reading
  }

  /** One batch; resolves whether a full batch came back (read again). */
  async #readBatch(): Promise<boolean> {
    const sink = this.#sink as ChangeSink
    const { schema, batch, mode } = this.#s
    const cursor = this.#cursor
    const { rows } = await this.#q(
      `SELECT st.epoch, st.pruned_through::text AS pruned, st.checkpoint::text AS checkpoint,
              pg_snapshot_xmin(pg_current_snapshot())::text AS xmin,
              pg_snapshot_xmax(pg_current_snapshot())::text AS xmax,
              c.seq::text AS seq, c.type_name, c.entity_key, c.tenant
       FROM ${schema}.changes_state st
       LEFT JOIN LATERAL (
         SELECT seq, type_name, entity_key, tenant FROM ${schema}.changes
         WHERE seq > $1 OR seq = ANY ($2::bigint[]) ORDER BY seq LIMIT $3
       ) c ON true`,
      [cursor?.maxSeen ?? Number.MAX_SAFE_INTEGER, cursor?.holes ?? [], batch],
    )
    this.#lastRead = Date.now()
    // Every reader invalidates every tier: a follower that cleaned only its memory tier could
    // re-read (and keep) a shared entry the leader has not reached yet. Invalidation is idempotent.
    const scope = 'all'
    const head = rows[0]
    if (!head) {
      // The state row is gone: the log was emptied by a crash. The leader starts a new epoch.
      if (this.#leader || mode === 'poll') {
        await this.#q(
          `INSERT INTO ${schema}.changes_state (epoch) VALUES (md5(random()::text || clock_timestamp()::text)) ON CONFLICT DO NOTHING`,
        )
      }
      return false
    }
    const epoch = String(head.epoch)
    if (!cursor || this.#epoch !== epoch) {
      if (cursor || this.#epoch !== undefined)
        await this.#flush(`the change log was reset (new epoch ${epoch})`, scope)
      this.#epoch = epoch
      this.#cursor = new LogCursor(Number(head.checkpoint))
      return true
    }
    if (Number(head.pruned) > cursor.low) {
      await this.#flush(`changes up to ${head.pruned} were pruned before this instance applied them`, scope)
      this.#cursor = new LogCursor(Math.max(Number(head.pruned), Number(head.checkpoint)))
      return true
    }
    const changes: ChangeRow[] = []
    for (const row of rows) {
      if (row.seq === null || row.seq === undefined) continue
      changes.push({
        seq: Number(row.seq),
        typeName: String(row.type_name),
        entityKey: String(row.entity_key),
        tenant: row.tenant === null ? null : String(row.tenant),
      })
    }
    const before = cursor.low
    const fresh = cursor.accept(changes, { xmin: BigInt(String(head.xmin)), xmax: BigInt(String(head.xmax)) })
    if (cursor.holes.length > 100_000) {
      await this.#flush('too many changes in flight to track', scope)
      this.#cursor = new LogCursor(cursor.maxSeen)
      return false
    }
    if (fresh.length > 0) {
      const tags = new Set<string>()
      for (const change of fresh) {
        tags.add(entityTag(change.typeName, [change.entityKey]))
        tags.add(collectionTag(change.typeName))
      }
      await sink.invalidate([...tags], scope)
    }
    if (cursor.low > before) {
      await this.#q(`UPDATE ${schema}.changes_state SET checkpoint = greatest(checkpoint, $1)`, [cursor.low])
    }
    if (this.#leader && mode === 'listen' && fresh.length > 0) {
      await this.#q(`SELECT pg_notify($1, $2)`, [this.#channel, String(cursor.maxSeen)])
    }
    return changes.length >= batch
  }

  async #flush(reason: string, scope: 'all' | 'local'): Promise<void> {
    this.#flushes++
    this.#sink?.logger.warn({ reason }, 'strata: change log gap; flushing the cache')
    await this.#sink?.flush(reason, scope)
  }

  /** Leader: deletes applied rows older than the retention, in batches. */
  async #prune(): Promise<void> {
    if (!this.#leader && this.#s.mode !== 'poll') return
    const { schema, retentionMs } = this.#s
    for (;;) {
      const { rows } = await this.#q(
        `WITH doomed AS (
           SELECT ctid, seq FROM ${schema}.changes
           WHERE seq <= (SELECT checkpoint FROM ${schema}.changes_state) AND at < now() - make_interval(secs => $1)
           LIMIT 5000
         ), gone AS (DELETE FROM ${schema}.changes WHERE ctid IN (SELECT ctid FROM doomed) RETURNING seq)
         UPDATE ${schema}.changes_state SET pruned_through = greatest(pruned_through, (SELECT max(seq) FROM gone))
         WHERE EXISTS (SELECT 1 FROM gone) RETURNING 1`,
        [retentionMs / 1000],
      )
      if (rows.length === 0) return
    }
  }
}

function validate(options: PostgresChangesOptions): Settings {
  if (typeof options?.pool?.query !== 'function') {
    throw new StrataOptionError('postgresChanges.pool', 'must be a pg.Pool, or PGlite')
  }
  const settings = { ...postgresChangesDefaults, ...options }
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(settings.schema)) {
    throw new StrataOptionError(
      'postgresChanges.schema',
      `must be lowercase letters, digits and '_', got ${JSON.stringify(settings.schema)}`,
    )
  }
  if (settings.mode !== 'listen' && settings.mode !== 'poll') {
    throw new StrataOptionError(
      'postgresChanges.mode',
      `must be 'listen' or 'poll', got ${JSON.stringify(settings.mode)}`,
    )
  }
  for (const name of [
    'pollMs',
    'followerPollMs',
    'retentionMs',
    'pruneIntervalMs',
    'batch',
    'pingMs',
  ] as const) {
    if (!Number.isSafeInteger(settings[name]) || settings[name] < 1) {
      throw new StrataOptionError(
        `postgresChanges.${name}`,
        `must be a whole number >= 1, got ${String(settings[name])}`,
      )
    }
  }
  return settings
}
