import type { Logger } from 'pino'

/** A query on some connection to the database. */
export type Query = (text: string, params?: unknown[]) => Promise<{ rows: Record<string, unknown>[] }>

/** How often a draining instance vacuums the inbox (while drains move rows). */
const VACUUM_EVERY_MS = 1000
/** An inbox larger than this (a bulk load drained) is also truncated. */
const TRUNCATE_ABOVE_BYTES = 8 * 1024 * 1024

/**
 * Keeps the change tables small. Writers append to the inbox and drains delete from it all day:
 * without frequent vacuuming (autovacuum off, or too slow for a hot queue) it would only grow, and
 * every drain scans it. Runs on the pool, never on the listener's session, one VACUUM at a time, and
 * never holds up a read.
 */
export class LogMaintenance {
  #vacuumedAt = 0
  #running: Promise<void> | undefined
  /** Change tables this role may not vacuum (it does not own them): warned about once, then skipped. */
  readonly #denied = new Set<string>()

  constructor(
    private readonly schema: string,
    private readonly query: Query,
    private readonly logger: Logger,
  ) {}

  /** A drain moved rows: vacuum the inboxes if they have not been for a while. */
  drained(): void {
    if (Date.now() - this.#vacuumedAt >= VACUUM_EVERY_MS) this.#start('inboxes')
  }

  /** Pruning deleted log rows. */
  pruned(): void {
    this.#start('changes')
  }

  /** Waits for the VACUUM in progress, if any. */
  async settled(): Promise<void> {
    await this.#running
  }

  #start(tables: 'inboxes' | 'changes'): void {
    if (this.#running) return
    if (tables === 'inboxes') this.#vacuumedAt = Date.now()
    this.#running = this.#vacuum(tables)
      .catch((error: unknown) =>
        this.logger.warn({ err: error, tables }, 'strata: VACUUM of a change table failed'),
      )
      .finally(() => {
        this.#running = undefined
      })
  }

  async #vacuum(tables: 'inboxes' | 'changes'): Promise<void> {
    // The inboxes are the text one and the typed ones (strata.changes_inbox_*), whatever sql/changes.sql made.
    const pattern = tables === 'inboxes' ? 'changes\\_inbox%' : 'changes'
    const { rows } = await this.query(
      `SELECT c.relname AS table,
              (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
              OR pg_has_role(current_user, c.relowner, 'USAGE')
              OR pg_has_role(current_user, (SELECT datdba FROM pg_database WHERE datname = current_database()), 'USAGE')
              AS allowed,
              pg_relation_size(c.oid) > $3 AS big
       FROM pg_class c WHERE c.relnamespace = $1::regnamespace AND c.relname LIKE $2 AND c.relkind = 'r'
       ORDER BY c.relname`,
      [this.schema, pattern, TRUNCATE_ABOVE_BYTES],
    )
    const fresh = rows.filter((row) => !this.#denied.has(String(row.table)))
    const denied = fresh.filter((row) => row.allowed !== true).map((row) => String(row.table))
    if (denied.length > 0) {
      for (const name of denied) this.#denied.add(name)
      this.logger.warn(
        { schema: this.schema, tables: denied },
        'strata: this role cannot VACUUM these change tables (not their owner); autovacuum must keep up alone',
      )
    }
    const mine = fresh.filter((row) => row.allowed === true)
    // Truncating takes a lock writers wait for (briefly): only when a bulk load left a table large.
    for (const truncate of [false, true]) {
      const relations = mine.filter((row) => (row.big === true) === truncate)
      if (relations.length === 0) continue
      const list = relations.map((row) => `${this.schema}.${String(row.table)}`).join(', ')
      await this.query(`VACUUM (SKIP_LOCKED, TRUNCATE ${truncate}) ${list}`)
    }
  }
}
