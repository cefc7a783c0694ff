import type { Logger } from 'pino'
import { withTimeout } from '../timeout.js'
import type { CacheTier, MaybePromise } from './tier.js'

/** Options of the per-tier circuit breaker and timeouts. */
export interface BreakerOptions {
  /**
   * Milliseconds a shared tier may take to answer a read or a write before it counts as failed.
   * @default 100
   */
  timeoutMs: number
  /**
   * Milliseconds an invalidation may take (mutations wait for it); also how long telling other
   * instances over the bus may take.
   * @default 1000
   */
  invalidateTimeoutMs: number
  /**
   * Milliseconds a clear may take: an admin flush, a flush after a change-log gap, and the clear that
   * brings back a tier which missed too much. It walks the whole namespace, so it takes as long as
   * the tier is large; past this it counts as failed and is retried until one completes in time.
   * @default 30000
   */
  clearTimeoutMs: number
  /**
   * Consecutive failures that open the circuit (an invalidation failure opens it at once).
   * @default 5
   */
  failureThreshold: number
  /**
   * First wait before probing an open circuit; doubles up to `maxCooldownMs`.
   * @default 500
   */
  cooldownMs: number
  /** @default 30000 */
  maxCooldownMs: number
  /**
   * Tags remembered for replay while a tier is unreachable; past this, it is cleared on recovery.
   * @default 10000
   */
  maxPendingTags: number
}

export const breakerDefaults: BreakerOptions = {
  timeoutMs: 100,
  invalidateTimeoutMs: 1000,
  clearTimeoutMs: 30_000,
  failureThreshold: 5,
  cooldownMs: 500,
  maxCooldownMs: 30_000,
  maxPendingTags: 10_000,
}

export class TierUnavailable extends Error {
  constructor(tier: string) {
    super(`tier ${tier} is unavailable (circuit open)`)
    this.name = 'TierUnavailable'
  }
}

export class TierTimeout extends Error {
  constructor(tier: string, operation: string, ms: number) {
    super(`tier ${tier} did not answer ${operation} within ${ms} ms`)
    this.name = 'TierTimeout'
  }
}

/**
 * `closed`: in use. `open`: skipped; invalidations are remembered for replay. `half-open`: the tier
 * answered a probe and the replay, and is catching up: invalidations, clears and purges are applied
 * to it (awaited), reads and writes are still skipped.
 */
export type CircuitState = 'closed' | 'open' | 'half-open'

/** Counters a guarded tier reports. */
export interface BreakerStats {
  readonly state: CircuitState
  readonly failures: number
  readonly timeouts: number
  readonly opened: number
  readonly pendingTags: number | 'flush'
}

/**
 * Guards one shared tier: every call has a timeout; repeated failures open the circuit, so
 * the tier is skipped; a background probe takes it back once it answers. An invalidation the
 * tier missed is replayed (or, past a bound, the tier is cleared) before it is read again, so
 * a recovered tier never serves what was invalidated while it was away.
 *
 * Once a replay has succeeded the circuit is half-open: invalidations are applied to the tier again
 * (rather than queued behind the probe, which a steady stream of mutations would keep doing forever),
 * and the circuit closes once the replay, and every invalidation issued during it, has completed.
 */
export class TierGuard {
  #state: CircuitState = 'closed'
  #consecutive = 0
  #failures = 0
  #timeouts = 0
  #opened = 0
  #cooldown: number
  #pending: Set<string> | 'flush' = new Set()
  #timer: ReturnType<typeof setTimeout> | undefined
  /** Invalidations, clears and purges applied while half-open: the circuit closes once they complete. */
  readonly #catchingUp = new Set<Promise<unknown>>()
  /** Incremented each time the circuit opens: a probe that sees it change has been overtaken. */
  #generation = 0

  /**
   * @param onCaughtUp called each time a replay has applied to the tier what it had missed: `tags`,
   * or everything (a clear) for `undefined`. Until then the tier still held those entries, and other
   * tiers and instances may have copied them from it.
   */
  constructor(
    readonly tier: CacheTier,
    readonly options: BreakerOptions,
    readonly logger: Logger,
    readonly onCaughtUp?: (tags: readonly string[] | undefined) => void,
  ) {
    this.#cooldown = options.cooldownMs
  }

  /** Whether the tier is read and written. */
  get available(): boolean {
    return this.#state === 'closed'
  }

