import pino from 'pino'
import { describe, expect, it } from 'vitest'
import { type CacheTier, memoryTier } from '../../src/index.js'
import { breakerDefaults, TierGuard, TierUnavailable } from '../../src/tiers/breaker.js'
import { TieredCache } from '../../src/tiers/tiered.js'
import { entryOf } from '../conformance/tier-suite.js'
import { sleep, waitFor } from '../support/wait.js'

const logger = pino({ level: 'silent' })

/** A shared tier whose health the test switches. */
function flakyTier() {
  const inner = memoryTier()
  const calls: string[] = []
  let mode: 'ok' | 'fail' | 'hang' | 'slow' = 'ok'
  const gate = async <T>(name: string, run: () => T): Promise<T> => {
    calls.push(name)
    if (mode === 'fail') throw new Error('down')
    if (mode === 'hang') await new Promise(() => {})
    if (mode === 'slow') await sleep(60)
    return run()
  }
  const tier: CacheTier = {
    name: 'flaky',
    shared: true,
    get: (key) => gate('get', () => inner.get(key)),
    set: (key, entry) => gate('set', () => inner.set(key, entry)),
    delete: (key) => gate('delete', () => inner.delete(key)),
    invalidate: (tags) => gate(`invalidate:${[...tags].sort().join(',')}`, () => inner.invalidate(tags)),
    clear: (tenant) => gate('clear', () => inner.clear(tenant)),
    list: (query) => gate('list', () => inner.list(query)),
    stats: () => inner.stats(),
  }
  return { tier, calls, setMode: (m: typeof mode) => (mode = m) }
}

/** A shared tier whose invalidations wait until the test releases (or fails) each one. */
function heldTier() {
  const inner = memoryTier()
  const held: { tags: string[]; release: () => void; fail: () => void }[] = []
  let mode: 'fail' | 'hold' = 'fail'
  const tier: CacheTier = {
    ...inner,
    name: 'held',
    shared: true,
    get: async (key) => {
      if (mode === 'fail') throw new Error('down')
      return inner.get(key)
    },
    invalidate: async (tags) => {
      if (mode === 'fail') throw new Error('down')
      await new Promise<void>((release, reject) =>
        held.push({ tags: [...tags].sort(), release, fail: () => reject(new Error('down')) }),
      )
      return inner.invalidate(tags)
    },
  }
  return { tier, held, setMode: (m: typeof mode) => (mode = m) }
}

const options = {
  ...breakerDefaults,
  timeoutMs: 20,
  invalidateTimeoutMs: 20,
  clearTimeoutMs: 200,
  failureThreshold: 3,
  cooldownMs: 30,
}

