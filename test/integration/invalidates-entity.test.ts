import { createSchema, createYoga } from 'graphql-yoga'
import { afterEach, describe, expect, it } from 'vitest'
import { type StrataOptions, StrataSchemaError, strataDirectivesSdl, useStrata } from '../../src/index.js'
import { startServer, type TestServer } from '../support/server.js'

const servers: TestServer[] = []
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()))
})

const typeDefs = /* GraphQL */ `
  ${strataDirectivesSdl}
  scalar Slug
  scalar Fragile
  scalar Pair
  type Post @cacheControl(maxAge: 60) { id: ID! title: String! }
  type Edition @cacheControl(maxAge: 60) { book: Int! year: Int! title: String! }
  input ArchiveInput { post: PostRef! reason: String }
  input PostRef { id: ID }
  enum Kind { NEWS OPINION }
  type Label @cacheControl(maxAge: 60) { kind: Kind! title: String! }
  type Query {
    post(id: ID!): Post
    posts: [Post!]!
    edition(book: Int!, year: Int!): Edition
    bySlug(slug: Slug!): Post
    label(kind: Kind!): Label
    byPair(pair: Pair!): Post
  }
  type Mutation {
    removePost(id: ID!): Boolean! @invalidates(entity: "Post")
    archivePost(input: ArchiveInput!): Boolean! @invalidates(entity: "Post", keyArgs: ["input.post.id"])
    removePosts(ids: [ID!]!): Int! @invalidates(entity: "Post", keyArgs: ["ids"])
    retitleEdition(b: Int!, y: Int!, title: String!): Boolean!
      @invalidates(entity: "Edition", keyArgs: ["b", "y"])
    removeBySlug(slug: Slug!): Boolean! @invalidates(entity: "Post", keyArgs: ["slug"])
    denied(id: ID!): Boolean! @invalidates(entity: "Post")
    removeFragile(key: Fragile!): Boolean! @invalidates(entity: "Post", keyArgs: ["key"])
    plain(id: ID!): Boolean!
    relabel(kind: Kind!, title: String!): Boolean! @invalidates(entity: "Label")
    removeByPair(pair: Pair!): Boolean! @invalidates(entity: "Post", keyArgs: ["pair"])
  }
`

