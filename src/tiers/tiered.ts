import type { Logger } from 'pino'
import { definedOnly } from '../defined-only.js'
import { type BreakerOptions, type BreakerStats, breakerDefaults, TierGuard } from './breaker.js'
import { type CacheEntry, type CacheTier, isPromise, type MaybePromise, type SetOptions } from './tier.js'

/** A hit: the entry and the tier that held it. */
export interface TieredHit {
  readonly entry: CacheEntry
  readonly tier: string
}

/** Decides whether an entry read from a shared tier may still be served (not invalidated meanwhile). */
export type FreshnessCheck = (entry: CacheEntry) => boolean

const local = (tier: CacheTier) => !tier.shared

/**
 * Reads tiers in order (local first) and promotes a lower-tier hit upward with its
 * remaining TTL; writes and invalidates every tier. Shared tiers run behind a timeout and a
 * circuit breaker: a tier that fails or hangs is skipped, and the cache never fails a request.
 */
export class TieredCache {
  readonly tiers: readonly CacheTier[]
  /** Whether any tier is shared (answers asynchronously, can be invalidated by others). */
  readonly hasShared: boolean
  readonly #guards: readonly (TierGuard | undefined)[]
  readonly #logger: Logger
  /** Metrics hook: seconds each tier took to answer a lookup (set only when metrics are on). */
  onLookup: ((tier: string, seconds: number) => void) | undefined

  /** Why local tiers cannot be trusted right now (the bus or the change listener is down). */
  readonly #distrust = new Set<string>()

  constructor(tiers: readonly CacheTier[], logger: Logger, breaker: Partial<BreakerOptions> = {}) {
    this.tiers = tiers
    this.hasShared = tiers.some((tier) => tier.shared)
    this.#logger = logger
    const options = { ...breakerDefaults, ...definedOnly(breaker) }
    this.#guards = tiers.map((tier) =>
      tier.shared
        ? new TierGuard(tier, options, logger, (tags) => this.#caughtUp(tier.name, tags))
        : undefined,
    )
  }

  /**
   * Called when shared tier `tier` has applied an invalidation of `tags` (or, for `undefined`, a clear)
   * that it had missed: it timed out or failed there, or waited while the circuit was open. Until then
   * that tier still held the entries, and other tiers may have copied them from it (an instance's
   * memory tier; another shared tier once its invalidation stamps have expired). Invalidates the tags
   * again in every other tier, or after a clear empties the local tiers (the other shared tiers
   * refused copies older than their own clear); the engine replaces it to also tell other instances.
   * The tier that caught up is left out: it is clean, and one slow on every call cannot start a loop.
   */
  onCaughtUp = (tier: string, tags: readonly string[] | undefined): Promise<unknown> =>
    tags === undefined ? this.clearLocal(undefined) : this.invalidate(tags, tier)

