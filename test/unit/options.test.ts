import { describe, expect, it } from 'vitest'
import { memoryTier, StrataOptionError, useStrata } from '../../src/index.js'

const bad: [string, Record<string, unknown>, RegExp][] = [
  ['tenant', {}, /`tenant` is required/],
  ['tenant', { tenant: 'acme' }, /`tenant` must be a function/],
  ['tiers', { tenant: false, tiers: [] }, /`tiers` must be a non-empty array/],
  [
    'tiers[0]',
    { tenant: false, tiers: [{ name: 'x' }] },
    /`tiers\[0\]` is not a cache tier: it has no get\(\)/,
  ],
  ['tiers[1].name', { tenant: false, tiers: [memoryTier(), memoryTier()] }, /"memory" is used by two tiers/],
  ['defaultMaxAge', { tenant: false, defaultMaxAge: -1 }, /whole number of seconds/],
  ['maxEntryBytes', { tenant: false, maxEntryBytes: 1.5 }, /whole number of bytes/],
  [
    'hints["Query.posts"].maxAge',
    { tenant: false, hints: { 'Query.posts': { maxAge: '60' } } },
    /maxAge` must be/,
  ],
  [
    'hints["Query.posts"].scope',
    { tenant: false, hints: { 'Query.posts': { scope: 'public' } } },
    /'PUBLIC' or 'PRIVATE'/,
  ],
  ['hints["Query..x"]', { tenant: false, hints: { 'Query..x': {} } }, /not a schema coordinate/],
  ['keyFields.Post', { tenant: false, keyFields: { Post: [] } }, /non-empty array of field names/],
  [
    'invalidates["deletePost"]',
    { tenant: false, invalidates: { deletePost: ['Post'] } },
    /mutation field coordinate/,
  ],
  ['keyPrefix', { tenant: false, keyPrefix: 'a:b' }, /letters, digits/],
  ['header', { tenant: false, header: 'x cache' }, /header name/],
  ['logger', { tenant: false, logger: {} }, /pino logger/],
  ['session', { tenant: false, session: 'user' }, /must be a function/],
  ['debug', { tenant: false, debug: 'yes' }, /true or false/],
  ['dynamicHints', { tenant: false, dynamicHints: 'off' }, /true or false/],
  ['ttl', { tenant: false, ttl: 5 }, /not an option of useStrata/],
]

describe('option validation', () => {
  for (const [option, options, message] of bad) {
    it(`rejects a bad \`${option}\` with a message naming it`, () => {
      let error: unknown
      try {
        useStrata(options as never)
      } catch (e) {
        error = e
      }
      expect(error).toBeInstanceOf(StrataOptionError)
      expect((error as StrataOptionError).code).toBe('STRATA_INVALID_OPTION')
      expect((error as StrataOptionError).option).toBe(option)
      expect((error as Error).message).toMatch(message)
    })
  }

  it('rejects a bad memory tier size', () => {
    expect(() => memoryTier({ maxBytes: 10 })).toThrow(/memoryTier.maxBytes/)
  })

  it('accepts a minimal single-tenant configuration', () => {
    expect(useStrata({ tenant: false }).strata.stats().hits).toBe(0)
  })
})
