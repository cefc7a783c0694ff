/**
 * Guards against the write-after-invalidate race: a result whose execution began
 * before an invalidation of one of its tags must not be stored.
 *
 * Each execution takes the current sequence number when it starts; each invalidation
 * stamps its tags with a new, higher one. The stamp table only keeps stamps newer than
 * the oldest execution still running, so it stays small.
 */
export class InvalidationClock {
  #sequence = 0
  #flushedAt = 0
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
    else if (this.#stamps.size > 4096) this.#prune()
  }

  /** Records that `tags` were invalidated now. */
  invalidated(tags: Iterable<string>): void {
    if (this.#running.size === 0) {
      this.#sequence++
      return
    }
    const stamp = ++this.#sequence
    for (const tag of tags) this.#stamps.set(tag, stamp)
  }

  /** Records that everything was invalidated now (a flush or a clear). */
  flushed(): void {
    this.#flushedAt = ++this.#sequence
    this.#stamps.clear()
  }

  /** Whether any of `tags` was invalidated after the execution that began at `start`. */
  isStale(start: number, tags: Iterable<string>): boolean {
    if (this.#flushedAt > start) return true
    if (this.#stamps.size === 0) return false
    for (const tag of tags) {
      const stamp = this.#stamps.get(tag)
      if (stamp !== undefined && stamp > start) return true
    }
    return false
  }

  /** Number of stamps kept (for tests: the table must stay bounded). */
  get size(): number {
    return this.#stamps.size
  }

  #prune(): void {
    let oldest = Number.POSITIVE_INFINITY
    for (const start of this.#running.keys()) if (start < oldest) oldest = start
    for (const [tag, stamp] of this.#stamps) if (stamp <= oldest) this.#stamps.delete(tag)
  }
}
