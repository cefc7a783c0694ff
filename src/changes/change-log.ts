import { collectionTag, entityTag } from '../entities/tags.js'
import { type ChangeRow, LogCursor } from './cursor.js'
import { LogMaintenance, type Query } from './maintenance.js'
import type { ChangeSink } from './source.js'

/** Full drains before reading what they moved, so that a bulk load never holds up reading. */
const MAX_DRAINS_PER_READ = 8
/**
 * Log rows (one per drain and inbox that had rows; a drain moves up to `batch` changes) per read, at
 * most; reads also stop near `batch` changes.
 */
const DRAINS_PER_READ = 16

/** What the reader needs from the connection that owns it. */
export interface LogAccess {
  readonly schema: string
  readonly channel: string
  readonly batch: number
  readonly mode: 'listen' | 'poll'
  /** Runs on the listener's session when there is one, else on the pool. */
  readonly query: Query
  /** Runs on the pool (maintenance that must not hold up the listener's session). */
  readonly maintain: Query
  readonly leader: () => boolean
  readonly sink: ChangeSink
}

/**
 * Reads the change log from where this instance left off and invalidates what changed.
 * One read at a time; a wake-up during a read triggers another right after it.
 */
export class ChangeLogReader {
  #cursor: LogCursor | undefined
  #epoch: string | undefined
  #reading: Promise<void> | undefined
  #again = false
  #warnedHoles = false
  /** Prunes failed in a row (the first is logged). */
  #pruneFailures = 0
  readonly #maintenance: LogMaintenance
  flushes = 0
  lastRead: number | undefined

  constructor(readonly access: LogAccess) {
    this.#maintenance = new LogMaintenance(access.schema, access.maintain, access.sink.logger)
  }

  get cursor(): LogCursor | undefined {
    return this.#cursor
  }

  /** Waits for the read in progress, if any. */
  async settled(): Promise<void> {
    await this.#reading?.catch(() => undefined)
    await this.#maintenance.settled()
  }

  /**
   * Reads the log until caught up; one read at a time. The leader (and, in poll mode, every
   * instance) first drains what writers committed to the inbox into the log.
   */
  read(): Promise<void> {
    if (this.#reading) {
      this.#again = true
      return this.#reading
    }
    this.#reading = (async () => {
      try {
        do {
          this.#again = false
          if (this.#drains) {
            // A bulk load: what is left waits for the next read, so reading never waits for it.
            for (let drains = 1; (await this.#drain()) && drains < MAX_DRAINS_PER_READ; drains++);
          }
          while (await this.#readBatch());
        } while (this.#again)
      } finally {
        this.#reading = undefined
      }
    })()
    return this.#reading
  }

  get #drains(): boolean {
    return this.access.leader() || this.access.mode === 'poll'
  }

  /** Moves one batch from the inbox into the log; resolves whether to drain again. */
  async #drain(): Promise<boolean> {
    const { rows } = await this.access.query(`SELECT ${this.access.schema}.drain_inboxes($1) AS moved`, [
      this.access.batch,
    ])
    const moved = Number(rows[0]?.moved ?? 0)
    if (moved > 0) this.#maintenance.drained()
    return moved >= this.access.batch // -1: another instance is draining
  }

