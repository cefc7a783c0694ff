import { randomBytes, randomUUID } from 'node:crypto'
import { GraphQLScalarType } from 'graphql'
import { createSchema, createYoga } from 'graphql-yoga'
import { Redis } from 'ioredis'
import pg from 'pg'
import { afterEach, describe, expect, it } from 'vitest'
import {
  type CacheTier,
  memoryTier,
  type StrataOptions,
  StrataSchemaError,
  strataDirectivesSdl,
  useStrata,
} from '../../src/index.js'
import { postgresTier } from '../../src/postgres.js'
import { redisTier } from '../../src/redis.js'
import { startStrataServer, type TestServer } from '../support/server.js'
import { serviceUrl } from '../support/services.js'
import { waitFor } from '../support/wait.js'

const closers: (() => Promise<unknown>)[] = []
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close()
})

const typeDefs = /* GraphQL */ `
  ${strataDirectivesSdl}
  enum Region { EU US }
  input ProductRef { id: ID! }
  type Product @cacheControl(maxAge: 60) { id: ID! name: String! }
  interface Feed { headline: String! @cacheTag(format: "homepage") }
  type HomeFeed implements Feed @cacheControl(maxAge: 60) { headline: String! }
  type Query {
    postCount: Int! @cacheControl(maxAge: 60) @cacheTag(format: "post-stats")
    product(id: ID!): Product @cacheTag(format: "product-{args.id}")
    products(ids: [ID!]!): [Product!]! @cacheControl(maxAge: 60) @cacheTag(format: "product-{args.ids}")
    lookup(ids: [ID]!): [Product]! @cacheControl(maxAge: 60) @cacheTag(format: "product-{args.ids}")
    price(ref: ProductRef!, region: Region = EU): Int! @cacheControl(maxAge: 60)
      @cacheTag(format: "price-{args.ref.id}-{args.region}")
    feed: Feed @cacheControl(maxAge: 60)
    grid(rows: [ID!]!, cols: [ID!]!): Int! @cacheControl(maxAge: 60) @cacheTag(format: "cell-{args.rows}-{args.cols}")
  }
  type Mutation {
    addPost: Boolean! @invalidates(cacheTags: ["post-stats"])
    renameProduct(id: ID, name: String!): Boolean! @invalidates(cacheTags: ["product-{args.id}"])
    setPrice(ref: ProductRef!, region: Region!): Boolean! @invalidates(cacheTags: ["price-{args.ref.id}-{args.region}"])
    paint(rows: [ID!]!, cols: [ID!]!): Boolean! @invalidates(cacheTags: ["cell-{args.rows}-{args.cols}"])
  }
`

function shopSchema() {
  const names = new Map([
    ['1', 'One'],
    ['2', 'Two'],
    ['3', 'Three'],
  ])
  const product = (id: string) => ({ id, name: names.get(id) ?? '?' })
  return createSchema({
    typeDefs,
    resolvers: {
      Query: {
        postCount: () => 3,
        product: (_: unknown, { id }: { id: string }) => product(id),
        products: (_: unknown, { ids }: { ids: string[] }) => ids.map(product),
        lookup: (_: unknown, { ids }: { ids: (string | null)[] }) =>
          ids.map((id) => (id === null ? null : product(id))),
        price: (_: unknown, { ref, region }: { ref: { id: string }; region: string }) =>
          Number(ref.id) * (region === 'EU' ? 10 : 11),
        feed: () => ({ __typename: 'HomeFeed', headline: 'Hello' }),
        grid: () => 0,
      },
      Feed: { __resolveType: () => 'HomeFeed' },
      Mutation: {
        addPost: () => true,
        renameProduct: (_: unknown, { id, name }: { id: string | null; name: string }) => {
          if (id !== null) names.set(id, name)
          return true
        },
        setPrice: () => true,
        paint: () => true,
      },
    },
  })
}

async function shop(
  options: Partial<StrataOptions> = {},
  tiers: CacheTier[] = [memoryTier()],
  schema = shopSchema(),
) {
  const plugin = useStrata({ tenant: false, tiers, ...options } as StrataOptions)
  const server = await startStrataServer(schema, plugin, closers)
  return { server, strata: plugin.strata }
}

