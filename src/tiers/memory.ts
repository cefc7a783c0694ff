import { LRUCache } from 'lru-cache'
import { StrataOptionError } from '../errors.js'
import { keyTenant } from '../key/key.js'
import type { CacheEntry, CacheTier, EntryPage, EntryQuery, EntrySummary, TierStats } from './tier.js'

/** Options of {@link memoryTier}. */
export interface MemoryTierOptions {
  /**
   * Upper bound of the tier's memory in bytes: bodies, keys, tags and the tag index.
   * @default 67108864 (64 MiB)
   */
  maxBytes?: number
  /**
   * Tier name in logs and stats.
   * @default 'memory'
   */
  name?: string
}

export const memoryTierDefaults = { maxBytes: 64 * 2 ** 20, name: 'memory' } as const

/** Fixed bytes charged per entry (LRU node, entry object, key) and per tag membership. */
const ENTRY_OVERHEAD = 256
const TAG_OVERHEAD = 96

/** Bytes an entry is charged in the memory tier, tag index included. */
export function memoryFootprint(key: string, entry: CacheEntry): number {
  let size = ENTRY_OVERHEAD + entry.size + key.length * 2
  for (const tag of entry.tags) size += TAG_OVERHEAD + tag.length * 2
  return size
}

/** The memory tier as returned by {@link memoryTier}, with introspection for tests and stats. */
export interface MemoryTier extends CacheTier {
  readonly shared: false
  get(key: string): CacheEntry | undefined
  set(key: string, entry: CacheEntry): void
  delete(key: string): boolean
  invalidate(tags: readonly string[]): number
  clear(tenant?: string | null): number
  stats(): TierStats & { entries: number; bytes: number }
  list(query: EntryQuery): EntryPage
  /** Number of distinct tags in the index. */
  readonly indexedTags: number
  /** Sum of (tag, key) memberships in the index. */
  readonly indexedMemberships: number
}

/**
 * In-process LRU tier, bounded in bytes (index included), with per-entry TTL and a
 * tag index that is cleaned whenever an entry leaves: eviction, expiry, replacement,
 * deletion or invalidation.
 */
export function memoryTier(options: MemoryTierOptions = {}): MemoryTier {
  const maxBytes = options.maxBytes ?? memoryTierDefaults.maxBytes
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1024) {
    throw new StrataOptionError(
      'memoryTier.maxBytes',
      `must be an integer number of bytes >= 1024, got ${String(maxBytes)}`,
    )
  }
  const name = options.name ?? memoryTierDefaults.name
  /** Tag → the keys carrying it. The Map also holds the one copy of each tag string entries share. */
  const index = new Map<string, { readonly tag: string; readonly keys: Set<string> }>()
  let memberships = 0
  let evictions = 0
  let expirations = 0

  const unindex = (key: string, entry: CacheEntry): void => {
    for (const tag of entry.tags) {
      const slot = index.get(tag)
      if (!slot?.keys.delete(key)) continue
      memberships--
      if (slot.keys.size === 0) index.delete(tag)
    }
  }

  const lru = new LRUCache<string, CacheEntry>({
    maxSize: maxBytes,
    sizeCalculation: (entry, key) => memoryFootprint(key, entry),
    dispose: (entry, key, reason) => {
      unindex(key, entry)
      if (reason === 'evict') evictions++
      else if (reason === 'expire') expirations++
    },
  })

  const listings = new ListingSnapshots()

  const removeAll = (keys: Iterable<string>): number => {
    let removed = 0
    for (const key of [...keys]) if (lru.delete(key)) removed++
    return removed
  }

  return {
    name,
    shared: false,
    get(key) {
      const entry = lru.get(key)
      if (entry !== undefined && entry.expiresAt <= Date.now()) {
        lru.delete(key)
        return undefined
      }
      return entry
    },
    set(key, entry) {
      const ttl = entry.expiresAt - Date.now()
      const size = memoryFootprint(key, entry)
      if (ttl <= 0 || size > maxBytes) return
      // A private copy whose tags point at the index's strings: thousands of entries share
      // a few tag strings instead of each keeping its own (fewer objects for the GC to mark).
      const stored = { ...entry, tags: [] as string[] }
      lru.set(key, stored, { ttl, size })
      if (lru.peek(key) !== stored) return
      for (const tag of entry.tags) {
        let slot = index.get(tag)
        if (!slot) {
          slot = { tag, keys: new Set() }
          index.set(tag, slot)
        }
        if (!slot.keys.has(key)) {
          slot.keys.add(key)
          memberships++
          stored.tags.push(slot.tag)
        }
      }
    },
    delete(key) {
      return lru.delete(key)
    },
    invalidate(tags) {
      let removed = 0
      for (const tag of tags) {
        const slot = index.get(tag)
        if (slot) removed += removeAll(slot.keys)
      }
      return removed
    },
    clear(tenant) {
      if (tenant === undefined) {
        const count = lru.size
        lru.clear()
        return count
      }
      const keys: string[] = []
      for (const [key, entry] of lru.entries())
        if (entry.tenant === tenant && keyTenant(key) === tenant) keys.push(key)
      return removeAll(keys)
    },
    stats() {
      return { entries: lru.size, bytes: lru.calculatedSize, evictions, expirations }
    },
    list(query) {
      // A listing's later pages continue its snapshot: one walk and one sort per listing, then each
      // page looks at its own keys only (re-sorting every page made a purge quadratic). Without a
      // snapshot (the first page, one expired or evicted, a cursor from elsewhere) a new one starts
      // after the cursor. Keys are checked again as their page is read: one deleted, expired or
      // changed since the snapshot is skipped; one added since is not listed (a purge fenced, before
      // listing, the executions whose results it concerns).
      let listing = query.cursor === undefined ? undefined : listings.take(query)
      if (!listing) {
        const keys: string[] = []
        for (const [key, entry] of lru.entries())
          if ((query.cursor === undefined || key > query.cursor) && matchesQuery(key, entry, query))
            keys.push(key)
        listing = { keys: keys.sort(), next: 0 }
      }
      const { keys } = listing
      const live = (key: string) => {
        const entry = lru.peek(key)
        return entry !== undefined && matchesQuery(key, entry, query) ? entry : undefined
      }
      const page: EntrySummary[] = []
      while (page.length < query.limit && listing.next < keys.length) {
        const key = keys[listing.next++] as string
        const entry = live(key)
        if (entry) page.push(summarize(key, entry))
      }
      // A cursor only when an entry follows (the keys skipped here are not looked at again).
      while (listing.next < keys.length && !live(keys[listing.next] as string)) listing.next++
      const cursor = listing.next < keys.length ? page.at(-1)?.key : undefined
      if (cursor !== undefined) listings.keep({ ...query, cursor }, listing)
      return { entries: page, cursor }
    },
    get indexedTags() {
      return index.size
    },
    get indexedMemberships() {
      return memberships
    },
  }
}