function blog() {
  const posts = new Map(['1', '2', '3', 'slug-4'].map((id) => [id, { id, title: `Post ${id}` }]))
  const editions = new Map([
    ['1:2020', { book: 1, year: 2020, title: 'First' }],
    ['1:2021', { book: 1, year: 2021, title: 'Second' }],
  ])
  // Kind's internal values are not its names (as with an enum mapped to database values).
  const labels = new Map([
    ['news', { kind: 'news', title: 'News' }],
    ['opinion', { kind: 'opinion', title: 'Opinion' }],
  ])
  // Posts whose id is a pair, named by the `Pair` scalar (parsed to an array).
  const paired = new Map([['7-8', { id: '7-8', title: 'Paired' }]])
  const calls = { post: 0 }
  const remove = (id: string) => {
    posts.delete(id)
    return true
  }
  const schema = createSchema({
    typeDefs,
    resolvers: {
      // A custom scalar whose internal value is not what results show: `Slug` parses
      // "slug-4" to { raw: "4" } and serializes it back.
      Slug: {
        parseValue: (value: unknown) => ({ raw: String(value).replace(/^slug-/, '') }),
        parseLiteral: (ast: { value?: string }) => ({ raw: String(ast.value).replace(/^slug-/, '') }),
        serialize: (value: unknown) =>
          typeof value === 'string' ? value : `slug-${(value as { raw: string }).raw}`,
      },
      Kind: { NEWS: 'news', OPINION: 'opinion' },
      // A custom scalar whose internal value is an array: "7-8" parses to ["7", "8"].
      Pair: {
        parseValue: (value: unknown) => String(value).split('-'),
        parseLiteral: (ast: { value?: string }) => String(ast.value).split('-'),
        serialize: (value: unknown) => (Array.isArray(value) ? value.join('-') : String(value)),
      },
      // A scalar whose serialize fails on its own parsed value (a bug in user code).
      Fragile: {
        parseValue: (value: unknown) => ({ wrapped: value }),
        parseLiteral: (ast: { value?: string }) => ({ wrapped: ast.value }),
        serialize: () => {
          throw new TypeError('Fragile cannot serialize')
        },
      },
      Query: {
        byPair: (_: unknown, { pair }: { pair: string[] }) => paired.get(pair.join('-')) ?? null,
        label: (_: unknown, { kind }: { kind: string }) => labels.get(kind) ?? null,
        post: (_: unknown, { id }: { id: string }) => {
          calls.post++
          return posts.get(id) ?? null
        },
        posts: () => [...posts.values()],
        edition: (_: unknown, { book, year }: { book: number; year: number }) =>
          editions.get(`${book}:${year}`) ?? null,
        bySlug: (_: unknown, { slug }: { slug: { raw: string } }) => posts.get(`slug-${slug.raw}`) ?? null,
      },
      Mutation: {
        removePost: (_: unknown, { id }: { id: string }) => remove(id),
        archivePost: (_: unknown, { input }: { input: { post: { id?: string } } }) =>
          input.post.id ? remove(input.post.id) : true,
        removePosts: (_: unknown, { ids }: { ids: string[] }) => ids.filter(remove).length,
        retitleEdition: (_: unknown, { b, y, title }: { b: number; y: number; title: string }) => {
          const edition = editions.get(`${b}:${y}`)
          if (edition) edition.title = title
          return true
        },
        removeBySlug: (_: unknown, { slug }: { slug: { raw: string } }) => remove(`slug-${slug.raw}`),
        removeFragile: (_: unknown, { key }: { key: { wrapped: string } }) => remove(key.wrapped),
        denied: () => {
          throw new Error('not allowed')
        },
        plain: (_: unknown, { id }: { id: string }) => remove(id),
        removeByPair: (_: unknown, { pair }: { pair: string[] }) => paired.delete(pair.join('-')),
        relabel: (_: unknown, { kind, title }: { kind: string; title: string }) => {
          const label = labels.get(kind)
          if (label) label.title = title
          return true
        },
      },
    },
  })
  return { schema, posts, calls }
}

async function start(options: Partial<StrataOptions> = {}) {
  const { schema, calls } = blog()
  const plugin = useStrata({
    tenant: false,
    keyFields: { Edition: ['book', 'year'], Label: ['kind'] },
    ...options,
  })
  const server = await startServer({ schema, plugins: [plugin as never] })
  servers.push(server)
  return { server, calls }
}

const ONE = 'query($id: ID!) { post(id: $id) { id title } }'
/** Reads each post once more and tells which were served from the cache. */
async function cached(server: TestServer, ids: string[]): Promise<string[]> {
  const hits: string[] = []
  for (const id of ids) if ((await server.query(ONE, { id })).cache === 'HIT') hits.push(id)
  return hits
}

/** Caches `query` (asserting the second read is a hit), runs `mutation`, and reads `query` again. */
async function hitThenMutate(server: TestServer, query: string, mutation: string) {
  await server.query(query)
  expect((await server.query(query)).cache).toBe('HIT')
  await server.query(mutation)
  return server.query(query)
}

