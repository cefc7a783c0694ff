import { createRequire } from 'node:module'
import type { ChangeSource } from '../changes/source.js'
import type { TieredCache } from '../tiers/tiered.js'
import type { CacheObserver } from './stats.js'

/** A prom-client `Registry` (prom-client is an optional peer dependency). */
export interface MetricsRegistry {
  registerMetric(metric: unknown): void
}

/** Options of `metrics`. */
export interface MetricsOptions {
  /** Where the metrics are registered (e.g. `new Registry()` or `register` from prom-client). */
  registry: MetricsRegistry
  /** @default 'strata_' */
  prefix?: string
}

type PromClient = typeof import('prom-client')

/**
 * Prometheus metrics: outcome counters by tier and operation, lookup latency per tier,
 * invalidations, circuit state per shared tier and the change listener's lag.
 */
export function createMetrics(
  options: MetricsOptions,
  cache: TieredCache,
  changes: ChangeSource | undefined,
): CacheObserver {
  const prom = createRequire(import.meta.url)('prom-client') as PromClient
  const prefix = options.prefix ?? 'strata_'
  const registers = [options.registry as never]
  const outcomes = new prom.Counter({
    name: `${prefix}requests_total`,
    help: 'GraphQL operations by cache outcome (hit, miss, bypass), tier that answered, operation and reason (a bypass\'s; "stale" for a hit served stale while refreshed)',
    labelNames: ['outcome', 'tier', 'operation', 'reason'],
    registers,
  })
  const lookups = new prom.Histogram({
    name: `${prefix}lookup_seconds`,
    help: 'Time to look up one tier',
    labelNames: ['tier'],
    buckets: [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
    registers,
  })
  const invalidations = new prom.Counter({
    name: `${prefix}invalidations_total`,
    help: 'Invalidation calls',
    registers,
  })
  const tags = new prom.Counter({
    name: `${prefix}invalidated_tags_total`,
    help: 'Tags invalidated',
    registers,
  })
  new prom.Gauge({
    name: `${prefix}tier_up`,
    help: '1 while a shared tier is in use, 0 while its circuit is open or half-open',
    labelNames: ['tier'],
    registers,
    collect() {
      for (const [tier, state] of Object.entries(cache.health()))
        this.set({ tier }, state.state === 'closed' ? 1 : 0)
    },
  })
  new prom.Gauge({
    name: `${prefix}local_tiers_in_use`,
    help: '1 while local tiers are used, 0 while an invalidation source is down',
    registers,
    collect() {
      this.set(cache.localTrusted ? 1 : 0)
    },
  })
  if (changes) {
    new prom.Gauge({
      name: `${prefix}change_listener_lag_seconds`,
      help: 'Seconds since the change listener last read the change log',
      registers,
      collect() {
        const since = changes.status().sinceLastRead
        if (since !== null) this.set(since / 1000)
      },
    })
  }
  cache.onLookup = (tier, seconds) => lookups.observe({ tier }, seconds)
  return {
    outcome: (outcome, operation, tier, reason) =>
      outcomes.inc({ outcome, operation, tier: tier ?? '', reason: reason ?? '' }),
    lookup: (tier, seconds) => lookups.observe({ tier }, seconds),
    invalidated: (count) => {
      invalidations.inc()
      tags.inc(count)
    },
  }
}
