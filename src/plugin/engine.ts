import type { ExecutionResult } from 'graphql'
import type { Logger } from 'pino'
import type { ChangeSink, ChangeSource } from '../changes/source.js'
import { InvalidationClock, tenantClockTag } from '../invalidation/clock.js'
import {
  type BypassReason,
  bump,
  type CacheObserver,
  countOperation,
  emptyStats,
  type StrataStats,
} from '../observability/stats.js'
import { type StrataTracer, traced } from '../observability/tracing.js'
import type { RequestInfo } from '../options.js'
import { type PurgeFilter, purgeListing } from '../tiers/purge.js'
import type { BusMessage, CacheBus } from '../tiers/tier.js'
import type { TieredCache } from '../tiers/tiered.js'
import { withTimeout } from '../timeout.js'
import type { HttpReporter } from './http.js'
import { SingleFlight } from './single-flight.js'

/** The settings the request path reads, resolved from options and defaults. */
export interface EngineSettings {
  readonly cacheErrors: boolean
  readonly maxEntryBytes: number
  /** Seconds an entry past its maxAge is kept and served stale while it is refreshed. */
  readonly staleWhileRevalidate: number
  readonly invalidateOnMutation: boolean
  readonly singleFlight: boolean
  /** How long a request waits for an identical execution in flight; then it executes on its own. */
  readonly flightWaitMs: number
  readonly debug: boolean
  /** Resolvers get `info.cacheControl`, and misses record what they set. */
  readonly dynamicHints: boolean
  /** The `shouldStore` option. */
  readonly shouldStore:
    | ((info: RequestInfo<unknown> & { readonly result: ExecutionResult }) => boolean)
    | undefined
  /** How long telling other instances over the bus may take (a mutation waits for it). */
  readonly busTimeoutMs: number
}

/**
 * The state one Strata instance shares across requests: tiers, the invalidation
 * clock, in-flight executions, counters and the HTTP reporter.
 */
export class StrataEngine {
  readonly clock = new InvalidationClock()
  readonly flights = new SingleFlight(() => this.stats.flightWaitTimeouts++)
  /** Keys whose stale entry is being refreshed in the background (`staleWhileRevalidate`). */
  readonly refreshing = new Map<string, object>()
  readonly stats: StrataStats = emptyStats()
  /** Metrics, when configured. */
  observer: CacheObserver | undefined
  /** OpenTelemetry spans, when configured. */
  tracer: StrataTracer | undefined
  /** Called after every clear (warming after a flush). */
  afterClear: (() => void) | undefined

  constructor(
    readonly cache: TieredCache,
    readonly http: HttpReporter,
    readonly settings: EngineSettings,
    readonly logger: Logger,
    readonly bus: CacheBus | undefined,
  ) {
    // Until the bus listens, another instance's invalidation could be missed: distrust local tiers.
    if (bus) cache.distrustLocal('bus')
    cache.onCaughtUp = (tier, tags) => this.#caughtUp(tier, tags)
  }

