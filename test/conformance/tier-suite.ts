import { afterAll, beforeEach, describe, expect, it } from 'vitest'
import { type CacheEntry, type CacheTier, deriveKey } from '../../src/index.js'
import type { EntryQuery, EntrySummary } from '../../src/tiers/tier.js'

/** What a tier's test file provides to the shared conformance suite. */
export interface TierHarness {
  tier: CacheTier
  /** Writes raw bytes where `key`'s entry lives (shared tiers); `undefined` for in-process tiers. */
  writeRaw?: (key: string, value: string) => Promise<void>
  /** Whether the tier itself refuses writes from executions that began before an invalidation. */
  guardsWrites: boolean
  /** The tier's clock-skew tolerance: writes that began this soon after a clear or invalidation are refused. */
  skewMs?: number
  cleanup?: () => Promise<void>
}

let counter = 0
export function keyFor(tenant: string | null = 'acme', salt = String(counter++)): string {
  return deriveKey({
    prefix: 'strata',
    tenant,
    source: `{ q${salt} }`,
    operationName: null,
    variables: {},
    session: null,
    schemaVersion: 'v1',
    extra: undefined,
  })
}

export function entryOf(
  body: string,
  tags: string[],
  options: { ttlMs?: number; tenant?: string | null; operationName?: string | null } = {},
): CacheEntry {
  const now = Date.now()
  return {
    body,
    size: Buffer.byteLength(body),
    tags,
    tenant: options.tenant === undefined ? 'acme' : options.tenant,
    operationName: options.operationName ?? null,
    scope: 'PUBLIC',
    createdAt: now,
    expiresAt: now + (options.ttlMs ?? 60_000),
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * Whether the tier itself refuses writes from executions that began before an invalidation, a clear
 * or a fence; if so, waits until the clear in beforeEach is past the tier's skew tolerance. In-process
 * tiers rely on the plugin's invalidation clock instead (tested in integration): they must not be shared.
 */
async function refusesOlderWrites(h: TierHarness): Promise<boolean> {
  if (!h.guardsWrites) {
    expect(h.tier.shared).toBe(false)
    return false
  }
  await sleep((h.skewMs ?? 0) + 20)
  return true
}

/**
 * Every entry a listing finds, page by page: a page may hold fewer than `limit` entries, or none,
 * and still have a cursor (Redis examines a bounded part of the keyspace per call).
 */
async function listAll(tier: CacheTier, query: Omit<EntryQuery, 'cursor'>): Promise<EntrySummary[]> {
  const entries: EntrySummary[] = []
  let cursor: string | undefined
  do {
    const page = await tier.list({ ...query, ...(cursor === undefined ? {} : { cursor }) })
    entries.push(...page.entries)
    cursor = page.cursor
  } while (cursor !== undefined)
  return entries
}

/** The behaviour every tier must have. */
export function describeTierConformance(name: string, makeHarness: () => Promise<TierHarness>): void {
  describe(`${name} tier conformance`, () => {
    let h: TierHarness
    beforeEach(async () => {
      h ??= await makeHarness()
      await h.tier.clear()
    })
    afterAll(async () => {
      await h?.tier.clear()
      await h?.cleanup?.()
    })

    it('returns byte-exact bodies, unicode and large values included', async () => {
      const bodies = ['{"data":{"x":"é漢字😀\\u0000\\n"}}', `{"data":{"big":"${'x'.repeat(900_000)}"}}`]
      for (const body of bodies) {
        const key = keyFor()
        await h.tier.set(key, entryOf(body, ['T:1']))
        const got = await h.tier.get(key)
        expect(got?.body).toBe(body)
        expect(got?.size).toBe(Buffer.byteLength(body))
        expect(got?.tags).toEqual(['T:1'])
      }
    })

    it('expires entries at their TTL', async () => {
      const key = keyFor()
      await h.tier.set(key, entryOf('{"data":1}', ['T:1'], { ttlMs: 250 }))
      expect(await h.tier.get(key)).toBeDefined()
      await sleep(400)
      expect(await h.tier.get(key)).toBeUndefined()
    })

    it('keeps an entry with a stale grace until its expiresAt, freshUntil intact, and lists it so', async () => {
      const key = keyFor()
      const now = Date.now()
      const entry = { ...entryOf('{"data":2}', ['T:1'], { ttlMs: 60_000 }), freshUntil: now - 1000 }
      await h.tier.set(key, entry)
      const got = await h.tier.get(key)
      expect(got?.body).toBe('{"data":2}')
      expect(got?.freshUntil).toBe(now - 1000)
      expect(got?.expiresAt).toBe(entry.expiresAt)
      const [listed] = await listAll(h.tier, { limit: 10 })
      expect(listed?.expiresAt).toBe(entry.expiresAt)
      // PostgreSQL's listing reads columns only, which do not hold it: absent, never wrong.
      if (listed?.freshUntil !== undefined) expect(listed.freshUntil).toBe(now - 1000)
      const plain = keyFor()
      await h.tier.set(plain, entryOf('{"data":3}', ['T:1']))
      expect((await h.tier.get(plain))?.freshUntil).toBeUndefined()
    })

    it('invalidates exactly the entries carrying a tag', async () => {
      const [a, b, c] = [keyFor(), keyFor(), keyFor()]
      await h.tier.set(a, entryOf('{"a":1}', ['Post:1', 'Post']))
      await h.tier.set(b, entryOf('{"b":1}', ['Post:2', 'Post']))
      await h.tier.set(c, entryOf('{"c":1}', ['Author:1']))
      expect(await h.tier.invalidate(['Post:1'])).toBe(1)
      expect(await h.tier.get(a)).toBeUndefined()
      expect(await h.tier.get(b)).toBeDefined()
      expect(await h.tier.invalidate(['Post', 'Nothing'])).toBe(1)
      expect(await h.tier.get(b)).toBeUndefined()
      expect(await h.tier.get(c)).toBeDefined()
    })

    it('invalidates a tag with thousands of members in one call', async () => {
      const keys = Array.from({ length: 3000 }, () => keyFor())
      await Promise.all(keys.map((key) => h.tier.set(key, entryOf('{"x":1}', ['Hot']))))
      expect(await h.tier.invalidate(['Hot'])).toBe(3000)
      for (const key of keys.slice(0, 50)) expect(await h.tier.get(key)).toBeUndefined()
    })

    it('clears one tenant, tenancy-off entries, or everything', async () => {
      const acme = keyFor('acme')
      const glob = keyFor('glob*')
      const none = keyFor(null)
      await h.tier.set(acme, entryOf('{"a":1}', ['T'], { tenant: 'acme' }))
      await h.tier.set(glob, entryOf('{"g":1}', ['T'], { tenant: 'glob*' }))
      await h.tier.set(none, entryOf('{"n":1}', ['T'], { tenant: null }))
      expect(await h.tier.clear('glob*')).toBe(1)
      expect(await h.tier.get(acme)).toBeDefined()
      expect(await h.tier.get(glob)).toBeUndefined()
      expect(await h.tier.clear(null)).toBe(1)
      expect(await h.tier.get(none)).toBeUndefined()
      expect(await h.tier.clear()).toBe(1)
      expect(await h.tier.get(acme)).toBeUndefined()
    })

    it('clearing tenancy-off entries spares a tenant whose name looks like the tenancy-off marker', async () => {
      const g = keyFor('g')
      const none = keyFor(null)
      await h.tier.set(g, entryOf('{"g":1}', ['T'], { tenant: 'g' }))
      await h.tier.set(none, entryOf('{"n":1}', ['T'], { tenant: null }))
      expect(await h.tier.clear(null)).toBe(1)
      expect(await h.tier.get(g)).toBeDefined()
      expect(await listAll(h.tier, { tenant: null, limit: 10 })).toEqual([])
    })

    it('deletes one entry', async () => {
      const key = keyFor()
      await h.tier.set(key, entryOf('{"d":1}', ['T']))
      expect(await h.tier.delete(key)).toBe(true)
      expect(await h.tier.delete(key)).toBe(false)
      expect(await h.tier.get(key)).toBeUndefined()
    })

    it('lists entries by tenant, operation and tag, page by page, each once', async () => {
      const keys = Array.from({ length: 25 }, (_, i) => keyFor(i % 2 === 0 ? 'acme' : 'globex'))
      for (const [i, key] of keys.entries()) {
        await h.tier.set(
          key,
          entryOf(`{"i":${i}}`, [`Post:${i}`, 'Post'], {
            tenant: i % 2 === 0 ? 'acme' : 'globex',
            operationName: i < 5 ? 'Top' : 'Other',
          }),
        )
      }
      const seen: string[] = []
      let cursor: string | undefined
      do {
        const page = await h.tier.list({ tenant: 'acme', limit: 4, cursor })
        seen.push(...page.entries.map((e) => e.key))
        cursor = page.cursor
      } while (cursor !== undefined)
      expect(seen.sort()).toEqual(keys.filter((_, i) => i % 2 === 0).sort())
      expect(await listAll(h.tier, { operationName: 'Top', limit: 100 })).toHaveLength(5)
      const tagged = await listAll(h.tier, { tag: 'Post:7', limit: 100 })
      expect(tagged.map((e) => e.key)).toEqual([keys[7]])
      expect(tagged[0]).toMatchObject({ tenant: 'globex', operationName: 'Other', size: 7 })
    })

    it('reports stats', async () => {
      await h.tier.set(keyFor(), entryOf('{"s":1}', ['T']))
      const stats = await h.tier.stats()
      expect(stats.entries === null || stats.entries >= 1).toBe(true)
      expect(typeof stats.evictions).toBe('number')
    })

    it('keeps its index consistent under concurrent sets and invalidations', async () => {
      const keys = Array.from({ length: 200 }, () => keyFor())
      const startedAt = Date.now() - 5000
      await Promise.all([
        ...keys.map((key, i) => h.tier.set(key, entryOf(`{"c":${i}}`, ['Race'], {}), { startedAt })),
        h.tier.invalidate(['Race']),
        ...keys.map((key, i) => h.tier.set(key, entryOf(`{"c":${i}}`, ['Race'], {}), { startedAt })),
      ])
      if (h.guardsWrites) {
        // Every write began before the invalidation: none may survive it.
        for (const key of keys) expect(await h.tier.get(key)).toBeUndefined()
      }
      await h.tier.invalidate(['Race'])
      for (const key of keys) expect(await h.tier.get(key)).toBeUndefined()
    })

    it('refuses a write from an execution that began before an invalidation of its tags', async () => {
      if (!(await refusesOlderWrites(h))) return
      const startedAt = Date.now()
      await h.tier.invalidate(['Post:9'])
      const key = keyFor()
      await h.tier.set(key, entryOf('{"late":1}', ['Post:9']), { startedAt })
      expect(await h.tier.get(key)).toBeUndefined()
      const later = keyFor()
      await h.tier.set(later, entryOf('{"ok":1}', ['Post:10']), { startedAt })
      expect(await h.tier.get(later)).toBeDefined()
    })

    /** Writes for acme and globex begun at `startedAt`: acme's is refused, globex's kept (its key). */
    async function acmeRefusedGlobexStored(startedAt: number): Promise<string> {
      const acme = keyFor('acme')
      const globex = keyFor('globex')
      await h.tier.set(acme, entryOf('{"a":1}', ['T'], { tenant: 'acme' }), { startedAt })
      await h.tier.set(globex, entryOf('{"g":1}', ['T'], { tenant: 'globex' }), { startedAt })
      expect(await h.tier.get(acme)).toBeUndefined()
      expect(await h.tier.get(globex)).toBeDefined()
      return globex
    }

    it("one tenant's clear refuses that tenant's older writes only", async () => {
      if (!(await refusesOlderWrites(h))) return
      const startedAt = Date.now()
      await h.tier.clear('acme')
      await acmeRefusedGlobexStored(startedAt)
    })

    it("a fence refuses older writes (a tenant's, or all) and removes nothing", async () => {
      if (!(await refusesOlderWrites(h))) return
      const fence = h.tier.fence?.bind(h.tier)
      if (!fence) throw new Error(`the shared ${h.tier.name} tier has no fence()`)
      const kept = keyFor('acme')
      await h.tier.set(kept, entryOf('{"kept":1}', ['T'], { tenant: 'acme' }))
      const startedAt = Date.now()
      await fence('acme')
      const globex = await acmeRefusedGlobexStored(startedAt)
      expect(await h.tier.get(kept)).toBeDefined()
      await fence()
      const late = keyFor('globex')
      await h.tier.set(late, entryOf('{"g":2}', ['T'], { tenant: 'globex' }), { startedAt })
      expect(await h.tier.get(late)).toBeUndefined()
      expect(await h.tier.get(globex)).toBeDefined()
    })

    it('treats corrupt or foreign data as a miss and deletes it', async () => {
      if (!h.writeRaw) {
        // An in-process tier holds objects, not serialized data: nothing can be corrupt.
        expect(h.tier.shared).toBe(false)
        return
      }
      const key = keyFor()
      const other = keyFor()
      await h.tier.set(other, entryOf('{"other":1}', ['T']))
      for (const raw of ['garbage', 'strata:1\n{not json}\nbody', 'strata:1\n{"k":"x"}\n']) {
        await h.writeRaw(key, raw)
        expect(await h.tier.get(key)).toBeUndefined()
        expect(await h.tier.delete(key)).toBe(false)
      }
      // A valid entry written under another key (foreign data) is not served either.
      const foreign = await h.tier.get(other)
      expect(foreign).toBeDefined()
      await h.writeRaw(key, (await rawOf(h, other)) ?? '')
      expect(await h.tier.get(key)).toBeUndefined()
    })
  })
}

async function rawOf(h: TierHarness, key: string): Promise<string | undefined> {
  const { encodeEntry } = await import('../../src/tiers/codec.js')
  const entry = await h.tier.get(key)
  return entry ? encodeEntry(key, entry) : undefined
}

/** Writes a raw value where a PostgreSQL tier keeps `key` (for the corrupt/foreign data test). */
export function postgresRawWriter(
  query: (text: string, params: unknown[]) => Promise<unknown>,
  schema: string,
  install: () => unknown,
): (key: string, value: string) => Promise<void> {
  return async (key, value) => {
    await install()
    await query(
      `INSERT INTO ${schema}.entries (key, tenant, tags, size, created_at, expires_at, value)
       VALUES ($1, 'acme', '{}', 0, 0, $2, $3)
       ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at`,
      [key, Date.now() + 60_000, value],
    )
  }
}
