import type { CacheScope } from '../policy/policy.js'

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
}

/** Counters and sizes a tier reports. */
export interface TierStats {
  readonly entries: number
  readonly bytes: number
  readonly evictions: number
  readonly expirations: number
}

/**
 * The tier contract. Every tier (memory, Redis, PostgreSQL) implements it and passes
 * the same conformance suite. A tier may throw or reject: the tiered cache treats
 * that as a miss and never fails the request.
 */
export interface CacheTier {
  /** Short name used in logs, stats and `extensions.strata.tier`. */
  readonly name: string
  /** The live entry under `key`, or `undefined`. Never returns an expired entry. */
  get(key: string): MaybePromise<CacheEntry | undefined>
  /** Stores `entry` under `key` until `entry.expiresAt`, indexed by its tags. */
  set(key: string, entry: CacheEntry): MaybePromise<void>
  /** Removes one entry; resolves whether it existed. */
  delete(key: string): MaybePromise<boolean>
  /** Removes every entry carrying any of `tags`; resolves how many were removed. */
  invalidate(tags: readonly string[]): MaybePromise<number>
  /** Removes every entry of `tenant`, or every entry when `tenant` is `undefined`. */
  clear(tenant?: string | null): MaybePromise<number>
  stats(): MaybePromise<TierStats>
  /** Releases timers and connections the tier owns. */
  close?(): MaybePromise<void>
}

export function isPromise<T>(value: MaybePromise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | undefined)?.then === 'function'
}
