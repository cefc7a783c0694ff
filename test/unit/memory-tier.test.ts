import { describe, expect, it } from 'vitest'
import { type CacheEntry, memoryTier } from '../../src/index.js'
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
})