/** Sends each query until it is a hit (shared tiers store after the response). */
async function cached(server: TestServer, queries: readonly string[]) {
  for (const query of queries) {
    await server.query(query)
    expect(await waitFor(async () => (await server.query(query)).cache === 'HIT', 2000), query).toBe(true)
  }
}

/** The cache status of each query, in order. */
async function statuses(server: TestServer, queries: readonly string[]) {
  const out: (string | null)[] = []
  for (const query of queries) out.push((await server.query(query)).cache)
  return out
}

const ONE = '{ product(id: "1") { name } }'
const TWO = '{ product(id: "2") { name } }'
const STATS = '{ postCount }'

describe('@cacheTag', () => {
  it('a fixed tag: the mutation that declares it invalidates every entry carrying it, and no other', async () => {
    const { server } = await shop()
    await cached(server, [STATS, ONE])
    await server.query('mutation { addPost }')
    expect(await statuses(server, [STATS, ONE])).toEqual(['MISS', 'HIT'])
  })

  it('a tag rendered from an argument: invalidateCacheTags reaches the entry it names only', async () => {
    const { server, strata } = await shop()
    await cached(server, [ONE, TWO])
    await strata.invalidateCacheTags(['product-1'])
    expect(await statuses(server, [ONE, TWO])).toEqual(['MISS', 'HIT'])
  })

  it('a list argument renders one tag per value', async () => {
    const { server, strata } = await shop()
    const oneAndThree = '{ products(ids: ["1", "3"]) { name } }'
    const two = '{ products(ids: ["2"]) { name } }'
    await cached(server, [oneAndThree, two])
    await strata.invalidateCacheTags(['product-3'])
    expect(await statuses(server, [oneAndThree, two])).toEqual(['MISS', 'HIT'])
  })

  it('a list argument holding a null renders a tag for each of its other values', async () => {
    const { server } = await shop()
    const query = '{ lookup(ids: ["1", null]) { name } }'
    await cached(server, [query])
    await server.query('mutation { renameProduct(id: "1", name: "Uno") }')
    const after = await server.query(query)
    expect(after.cache).toBe('MISS')
    expect(after.json.data).toEqual({ lookup: [{ name: 'Uno' }, null] })
  })

  it('lists that multiply past 10 000 tags: the entry is not stored, a mutation invalidates the wildcard', async () => {
    const { server, strata } = await shop()
    const ids = Array.from({ length: 101 }, (_, i) => String(i)) // 101 × 101 renderings
    const big = 'query($ids: [ID!]!) { grid(rows: $ids, cols: $ids) }'
    await server.query(big, { ids })
    expect((await server.query(big, { ids })).cache).toBe('MISS')
    expect(strata.stats().skippedStores['not-analysable']).toBe(2)
    const small = '{ grid(rows: ["1", "2"], cols: ["3"]) }'
    await cached(server, [small])
    await server.query('mutation($ids: [ID!]!) { paint(rows: $ids, cols: $ids) }', { ids })
    expect(strata.stats().invalidatedTags).toBe(1)
    expect(await statuses(server, [small])).toEqual(['MISS'])
  })

  it("a mutation's cacheTags are rendered from its own arguments", async () => {
    const { server } = await shop()
    await cached(server, [ONE, TWO])
    await server.query('mutation { renameProduct(id: "2", name: "Deux") }')
    const [one, two] = [await server.query(ONE), await server.query(TWO)]
    expect([one.cache, two.cache]).toEqual(['HIT', 'MISS'])
    expect(two.json.data).toEqual({ product: { name: 'Deux' } })
  })

  it('a mutation argument without a value invalidates every rendering of the format (its wildcard)', async () => {
    const { server, strata } = await shop()
    const list = '{ products(ids: ["3"]) { name } }'
    await cached(server, [ONE, TWO, list, STATS])
    await server.query('mutation { renameProduct(id: null, name: "?") }')
    expect(await statuses(server, [ONE, TWO, list, STATS])).toEqual(['MISS', 'MISS', 'MISS', 'HIT'])
    // The wildcard can be named directly too.
    await cached(server, [ONE])
    await strata.invalidateCacheTags(['product-*'])
    expect(await statuses(server, [ONE])).toEqual(['MISS'])
  })

  it('input-object paths, enums and argument defaults render as execution coerced them', async () => {
    const { server } = await shop()
    const eu = ['query($ref: ProductRef!) { price(ref: $ref) }', { ref: { id: '1' } }] as const
    const us = ['{ price(ref: { id: "1" }, region: US) }', undefined] as const
    for (const [query, variables] of [eu, us]) {
      await server.query(query, variables)
      expect((await server.query(query, variables)).cache).toBe('HIT')
    }
    await server.query('mutation { setPrice(ref: { id: "1" }, region: EU) }')
    expect((await server.query(eu[0], eu[1])).cache).toBe('MISS')
    expect((await server.query(us[0])).cache).toBe('HIT')
  })

  it('a tag on an interface field is carried by its implementations', async () => {
    const { server, strata } = await shop()
    await cached(server, ['{ feed { headline } }'])
    await strata.invalidateCacheTags(['homepage'])
    expect(await statuses(server, ['{ feed { headline } }'])).toEqual(['MISS'])
  })

  it('the cacheTags option replaces the directives; a cache tag never meets a type of the same name', async () => {
    const { server, strata } = await shop({ cacheTags: { 'Query.postCount': ['Product'] } })
    await cached(server, [STATS])
    await strata.invalidateCacheTags(['post-stats'])
    await strata.invalidateTypes(['Product'])
    expect(await statuses(server, [STATS])).toEqual(['HIT'])
    await strata.invalidateCacheTags(['Product'])
    expect(await statuses(server, [STATS])).toEqual(['MISS'])
  })

  it("the cacheTags option may name an interface field: it replaces that field's directives for every implementation", async () => {
    const { server, strata } = await shop({ cacheTags: { 'Feed.headline': ['front-page'] } })
    await cached(server, ['{ feed { headline } }'])
    await strata.invalidateCacheTags(['homepage'])
    expect(await statuses(server, ['{ feed { headline } }'])).toEqual(['HIT'])
    await strata.invalidateCacheTags(['front-page'])
    expect(await statuses(server, ['{ feed { headline } }'])).toEqual(['MISS'])
  })

  it('the admin field invalidates cache tags', async () => {
    const { server } = await shop({ admin: { authorize: () => 'all' } })
    await cached(server, [STATS, ONE])
    const purge = await server.query(
      'mutation { _strata { invalidateCacheTags(tags: ["post-stats"]) { total } } }',
    )
    expect(purge.json.data).toEqual({ _strata: { invalidateCacheTags: { total: 1 } } })
    expect(await statuses(server, [STATS, ONE])).toEqual(['MISS', 'HIT'])
  })

  it('works on a shared tier (Redis), across instances', async () => {
    const namespace = `tags-${randomUUID().slice(0, 8)}`
    const url = await serviceUrl('redis')
    const schema = shopSchema() // one database behind both instances
    const make = async () => {
      const client = new Redis(url)
      closers.push(() => client.quit())
      return shop({}, [redisTier({ client, namespace })], schema)
    }
    const a = await make()
    const b = await make()
    await cached(a.server, [ONE, TWO])
    await b.server.query('mutation { renameProduct(id: "1", name: "Uno") }')
    expect(await statuses(a.server, [ONE, TWO])).toEqual(['MISS', 'HIT'])
    expect((await a.server.query(ONE)).json.data).toEqual({ product: { name: 'Uno' } })
  })

  it('a scalar that serializes to a bigint renders (as its digits), on both sides', async () => {
    const Long = new GraphQLScalarType({
      name: 'Long',
      parseValue: (value) => BigInt(value as string),
      parseLiteral: (ast) => BigInt((ast as { value: string }).value),
      serialize: (value) => BigInt(value as bigint),
    })
    const schema = createSchema({
      typeDefs: /* GraphQL */ `
        ${strataDirectivesSdl}
        scalar Long
        type Query { balance(account: Long!): Int @cacheControl(maxAge: 60) @cacheTag(format: "account-{args.account}") }
        type Mutation { pay(account: Long!): Boolean @invalidates(cacheTags: ["account-{args.account}"]) }
      `,
      resolvers: { Long, Query: { balance: () => 1 }, Mutation: { pay: () => true } },
    })
    const plugin = useStrata({ tenant: false })
    const server = await startStrataServer(schema, plugin, closers)
    const [one, two] = ['{ balance(account: 9007199254740993) }', '{ balance(account: 2) }']
    await cached(server, [one, two])
    await server.query('mutation { pay(account: "9007199254740993") }')
    expect(await statuses(server, [one, two])).toEqual(['MISS', 'HIT'])
  })
})

