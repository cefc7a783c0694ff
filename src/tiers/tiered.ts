import type { Logger } from 'pino'
import { type CacheEntry, type CacheTier, isPromise, type MaybePromise } from './tier.js'

/** A hit: the entry and the tier that held it. */
export interface TieredHit {
  readonly entry: CacheEntry
  readonly tier: string
}

/**
 * Reads tiers in order (memory first) and promotes a lower-tier hit upward with its
 * remaining TTL; writes and invalidates every tier. A tier that throws or rejects is
 * logged and skipped: the cache never fails a request.
 */
export class TieredCache {
  readonly tiers: readonly CacheTier[]
  readonly #logger: Logger

  constructor(tiers: readonly CacheTier[], logger: Logger) {
    this.tiers = tiers
    this.#logger = logger
  }

  /** Synchronous when the answering tier is (the memory tier on a hit). */
  get(key: string): MaybePromise<TieredHit | undefined> {
    return this.#getFrom(0, key)
  }

  #getFrom(start: number, key: string): MaybePromise<TieredHit | undefined> {
    for (let i = start; i < this.tiers.length; i++) {
      const tier = this.tiers[i] as CacheTier
      let answer: MaybePromise<CacheEntry | undefined>
      try {
        answer = tier.get(key)
      } catch (error) {
        this.#fault(tier, 'get', error)
        continue
      }
      if (isPromise(answer)) {
        return answer.then(
          (entry) => (entry ? this.#hit(i, key, entry) : this.#getFrom(i + 1, key)),
          (error: unknown) => {
            this.#fault(tier, 'get', error)
            return this.#getFrom(i + 1, key)
          },
        )
      }
      if (answer) return this.#hit(i, key, answer)
    }
    return undefined
  }

  #hit(index: number, key: string, entry: CacheEntry): TieredHit | undefined {
    if (entry.expiresAt <= Date.now()) return undefined
    for (let i = 0; i < index; i++) this.#write(this.tiers[i] as CacheTier, key, entry)
    return { entry, tier: (this.tiers[index] as CacheTier).name }
  }

  /** Writes to every tier; never waits for a shared tier. */
  set(key: string, entry: CacheEntry): void {
    for (const tier of this.tiers) this.#write(tier, key, entry)
  }

  #write(tier: CacheTier, key: string, entry: CacheEntry): void {
    try {
      const done = tier.set(key, entry)
      if (isPromise(done)) done.catch((error: unknown) => this.#fault(tier, 'set', error))
    } catch (error) {
      this.#fault(tier, 'set', error)
    }
  }

  /** Invalidates tags in every tier; resolves when all have answered. */
  invalidate(tags: readonly string[]): Promise<Record<string, number>> {
    return this.#everyTier('invalidate', (tier) => tier.invalidate(tags))
  }

  /** Clears one tenant (or everything) in every tier. */
  clear(tenant?: string | null): Promise<Record<string, number>> {
    return this.#everyTier('clear', (tier) => tier.clear(tenant))
  }

  async #everyTier(
    operation: string,
    run: (tier: CacheTier) => MaybePromise<number>,
  ): Promise<Record<string, number>> {
    const counts: Record<string, number> = {}
    await Promise.all(
      this.tiers.map(async (tier) => {
        try {
          counts[tier.name] = await run(tier)
        } catch (error) {
          this.#fault(tier, operation, error)
          counts[tier.name] = 0
        }
      }),
    )
    return counts
  }

  async close(): Promise<void> {
    await Promise.all(this.tiers.map(async (tier) => tier.close?.()))
  }

  #fault(tier: CacheTier, operation: string, error: unknown): void {
    this.#logger.warn({ tier: tier.name, operation, err: error }, 'strata: cache tier failed; skipped')
  }
}
