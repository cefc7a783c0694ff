import type { ExecutionResult } from 'graphql'
import { bump, countOperation } from '../observability/stats.js'
import type { CacheEntry } from '../tiers/tier.js'
import type { TieredHit } from '../tiers/tiered.js'
import { resultFromBody } from './cached-result.js'
import type { StrataEngine } from './engine.js'
import type { Outcome } from './http.js'

/**
 * Serves a hit; returns whether its entry is stale (past its maxAge, within the grace of
 * `staleWhileRevalidate`): the caller refreshes it then.
 */
export function serveHit(
  engine: StrataEngine,
  hit: TieredHit,
  context: unknown,
  setResult: (result: ExecutionResult) => void,
  operation: string,
): boolean {
  const { entry } = hit
  const { stats } = engine
  const now = Date.now()
  const stale = entry.freshUntil !== undefined && entry.freshUntil <= now
  stats.hits++
  if (stale) stats.staleHits++
  bump(stats.hitsByTier, hit.tier)
  const name = countOperation(stats, operation, 'hit')
  engine.observer?.outcome('hit', name, hit.tier, stale ? 'stale' : null)
  const ttl = secondsFresh(entry, now)
  const result = resultFromBody(entry.body)
  engine.http.record(
    context,
    stale ? { status: 'STALE', httpPolicy: null } : served('HIT', entry, result, ttl),
  )
  if (engine.settings.debug) {
    const age = Math.floor((now - entry.createdAt) / 1000)
    const strata = { hit: true, tier: hit.tier, ttl, age }
    result.extensions = { strata: stale ? { ...strata, stale } : strata }
  }
  setResult(result)
  return stale
}

/** Serves the entry an identical in-flight execution stored, with the headers its hits get. */
export function serveCoalesced(
  engine: StrataEngine,
  entry: CacheEntry,
  context: unknown,
  setResult: (result: ExecutionResult) => void,
): void {
  engine.stats.coalesced++
  const result = resultFromBody(entry.body)
  engine.http.record(context, served('MISS', entry, result, secondsFresh(entry, Date.now())))
  setResult(result)
}

/** Whole seconds `entry` stays fresh after `now`. */
function secondsFresh(entry: CacheEntry, now: number): number {
  return Math.max(0, Math.floor(((entry.freshUntil ?? entry.expiresAt) - now) / 1000))
}

/** The outcome of serving a stored entry: HTTP caches may keep it for what remains of its maxAge. */
function served(status: Outcome['status'], entry: CacheEntry, result: object, ttl: number): Outcome {
  const httpPolicy = ttl > 0 ? { maxAge: ttl, scope: entry.scope } : null
  return { status, httpPolicy, body: entry.body, entry, result }
}
