import pino from 'pino'
import { describe, expect, it } from 'vitest'
import { type CacheTier, memoryTier } from '../../src/index.js'
import { breakerDefaults, TierGuard, TierUnavailable } from '../../src/tiers/breaker.js'

const logger = pino({ level: 'silent' })
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** A shared tier whose health the test switches. */
function flakyTier() {
  const inner = memoryTier()
  const calls: string[] = []
  let mode: 'ok' | 'fail' | 'hang' = 'ok'
  const gate = async <T>(name: string, run: () => T): Promise<T> => {
    calls.push(name)
    if (mode === 'fail') throw new Error('down')
    if (mode === 'hang') await new Promise(() => {})
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

const options = {
  ...breakerDefaults,
  timeoutMs: 20,
  invalidateTimeoutMs: 20,
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
