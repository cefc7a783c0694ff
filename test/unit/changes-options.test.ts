import { describe, expect, it } from 'vitest'
import { StrataOptionError } from '../../src/index.js'
import { postgresChanges } from '../../src/postgres.js'

const pool = { query: async () => ({ rows: [] }), connect: async () => undefined }

const bad: [string, Record<string, unknown>, RegExp][] = [
  ['postgresChanges.pool', { pool: {} }, /must be a pg\.Pool, or PGlite/],
  ['postgresChanges.schema', { pool, schema: 'Strata' }, /lowercase letters/],
  ['postgresChanges.mode', { pool, mode: 'push' }, /'listen' or 'poll'/],
  ['postgresChanges.pollMs', { pool, pollMs: 0 }, /whole number >= 1, got 0/],
  ['postgresChanges.batch', { pool, batch: 1.5 }, /whole number >= 1, got 1\.5/],
  ['postgresChanges.batch', { pool, batch: 2 ** 31 }, /at most 1000000 .*got 2147483648/],
]

describe('postgresChanges options', () => {
  it.each(bad)('%s: %j fails at startup naming the option', (option, options, message) => {
    try {
      postgresChanges(options as never)
      expect.unreachable('no error')
    } catch (error) {
      expect(error).toBeInstanceOf(StrataOptionError)
      expect((error as StrataOptionError).option).toBe(option)
      expect((error as Error).message).toMatch(message)
    }
  })

  it('accepts the largest batch', () => {
    expect(() => postgresChanges({ pool, batch: 1_000_000 } as never)).not.toThrow()
  })
})