/** A listing in progress: its matching keys when it began, in order, and how far its pages went. */
interface Listing {
  readonly keys: readonly string[]
  next: number
}

/**
 * The snapshots of listings in progress, each under the filters and cursor its next page is asked
 * with. A few at a time, each dropped once unused for a while: one holds a reference to every key
 * its listing matched.
 */
class ListingSnapshots {
  static readonly max = 4
  static readonly idleMs = 30_000
  readonly #held = new Map<string, { listing: Listing; timer: ReturnType<typeof setTimeout> }>()

  /** The snapshot whose next page `query` asks for, removed from the store; `undefined` if none. */
  take(query: EntryQuery): Listing | undefined {
    const id = ListingSnapshots.#id(query)
    const held = this.#held.get(id)
    if (!held) return undefined
    clearTimeout(held.timer)
    this.#held.delete(id)
    return held.listing
  }

  /** Keeps `listing` for the page `query` will ask for next. */
  keep(query: EntryQuery, listing: Listing): void {
    const id = ListingSnapshots.#id(query)
    clearTimeout(this.#held.get(id)?.timer) // another listing at the same point: the latest is kept
    this.#held.delete(id)
    for (const [oldest, held] of this.#held) {
      if (this.#held.size < ListingSnapshots.max) break
      clearTimeout(held.timer)
      this.#held.delete(oldest)
    }
    const timer = setTimeout(() => this.#held.delete(id), ListingSnapshots.idleMs)
    timer.unref?.()
    this.#held.set(id, { listing, timer })
  }

  static #id(query: EntryQuery): string {
    // `limit` is not part of it: a listing may change its page size.
    const { tenant, operationName, tag, cursor } = query
    return JSON.stringify([tenant === undefined ? 0 : tenant, operationName ?? 0, tag ?? 0, cursor])
  }
}

/** Whether an entry passes an admin listing's filters (shared by every tier's `list`). */
export function matchesQuery(key: string, entry: CacheEntry, query: EntryQuery): boolean {
  if (query.tenant !== undefined && (entry.tenant !== query.tenant || keyTenant(key) !== query.tenant))
    return false
  if (query.operationName !== undefined && entry.operationName !== query.operationName) return false
  return query.tag === undefined || entry.tags.includes(query.tag)
}

export function summarize(key: string, entry: CacheEntry): EntrySummary {
  const { tenant, operationName, tags, size, createdAt, expiresAt, freshUntil } = entry
  const summary = { key, tenant, operationName, tags, size, createdAt, expiresAt }
  return freshUntil === undefined ? summary : { ...summary, freshUntil }
}
