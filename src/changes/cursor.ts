/** One change; the changes a drain moved from one inbox share one log row, so one `seq`. */
export interface ChangeRow {
  readonly seq: number
  readonly typeName: string
  /** Null when a key column was NULL: only the type-wide tag is invalidated. */
  readonly entityKey: string | null
  readonly tenant: string | null
}

/** Transaction ids from `pg_current_snapshot()`, as bigint (xid8). */
export interface Snapshot {
  /** Oldest transaction still running: every xid below it has finished. */
  readonly xmin: bigint
  /** First xid not yet assigned: every transaction that could still commit a row has xid < xmax... or later. */
  readonly xmax: bigint
}

/**
 * Where a reader is in the change log, without ever skipping a row that commits late.
 *
 * Sequence numbers are taken when a log row is inserted, not when its transaction commits (drains
 * from two instances may overlap, and a drain may roll back), so a reader can see seq 102 before
 * seq 101 exists. A seq below the highest one seen that is not
 * visible is a *hole*: either a transaction still running will commit it, or it will never
 * exist (rolled back). A hole first seen under snapshot S can only be filled by a transaction
 * that was already running then (xid < S.xmax); once every such transaction has finished
 * (xmin >= S.xmax) and the row still is not there, it never will be.
 *
 * `low` is the checkpoint: every seq at or below it is either applied or known never to exist,
 * a fact about the database, not about this reader, so any reader may share it.
 */
export class LogCursor {
  #maxSeen: number
  readonly #holes = new Map<number, bigint>()

  constructor(start: number) {
    this.#maxSeen = start
  }

  /** Every seq at or below this is settled. */
  get low(): number {
    let low = this.#maxSeen
    for (const seq of this.#holes.keys()) if (seq - 1 < low) low = seq - 1
    return low
  }

  get maxSeen(): number {
    return this.#maxSeen
  }

  /** Unsettled seqs below `maxSeen`, to read again. */
  get holes(): number[] {
    return [...this.#holes.keys()]
  }

  /**
   * Takes the rows a read returned (`seq > maxSeen` or one of the holes, in seq order, read under
   * `snapshot`) and returns those not applied yet. `complete` is false when the read was cut by a
   * limit: seqs above the last returned row are then not holes yet.
   */
  accept(rows: readonly ChangeRow[], snapshot: Snapshot, complete = true): ChangeRow[] {
    const fresh: ChangeRow[] = []
    const previousMax = this.#maxSeen
    let top = previousMax
    /** Per seq: whether its changes are new. */
    const seen = new Map<number, boolean>()
    for (const row of rows) {
      let take = seen.get(row.seq)
      if (take === undefined) {
        take = this.#holes.delete(row.seq) || row.seq > previousMax
        if (row.seq > top) top = row.seq
        seen.set(row.seq, take)
      }
      if (take) fresh.push(row)
    }
    for (let seq = previousMax + 1; seq < top; seq++) {
      if (!seen.has(seq)) this.#holes.set(seq, snapshot.xmax)
    }
    this.#maxSeen = top
    // A hole the limit kept out of this read may be filled: settle holes only after a complete read.
    if (complete) for (const [seq, xmax] of this.#holes) if (snapshot.xmin >= xmax) this.#holes.delete(seq)
    return fresh
  }
}