describe('tier circuit breaker', () => {
  it('opens after consecutive failures, then skips the tier without calling it', async () => {
    const { tier, calls, setMode } = flakyTier()
    const guard = new TierGuard(tier, options, logger)
    setMode('fail')
    for (let i = 0; i < 3; i++) await expect(guard.run('get', () => tier.get('k'))).rejects.toThrow('down')
    expect(guard.stats().state).toBe('open')
    const before = calls.length
    await expect(guard.run('get', () => tier.get('k'))).rejects.toBeInstanceOf(TierUnavailable)
    expect(calls.length).toBe(before)
    guard.close()
  })

  it('counts a hang as a failure after the timeout', async () => {
    const { tier, setMode } = flakyTier()
    const guard = new TierGuard(tier, options, logger)
    setMode('hang')
    await expect(guard.run('get', () => tier.get('k'))).rejects.toThrow(/did not answer get within 20 ms/)
    expect(guard.stats().timeouts).toBe(1)
    guard.close()
  })

  it('a failed invalidation opens at once, and is replayed before the tier is read again', async () => {
    const { tier, calls, setMode } = flakyTier()
    const guard = new TierGuard(tier, options, logger)
    setMode('fail')
    expect(await guard.invalidate(['Post:1'])).toBe(0)
    expect(guard.available).toBe(false)
    expect(await guard.invalidate(['Post:2'])).toBe(0)
    expect(guard.stats().pendingTags).toBe(2)
    setMode('ok')
    await sleep(80)
    expect(guard.available).toBe(true)
    expect(calls).toContain('invalidate:Post:1,Post:2')
    expect(guard.stats().pendingTags).toBe(0)
    guard.close()
  })

  it('past the pending bound, the tier is cleared on recovery', async () => {
    const { tier, calls, setMode } = flakyTier()
    const guard = new TierGuard(tier, { ...options, maxPendingTags: 2 }, logger)
    setMode('fail')
    await guard.invalidate(['a', 'b', 'c'])
    expect(guard.stats().pendingTags).toBe('flush')
    setMode('ok')
    await sleep(80)
    expect(guard.available).toBe(true)
    expect(calls.at(-1)).toBe('clear')
    guard.close()
  })

  it('a listing purge the tier missed is replayed by its tag, or by a clear without one, before it is read again', async () => {
    for (const [tags, replay] of [
      [['Post:1'], 'invalidate:Post:1'],
      [undefined, 'clear'],
    ] as const) {
      const { tier, calls, setMode } = flakyTier()
      const guard = new TierGuard(tier, options, logger)
      setMode('fail')
      expect(await guard.purge(tags, () => Promise.reject(new Error('down')))).toEqual([])
      expect(guard.available).toBe(false)
      expect(guard.stats().pendingTags).toBe(tags ? 1 : 'flush')
      setMode('ok')
      await sleep(80)
      expect(guard.available).toBe(true)
      expect(calls.at(-1)).toBe(replay)
      guard.close()
    }
  })

  it('a tiered listing purge reports what each tier removed, and defers it on a shared tier that fails', async () => {
    const local = memoryTier()
    const { tier, calls, setMode } = flakyTier()
    const cache = new TieredCache([local, tier], logger, options)
    const entry = entryOf('{"data":{}}', ['Post:1'], { ttlMs: 60_000, tenant: null })
    cache.set('k1', entry)
    await sleep(5)
    const purge = async (t: CacheTier) => {
      const page = await t.list({ limit: 10 })
      for (const e of page.entries) await t.delete(e.key)
      return page.entries.map((e) => e.key)
    }
    expect(await cache.purgeListed(purge, ['Post:1'])).toEqual({
      removed: { memory: 1, flaky: 1 },
      keys: ['k1'],
    })
    cache.set('k2', entry)
    await sleep(5)
    setMode('fail')
    expect(await cache.purgeListed(purge, ['Post:1'])).toEqual({
      removed: { memory: 1, flaky: 0 },
      keys: ['k2'],
    })
    expect(cache.health().flaky).toMatchObject({ state: 'open', pendingTags: 1 })
    // While the circuit is open, a purge is not tried there: it is remembered.
    const before = calls.length
    expect((await cache.purgeListed(purge)).removed).toEqual({ memory: 0, flaky: 0 })
    expect(calls.length).toBe(before)
    expect(cache.health().flaky?.pendingTags).toBe('flush')
    setMode('ok')
    await sleep(80)
    expect(cache.health().flaky?.state).toBe('closed')
    expect(calls.at(-1)).toBe('clear')
    expect(await tier.get('k2')).toBeUndefined()
    await cache.close()
  })

  it('a clear may take longer than an invalidation: a slow one completes, and one on recovery brings the tier back', async () => {
    const { tier, calls, setMode } = flakyTier()
    await tier.set('k', entryOf('{}', ['Post:1']))
    const guard = new TierGuard(tier, { ...options, maxPendingTags: 1 }, logger)
    setMode('slow') // 60 ms: past invalidateTimeoutMs (20), within clearTimeoutMs (200)
    expect(await guard.clear(undefined)).toBe(1)
    expect(guard.stats()).toMatchObject({ state: 'closed', failures: 0 })
    setMode('fail')
    await guard.invalidate(['a', 'b'])
    expect(guard.stats().pendingTags).toBe('flush')
    setMode('slow')
    await sleep(150)
    expect(calls.at(-1)).toBe('clear')
    expect(guard.available).toBe(true)
    guard.close()
  })

  it('after a replay the circuit is half-open: invalidations are applied, reads are not, and it closes once what was applied has completed', async () => {
    const { tier, held, setMode } = heldTier()
    const guard = new TierGuard(tier, { ...options, invalidateTimeoutMs: 2000 }, logger)
    await guard.invalidate(['Post:1'])
    expect(guard.stats().state).toBe('open')
    setMode('hold')
    expect(await waitFor(() => held.length === 1, 2000)).toBe(true) // the probe replays Post:1
    // Arriving during the replay: remembered, as while open.
    expect(await guard.invalidate(['Post:2'])).toBe(0)
    expect(held.length).toBe(1)
    held[0]?.release()
    // Half-open: what arrived during the replay is replayed...
    expect(await waitFor(() => held.length === 2, 2000)).toBe(true)
    expect(held[1]?.tags).toEqual(['Post:2'])
    expect(guard.stats()).toMatchObject({ state: 'half-open', pendingTags: 0 })
    // ...reads and writes are still skipped, and a new invalidation is applied to the tier (awaited).
    await expect(guard.run('get', () => tier.get('k'))).rejects.toBeInstanceOf(TierUnavailable)
    const direct = guard.invalidate(['Post:3'])
    expect(await waitFor(() => held.length === 3, 2000)).toBe(true)
    held[1]?.release()
    await sleep(20)
    expect(guard.stats().state).toBe('half-open') // Post:3, issued during the replay, is still running
    held[2]?.release()
    expect(await direct).toBe(0)
    expect(await waitFor(() => guard.stats().state === 'closed', 2000)).toBe(true)
    expect(guard.stats()).toMatchObject({ opened: 1, pendingTags: 0 })
    guard.close()
  })

  it('an invalidation that fails while half-open reopens the circuit and is replayed', async () => {
    const { tier, held, setMode } = heldTier()
    const guard = new TierGuard(tier, { ...options, invalidateTimeoutMs: 2000 }, logger)
    await guard.invalidate(['Post:1'])
    setMode('hold')
    expect(await waitFor(() => held.length === 1, 2000)).toBe(true)
    await guard.invalidate(['Post:2']) // remembered: replayed once half-open, and held there
    held[0]?.release()
    expect(await waitFor(() => held.length === 2, 2000)).toBe(true)
    const direct = guard.invalidate(['Post:3'])
    expect(await waitFor(() => held.length === 3, 2000)).toBe(true)
    held[2]?.fail()
    expect(await direct).toBe(0)
    expect(guard.stats()).toMatchObject({ state: 'open', opened: 2, pendingTags: 1 })
    held[1]?.release() // the replay of Post:2 completes, but the circuit stays open
    await sleep(5)
    expect(guard.stats().state).toBe('open')
    // The next probe replays Post:3, and the tier comes back.
    expect(await waitFor(() => held.length === 4, 2000)).toBe(true)
    expect(held[3]?.tags).toEqual(['Post:3'])
    held[3]?.release()
    expect(await waitFor(() => guard.stats().state === 'closed', 2000)).toBe(true)
    guard.close()
  })

  it('a tier that answers again closes although an invalidation arrives during every call to it', async () => {
    // A steady stream of mutations: each replay (and each invalidation) sees the next one arrive.
    const inner = memoryTier()
    let down = true
    let streaming = true
    let issued = 0
    const applied = new Set<string>()
    const tier: CacheTier = {
      ...inner,
      name: 'busy',
      shared: true,
      get: async (key) => inner.get(key),
      invalidate: async (tags) => {
        if (down) throw new Error('down')
        await sleep(5)
        if (streaming) void guard.invalidate([`Post:${++issued}`])
        for (const tag of tags) applied.add(tag)
        return inner.invalidate(tags)
      },
    }
    const guard: TierGuard = new TierGuard(tier, { ...options, invalidateTimeoutMs: 1000 }, logger)
    await guard.invalidate(['Post:0'])
    expect(guard.stats().state).toBe('open')
    down = false
    const closed = await waitFor(() => guard.stats().state === 'closed', 2000)
    streaming = false
    expect(closed).toBe(true)
    // Nothing issued meanwhile was lost: every tag reached the tier.
    expect(await waitFor(() => applied.size === issued + 1, 2000)).toBe(true)
    expect(guard.stats().pendingTags).toBe(0)
    guard.close()
  })

  it('once a shared tier has replayed what it missed, the tiered cache applies it again in its other tiers', async () => {
    for (const [missed, replay] of [
      [['Post:1'], 'invalidate:Post:1'],
      [undefined, 'clear'],
    ] as const) {
      const local = memoryTier()
      const { tier, calls, setMode } = flakyTier()
      const cache = new TieredCache([local, tier], logger, options)
      setMode('fail')
      if (missed) await cache.invalidate(missed)
      else await cache.clear()
      expect(cache.health().flaky?.state).toBe('open')
      // Meanwhile the memory tier got a copy of an old entry (read from the tier by another instance,
      // which then reached this one as a promotion into a shared tier, say).
      local.set('k', entryOf('{}', ['Post:1']))
      setMode('ok')
      expect(await waitFor(() => local.get('k') === undefined, 2000)).toBe(true)
      expect(cache.health().flaky?.state).toBe('closed')
      // Not again in the tier that replayed (it is clean): the failed attempt and the replay only.
      expect(calls.filter((call) => call === replay)).toEqual([replay, replay])
      await cache.close()
    }
  })

  it('backs off while the tier stays down', async () => {
    const { tier, calls, setMode } = flakyTier()
    const guard = new TierGuard(tier, { ...options, cooldownMs: 10, maxCooldownMs: 1000 }, logger)
    setMode('fail')
    await guard.invalidate(['x'])
    await sleep(200)
    const probes = calls.filter((c) => c.startsWith('invalidate')).length
    // 10, 20, 40, 80 ms...: about 4-5 probes in 200 ms, not 20.
    expect(probes).toBeGreaterThanOrEqual(2)
    expect(probes).toBeLessThanOrEqual(7)
    guard.close()
  })
})