  /** One batch; resolves whether a full batch came back (read again). */
  async #readBatch(): Promise<boolean> {
    const { sink, schema, batch, mode } = this.access
    const cursor = this.#cursor
    const { rows } = await this.access.query(
      `SELECT st.epoch, st.pruned_through::text AS pruned, st.checkpoint::text AS checkpoint,
              pg_snapshot_xmin(pg_current_snapshot())::text AS xmin,
              pg_snapshot_xmax(pg_current_snapshot())::text AS xmax,
              c.seq::text AS seq, k.type_name, k.entity_key, k.tenant
       FROM ${schema}.changes_state st
       LEFT JOIN LATERAL (
         SELECT * FROM (
           SELECT seq, type_names, entity_keys, tenants,
                  sum(cardinality(entity_keys)) OVER (ORDER BY seq) - cardinality(entity_keys) AS before
           FROM ${schema}.changes
           WHERE seq > $1 OR seq = ANY ($2::bigint[]) ORDER BY seq LIMIT $3
         ) l WHERE l.before < $4 -- at most about $4 changes (and at least one log row) per read
       ) c ON true
       LEFT JOIN LATERAL unnest(c.type_names, c.entity_keys, c.tenants) AS k (type_name, entity_key, tenant) ON true
       ORDER BY c.seq`,
      [cursor?.maxSeen ?? Number.MAX_SAFE_INTEGER, cursor?.holes ?? [], DRAINS_PER_READ, batch],
    )
    this.lastRead = Date.now()
    // Every reader invalidates every tier: a follower that cleaned only its memory tier could
    // re-read (and keep) a shared entry the leader has not reached yet. Invalidation is idempotent.
    const scope = 'all'
    const head = rows[0]
    if (!head) {
      // The state row is gone: a crash emptied the log (UNLOGGED), and changes that writers committed
      // just before it may be gone with it. Any reader starts the new epoch (idempotent, under the
      // drain lock) rather than wait for the leader to, and reads again: the new epoch is answered
      // with a flush before this read resolves, so a reconnect never trusts local tiers before it.
      await this.access.query(`SELECT ${schema}.start_epoch()`)
      return true
    }
    const epoch = String(head.epoch)
    if (!cursor || this.#epoch !== epoch) {
      // The log is UNLOGGED: a crash empties it with a new epoch. The last epoch the fleet applied is
      // kept in a logged table, so even a fleet that restarted with the database notices.
      const known = this.#epoch ?? (await this.#recordedEpoch())
      if (known !== undefined && known !== epoch)
        await this.#flush(`the change log was reset (new epoch ${epoch})`, scope)
      await this.access.query(
        `INSERT INTO ${schema}.meta (key, value) VALUES ('changes_epoch', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
        [epoch],
      )
      this.#epoch = epoch
      this.#cursor = new LogCursor(Number(head.checkpoint))
      return true
    }
    if (Number(head.pruned) > cursor.low) {
      // Only this instance missed them: pruning deletes rows up to the checkpoint alone, which
      // readers move once they have invalidated every tier, so the shared tiers had them applied, as
      // have those up to the checkpoint this reader goes on from. Its local tiers alone may be stale.
      await this.#flush(`changes up to ${head.pruned} were pruned before this instance applied them`, 'local')
      this.#cursor = new LogCursor(Math.max(Number(head.pruned), Number(head.checkpoint)))
      return true
    }
    const changes: ChangeRow[] = []
    const logRows = new Set<string>()
    for (const row of rows) {
      if (row.seq === null || row.seq === undefined) continue
      logRows.add(String(row.seq))
      if (row.type_name === null || row.type_name === undefined) continue
      changes.push({
        seq: Number(row.seq),
        typeName: String(row.type_name),
        entityKey: row.entity_key === null ? null : String(row.entity_key),
        tenant: row.tenant === null ? null : String(row.tenant),
      })
    }
    const before = cursor.low
    // Cut by a limit: log rows past the last one returned may be there, so no hole is settled yet.
    const more = logRows.size >= DRAINS_PER_READ || changes.length >= batch
    const fresh = cursor.accept(
      changes,
      { xmin: BigInt(String(head.xmin)), xmax: BigInt(String(head.xmax)) },
      !more,
    )
    // Holes are never dropped: forgetting one would skip a change that commits later.
    if (cursor.holes.length > 100_000 && !this.#warnedHoles) {
      this.#warnedHoles = true
      sink.logger.warn(
        { pending: cursor.holes.length },
        'strata: over 100k change-log numbers pending (a long transaction holds them open); memory grows until it ends',
      )
    }
    if (fresh.length > 0) {
      const tags = new Set<string>()
      for (const change of fresh) {
        if (change.entityKey !== null) tags.add(entityTag(change.typeName, [change.entityKey]))
        tags.add(collectionTag(change.typeName))
      }
      await sink.invalidate([...tags], scope)
    }
    if (cursor.low > before) {
      // Only in the epoch it belongs to: after a crash, a new epoch's numbers start over.
      await this.access.query(
        `UPDATE ${schema}.changes_state SET checkpoint = greatest(checkpoint, $1)
         WHERE epoch = $2 AND (SELECT ${schema}.read_committed())`,
        [cursor.low, this.#epoch],
      )
    }
    if (this.access.leader() && mode === 'listen' && fresh.length > 0) {
      await this.access.query(`SELECT pg_notify($1, $2)`, [this.access.channel, String(cursor.maxSeen)])
    }
    return more
  }

  async #recordedEpoch(): Promise<string | undefined> {
    const { rows } = await this.access.query(
      `SELECT value FROM ${this.access.schema}.meta WHERE key = 'changes_epoch'`,
    )
    return rows[0] === undefined ? undefined : String(rows[0].value)
  }

  async #flush(reason: string, scope: 'all' | 'local'): Promise<void> {
    this.flushes++
    this.access.sink.logger.warn({ reason }, 'strata: change log gap; flushing the cache')
    await this.access.sink.flush(reason, scope)
  }

  /**
   * Leader: deletes applied rows older than the retention, in batches. Never rejects: a failure is
   * logged once per streak of failures (the timer calls again, and a database that is down would
   * fail every call), and the first success after it says so.
   */
  async prune(retentionMs: number): Promise<void> {
    if (!this.access.leader() && this.access.mode !== 'poll') return
    try {
      await this.#prune(retentionMs)
    } catch (error) {
      if (this.#pruneFailures++ === 0) {
        this.access.sink.logger.warn(
          { err: error },
          'strata: pruning the change log failed; retrying (not logged again until it has worked)',
        )
      }
      return
    }
    if (this.#pruneFailures > 0) {
      this.access.sink.logger.info(
        { failures: this.#pruneFailures },
        'strata: pruning the change log works again',
      )
      this.#pruneFailures = 0
    }
  }

  async #prune(retentionMs: number): Promise<void> {
    const { schema } = this.access
    let pruned = false
    for (;;) {
      const { rows } = await this.access.query(
        `WITH doomed AS (
           SELECT ctid, seq FROM ${schema}.changes
           WHERE seq <= (SELECT checkpoint FROM ${schema}.changes_state) AND at < now() - make_interval(secs => $1)
             AND (SELECT ${schema}.read_committed()) -- refused at another isolation level (a pool's default)
           LIMIT 5000
         ), gone AS (DELETE FROM ${schema}.changes WHERE ctid IN (SELECT ctid FROM doomed) RETURNING seq)
         UPDATE ${schema}.changes_state SET pruned_through = greatest(pruned_through, (SELECT max(seq) FROM gone))
         WHERE EXISTS (SELECT 1 FROM gone) RETURNING 1`,
        [retentionMs / 1000],
      )
      if (rows.length === 0) break
      pruned = true
    }
    if (pruned) this.#maintenance.pruned()
  }
}