describe('a cache tag PostgreSQL cannot store as given (rendered from an argument)', () => {
  it('a tag holding NUL is stored and invalidated on PostgreSQL, whose text cannot hold NUL, without failing the tier', async () => {
    const pool = new pg.Pool({ connectionString: await serviceUrl('postgres'), max: 4 })
    const schema = `strata_tag_nul_${process.pid}`
    closers.push(() => pool.end())
    closers.push(() => pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`))
    const { server, strata } = await shop({ breaker: { cooldownMs: 50 } }, [postgresTier({ pool, schema })])
    const query = 'query($id: ID!) { product(id: $id) { name } }'
    const odd = { id: '1\u0000' }
    await server.query(query, odd)
    expect(await waitFor(async () => (await server.query(query, odd)).cache === 'HIT', 2000)).toBe(true)
    await server.query('mutation($id: ID) { renameProduct(id: $id, name: "x") }', odd)
    expect((await server.query(query, odd)).cache).toBe('MISS')
    expect(strata.cache.health()).toMatchObject({ postgres: { state: 'closed', failures: 0 } })
  })

  it('a tag too long for an index entry is stored and invalidated on PostgreSQL without failing the tier', async () => {
    const pool = new pg.Pool({ connectionString: await serviceUrl('postgres'), max: 4 })
    const schema = `strata_tag_long_${process.pid}`
    closers.push(() => pool.end())
    closers.push(() => pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`))
    const { server, strata } = await shop({ breaker: { cooldownMs: 50 } }, [postgresTier({ pool, schema })])
    const query = 'query($id: ID!) { product(id: $id) { name } }'
    const long = { id: randomBytes(2000).toString('hex') } // 4 kB that do not compress
    await server.query(query, long)
    expect(await waitFor(async () => (await server.query(query, long)).cache === 'HIT', 2000)).toBe(true)
    await server.query('mutation($id: ID) { renameProduct(id: $id, name: "x") }', long)
    expect((await server.query(query, long)).cache).toBe('MISS')
    expect(strata.cache.health()).toMatchObject({ postgres: { state: 'closed', failures: 0 } })
  })

  it('a tag too long for one NOTIFY still reaches the other instances over the LISTEN/NOTIFY bus', async () => {
    const schema = `strata_tag_bus_${process.pid}`
    const db = shopSchema() // one database behind both instances
    const make = async () => {
      const pool = new pg.Pool({ connectionString: await serviceUrl('postgres'), max: 4 })
      closers.push(() => pool.end())
      const instance = await shop({}, [memoryTier(), postgresTier({ pool, schema })], db)
      expect(await waitFor(() => instance.strata.cache.localTrusted, 3000)).toBe(true)
      return instance
    }
    const a = await make()
    const b = await make()
    closers.push(async () => {
      const pool = new pg.Pool({ connectionString: await serviceUrl('postgres'), max: 1 })
      await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
      await pool.end()
    })
    const query = 'query($id: ID!) { product(id: $id) { name } }'
    const long = { id: randomBytes(4000).toString('hex') } // a tag of 8 kB: NOTIFY carries under 8000 bytes
    await b.server.query(query, long)
    expect((await b.server.query(query, long)).cache).toBe('HIT')
    await a.server.query('mutation($id: ID) { renameProduct(id: $id, name: "Renamed") }', long)
    const fresh = async () => (await b.server.query(query, long)).text.includes('Renamed')
    expect(await waitFor(fresh, 1000)).toBe(true)
    expect(a.strata.stats().busErrors).toBe(0)
  })
})

