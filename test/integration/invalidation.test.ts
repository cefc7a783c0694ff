import { createSchema } from 'graphql-yoga'
import { afterEach, describe, expect, it } from 'vitest'
import {
  type CacheTier,
  memoryTier,
  type StrataOptions,
  strataDirectivesSdl,
  useStrata,
} from '../../src/index.js'
import { BlogStore, blogSchema } from '../support/blog.js'
import { deferItemsSchema } from '../support/items.js'
import { startServer, type TestServer } from '../support/server.js'

const servers: TestServer[] = []
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()))
})

async function start(options: Partial<StrataOptions> = {}, store = new BlogStore()) {
  const plugin = useStrata({ tenant: false, ...options } as StrataOptions)
  const server = await startServer({ schema: blogSchema(store), plugins: [plugin as never] })
  servers.push(server)
  return { server, store, strata: plugin.strata }
}

const LIST = '{ posts { id title } }'
const ONE = 'query($id: ID!) { post(id: $id) { id title } }'
const PUBLISHED = '{ publishedPosts { id } }'

describe('mutation invalidation', () => {
  it('an update invalidates the entity and every list that shows it, before the response', async () => {
    const { server } = await start()
    await server.query(LIST)
    await server.query(ONE, { id: '2' })
    await server.query(ONE, { id: '1' })
    await server.query('mutation { updatePost(id: "2", title: "Edited") { id title } }')
    const list = await server.query(LIST)
    const one = await server.query(ONE, { id: '2' })
    expect(list.cache).toBe('MISS')
    expect(one.cache).toBe('MISS')
    expect(JSON.stringify(list.json)).toContain('Edited')
    expect(one.json.data?.post).toEqual({ id: '2', title: 'Edited' })
    expect((await server.query(ONE, { id: '1' })).cache).toBe('HIT')
  })

  it('finds the entity however the client selects its key field (or not at all)', async () => {
    const { server } = await start()
    const shapes = [
      'query($id: ID!) { post(id: $id) { title } }',
      'query($id: ID!) { post(id: $id) { myId: id title } }',
      'query($id: ID!, $withId: Boolean!) { post(id: $id) { id @include(if: $withId) title } }',
      'query($id: ID!) { post(id: $id) { ...F } } fragment F on Post { id title }',
      'query($id: ID!) { node(id: $id) { ... on Post { title } } }',
    ]
    for (const query of shapes) await server.query(query, { id: '2', withId: false })
    for (const query of shapes)
      expect((await server.query(query, { id: '2', withId: false })).cache, query).toBe('HIT')
    await server.query('mutation { updatePost(id: "2", title: "Renamed") { id } }')
    for (const query of shapes) {
      const after = await server.query(query, { id: '2', withId: false })
      expect(after.cache, query).toBe('MISS')
      expect(after.text, query).toContain('Renamed')
      expect(after.text, query).not.toContain('__strata')
    }
  })

  it('a create invalidates cached lists of that type', async () => {
    const { server } = await start()
    await server.query(LIST)
    expect((await server.query(LIST)).cache).toBe('HIT')
    await server.query('mutation { createPost(title: "Fresh") { id } }')
    const after = await server.query(LIST)
    expect(after.cache).toBe('MISS')
    expect(after.json.data?.posts).toContainEqual({ id: '4', title: 'Fresh' })
  })

  it('a create invalidates a cached null for that type', async () => {
    const { server } = await start()
    expect((await server.query(ONE, { id: '4' })).json.data?.post).toBeNull()
    expect((await server.query(ONE, { id: '4' })).cache).toBe('HIT')
    await server.query('mutation { createPost(title: "Four") { id } }')
    expect((await server.query(ONE, { id: '4' })).json.data?.post).toEqual({ id: '4', title: 'Four' })
  })

  it('an update that moves an entity out of a filtered list invalidates that list', async () => {
    const { server } = await start()
    expect((await server.query(PUBLISHED)).json.data?.publishedPosts).toHaveLength(3)
    await server.query('mutation { unpublishPost(id: "1") { id } }')
    const after = await server.query(PUBLISHED)
    expect(after.cache).toBe('MISS')
    expect(after.json.data?.publishedPosts).toHaveLength(2)
  })

  it('an entity nested in a mutation result invalidates too (related lists)', async () => {
    const { server } = await start()
    const authorPosts = '{ node(id: "a1") { ... on Author { name posts { id } } } }'
    await server.query(authorPosts)
    expect((await server.query(authorPosts)).cache).toBe('HIT')
    await server.query('mutation { createPost(title: "By Ada", authorId: "a1") { id author { id } } }')
    const after = await server.query(authorPosts)
    expect(after.cache).toBe('MISS')
    expect(JSON.stringify(after.json)).toContain('"id":"4"')
  })

  it('@invalidates(types:) purges everything depending on the type when the result has no entity', async () => {
    const { server } = await start()
    await server.query(LIST)
    await server.query(ONE, { id: '1' })
    await server.query('{ tags { label } }')
    await server.query('mutation { deletePost(id: "1") }')
    expect((await server.query(ONE, { id: '1' })).json.data?.post).toBeNull()
    expect((await server.query(LIST)).json.data?.posts).toHaveLength(2)
    expect((await server.query('{ tags { label } }')).cache).toBe('HIT')
  })

  it('an error below a mutation field that ran does not cancel what it declares, even when it nulls data', async () => {
    const { server } = await start()
    for (const [mutation, id] of [
      ['mutation { purgePost(id: "1") { deleted note } }', '1'],
      ['mutation { purgePostStrict(id: "2") { deleted strictNote } }', '2'],
    ] as const) {
      await server.query(ONE, { id })
      expect((await server.query(ONE, { id })).cache).toBe('HIT')
      const done = await server.query(mutation)
      expect(done.json.errors?.[0]?.message).toBe('note failed')
      expect((await server.query(ONE, { id })).json.data?.post).toBeNull()
    }
  })

  it('a mutation field that fails invalidates nothing it declares', async () => {
    const { server } = await start()
    await server.query(ONE, { id: '1' })
    const denied = await server.query('mutation { deletePost(id: "1") }', {}, { 'x-forbidden': '1' })
    expect(denied.json.errors?.[0]?.message).toBe('forbidden')
    expect((await server.query(ONE, { id: '1' })).cache).toBe('HIT')
  })

  it('the invalidates option declares the same for code-first schemas', async () => {
    const { server } = await start({ invalidates: { 'Mutation.touchNothing': ['Tag'] } })
    await server.query('{ tags { label } }')
    await server.query('mutation { touchNothing }')
    expect((await server.query('{ tags { label } }')).cache).toBe('MISS')
  })

  it('invalidateOnMutation: false leaves entries in place', async () => {
    const { server } = await start({ invalidateOnMutation: false })
    await server.query(LIST)
    await server.query('mutation { updatePost(id: "2", title: "Edited") { id } }')
    expect((await server.query(LIST)).cache).toBe('HIT')
  })

  it('the mutation response is sent only after every tier finished invalidating', async () => {
    const events: string[] = []
    const inner = memoryTier({ name: 'slow' })
    const slow: CacheTier = {
      ...inner,
      name: 'slow',
      async invalidate(tags) {
        await new Promise((r) => setTimeout(r, 150))
        events.push('invalidated')
        return inner.invalidate(tags)
      },
    }
    const { server } = await start({ tiers: [memoryTier(), slow] })
    await server.query(LIST)
    await server.query('mutation { updatePost(id: "2", title: "Edited") { id } }')
    events.push('response')
    expect(events).toEqual(['invalidated', 'response'])
  })

  it('programmatic invalidation of an entity with a composite key, by its values or joined', async () => {
    const schema = createSchema({
      typeDefs: /* GraphQL */ `
        ${strataDirectivesSdl}
        type Line @cacheControl(maxAge: 60) { orderId: ID! pos: Int! title: String! }
        type Query { line(orderId: ID!, pos: Int!): Line }
      `,
      resolvers: {
        Query: { line: (_: unknown, args: { orderId: string; pos: number }) => ({ ...args, title: 'v1' }) },
      },
    })
    const plugin = useStrata({ tenant: false, keyFields: { Line: ['orderId', 'pos'] } })
    const server = await startServer({ schema, plugins: [plugin as never] })
    servers.push(server)
    const line = (pos: number) => server.query(`{ line(orderId: "7", pos: ${pos}) { title } }`)
    await line(1)
    await line(2)
    expect(await plugin.strata.invalidateEntities('Line', [['7', 1]])).toEqual({ memory: 1 })
    expect((await line(1)).cache).toBe('MISS')
    expect((await line(2)).cache).toBe('HIT')
    expect(await plugin.strata.invalidateEntities('Line', ['7:2'])).toEqual({ memory: 1 })
    expect((await line(2)).cache).toBe('MISS')
  })

  it('programmatic invalidation by entity, type, tag and clear', async () => {
    const { server, strata } = await start()
    await server.query(ONE, { id: '1' })
    await server.query(ONE, { id: '2' })
    expect(await strata.invalidateEntities('Post', ['1'])).toEqual({ memory: 1 })
    expect((await server.query(ONE, { id: '1' })).cache).toBe('MISS')
    expect((await server.query(ONE, { id: '2' })).cache).toBe('HIT')
    expect(await strata.invalidateTypes(['Post'])).toEqual({ memory: 2 })
    await server.query(LIST)
    expect(await strata.invalidateTags(['Post'])).toEqual({ memory: 1 })
    await server.query(LIST)
    expect(await strata.clear()).toEqual({ memory: 1 })
    expect((await server.query(LIST)).cache).toBe('MISS')
  })

  it('an entity whose key is null is invalidated by any change to its type', async () => {
    // A draft has no id yet; what it shows still comes from rows that change.
    let title = 'Draft'
    const schema = createSchema({
      typeDefs: `${strataDirectivesSdl}
        type Draft @cacheControl(maxAge: 60) { id: ID title: String! }
        type Query { draft: Draft }`,
      resolvers: { Query: { draft: () => ({ id: null, title }) } },
    })
    const plugin = useStrata({ tenant: false } as StrataOptions)
    const server = await startServer({ schema, plugins: [plugin as never] })
    servers.push(server)
    const query = '{ draft { title } }'
    expect((await server.query(query)).cache).toBe('MISS')
    expect((await server.query(query)).cache).toBe('HIT')
    title = 'Edited'
    expect(await plugin.strata.invalidateEntities('Draft', ['7'])).toEqual({ memory: 1 })
    const fresh = await server.query(query)
    expect(fresh.cache).toBe('MISS')
    expect(fresh.json.data?.draft).toEqual({ title: 'Edited' })
  })
})

