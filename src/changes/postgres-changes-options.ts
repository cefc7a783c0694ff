import { definedOnly } from '../defined-only.js'
import { StrataOptionError } from '../errors.js'
import type { Queryable } from '../tiers/postgres.js'
import { sqlScript } from '../tiers/sql-script.js'

/** A dedicated connection (`pg.Pool#connect()`). */
export interface Session {
  query(text: string, params?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>
  on(event: string, listener: (...args: unknown[]) => void): unknown
  release(destroy?: boolean): void
}

export interface Database extends Queryable {
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
   * `listen`: one instance (elected by advisory lock) moves what writers committed into the log,
   * reads it, invalidates and sends one NOTIFY; every instance LISTENs and reads the log. `poll`: every
   * instance does all of that on a timer (for PgBouncer transaction pooling, where LISTEN and session
   * locks fail).
   * @default 'listen'
   */
  mode?: 'listen' | 'poll'
  /** How often the leader (or, in poll mode, every instance) drains and reads the log. @default 20 */
  pollMs?: number
  /** Safety-net read interval for followers, in case a NOTIFY is missed. @default 1000 */
  followerPollMs?: number
  /** Rows older than this, already applied, are pruned. @default 600000 */
  retentionMs?: number
  /** @default 30000 */
  pruneIntervalMs?: number
  /** Changes per drain, and about per read (one invalidation call); at most 1,000,000. @default 5000 */
  batch?: number
  /** How often the listener connection is pinged. @default 5000 */
  pingMs?: number
}

/** A listener query that takes longer means a dead connection. */
export const QUERY_TIMEOUT_MS = 10_000

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
  return sqlScript('changes.sql', schema)
}

export type Settings = typeof postgresChangesDefaults & { pool: Database }

/** The largest `batch`: a drain writes up to this many changes into one log row. */
const MAX_BATCH = 1_000_000

export function validateChangesOptions(options: PostgresChangesOptions): Settings {
  if (typeof options?.pool?.query !== 'function') {
    throw new StrataOptionError('postgresChanges.pool', 'must be a pg.Pool, or PGlite')
  }
  const settings = { ...postgresChangesDefaults, ...definedOnly(options) }
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
  if (settings.batch > MAX_BATCH) {
    throw new StrataOptionError(
      'postgresChanges.batch',
      `must be at most ${MAX_BATCH} (a drain writes up to this many changes into one log row), got ${settings.batch}`,
    )
  }
  return settings
}
