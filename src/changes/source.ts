import type { Logger } from 'pino'

/** Where a change source sends what it learns. */
export interface ChangeSink {
  /**
   * Invalidates tags: in every tier (`'all'`, the instance in charge of shared tiers) or in this
   * instance's local tiers only (`'local'`, after the shared tiers were handled by another).
   */
  invalidate(tags: readonly string[], scope: 'all' | 'local'): Promise<void>
  /**
   * Drops everything, in every tier and on every instance (`'all'`), or in this instance's local tiers
   * (`'local'`, when the shared tiers had the missed changes applied): a gap the change log cannot cover.
   */
  flush(reason: string, scope: 'all' | 'local'): Promise<void>
  /** While down, local tiers are not used (they would miss changes). */
  down(reason: string): void
  up(): void
  readonly logger: Logger
}

/** What the admin field and metrics show of a change source. */
export interface ChangeSourceStatus {
  readonly state: 'starting' | 'leader' | 'follower' | 'polling' | 'down' | 'closed'
  /** Every change at or below this sequence number has been applied here. */
  readonly appliedThrough: number
  /** Highest sequence number seen. */
  readonly seen: number
  /** Changes that may still commit below `seen` (transactions in flight). */
  readonly pending: number
  readonly reconnects: number
  readonly flushes: number
  /** Milliseconds since the last successful read of the log. */
  readonly sinceLastRead: number | null
  readonly lastError: string | null
}

/** A source of database changes that invalidates the cache (e.g. `postgresChanges`). */
export interface ChangeSource {
  readonly name: string
  start(sink: ChangeSink): Promise<void>
  status(): ChangeSourceStatus
  close(): Promise<void>
}