describe('results without objects', () => {
  it('a count has no tag; on a keyless object type, @invalidates reaches it (the README’s advice)', async () => {
    let posts = 3
    const schema = createSchema({
      typeDefs: /* GraphQL */ `
        ${strataDirectivesSdl}
        type PostStats @cacheControl(maxAge: 60) { postCount: Int! }
        type Query { postCount: Int! @cacheControl(maxAge: 60) stats: PostStats! }
        type Mutation { deletePost: Boolean! @invalidates(types: ["PostStats"]) }
      `,
      resolvers: {
        Query: { postCount: () => posts, stats: () => ({ postCount: posts }) },
        Mutation: {
          deletePost: () => {
            posts--
            return true
          },
        },
      },
    })
    const server = await startServer({ schema, plugins: [useStrata({ tenant: false }) as never] })
    servers.push(server)
    await server.query('{ postCount }')
    await server.query('{ stats { postCount } }')
    await server.query('mutation { deletePost }')
    const count = await server.query('{ postCount }')
    expect(count.cache).toBe('HIT') // untagged: only its maxAge ends it
    expect(count.json.data).toEqual({ postCount: 3 })
    const stats = await server.query('{ stats { postCount } }')
    expect(stats.cache).toBe('MISS')
    expect(stats.json.data).toEqual({ stats: { postCount: 2 } })
  })
})