describe('a cache tag that cannot be rendered', () => {
  it('keeps the result out of the cache (an invalidation naming the tag could not reach it)', async () => {
    const schema = createSchema({
      typeDefs: /* GraphQL */ `
        ${strataDirectivesSdl}
        scalar Opaque
        type Query { odd(v: Opaque!): Int @cacheControl(maxAge: 60) @cacheTag(format: "odd-{args.v}") }
      `,
      resolvers: {
        // A scalar whose serialize refuses its own parsed values (input-only, say).
        Opaque: new GraphQLScalarType({
          name: 'Opaque',
          parseValue: (value) => ({ value }),
          parseLiteral: () => ({ value: 'literal' }),
          serialize: () => {
            throw new TypeError('Opaque is input-only')
          },
        }),
        Query: { odd: () => 1 },
      },
    })
    const plugin = useStrata({ tenant: false })
    const server = await startStrataServer(schema, plugin, closers)
    expect((await server.query('{ odd(v: "x") }')).json.data).toEqual({ odd: 1 })
    expect((await server.query('{ odd(v: "x") }')).cache).toBe('MISS')
    expect(plugin.strata.stats().skippedStores['not-analysable']).toBe(2)
  })
})

describe('cache tags are checked when the schema loads', () => {
  const okMutation = 'm(id: ID): Boolean @invalidates(cacheTags: ["ok-{args.id}"])'
  function attempt(field: string, options: Partial<StrataOptions> = {}, mutation = okMutation) {
    const schema = createSchema({
      typeDefs: /* GraphQL */ `
        ${strataDirectivesSdl}
        input Ref { id: ID! }
        type Query { ${field} }
        type Mutation { ${mutation} }
      `,
    })
    const plugin = useStrata({ tenant: false, ...options } as StrataOptions)
    return () => createYoga({ schema, plugins: [plugin as never], logging: false })
  }
  const cases: [string, RegExp][] = [
    ['x(id: ID): Int @cacheTag(format: "p-{args.key}")', /@cacheTag on Query\.x: .*x has no argument "key"/],
    [
      'x(ref: Ref): Int @cacheTag(format: "p-{args.ref}")',
      /cannot read \{args\.ref\}: it is not a scalar or enum/,
    ],
    ['x(id: ID): Int @cacheTag(format: "p-{id}")', /the placeholder \{id\}; a placeholder names an argument/],
    ['x(id: ID): Int @cacheTag(format: "p-{args.id")', /a brace that opens or closes no placeholder/],
    ['x: Int @cacheTag(format: "")', /must be a non-empty string/],
  ]
  for (const [field, message] of cases) {
    it(`refuses ${field}`, () => {
      expect(attempt(field)).toThrow(StrataSchemaError)
      expect(attempt(field)).toThrow(message)
    })
  }
  it('refuses @invalidates(cacheTags:) naming an argument its field lacks', () => {
    const mutation = 'n(id: ID): Boolean @invalidates(cacheTags: ["q-{args.nope}"])'
    expect(attempt('x: Int', {}, mutation)).toThrow(/@invalidates on Mutation\.n: .*n has no argument "nope"/)
  })
  it('names the interface field that holds a bad format, implemented or not', () => {
    const load = (implemented: boolean) => () => {
      const schema = createSchema({
        typeDefs: /* GraphQL */ `
          ${strataDirectivesSdl}
          interface Feed { h(id: ID): String @cacheTag(format: "x-{args.nope}") }
          ${implemented ? 'type Home implements Feed { h(id: ID): String }' : ''}
          type Query { f: Feed }
        `,
        resolvers: { Feed: { __resolveType: () => 'Home' } },
      })
      const plugin = useStrata({ tenant: false })
      createYoga({ schema, plugins: [plugin as never], logging: false })
    }
    expect(load(true)).toThrow(/@cacheTag on Feed\.h[: ].*h has no argument "nope"/)
    expect(load(false)).toThrow(/@cacheTag on Feed\.h: .*h has no argument "nope"/)
  })
  it('refuses a cacheTags option for a field the schema lacks', () => {
    expect(attempt('x: Int', { cacheTags: { 'Query.y': ['t'] } })).toThrow(
      /option `cacheTags` names "Query.y"/,
    )
  })
  it('accepts valid tags (the same helper, so the refusals above are not its own doing)', () => {
    expect(
      attempt(
        'x(id: ID, ref: Ref): Int @cacheTag(format: "p-{args.id}-{args.ref.id}") @cacheTag(format: "all")',
      ),
    ).not.toThrow()
  })
})