  /** Runs a read or a write; rejects fast while the circuit is open. */
  async run<T>(operation: string, call: () => MaybePromise<T>): Promise<T> {
    if (this.#state !== 'closed') throw new TierUnavailable(this.tier.name)
    try {
      const value = await this.#timed(operation, call, this.options.timeoutMs)
      this.#consecutive = 0
      return value
    } catch (error) {
      this.#failed(operation, error, this.#consecutive + 1 >= this.options.failureThreshold)
      throw error
    }
  }

  /** Runs an invalidation; on failure (or while open) remembers it for replay. Resolves removed count. */
  invalidate(tags: readonly string[]): Promise<number> {
    if (this.#state === 'open') return Promise.resolve(this.#miss('invalidate', tags))
    return this.#apply(
      'invalidate',
      tags,
      this.#timed('invalidate', () => this.tier.invalidate(tags), this.options.invalidateTimeoutMs),
      0,
    )
  }

  /** Runs a clear; on failure (or while open) the tier is cleared entirely on recovery. */
  clear(tenant: string | null | undefined): Promise<number> {
    if (this.#state === 'open') return Promise.resolve(this.#miss('clear', undefined))
    return this.#apply(
      'clear',
      undefined,
      this.#timed('clear', () => this.tier.clear(tenant), this.options.clearTimeoutMs),
      0,
    )
  }

  /**
   * Runs a purge which lists and deletes (no tag index answers it), resolving the keys it deleted.
   * When it fails, or while the circuit is open, `tags` are replayed, or with none the tier is
   * cleared, before it is read again; it then resolves no keys. A failure opens the circuit, as a
   * failed invalidation does.
   */
  purge(
    tags: readonly string[] | undefined,
    run: () => Promise<readonly string[]>,
  ): Promise<readonly string[]> {
    if (this.#state === 'open') {
      this.#miss('purge', tags)
      return Promise.resolve([])
    }
    return this.#apply('purge', tags, Promise.resolve().then(run), [])
  }

  /**
   * Awaits what `call` does to the tier; on failure remembers `tags` (none: a clear) for replay and
   * opens the circuit, resolving `missed`. While half-open, the circuit waits for it before closing.
   */
  #apply<T>(operation: string, tags: readonly string[] | undefined, call: Promise<T>, missed: T): Promise<T> {
    const done = call.catch((error: unknown) => {
      this.#miss(operation, tags, error)
      return missed
    })
    if (this.#state === 'half-open') {
      this.#catchingUp.add(done)
      void done.then(() => this.#catchingUp.delete(done))
    }
    return done
  }

  /**
   * What the tier missed, replayed before it is read again: `tags`, or with none everything (it is
   * cleared). Missing it while the circuit is closed or half-open is a failure that opens it.
   * Resolves 0 removed.
   */
  #miss(operation: string, tags: readonly string[] | undefined, error?: unknown): 0 {
    if (tags === undefined) this.#pending = 'flush'
    else this.#remember(tags)
    if (this.#state !== 'open') this.#failed(operation, error, true)
    return 0
  }

  stats(): BreakerStats {
    const pendingTags = this.#pending === 'flush' ? 'flush' : this.#pending.size
    return {
      state: this.#state,
      failures: this.#failures,
      timeouts: this.#timeouts,
      opened: this.#opened,
      pendingTags,
    }
  }

  close(): void {
    clearTimeout(this.#timer)
  }

  #remember(tags: readonly string[]): void {
    if (this.#pending === 'flush') return
    for (const tag of tags) this.#pending.add(tag)
    if (this.#pending.size > this.options.maxPendingTags) this.#pending = 'flush'
  }

  #failed(operation: string, error: unknown, open: boolean): void {
    this.#failures++
    this.#consecutive++
    if (error instanceof TierTimeout) this.#timeouts++
    this.logger.warn({ tier: this.tier.name, operation, err: error }, 'strata: cache tier failed; skipped')
    if (open && this.#state !== 'open') this.#open()
  }

  #open(): void {
    this.#state = 'open'
    this.#opened++
    this.#generation++
    this.logger.error(
      { tier: this.tier.name, retryInMs: this.#cooldown },
      'strata: circuit opened; tier is skipped until it answers again',
    )
    this.#schedule()
  }

  #schedule(): void {
    clearTimeout(this.#timer)
    this.#timer = setTimeout(() => void this.#probe(), this.#cooldown)
    this.#timer.unref?.()
  }

  async #probe(): Promise<void> {
    const generation = this.#generation
    const pending = this.#pending
    this.#pending = new Set()
    try {
      if (pending === 'flush' || pending.size > 0) await this.#replay(pending)
      else await this.#timed('probe', () => this.tier.get('strata:probe'), this.options.timeoutMs)
    } catch (error) {
      this.#cooldown = Math.min(this.#cooldown * 2, this.options.maxCooldownMs)
      this.logger.warn(
        { tier: this.tier.name, err: error, retryInMs: this.#cooldown },
        'strata: tier still unavailable',
      )
      return this.#schedule()
    }
    // Half-open: what arrives from now on is applied to the tier (a failure reopens the circuit), and
    // what arrived during the replay is replayed now. The circuit closes once that replay, and what was
    // applied during it, has completed; what is applied later completes as it would once closed.
    this.#state = 'half-open'
    const arrived = this.#pending as Set<string> | 'flush' // written by calls made during the replay
    this.#pending = new Set()
    try {
      if (arrived === 'flush' || arrived.size > 0) await this.#replay(arrived)
    } catch (error) {
      // #replay remembered it again; reopen, unless a failure meanwhile already has.
      if (this.#generation === generation)
        this.#failed(arrived === 'flush' ? 'clear' : 'invalidate', error, true)
      return
    }
    await Promise.all([...this.#catchingUp])
    if (this.#generation !== generation) return // a failure meanwhile reopened the circuit
    this.#state = 'closed'
    this.#consecutive = 0
    this.#cooldown = this.options.cooldownMs
    this.logger.info({ tier: this.tier.name }, 'strata: circuit closed; tier is back')
  }

  /** Replays what the tier missed and reports it (`onCaughtUp`); on failure remembers it again, rethrows. */
  async #replay(missed: Set<string> | 'flush'): Promise<void> {
    const tags = missed === 'flush' ? undefined : [...missed]
    try {
      if (tags === undefined) await this.#timed('clear', () => this.tier.clear(), this.options.clearTimeoutMs)
      else await this.#timed('invalidate', () => this.tier.invalidate(tags), this.options.invalidateTimeoutMs)
    } catch (error) {
      if (tags === undefined) this.#pending = 'flush'
      else this.#remember(tags)
      throw error
    }
    this.onCaughtUp?.(tags)
  }

  #timed<T>(operation: string, call: () => MaybePromise<T>, ms: number): Promise<T> {
    return withTimeout(Promise.resolve().then(call), ms, () => new TierTimeout(this.tier.name, operation, ms))
  }
}