  /**
   * Starts listening for other instances' invalidations. Resolves once the bus has started: listening,
   * or not yet (a bus retries an unreachable service on its own; local tiers are used from its `onUp`).
   */
  async startBus(): Promise<void> {
    const { bus } = this
    if (!bus) return
    let listening = false
    // The first failed attempt of each outage is logged with its reason (an unreachable host, a
    // refused password); the bus retries with backoff, and later failures of that outage are debug.
    let failing = false
    const warnRetrying = (reason: string | undefined) =>
      this.logger.warn(
        { bus: bus.name, reason },
        'strata: invalidation bus could not connect; retrying; local tiers unused until it is up',
      )
    try {
      await bus.start({
        onMessage: (message) => {
          this.#applyRemote(message).catch((error: unknown) =>
            this.logger.error(
              { err: error },
              'strata: could not apply an invalidation from another instance',
            ),
          )
        },
        onDown: (reason) => {
          listening = false
          this.#busDown(reason)
        },
        onUp: () => {
          listening = true
          failing = false
          this.#busUp()
        },
        onConnectError: (reason) => {
          if (failing)
            return this.logger.debug({ bus: bus.name, reason }, 'strata: invalidation bus retry failed')
          failing = true
          warnRetrying(reason)
        },
      })
    } catch (error) {
      // A bus rejects only when it cannot work at all: it does not retry, local tiers stay unused.
      this.logger.error(
        { err: error, bus: bus.name },
        'strata: invalidation bus failed to start; local tiers stay unused',
      )
      return
    }
    if (!listening && !failing) warnRetrying(undefined)
  }

  /** Invalidates tags everywhere; resolves once every tier has answered and other instances are told. */
  async invalidateTags(tags: readonly string[]): Promise<Record<string, number>> {
    if (tags.length === 0) return {}
    this.clock.invalidated(tags)
    this.flights.detachAll()
    this.stats.invalidations++
    this.stats.invalidatedTags += tags.length
    this.observer?.invalidated(tags.length)
    return traced(this.tracer, 'strata.invalidate', { 'strata.tags': tags.length }, async (span) => {
      const removed = await this.cache.invalidate(tags)
      // Published after the shared tiers are clean, so no instance re-reads a stale entry from them.
      await this.#publish({ kind: 'invalidate', tags })
      this.logger.debug({ tags: tags.length, removed }, 'strata: invalidated')
      span?.setAttribute('strata.removed', total(removed))
      return removed
    })
  }

  /**
   * Shared tier `tier` has now applied an invalidation of `tags` (or, for `undefined`, a clear) that
   * failed or timed out there, or waited while its circuit was open. Other instances were told when it
   * was made; since then they could read the old entries from that tier and copy them into their
   * memory tiers, where nothing else would remove them before their TTL. Applies it again in this
   * instance's other tiers and tells every instance, once per replay (a replay follows a failure of
   * the tier, so nothing amplifies).
   */
  async #caughtUp(tier: string, tags: readonly string[] | undefined): Promise<void> {
    this.logger.info(
      { tier, tags: tags?.length ?? 'all' },
      'strata: a shared tier applied what it had missed; applying it again in other tiers and instances',
    )
    if (tags === undefined) {
      // A clear: only memory tiers can hold copies. Another shared tier refused them (a promotion counts
      // as a write that began when its entry was created, and the clear stamped that tier), and the
      // tier that missed it is not read while its circuit is open.
      this.fenceLocal(undefined)
      await this.cache.clearLocal(undefined)
      await this.#publish({ kind: 'clear', tenant: undefined })
      return
    }
    this.clock.invalidated(tags)
    this.flights.detachAll()
    await this.cache.invalidate(tags, tier)
    await this.#publish({ kind: 'invalidate', tags })
  }

  /** Removes one tenant's entries, or all; running executions will not store. */
  async clear(tenant?: string | null): Promise<Record<string, number>> {
    this.fenceLocal(tenant)
    this.logger.info({ tenant: tenant ?? 'all' }, 'strata: cleared')
    const attributes = { 'strata.tenant': tenant === undefined ? '(all)' : (tenant ?? '(none)') }
    return traced(this.tracer, 'strata.clear', attributes, async (span) => {
      const removed = await this.cache.clear(tenant)
      await this.#publish({ kind: 'clear', tenant })
      span?.setAttribute('strata.removed', total(removed))
      this.afterClear?.()
      return removed
    })
  }

  /** Starts a database change source; until it has caught up, local tiers are not used. */
  async startChanges(source: ChangeSource): Promise<void> {
    this.cache.distrustLocal('changes')
    const sink: ChangeSink = {
      logger: this.logger,
      invalidate: async (tags, scope) => {
        if (scope === 'all') {
          await this.invalidateTags(tags)
          return
        }
        await this.#invalidateLocal(tags)
      },
      flush: async (_reason, scope) => {
        if (scope === 'all') {
          await this.clear()
          return
        }
        await this.#dropLocal()
      },
      down: (reason) => {
        this.cache.distrustLocal('changes')
        void this.#dropLocal()
        this.logger.warn(
          { reason },
          'strata: database change listener down; local tiers unused until it has caught up',
        )
      },
      up: () => {
        this.cache.trustLocal('changes')
      },
    }
    try {
      await source.start(sink)
    } catch (error) {
      this.logger.error(
        { err: error, source: source.name },
        'strata: database change source failed to start; local tiers stay unused',
      )
    }
  }

  /**
   * Running executions of `tenant` (of every tenant, for `undefined`) will not store their result in
   * this instance, and their waiters execute on their own.
   */
  fenceLocal(tenant: string | null | undefined): void {
    if (tenant === undefined) this.clock.flushed()
    else this.clock.invalidated([tenantClockTag(tenant)])
    this.flights.detachAll()
  }

  /**
   * Tells other instances about a listing purge: they fence its tenant and purge their local tiers
   * the same way (they may hold entries this instance's listing could not see), and instances of
   * earlier versions delete `keys`.
   */
  publishPurged(keys: readonly string[], where: PurgeFilter): Promise<void> {
    return this.#publish({ kind: 'delete', keys, where })
  }

  async #publish(message: BusMessage): Promise<void> {
    if (!this.bus) return
    try {
      // A stalled connection queues the publication forever: a mutation must not wait for it.
      await withTimeout(this.bus.publish(message), this.settings.busTimeoutMs)
    } catch (error) {
      this.stats.busErrors++
      this.logger.error(
        { err: error, bus: this.bus.name },
        'strata: could not tell other instances; their local tiers may serve stale data until TTL',
      )
    }
  }

  async #applyRemote(message: BusMessage): Promise<void> {
    this.stats.busMessages++
    this.flights.detachAll()
    if (message.kind === 'invalidate') {
      await this.#invalidateLocal(message.tags)
    } else if (message.kind === 'delete') {
      const { where } = message
      if (where) {
        this.fenceLocal(where.tenant)
        await this.cache.purgeLocal((tier) => purgeListing(tier, where))
      }
      await this.cache.deleteLocal(message.keys)
    } else {
      this.fenceLocal(message.tenant)
      await this.cache.clearLocal(message.tenant)
    }
  }

  /** Invalidates tags in this instance's local tiers; running executions of them will not store. */
  #invalidateLocal(tags: readonly string[]): Promise<Record<string, number>> {
    this.clock.invalidated(tags)
    this.flights.detachAll()
    return this.cache.invalidateLocal(tags)
  }

  /** Empties this instance's local tiers; no running execution will store. */
  #dropLocal(): Promise<Record<string, number>> {
    this.clock.flushed()
    this.flights.detachAll()
    return this.cache.clearLocal()
  }

  #busDown(reason: string): void {
    this.stats.busGaps++
    this.cache.distrustLocal('bus')
    void this.#dropLocal()
    this.logger.warn(
      { reason },
      'strata: invalidation bus down; local tiers flushed and unused until it is back',
    )
  }

  #busUp(): void {
    // Anything cached locally may have missed messages while the bus was away.
    void this.#dropLocal()
    this.cache.trustLocal('bus')
    this.logger.info({ bus: this.bus?.name }, 'strata: invalidation bus up; local tiers in use')
  }

  bypass(context: unknown, reason: BypassReason, operation: string): void {
    this.http.record(context, { status: 'BYPASS', httpPolicy: null })
    if (reason === 'admin') return // the admin field is never counted
    bump(this.stats.bypasses, reason)
    const name = countOperation(this.stats, operation, 'bypass')
    this.observer?.outcome('bypass', name, null, reason)
  }

  recordMiss(operation: string): void {
    this.stats.misses++
    const name = countOperation(this.stats, operation, 'miss')
    this.observer?.outcome('miss', name, null, null)
  }
}

/** The sum of per-tier counts. */
function total(counts: Record<string, number>): number {
  let sum = 0
  for (const count of Object.values(counts)) sum += count
  return sum
}
