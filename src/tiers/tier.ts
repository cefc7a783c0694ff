import type { CacheScope } from '../policy/policy.js'
import type { PurgeFilter } from './purge.js'

/** A value or a promise of it: the memory tier answers synchronously, shared tiers do not. */
export type MaybePromise<T> = T | Promise<T>

/** One cached response, as every tier stores it. */
export interface CacheEntry {
  /** The serialized response body, byte for byte what the client receives. */
  readonly body: string
  /** UTF-8 size of `body` in bytes. */
  readonly size: number
  /** Entity, collection and type tags the response depends on. */
  readonly tags: readonly string[]
  /** Tenant the entry belongs to (`null`: tenancy off). */
  readonly tenant: string | null
  readonly operationName: string | null
  /** PRIVATE entries are keyed by session; the scope is reported in `cache-control`. */
  readonly scope: CacheScope
  /** Epoch milliseconds. */
  readonly createdAt: number
  /** Epoch milliseconds after which the entry must not be served. */
  readonly expiresAt: number
  /**
   * Epoch milliseconds after which the entry is stale: from then until `expiresAt` (the grace of
   * `staleWhileRevalidate`) it is served only while it is refreshed. Absent: fresh until `expiresAt`.
   */
  readonly freshUntil?: number
}

/** Counters and sizes a tier reports; `null` where the tier cannot tell cheaply. */
export interface TierStats {
  readonly entries: number | null
  readonly bytes: number | null
  readonly evictions: number
  readonly expirations: number
  /** Corrupt or foreign values read back (each was deleted and treated as a miss). */
  readonly corrupt?: number
}

/** Options of a write. */
export interface SetOptions {
  /**
   * Epoch milliseconds at which the execution that produced the entry began. A shared tier
   * refuses the write when one of the entry's tags was invalidated (by any instance) after
   * that moment, or shortly before it (clock skew between hosts).
   */
  readonly startedAt?: number
}

/** Which entries `list` returns. */
export interface EntryQuery {
  /** Only this tenant's entries (`null`: tenancy-off entries). */
  readonly tenant?: string | null
  readonly operationName?: string
  readonly tag?: string
  /** Opaque cursor from the previous page. */
  readonly cursor?: string
  readonly limit: number
}

export interface EntrySummary {
  readonly key: string
  readonly tenant: string | null
  readonly operationName: string | null
  readonly tags: readonly string[]
  readonly size: number
  readonly createdAt: number
  readonly expiresAt: number
  /** See {@link CacheEntry.freshUntil}; absent where the tier does not read it (PostgreSQL's listing). */
  readonly freshUntil?: number
}

export interface EntryPage {
  /**
   * `limit` entries, or fewer (even none) where the tier bounds its work per call: Redis, which may
   * also return a few more (the rest of a SCAN batch). Only the cursor tells whether more follow.
   */
  readonly entries: readonly EntrySummary[]
  /** Pass back to get the next page; `undefined` on the last page. */
  readonly cursor: string | undefined
}

/** A message between instances: what one instance invalidated, for the others' local tiers. */
export type BusMessage =
  | { readonly kind: 'invalidate'; readonly tags: readonly string[] }
  | {
      readonly kind: 'delete'
      readonly keys: readonly string[]
      /** The purge that deleted them: receivers fence its tenant and purge their local tiers alike. */
      readonly where?: PurgeFilter
    }
  | { readonly kind: 'clear'; readonly tenant: string | null | undefined }

/** What a bus reports to the instance that listens on it. */
export interface BusHandlers {
  /** A message another instance published. */
  onMessage(message: BusMessage): void
  /** The connection is down: messages may be missed from now on. */
  onDown(reason: string): void
  /** Listening (again): messages are received from now on. */
  onUp(): void
  /**
   * An attempt to connect and listen failed while the bus was not up (at startup, or after
   * `onDown`); it keeps retrying. Called for every failed attempt: what to log is the caller's choice.
   */
  onConnectError?(reason: string): void
}

/** Carries invalidations between instances (Redis pub/sub, PostgreSQL NOTIFY). */
export interface CacheBus {
  readonly name: string
  /**
   * Starts listening; calls `onUp` once subscribed, and again once subscribed after each `onDown`.
   * Resolves once subscribed, or once the service could not be reached at first (PostgreSQL: the
   * first attempt failed; Redis: ioredis gave up on the queued SUBSCRIBE): the bus then keeps
   * retrying in the background, forever, until `close()`, and `onUp` tells when it listens (no
   * `onDown` before the first `onUp`: nothing was missed). Rejects only when the bus cannot work at
   * all: nothing is retried then and nothing is left open.
   */
  start(handlers: BusHandlers): Promise<void>
  publish(message: BusMessage): Promise<void>
  /** Stops listening, and retrying if it was. */
  close(): Promise<void>
}

/**
 * The tier contract. Every tier (memory, Redis, PostgreSQL) implements it and passes
 * the same conformance suite. A tier may throw or reject: the tiered cache treats
 * that as a miss and never fails the request.
 */
export interface CacheTier {
  /** Short name used in logs, stats and `extensions.strata.tier`. */
  readonly name: string
  /** Shared by every instance (Redis, PostgreSQL) rather than local to this process. */
  readonly shared: boolean
  /** The live entry under `key`, or `undefined`. Never returns an expired, corrupt or foreign entry. */
  get(key: string): MaybePromise<CacheEntry | undefined>
  /** Stores `entry` under `key` until `entry.expiresAt`, indexed by its tags. */
  set(key: string, entry: CacheEntry, options?: SetOptions): MaybePromise<void>
  /** Removes one entry; resolves whether it existed. */
  delete(key: string): MaybePromise<boolean>
  /** Removes every entry carrying any of `tags`; resolves how many were removed. */
  invalidate(tags: readonly string[]): MaybePromise<number>
  /** Removes every entry of `tenant` (`null`: tenancy-off entries), or every entry when `undefined`. */
  clear(tenant?: string | null): MaybePromise<number>
  /**
   * Refuses from now on the writes of executions that began earlier (as a clear does, within the
   * tier's clock-skew tolerance): of `tenant`'s entries (`null`: tenancy-off entries), or of every
   * entry when `undefined`. Removes nothing. A purge that lists entries and deletes them calls it
   * first, so that a result computed before the purge is not stored after it. Shared tiers
   * implement it; in-process tiers need not (the plugin's invalidation clock guards them).
   */
  fence?(tenant?: string | null): MaybePromise<void>
  /** Entries for the admin field, filtered and paginated. */
  list(query: EntryQuery): MaybePromise<EntryPage>
  stats(): MaybePromise<TierStats>
  /** A bus over the same service, used when no bus is configured explicitly. */
  createBus?(): CacheBus
  /** Releases timers and connections the tier owns (never the client it was given). */
  close?(): MaybePromise<void>
}

export function isPromise<T>(value: MaybePromise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | undefined)?.then === 'function'
}
