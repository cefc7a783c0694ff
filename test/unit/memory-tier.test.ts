import { LRUCache } from 'lru-cache'
import { describe, expect, it, vi } from 'vitest'
import { type CacheEntry, memoryTier } from '../../src/index.js'
import { purgeListing } from '../../src/tiers/purge.js'
import { entryOf } from '../conformance/tier-suite.js'

function entry(
  tags: string[],
  ttlMs = 60_000,
  body = '{"data":{"x":1}}',
  tenant: string | null = null,
): CacheEntry {
  return entryOf(body, tags, { ttlMs, tenant })
}

const gc = (globalThis as { gc?: () => void }).gc

describe('memory tier', () => {
  it('stores and returns the exact entry, and deletes', () => {
    const tier = memoryTier()
    const e = entry(['Post:1'])
    tier.set('k', e)
    expect(tier.get('k')).toEqual(e)
    expect(tier.delete('k')).toBe(true)
    expect(tier.get('k')).toBeUndefined()
    expect(tier.indexedMemberships).toBe(0)
  })

  it('invalidates by tag and cleans the index', () => {
    const tier = memoryTier()
    tier.set('a', entry(['Post:1', 'Post']))
    tier.set('b', entry(['Post:2', 'Post']))
    tier.set('c', entry(['Author:1']))
    expect(tier.invalidate(['Post:1'])).toBe(1)
    expect(tier.get('b')).toBeDefined()
    expect(tier.invalidate(['Post'])).toBe(1)
    expect(tier.get('c')).toBeDefined()
    expect(tier.indexedTags).toBe(1)
    expect(tier.indexedMemberships).toBe(1)
  })

  it('re-indexes an overwritten key under its new tags only', () => {
    const tier = memoryTier()
    tier.set('a', entry(['Post:1']))
    tier.set('a', entry(['Post:2']))
    expect(tier.invalidate(['Post:1'])).toBe(0)
    expect(tier.invalidate(['Post:2'])).toBe(1)
    expect(tier.indexedMemberships).toBe(0)
  })

  it('expires entries after their TTL and unindexes them', async () => {
    const tier = memoryTier()
    tier.set('a', entry(['Post:1'], 30))
    expect(tier.get('a')).toBeDefined()
    await new Promise((r) => setTimeout(r, 60))
    expect(tier.get('a')).toBeUndefined()
    expect(tier.indexedMemberships).toBe(0)
    expect(tier.stats().entries).toBe(0)
  })

  it('clears one tenant or everything', () => {
    const tier = memoryTier()
    tier.set('strata:t:acme:1', entry(['A'], 60_000, '{}', 'acme'))
    tier.set('strata:t:globex:1', entry(['A'], 60_000, '{}', 'globex'))
    tier.set('strata:t:globex:2', entry(['B'], 60_000, '{}', 'globex'))
    expect(tier.clear('globex')).toBe(2)
    expect(tier.get('strata:t:acme:1')).toBeDefined()
    expect(tier.clear()).toBe(1)
    expect(tier.indexedMemberships).toBe(0)
    expect(tier.indexedTags).toBe(0)
  })

  it('refuses an entry larger than the whole tier', () => {
    const tier = memoryTier({ maxBytes: 4096 })
    tier.set('a', entry(['X'], 60_000, 'x'.repeat(8000)))
    expect(tier.get('a')).toBeUndefined()
    expect(tier.indexedMemberships).toBe(0)
  })

  it('stays bounded in bytes, index and heap while 200k entries pass through', () => {
    const maxBytes = 1 << 20
    const tier = memoryTier({ maxBytes })
    gc?.()
    const heapBefore = process.memoryUsage().heapUsed
    for (let i = 0; i < 200_000; i++) {
      const body = `{"data":{"post":{"id":"${i}","title":"${'t'.repeat(i % 200)}"}}}`
      tier.set(`strata:g:${i}`, entry([`Post:${i}`, `Author:${i % 1000}`, 'Post', 'Post:*'], 60_000, body))
    }
    const stats = tier.stats()
    expect(stats.bytes).toBeLessThanOrEqual(maxBytes)
    expect(stats.evictions).toBeGreaterThan(190_000)
    expect(tier.indexedMemberships).toBe(stats.entries * 4)
    expect(tier.indexedTags).toBeLessThanOrEqual(stats.entries * 2 + 1002)
    gc?.()
    const grown = process.memoryUsage().heapUsed - heapBefore
    expect(gc, 'tests run with --expose-gc').toBeTypeOf('function')
    // Measured 1.5 MiB here; 200k leaked entries with their index would be well over 50 MiB.
    expect(grown).toBeLessThan(8 * maxBytes)
    expect(tier.invalidate(['Post'])).toBe(stats.entries)
    expect(tier.indexedMemberships).toBe(0)
    expect(tier.indexedTags).toBe(0)
  })

  /** A tier holding `n` entries of operation Op, keys k00000, k00001... (the order listings follow). */
  function listed(n: number) {
    const tier = memoryTier({ maxBytes: 64 * 2 ** 20 })
    const keys = Array.from({ length: n }, (_, i) => `k${String(i).padStart(5, '0')}`)
    for (const key of keys) tier.set(key, entryOf('{}', ['T'], { operationName: 'Op' }))
    return { tier, keys }
  }

  it('a listing walks the tier once, not once per page: a purge of n entries is linear, not quadratic', () => {
    const { tier, keys } = listed(5000)
    let walked = 0
    const entries = LRUCache.prototype.entries
    const walk = vi.spyOn(LRUCache.prototype, 'entries').mockImplementation(function* (
      this: LRUCache<string, CacheEntry>,
    ) {
      for (const pair of entries.call(this)) {
        walked++
        yield pair
      }
    })
    try {
      const seen: string[] = []
      let pages = 0
      let cursor: string | undefined
      do {
        const page = tier.list({ operationName: 'Op', limit: 100, cursor })
        seen.push(...page.entries.map((e) => e.key))
        pages++
        cursor = page.cursor
      } while (cursor !== undefined)
      expect(seen).toEqual(keys)
      expect(pages).toBe(50)
      expect(walked).toBe(5000) // before: every page walked (and sorted) all 5000: 250,000
    } finally {
      walk.mockRestore()
    }
  })

  it("a listing's later pages skip entries deleted or changed since it began; a cursor it does not know starts after it", () => {
    const { tier, keys } = listed(30)
    const first = tier.list({ operationName: 'Op', limit: 10 })
    expect(first.cursor).toBe('k00009')
    tier.delete('k00010')
    tier.set('k00011', entryOf('{}', ['T'], { operationName: 'Other' }))
    const second = tier.list({ operationName: 'Op', limit: 10, cursor: first.cursor })
    expect(second.entries.map((e) => e.key)).toEqual(keys.slice(12, 22))
    // Another instance's cursor, or one whose listing was dropped: the page after it, in key order.
    const elsewhere = memoryTier()
    for (const key of keys) elsewhere.set(key, entryOf('{}', ['T'], { operationName: 'Op' }))
    expect(elsewhere.list({ operationName: 'Op', limit: 5, cursor: second.cursor })).toEqual({
      entries: expect.objectContaining({ length: 5 }),
      cursor: 'k00026',
    })
    // The last entries deleted: the page before them is the last, with no cursor.
    for (const key of keys.slice(22)) tier.delete(key)
    expect(tier.list({ operationName: 'Op', limit: 10, cursor: 'k00011' }).cursor).toBeUndefined()
  })

  it('a listing purge lets the event loop turn between pages and deletes', async () => {
    const { tier } = listed(2000)
    let turns = 0
    let purging = true
    const spin = () => {
      turns++
      if (purging) setImmediate(spin)
    }
    setImmediate(spin)
    const removed = await purgeListing(tier, { tenant: undefined, operationName: 'Op' })
    purging = false
    expect(removed).toHaveLength(2000)
    expect(turns).toBeGreaterThan(0) // before: the whole purge ran in one turn (a sync tier never yields)
  })
})
