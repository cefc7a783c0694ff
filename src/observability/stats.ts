/** Why a request did not use the cache. */
export type BypassReason =
  | 'mutation'
  | 'subscription'
  | 'incremental'
  | 'disabled'
  | 'no-tenant'
  | 'ill-formed-tenant'
  | 'private-no-session'
  | 'no-operation'
  | 'admin'

/** Why a miss's result was not stored. */
export type SkipReason =
  | 'errors'
  | 'uncacheable'
  | 'private-no-session'
  | 'too-large'
  | 'invalidated-during-execution'
  | 'not-analysable'
  | 'added-field-error'
  | 'ambiguous-dynamic-hint'
  /** A plugin before Strata kept `onExecuteDone` waiting past the grace period: stripped, not stored. */
  | 'given-up'
  /** The `shouldStore` option said no (or threw). */
  | 'declined'

/** A snapshot of the plugin's counters since start. */
export interface StrataStats {
  hits: number
  hitsByTier: Record<string, number>
  /** Hits (counted in `hits` too) served stale, past their maxAge, while refreshed. */
  staleHits: number
  /** Background refreshes of stale entries started, and those that threw. */
  refreshes: number
  failedRefreshes: number
  misses: number
  /** Misses that waited for an identical execution in flight instead of executing. */
  coalesced: number
  /** Waits for an identical execution that gave up after `singleFlight.maxWaitMs` and executed. */
  flightWaitTimeouts: number
  bypasses: Partial<Record<BypassReason, number>>
  stores: number
  skippedStores: Partial<Record<SkipReason, number>>
  /** Invalidation calls, and tags named by them. */
  invalidations: number
  invalidatedTags: number
  /** Invalidations and clears received from other instances. */
  busMessages: number
  /** Times the bus went down (local tiers were flushed). */
  busGaps: number
  /** Publications that failed. */
  busErrors: number
  /** Hits, misses and bypasses per operation name (at most 500 names; the rest under `(other)`). */
  byOperation: Record<string, OperationCounts>
}

export interface OperationCounts {
  hits: number
  misses: number
  bypasses: number
}

/** Receives every outcome, for metrics. */
export interface CacheObserver {
  outcome(
    outcome: 'hit' | 'miss' | 'bypass',
    operation: string,
    tier: string | null,
    reason: string | null,
  ): void
  lookup(tier: string, seconds: number): void
  invalidated(tags: number): void
}

const MAX_OPERATIONS = 500

/**
 * Counts an outcome under its operation name, keeping the map bounded (names come from clients);
 * returns the name it was counted under, for metric labels (same bound).
 */
export function countOperation(
  stats: StrataStats,
  operation: string,
  outcome: 'hit' | 'miss' | 'bypass',
): string {
  let name = operation
  let counts = stats.byOperation[operation]
  if (!counts) {
    name = Object.keys(stats.byOperation).length < MAX_OPERATIONS ? operation : '(other)'
    counts = stats.byOperation[name] ??= { hits: 0, misses: 0, bypasses: 0 }
  }
  if (outcome === 'hit') counts.hits++
  else if (outcome === 'miss') counts.misses++
  else counts.bypasses++
  return name
}

/**
 * A map from names to counters with no prototype: operation names come from clients, and one named
 * `__proto__` or `constructor` must count as itself, never reach `Object.prototype`.
 */
const counters = <T>(): Record<string, T> => Object.create(null) as Record<string, T>

export function emptyStats(): StrataStats {
  return {
    hits: 0,
    hitsByTier: counters(),
    staleHits: 0,
    refreshes: 0,
    failedRefreshes: 0,
    misses: 0,
    coalesced: 0,
    flightWaitTimeouts: 0,
    bypasses: counters(),
    stores: 0,
    skippedStores: counters(),
    invalidations: 0,
    invalidatedTags: 0,
    busMessages: 0,
    busGaps: 0,
    busErrors: 0,
    byOperation: counters(),
  }
}

export function bump<K extends string>(record: Partial<Record<K, number>>, key: K): void {
  record[key] = (record[key] ?? 0) + 1
}
