import { describe, expect, it } from 'vitest'
import { InvalidationClock } from '../../src/invalidation/clock.js'

describe('InvalidationClock', () => {
  it('flags an execution that began before an invalidation of one of its tags', () => {
    const clock = new InvalidationClock()
    const start = clock.begin()
    clock.invalidated(['Post:1'])
    expect(clock.isStale(start, ['Post:1', 'Post'])).toBe(true)
    expect(clock.isStale(start, ['Post:2'])).toBe(false)
    clock.end(start)
  })
  it('does not flag executions that began after the invalidation', () => {
    const clock = new InvalidationClock()
    const early = clock.begin()
    clock.invalidated(['Post:1'])
    const late = clock.begin()
    expect(clock.isStale(late, ['Post:1'])).toBe(false)
    expect(clock.isStale(early, ['Post:1'])).toBe(true)
  })
  it('a flush makes every running execution stale', () => {
    const clock = new InvalidationClock()
    const start = clock.begin()
    clock.flushed()
    expect(clock.isStale(start, [])).toBe(true)
  })
  it('stays bounded when an execution never ends, and then errs on the safe side', () => {
    const clock = new InvalidationClock()
    const stuck = clock.begin()
    for (let i = 0; i < 50_000; i++) clock.invalidated([`Post:${i}`])
    expect(clock.size).toBeLessThanOrEqual(4096)
    expect(clock.isStale(stuck, ['Unrelated:1'])).toBe(true)
    const fresh = clock.begin()
    expect(clock.isStale(fresh, ['Post:1'])).toBe(false)
  })

  it('keeps its stamp table bounded while executions keep overlapping', () => {
    const clock = new InvalidationClock()
    let previous = clock.begin()
    for (let i = 0; i < 50_000; i++) {
      clock.invalidated([`Post:${i}`])
      const next = clock.begin()
      clock.end(previous)
      previous = next
    }
    expect(clock.size).toBeLessThanOrEqual(4096)
    clock.end(previous)
    expect(clock.size).toBe(0)
  })
})