describe('@invalidates(entity:): a mutation that returns no object invalidates the one its arguments name', () => {
  it('by the argument named like the key field: that post and lists of posts, not the other posts', async () => {
    const { server } = await start()
    await cached(server, ['1', '2', '3'])
    await server.query('{ posts { id } }')
    const removed = await server.query('mutation { removePost(id: "2") }')
    expect(removed.json.data).toEqual({ removePost: true })
    expect(await cached(server, ['1', '2', '3'])).toEqual(['1', '3'])
    const list = await server.query('{ posts { id } }')
    expect(list.cache).toBe('MISS')
    expect(list.json.data?.posts).toEqual([{ id: '1' }, { id: '3' }, { id: 'slug-4' }])
  })

  it('through a variable and an input object path; a key the arguments leave out invalidates the whole type', async () => {
    const { server } = await start()
    await cached(server, ['1', '2', '3'])
    await server.query('mutation($input: ArchiveInput!) { archivePost(input: $input) }', {
      input: { post: { id: '3' }, reason: 'old' },
    })
    expect(await cached(server, ['1', '2', '3'])).toEqual(['1', '2'])
    // `input.post.id` is nullable and not given: which post changed is unknown.
    await server.query('mutation { archivePost(input: { post: {} }) }')
    expect(await cached(server, ['1', '2'])).toEqual([])
  })

  it('a list argument names each entity; a composite key is taken from several arguments', async () => {
    const { server } = await start()
    await cached(server, ['1', '2', '3'])
    await server.query('mutation { removePosts(ids: ["1", "3"]) }')
    expect(await cached(server, ['1', '2', '3'])).toEqual(['2'])

    const EDITION = 'query($y: Int!) { edition(book: 1, year: $y) { book year title } }'
    await server.query(EDITION, { y: 2020 })
    await server.query(EDITION, { y: 2021 })
    await server.query('mutation { retitleEdition(b: 1, y: 2021, title: "Revised") }')
    expect((await server.query(EDITION, { y: 2020 })).cache).toBe('HIT')
    const revised = await server.query(EDITION, { y: 2021 })
    expect(revised.cache).toBe('MISS')
    expect(revised.json.data).toEqual({ edition: { book: 1, year: 2021, title: 'Revised' } })
  })

  it('a custom scalar key is compared as results show it (serialized), not as the resolver receives it', async () => {
    const { server } = await start()
    const after = await hitThenMutate(
      server,
      '{ bySlug(slug: "slug-4") { id title } }',
      'mutation { removeBySlug(slug: "slug-4") }',
    )
    expect(after.cache).toBe('MISS')
    expect(after.json.data).toEqual({ bySlug: null })
  })

  it('a key given by a variable is taken as coerced: its default when not given, an enum by its internal value', async () => {
    const { server } = await start()
    await cached(server, ['1', '2', '3'])
    const removed = await server.query('mutation($id: ID! = "2") { removePost(id: $id) }')
    expect(removed.status).toBe(200)
    expect(removed.json).toEqual({ data: { removePost: true } })
    expect(await cached(server, ['1', '2', '3'])).toEqual(['1', '3'])

    const LABEL = 'query($kind: Kind!) { label(kind: $kind) { kind title } }'
    await server.query(LABEL, { kind: 'NEWS' })
    await server.query(LABEL, { kind: 'OPINION' })
    const relabeled = await server.query(
      'mutation($kind: Kind!) { relabel(kind: $kind, title: "Headlines") }',
      {
        kind: 'NEWS',
      },
    )
    expect(relabeled.status).toBe(200)
    expect(relabeled.json).toEqual({ data: { relabel: true } })
    expect((await server.query(LABEL, { kind: 'OPINION' })).cache).toBe('HIT')
    const after = await server.query(LABEL, { kind: 'NEWS' })
    expect(after.cache).toBe('MISS')
    expect(after.json.data).toEqual({ label: { kind: 'NEWS', title: 'Headlines' } })
  })

  it('a custom scalar whose value is an array names one entity: only a list argument names several', async () => {
    const { server } = await start()
    const after = await hitThenMutate(
      server,
      '{ byPair(pair: "7-8") { id title } }',
      'mutation { removeByPair(pair: "7-8") }',
    )
    expect(after.cache).toBe('MISS')
    expect(after.json.data).toEqual({ byPair: null })
  })

  it('a key that cannot be read (its scalar throws) invalidates the whole type, and the mutation still answers', async () => {
    const { server } = await start()
    await cached(server, ['1', '2'])
    const removed = await server.query('mutation { removeFragile(key: "1") }')
    expect(removed.json).toEqual({ data: { removeFragile: true } })
    expect(await cached(server, ['1', '2'])).toEqual([])
  })

  it('a field that fails invalidates nothing; one without the directive only what its result shows', async () => {
    const { server } = await start()
    await cached(server, ['1', '2'])
    const denied = await server.query('mutation { denied(id: "1") }')
    expect(denied.json.errors?.[0]?.message).toBe('not allowed')
    await server.query('mutation { plain(id: "2") }')
    expect(await cached(server, ['1', '2'])).toEqual(['1', '2'])
  })

  it('the config form replaces the directive, with the same checks', async () => {
    const { server } = await start({
      invalidates: { 'Mutation.plain': { entity: 'Post' }, 'Mutation.removePost': ['Edition'] },
    })
    await cached(server, ['1', '2', '3'])
    await server.query('mutation { plain(id: "1") }')
    await server.query('mutation { removePost(id: "3") }') // now invalidates Editions only
    expect(await cached(server, ['1', '2', '3'])).toEqual(['2', '3'])
  })
})

