import { Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { memoryTier, StrataOptionError, useStrata } from '../../src/index.js'
import { postgresChanges, postgresTier } from '../../src/postgres.js'
import { redisTier } from '../../src/redis.js'

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
  ['staleWhileRevalidate', { tenant: false, staleWhileRevalidate: 1.5 }, /whole number of seconds >= 0/],
  [
    'staleWhileRevalidate',
    { tenant: false, staleWhileRevalidate: '60' },
    /whole number of seconds >= 0, got "60"/,
  ],
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
  [
    'invalidates["Mutation.m"].keyArgs',
    { tenant: false, invalidates: { 'Mutation.m': { entity: 'Post', keyArgs: ['input..id'] } } },
    /not an argument path/,
  ],
  [
    'invalidates["Mutation.m"].keyArgs',
    { tenant: false, invalidates: { 'Mutation.m': { types: ['Post'], keyArgs: ['id'] } } },
    /needs an `entity`/,
  ],
  [
    'invalidates["Mutation.m"].entity',
    { tenant: false, invalidates: { 'Mutation.m': { entity: ['Post'] } } },
    /name of an object type/,
  ],
  ['invalidates["Mutation.m"]', { tenant: false, invalidates: { 'Mutation.m': {} } }, /names nothing/],
  [
    'invalidates["Mutation.m"].type',
    { tenant: false, invalidates: { 'Mutation.m': { type: 'Post' } } },
    /not an option of an invalidation/,
  ],
  ['cacheTags["postCount"]', { tenant: false, cacheTags: { postCount: ['t'] } }, /field coordinate/],
  ['cacheTags["Query.x"]', { tenant: false, cacheTags: { 'Query.x': [] } }, /non-empty array of cache tags/],
  ['cacheTags["Query.x"]', { tenant: false, cacheTags: { 'Query.x': [''] } }, /not a non-empty string/],
  [
    'invalidates["Mutation.m"].cacheTags',
    { tenant: false, invalidates: { 'Mutation.m': { cacheTags: 'all' } } },
    /non-empty array of cache tags/,
  ],
  ['keyPrefix', { tenant: false, keyPrefix: 'a:b' }, /letters, digits/],
  ['header', { tenant: false, header: 'x cache' }, /header name/],
  ['logger', { tenant: false, logger: {} }, /pino logger/],
  ['session', { tenant: false, session: 'user' }, /must be a function/],
  ['refresh', { tenant: false, refresh: true }, /must be a function/],
  ['shouldStore', { tenant: false, shouldStore: false }, /must be a function/],
  ['tracer', { tenant: false, tracer: {} }, /must be an OpenTelemetry tracer/],
  ['incremental', { tenant: false, incremental: 'stream' }, /must be 'bypass' or 'inline'/],
  ['singleFlight.maxWaitMs', { tenant: false, singleFlight: { maxWaitMs: 0 } }, /milliseconds >= 1/],
  // Node runs a longer timer after 1 ms: every wait and refresh would give up at once.
  ['singleFlight.maxWaitMs', { tenant: false, singleFlight: { maxWaitMs: 2 ** 31 } }, /at most 2147483647/],
  ['singleFlight.wait', { tenant: false, singleFlight: { wait: 5 } }, /not an option of singleFlight/],
  ['singleFlight', { tenant: false, singleFlight: 'yes' }, /must be true, false or \{ maxWaitMs \}/],
  ['debug', { tenant: false, debug: 'yes' }, /true or false/],
  ['etag', { tenant: false, etag: 'weak' }, /true or false/],
  ['dynamicHints', { tenant: false, dynamicHints: 'off' }, /true or false/],
  ['ttl', { tenant: false, ttl: 5 }, /not an option of useStrata/],
  [
    'metrics.prefix',
    { tenant: false, metrics: { registry: new Registry(), prefix: 'bad-prefix' } },
    /must start a Prometheus metric name/,
  ],
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

  it('rejects a PostgreSQL tier purge batch of 0 (its purge would never finish)', () => {
    const pool = { query: async () => ({ rows: [] }) }
    expect(() => postgresTier({ pool, purgeBatch: 0 })).toThrow(
      /`postgresTier.purgeBatch` must be a whole number >= 1/,
    )
  })

  it('an option given as undefined keeps its default, in every factory', () => {
    const pool = { query: async () => ({ rows: [] }), connect: async () => undefined }
    const client = Object.fromEntries(
      [
        'get',
        'set',
        'eval',
        'evalsha',
        'scan',
        'unlink',
        'publish',
        'duplicate',
        'defineCommand',
        'pipeline',
      ].map((name) => [name, () => undefined]),
    )
    const tier = postgresTier({ pool, purgeBatch: undefined, schema: undefined })
    expect((tier.createBus?.() as { channel?: string } | undefined)?.channel).toBe('strata_bus') // not "undefined_bus"
    tier.close?.()
    expect(() =>
      redisTier({ client: client as never, shards: undefined, namespace: undefined }),
    ).not.toThrow()
    expect(() => postgresChanges({ pool: pool as never, pollMs: undefined, schema: undefined })).not.toThrow()
    expect(() => useStrata({ tenant: false, breaker: { timeoutMs: undefined } })).not.toThrow()
  })

  it('accepts a minimal single-tenant configuration', () => {
    expect(useStrata({ tenant: false }).strata.stats().hits).toBe(0)
  })
})
