/** Stamps kept before the clock falls back to a conservative watermark. */
const MAX_STAMPS = 4096

/**
 * Guards against the write-after-invalidate race: a result whose execution began
 * before an invalidation of one of its tags must not be stored (nor a lookup's answer
 * served, when a shared tier read it before the invalidation completed).
 *
 * Each execution takes the current sequence number when it starts; each invalidation
 * stamps its tags with a new, higher one. Stamps are dropped as soon as no execution is
 * running. If they pile up (long executions amid a stream of invalidations), they are
 * replaced by a watermark: every execution that began before it counts as stale — the
 * safe answer, at the cost of a few results not being stored.
 */
export class InvalidationClock {
  #sequence = 0
  /** Executions that began before this sequence are stale for every tag. */
  #staleBefore = 0
  readonly #stamps = new Map<string, number>()
  /** Start sequence → number of executions in flight that started there. */
  readonly #running = new Map<number, number>()

  /** Marks the start of an execution; pass the returned value to `isStale` and `end`. */
  begin(): number {
    const start = this.#sequence
    this.#running.set(start, (this.#running.get(start) ?? 0) + 1)
    return start
  }

  end(start: number): void {
    const count = this.#running.get(start)
    if (count === undefined) return
    if (count > 1) this.#running.set(start, count - 1)
    else this.#running.delete(start)
    if (this.#running.size === 0) this.#stamps.clear()
  }

  /** Records that `tags` were invalidated now. */
  invalidated(tags: Iterable<string>): void {
    const stamp = ++this.#sequence
    if (this.#running.size === 0) return
    for (const tag of tags) this.#stamps.set(tag, stamp)
    if (this.#stamps.size > MAX_STAMPS) this.flushed()
  }

  /** Records that everything was invalidated now (a flush, a clear, or too many stamps). */
  flushed(): void {
    this.#staleBefore = ++this.#sequence
    this.#stamps.clear()
  }

  /**
   * Whether any of `tags` was invalidated after the execution that began at `start`, or, when
   * `tenant` is given, that tenant was cleared since.
   */
  isStale(start: number, tags: Iterable<string>, tenant?: string | null): boolean {
    if (start < this.#staleBefore) return true
    if (this.#stamps.size === 0) return false
    if (tenant !== undefined && this.#newer(tenantClockTag(tenant), start)) return true
    for (const tag of tags) if (this.#newer(tag, start)) return true
    return false
  }

  #newer(tag: string, start: number): boolean {
    const stamp = this.#stamps.get(tag)
    return stamp !== undefined && stamp > start
  }

  /** Number of stamps kept (for tests: the table must stay bounded). */
  get size(): number {
    return this.#stamps.size
  }
}

/** The clock's pseudo-tag for "everything of this tenant" (a tenant clear); no real tag starts with NUL. */
export function tenantClockTag(tenant: string | null): string {
  return tenant === null ? '\u0000g' : `\u0000t${tenant}`
}