  #caughtUp(tier: string, tags: readonly string[] | undefined): void {
    this.onCaughtUp(tier, tags).catch((error: unknown) =>
      this.#logger.error(
        { tier, err: error },
        'strata: could not apply again what a shared tier caught up on',
      ),
    )
  }

  /**
   * The first live entry, searching tiers in order. Synchronous when the answering tier is
   * (a memory hit). A shared-tier entry that `fresh` rejects is neither served nor promoted.
   */
  /**
   * Stops reading and writing local tiers until `trustLocal(reason)` (they are still invalidated
   * and cleared): while an invalidation source is down, they may miss what changed.
   */
  distrustLocal(reason: string): void {
    this.#distrust.add(reason)
  }

  trustLocal(reason: string): void {
    this.#distrust.delete(reason)
  }

  /** Whether local tiers are read and written. */
  get localTrusted(): boolean {
    return this.#distrust.size === 0
  }

  get(key: string, fresh?: FreshnessCheck, startedAt = Date.now()): MaybePromise<TieredHit | undefined> {
    return this.#getFrom(0, key, fresh, startedAt)
  }

  #getFrom(
    start: number,
    key: string,
    fresh: FreshnessCheck | undefined,
    startedAt: number,
  ): MaybePromise<TieredHit | undefined> {
    for (let i = start; i < this.tiers.length; i++) {
      const tier = this.tiers[i] as CacheTier
      if (!tier.shared && this.#distrust.size > 0) continue
      const guard = this.#guards[i]
      const started = this.onLookup ? performance.now() : 0
      if (guard) {
        if (!guard.available) continue
        return guard
          .run('get', () => tier.get(key))
          .then(
            (entry) =>
              this.#timed(tier, started, this.#hit(i, key, entry, fresh, startedAt)) ??
              this.#getFrom(i + 1, key, fresh, startedAt),
            () => this.#timed(tier, started, undefined) ?? this.#getFrom(i + 1, key, fresh, startedAt),
          )
      }
      let answer: MaybePromise<CacheEntry | undefined>
      try {
        answer = tier.get(key)
      } catch (error) {
        this.#fault(tier, 'get', error)
        continue
      }
      if (isPromise(answer)) {
        return answer.then(
          (entry) =>
            this.#timed(tier, started, this.#hit(i, key, entry, fresh, startedAt)) ??
            this.#getFrom(i + 1, key, fresh, startedAt),
          (error: unknown) => {
            this.#fault(tier, 'get', error)
            return this.#getFrom(i + 1, key, fresh, startedAt)
          },
        )
      }
      const hit = this.onLookup
        ? this.#timed(tier, started, this.#hit(i, key, answer, fresh, startedAt))
        : this.#hit(i, key, answer, fresh, startedAt)
      if (hit) return hit
    }
    return undefined
  }

  /** Reports how long `tier` took (metrics only), passing `value` through. */
  #timed<T>(tier: CacheTier, started: number, value: T): T {
    this.onLookup?.(tier.name, (performance.now() - started) / 1000)
    return value
  }

  #hit(
    index: number,
    key: string,
    entry: CacheEntry | undefined,
    fresh: FreshnessCheck | undefined,
    startedAt: number,
  ) {
    if (!entry || entry.expiresAt <= Date.now()) return undefined
    const tier = this.tiers[index] as CacheTier
    if (tier.shared && fresh && !fresh(entry)) return undefined
    // A shared tier refuses the promotion if one of the entry's tags was invalidated (by any instance)
    // since the lookup began, whose bus message may not have reached this instance yet, or since the
    // entry was created: an invalidation still running (or deferred) on this lower tier may already
    // have cleaned and stamped the upper one, where the stale entry must not come back.
    const promotion = { startedAt: Math.min(startedAt, entry.createdAt) }
    for (let i = 0; i < index; i++) this.#write(i, key, entry, promotion)
    return { entry, tier: tier.name }
  }

  /** Writes to every tier; never waits for a shared tier. */
  /**
   * Writes an entry to every tier without waiting for them; the promise (none when every write was
   * synchronous) settles, never rejecting, once the asynchronous writes have.
   */
  set(key: string, entry: CacheEntry, options: SetOptions = {}): Promise<void> | undefined {
    const pending: Promise<void>[] = []
    for (let i = 0; i < this.tiers.length; i++) {
      const written = this.#write(i, key, entry, options)
      if (written) pending.push(written)
    }
    if (pending.length === 0) return undefined
    return Promise.all(pending).then(() => undefined)
  }

  #write(index: number, key: string, entry: CacheEntry, options: SetOptions): Promise<void> | undefined {
    const tier = this.tiers[index] as CacheTier
    if (!tier.shared && this.#distrust.size > 0) return undefined
    const guard = this.#guards[index]
    if (guard) {
      if (!guard.available) return undefined
      return guard
        .run('set', () => tier.set(key, entry, options))
        .then(
          () => undefined,
          () => undefined,
        )
    }
    try {
      const done = tier.set(key, entry, options)
      if (isPromise(done)) return done.catch((error: unknown) => this.#fault(tier, 'set', error))
    } catch (error) {
      this.#fault(tier, 'set', error)
    }
    return undefined
  }

  /** Invalidates tags in every tier (but `except`); resolves when all have answered (or timed out). */
  invalidate(tags: readonly string[], except?: string): Promise<Record<string, number>> {
    return this.#everyTier(
      'invalidate',
      (tier, guard) => (guard ? guard.invalidate(tags) : tier.invalidate(tags)),
      (tier) => tier.name !== except,
    )
  }

  /** Invalidates tags in the local (non-shared) tiers only: what another instance already did for the shared ones. */
  invalidateLocal(tags: readonly string[]): Promise<Record<string, number>> {
    return this.#everyTier('invalidate', (tier) => tier.invalidate(tags), local)
  }

  /** Clears one tenant (or everything) in every tier. */
  clear(tenant?: string | null): Promise<Record<string, number>> {
    return this.#everyTier('clear', (tier, guard) => (guard ? guard.clear(tenant) : tier.clear(tenant)))
  }

  /**
   * Runs on every tier a purge that lists and deletes (no tag index answers it): `purge` returns the
   * keys it deleted. A shared tier whose circuit is open, or that fails midway, misses the purge: its
   * guard replays `tags` (in every tenant), or with none clears the tier, before the tier is read again.
   */
  async purgeListed(
    purge: (tier: CacheTier) => Promise<readonly string[]>,
    tags?: readonly string[],
  ): Promise<{ removed: Record<string, number>; keys: string[] }> {
    const removed: Record<string, number> = {}
    const keys = new Set<string>()
    await Promise.all(
      this.tiers.map(async (tier, i) => {
        const guard = this.#guards[i]
        removed[tier.name] = 0 // in the order of tiers
        let deleted: readonly string[] = []
        try {
          deleted = guard ? await guard.purge(tags, () => purge(tier)) : await purge(tier)
        } catch (error) {
          this.#fault(tier, 'purge', error)
        }
        removed[tier.name] = deleted.length
        for (const key of deleted) keys.add(key)
      }),
    )
    return { removed, keys: [...keys] }
  }

  /** Runs a listing purge on the local tiers only (another instance purged the shared ones). */
  async purgeLocal(purge: (tier: CacheTier) => Promise<readonly string[]>): Promise<void> {
    for (const tier of this.tiers) {
      if (tier.shared) continue
      await purge(tier).catch((error: unknown) => this.#fault(tier, 'purge', error))
    }
  }

  /** Deletes one entry from every tier; resolves, per tier, whether it held it (1) or not (0). */
  delete(key: string): Promise<Record<string, number>> {
    return this.#everyTier('delete', async (tier, guard) =>
      Number(await (guard ? guard.run('delete', () => tier.delete(key)) : tier.delete(key))),
    )
  }

  /** Deletes keys from the local tiers only (another instance purged them from the shared ones). */
  async deleteLocal(keys: readonly string[]): Promise<void> {
    for (const tier of this.tiers) {
      if (tier.shared) continue
      for (const key of keys) await Promise.resolve(tier.delete(key)).catch(() => false)
    }
  }

  /** Clears the local tiers only. */
  clearLocal(tenant?: string | null): Promise<Record<string, number>> {
    return this.#everyTier('clear', (tier) => tier.clear(tenant), local)
  }

  /** Circuit state of each shared tier. */
  health(): Record<string, BreakerStats> {
    const out: Record<string, BreakerStats> = {}
    this.tiers.forEach((tier, i) => {
      const guard = this.#guards[i]
      if (guard) out[tier.name] = guard.stats()
    })
    return out
  }

  async #everyTier(
    operation: string,
    run: (tier: CacheTier, guard: TierGuard | undefined) => MaybePromise<number>,
    include: (tier: CacheTier) => boolean = () => true,
  ): Promise<Record<string, number>> {
    const counts: Record<string, number> = {}
    await Promise.all(
      this.tiers.map(async (tier, i) => {
        if (!include(tier)) return
        try {
          counts[tier.name] = await run(tier, this.#guards[i])
        } catch (error) {
          this.#fault(tier, operation, error)
          counts[tier.name] = 0
        }
      }),
    )
    return counts
  }

  async close(): Promise<void> {
    for (const guard of this.#guards) guard?.close()
    await Promise.all(this.tiers.map(async (tier) => tier.close?.()))
  }

  #fault(tier: CacheTier, operation: string, error: unknown): void {
    this.#logger.warn({ tier: tier.name, operation, err: error }, 'strata: cache tier failed; skipped')
  }
}
