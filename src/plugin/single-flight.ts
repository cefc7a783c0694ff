import type { CacheEntry } from '../tiers/tier.js'

/**
 * Concurrent identical misses execute once: the first caller leads, the rest wait for
 * the entry it stored. A flight whose result cannot be shared settles with `undefined`
 * and its waiters execute on their own.
 */
export class SingleFlight {
  readonly #flights = new Map<string, Flight>()

  /** `onWaitTimeout`: a wait gave up on a flight that had not landed in time. */
  constructor(readonly onWaitTimeout: () => void = () => {}) {}

  /**
   * The flight in progress for `key`, if any: its entry, or `undefined` if it lands none or has not
   * landed within `maxWaitMs` (the caller then executes on its own).
   */
  join(key: string, maxWaitMs: number): Promise<CacheEntry | undefined> | undefined {
    const flight = this.#flights.get(key)
    if (!flight) return undefined
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.onWaitTimeout()
        resolve(undefined)
      }, maxWaitMs)
      timer.unref?.()
      flight.promise.then((entry) => {
        clearTimeout(timer)
        resolve(entry)
      })
    })
  }

  /** Starts a flight for `key`; settle it exactly once with `land`. */
  lead(key: string): Flight {
    const flight = new Flight(() => {
      if (this.#flights.get(key) === flight) this.#flights.delete(key)
    })
    this.#flights.set(key, flight)
    return flight
  }

  /**
   * Stops new callers from joining flights already in progress. Called on every
   * invalidation: a request that arrives after a mutation responded must not be
   * served a result whose execution began before it.
   */
  detachAll(): void {
    this.#flights.clear()
  }

  get size(): number {
    return this.#flights.size
  }
}

export class Flight {
  readonly promise: Promise<CacheEntry | undefined>
  #resolve!: (entry: CacheEntry | undefined) => void
  #landed = false
  readonly #onLand: () => void

  constructor(onLand: () => void) {
    this.#onLand = onLand
    this.promise = new Promise((resolve) => {
      this.#resolve = resolve
    })
  }

  /** Settles the flight: the entry stored, to share, or `undefined` (waiters execute themselves). Idempotent. */
  land(entry: CacheEntry | undefined): void {
    if (this.#landed) return
    this.#landed = true
    this.#onLand()
    this.#resolve(entry)
  }
}