describe('a mutation using @defer or @stream', () => {
  it('answers in one result, without the rewrite, after invalidating what it changed', async () => {
    const items = new Map([['1', { id: '1', name: 'old' }]])
    const schema = deferItemsSchema(items)
    const server = await startServer({ schema, plugins: [useStrata({ tenant: false }) as never] })
    servers.push(server)
    const read = '{ item(id: "1") { name } }'
    await server.query(read)
    expect((await server.query(read)).cache).toBe('HIT')
    const response = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'multipart/mixed, application/json' },
      body: JSON.stringify({ query: 'mutation { rename(id: "1", name: "new") { ... @defer { name } } }' }),
    })
    const text = await response.text()
    expect(text).toContain('"name":"new"')
    expect(text).not.toContain('__strata')
    const after = await server.query(read)
    expect(after.cache).toBe('MISS')
    expect(after.json.data).toEqual({ item: { name: 'new' } })
  })
})

describe('concurrency', () => {
  it('does not store a result whose execution began before an invalidation of its tags', async () => {
    const store = new BlogStore()
    const { server, strata } = await start({ singleFlight: false }, store)
    const { started, release } = store.hold()
    const slowRead = server.query('{ slowPost(id: "1") { id title } }')
    await started
    await server.query('mutation { updatePost(id: "1", title: "New") { id } }')
    release()
    const stale = await slowRead
    expect(stale.json.data?.slowPost).toEqual({ id: '1', title: 'Post 1' })
    expect(strata.stats().skippedStores['invalidated-during-execution']).toBe(1)
    store.gate = undefined
    const fresh = await server.query('{ slowPost(id: "1") { id title } }')
    expect(fresh.cache).toBe('MISS')
    expect(fresh.json.data?.slowPost).toEqual({ id: '1', title: 'New' })
  })

  it('executes concurrent identical misses once and gives every caller the result', async () => {
    const store = new BlogStore()
    const { server, strata } = await start({}, store)
    const { started, release } = store.hold()
    const requests = Array.from({ length: 10 }, () => server.query('{ slowPost(id: "2") { id title } }'))
    await started
    await new Promise((r) => setTimeout(r, 50))
    release()
    const responses = await Promise.all(requests)
    expect(store.calls.slowPost).toBe(1)
    expect(new Set(responses.map((r) => r.text)).size).toBe(1)
    expect(responses[0]?.json.data?.slowPost).toEqual({ id: '2', title: 'Post 2' })
    expect(strata.stats().coalesced).toBe(9)
    expect(responses.every((r) => r.cache === 'MISS')).toBe(true)
    // Waiters are answered with the headers of the entry they share, as the leader and its hits are.
    for (const response of responses) {
      expect(response.headers.get('cache-control')).toMatch(/^max-age=(59|60), public$/)
      expect(response.headers.get('etag')).toBe(responses[0]?.headers.get('etag'))
    }
    expect(responses[0]?.headers.get('etag')).toMatch(/^W\//)
  })

  it('a request waits for an identical execution at most singleFlight.maxWaitMs, then executes on its own', async () => {
    const store = new BlogStore()
    const { server, strata } = await start({ singleFlight: { maxWaitMs: 200 } }, store)
    const { started, release } = store.hold()
    const hung = server.query('{ slowPost(id: "2") { id title } }')
    await started
    store.gate = undefined // reads from now on answer at once; the first one still hangs
    // Were it held by the hung execution, this would not resolve before release().
    const waiter = await server.query('{ slowPost(id: "2") { id title } }')
    expect(waiter.cache).toBe('MISS')
    expect(waiter.json.data?.slowPost).toEqual({ id: '2', title: 'Post 2' })
    expect(store.calls.slowPost).toBe(2)
    expect(strata.stats().flightWaitTimeouts).toBe(1)
    release()
    expect((await hung).json.data?.slowPost).toEqual({ id: '2', title: 'Post 2' })
  })

  it('a request arriving after a mutation does not join a flight that began before it', async () => {
    const store = new BlogStore()
    const { server } = await start({}, store)
    const { started, release } = store.hold()
    const early = server.query('{ slowPost(id: "3") { id title } }')
    await started
    await server.query('mutation { updatePost(id: "3", title: "Changed") { id } }')
    store.gate = undefined
    const late = await server.query('{ slowPost(id: "3") { id title } }')
    release()
    expect((await early).json.data?.slowPost).toEqual({ id: '3', title: 'Post 3' })
    expect(late.json.data?.slowPost).toEqual({ id: '3', title: 'Changed' })
    expect(store.calls.slowPost).toBe(2)
  })

  it('waiters execute on their own when the leader fails', async () => {
    const store = new BlogStore()
    const { server } = await start({}, store)
    const results = await Promise.all(Array.from({ length: 4 }, () => server.query('{ broken { id } }')))
    for (const r of results) expect(r.json.errors?.[0]?.message).toBe('boom')
  })
})