describe('@invalidates(entity:) is checked when the schema loads', () => {
  const attempt = (mutation: string, extra = '') => {
    const schema = createSchema({
      typeDefs: /* GraphQL */ `
        ${strataDirectivesSdl}
        type Post { id: ID! title: String! }
        type Edition { book: Int! year: Int! }
        interface Node { id: ID! }
        input Ref { id: ID! }
        ${extra}
        type Query { post: Post }
        type Mutation { ${mutation} }
      `,
    })
    const plugin = useStrata({ tenant: false, keyFields: { Edition: ['book', 'year'] } })
    return () => createYoga({ schema, plugins: [plugin as never], logging: false })
  }
  const cases: [string, RegExp][] = [
    [
      'm(id: ID!): Boolean @invalidates(entity: "Nope")',
      /Mutation\.m names entity "Nope", which is not an object type/,
    ],
    ['m(id: ID!): Boolean @invalidates(entity: "Node")', /names entity "Node", which is not an object type/],
    ['m(postId: ID!): Boolean @invalidates(entity: "Post")', /argument "id": m has no argument "id"/],
    ['m(ref: Ref!): Boolean @invalidates(entity: "Post", keyArgs: ["ref.key"])', /Ref has no field "key"/],
    [
      'm(id: ID!): Boolean @invalidates(entity: "Post", keyArgs: ["id.x"])',
      /"x" is not a field of an input object/,
    ],
    ['m(ref: Ref!): Boolean @invalidates(entity: "Post", keyArgs: ["ref"])', /not a scalar or enum value/],
    [
      'm(b: Int!): Boolean @invalidates(entity: "Edition", keyArgs: ["b"])',
      /gives 1 keyArgs for Edition, whose key has 2 fields/,
    ],
    [
      'm(b: [Int!]!, y: Int!): Boolean @invalidates(entity: "Edition", keyArgs: ["b", "y"])',
      /composite key cannot pair up/,
    ],
    ['m: Boolean @invalidates', /names nothing/],
    // Without `entity`, `keyArgs` would be ignored: the whole type, or nothing, is invalidated instead.
    ['m(id: ID!): Boolean @invalidates(types: ["Post"], keyArgs: ["id"])', /keyArgs needs an `entity`/],
    ['m(id: ID!): Boolean @invalidates(keyArgs: ["id"])', /keyArgs needs an `entity`/],
  ]
  for (const [mutation, message] of cases) {
    it(`refuses ${mutation}`, () => {
      expect(attempt(mutation)).toThrow(StrataSchemaError)
      expect(attempt(mutation)).toThrow(message)
    })
  }
  it('accepts a valid declaration (the same helper, so the refusals above are not its own doing)', () => {
    expect(attempt('m(id: ID!): Boolean @invalidates(entity: "Post")')).not.toThrow()
  })
})
