import { GraphQLError } from 'graphql'
import { createSchema, createYoga } from 'graphql-yoga'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { memoryTier, type StrataOptions, strataDirectivesSdl, useStrata } from '../../src/index.js'
import { BlogStore, blogSchema } from '../support/blog.js'
import { deferItemsSchema } from '../support/items.js'
import { startServer, type TestServer } from '../support/server.js'

const servers: TestServer[] = []
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()))
})

type Ctx = { request: Request }
const byHeader =
  (name: string) =>
  ({ context }: { context: Ctx }) =>
    context.request.headers.get(name)

/** What a server without Strata answers. */
async function uncached(yoga: ReturnType<typeof createYoga>, query: string): Promise<string> {
  const response = await yoga.fetch('http://localhost/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json' },
    body: JSON.stringify({ query }),
  })
  return response.text()
}

async function start(options: Partial<StrataOptions<Ctx>> = {}, store = new BlogStore()) {
  const plugin = useStrata<Ctx>({ tenant: false, ...options } as StrataOptions<Ctx>)
  const server = await startServer({ schema: blogSchema(store), plugins: [plugin as never] })
  servers.push(server)
  return { server, store, strata: plugin.strata }
}

describe('hits and misses through Yoga over HTTP', () => {
  it('serves a MISS, then a HIT with a byte-identical body, without executing again', async () => {
    const { server, store } = await start()
    const query = '{ posts { id title author { id name } } }'
    const miss = await server.query(query)
    const hit = await server.query(query)
    expect(miss.cache).toBe('MISS')
    expect(hit.cache).toBe('HIT')
    expect(hit.text).toBe(miss.text)
    expect(hit.headers.get('content-type')).toBe(miss.headers.get('content-type'))
    expect(store.calls.posts).toBe(1)
  })

  it('returns exactly what an uncached server returns (aliases, fragments, unions, interfaces, nested lists)', async () => {
    const store = new BlogStore()
    const { server } = await start({}, store)
    const plain = createYoga({ schema: blogSchema(store), logging: false })
    const queries = [
      '{ posts { id title author { name posts { id title } } } }',
      '{ a: posts(first: 1) { myId: id t: title, author { __typename n: name } } b: posts { id } }',
      'query Q { search(text: "Post") { __typename ... on Post { id title } ... on Author { name } } }',
      '{ node(id: "1") { id ... on Post { title author { id } } } }',
      'fragment P on Post { title author { ...A } } fragment A on Author { name } { posts { ...P id } }',
      '{ tags { label } }',
      '{ post(id: "404") { id } }',
      '{ __schema { queryType { name fields { name } } } __type(name: "Post") { name } posts { id } }',
    ]
    for (const query of queries) {
      const expected = await uncached(plain, query)
      const miss = await server.query(query)
      const hit = await server.query(query)
      expect(miss.text, query).toBe(expected)
      expect(hit.text, query).toBe(expected)
      expect(hit.cache, query).toBe('HIT')
      expect(miss.text).not.toContain('__strata')
    }
  })

  it('keys by canonical variables: key order does not matter, values do', async () => {
    const { server, store } = await start()
    const query = 'query($id: ID!, $x: Int!) { post(id: $id) { id title } big(size: $x) }'
    expect((await server.query(query, { id: '1', x: 3 })).cache).toBe('MISS')
    expect((await server.query(query, { x: 3, id: '1' })).cache).toBe('HIT')
    const other = await server.query(query, { id: '2', x: 3 })
    expect(other.cache).toBe('MISS')
    expect(other.json.data?.post).toEqual({ id: '2', title: 'Post 2' })
    expect(store.calls.post).toBe(2)
  })

  it('keys by operation name within one document', async () => {
    const { server } = await start()
    const doc = 'query A { posts { id } } query B { posts { title } }'
    const fetchOp = (operationName: string) =>
      fetch(server.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: doc, operationName }),
      })
    const a = await fetchOp('A')
    const b = await fetchOp('B')
    expect(a.headers.get('x-strata-cache')).toBe('MISS')
    expect(b.headers.get('x-strata-cache')).toBe('MISS')
    expect(await b.text()).toContain('title')
    expect((await fetchOp('A')).headers.get('x-strata-cache')).toBe('HIT')
  })

  it('counts operations named __proto__ or constructor as themselves, and later requests still work', async () => {
    const { server, strata } = await start()
    for (const name of ['__proto__', 'constructor', 'toString']) {
      expect((await server.query(`query ${name} { posts { id } }`)).cache).toBe('MISS')
      expect((await server.query(`query ${name} { posts { id } }`)).cache).toBe('HIT')
    }
    expect(({} as Record<string, unknown>).misses).toBeUndefined()
    const after = await server.query('{ posts { id } }')
    expect(after.status).toBe(200)
    expect(after.cache).toBe('MISS')
    const { byOperation } = strata.stats()
    for (const name of ['__proto__', 'constructor', 'toString']) {
      expect(Object.getOwnPropertyDescriptor(byOperation, name)?.value).toEqual({
        hits: 1,
        misses: 1,
        bypasses: 0,
      })
    }
  })

  it('mixes extraKeyData into the key', async () => {
    const { server } = await start({
      extraKeyData: ({ context }) => ({ locale: context.request.headers.get('accept-language') }),
    })
    const q = '{ posts { id } }'
    expect((await server.query(q, {}, { 'accept-language': 'en' })).cache).toBe('MISS')
    expect((await server.query(q, {}, { 'accept-language': 'fr' })).cache).toBe('MISS')
    expect((await server.query(q, {}, { 'accept-language': 'en' })).cache).toBe('HIT')
  })

  it('bypasses when the enabled hook says no, neither reading nor writing', async () => {
    const { server, store, strata } = await start({
      enabled: ({ context }) => !context.request.headers.has('x-no-cache'),
    })
    const q = '{ posts { id } }'
    expect((await server.query(q, {}, { 'x-no-cache': '1' })).cache).toBe('BYPASS')
    expect((await server.query(q)).cache).toBe('MISS')
    expect((await server.query(q, {}, { 'x-no-cache': '1' })).cache).toBe('BYPASS')
    expect((await server.query(q)).cache).toBe('HIT')
    expect(store.calls.posts).toBe(3)
    expect(strata.stats().bypasses.disabled).toBe(2)
  })

  it('a forced refresh skips the lookup, executes, and replaces the stored entry that later requests hit', async () => {
    const { server, store } = await start({
      refresh: ({ context }) => context.request.headers.get('x-refresh') === '1',
    })
    const q = '{ posts { id title } }'
    await server.query(q)
    expect((await server.query(q)).cache).toBe('HIT')
    const post = store.posts.get('1')
    if (post) post.title = 'Changed behind the cache'
    const refreshed = await server.query(q, {}, { 'x-refresh': '1' })
    expect(refreshed.cache).toBe('MISS')
    expect(refreshed.text).toContain('Changed behind the cache')
    const after = await server.query(q)
    expect(after.cache).toBe('HIT')
    expect(after.text).toBe(refreshed.text)
    expect(store.calls.posts).toBe(2)
  })

  it('uses a configurable header name and sends cache-control', async () => {
    const { server } = await start({ header: 'x-cache' })
    const res = await server.query('{ posts { id } }')
    expect(res.headers.get('x-cache')).toBe('MISS')
    expect(res.headers.get('x-strata-cache')).toBeNull()
    expect(res.headers.get('cache-control')).toBe('max-age=30, public')
    const uncached = await server.query('{ uncached }')
    expect(uncached.headers.get('cache-control')).toBe('no-store')
  })

  it('adds extensions.strata only when debug is on', async () => {
    const { server } = await start({ debug: true })
    const miss = await server.query('{ posts { id } }')
    const hit = await server.query('{ posts { id } }')
    expect(miss.json.extensions?.strata).toEqual({ hit: false, ttl: 30 })
    expect(hit.json.extensions?.strata).toMatchObject({ hit: true, tier: 'memory', age: 0 })
    expect(hit.json.data).toEqual(miss.json.data)
    const { server: quiet } = await start()
    expect((await quiet.query('{ posts { id } }')).json.extensions).toBeUndefined()
  })
})

/** A server with Yoga's error masking on (its default) and `cacheErrors`. */
async function startMaskedWithCacheErrors(): Promise<TestServer> {
  const plugin = useStrata({ tenant: false, cacheErrors: true })
  const server = await startServer({
    schema: blogSchema(new BlogStore()),
    plugins: [plugin],
    maskedErrors: true,
  })
  servers.push(server)
  return server
}

describe('never stored', () => {
  it('does not store results with errors, unless cacheErrors is on', async () => {
    const { server, strata } = await start()
    const first = await server.query('{ broken { id } }')
    expect(first.json.errors?.[0]?.message).toBe('boom')
    expect((await server.query('{ broken { id } }')).cache).toBe('MISS')
    expect(strata.stats().skippedStores.errors).toBe(2)
  })

  it('with cacheErrors, stores only errors raised on purpose (GraphQLError), never unexpected ones', async () => {
    const { server } = await start({ cacheErrors: true })
    const a = await server.query('{ notFound { id } posts { id } }')
    const b = await server.query('{ notFound { id } posts { id } }')
    expect(a.json.errors?.[0]?.extensions?.code).toBe('NOT_FOUND')
    expect(b.cache).toBe('HIT')
    expect(b.text).toBe(a.text)
    // The stored miss tells HTTP caches what its hits tell them.
    expect(a.headers.get('cache-control')).toMatch(/^max-age=\d+, public$/)
    expect(b.headers.get('cache-control')).toMatch(/^max-age=\d+, public$/)
    const unexpected = await server.query('{ broken { id } posts { id } }')
    expect(unexpected.headers.get('cache-control')).toBe('no-store')
    expect((await server.query('{ broken { id } posts { id } }')).cache).toBe('MISS')
  })

  it("with cacheErrors and Yoga's error masking (its default), a stored error's miss and hits still send its maxAge", async () => {
    // Masking copies every result with errors (its errors masked): a GraphQLError is let through as is.
    const server = await startMaskedWithCacheErrors()
    const a = await server.query('{ notFound { id } posts { id } }')
    const b = await server.query('{ notFound { id } posts { id } }')
    expect(a.json.errors?.[0]?.extensions?.code).toBe('NOT_FOUND')
    expect([b.cache, b.text]).toEqual(['HIT', a.text])
    expect(a.headers.get('cache-control')).toMatch(/^max-age=\d+, public$/)
    expect(b.headers.get('cache-control')).toMatch(/^max-age=\d+, public$/)
  })

  it('a HIT never reveals an error that masking hid on the MISS', async () => {
    const server = await startMaskedWithCacheErrors()
    const miss = await server.query('{ broken { id } posts { id } }')
    const again = await server.query('{ broken { id } posts { id } }')
    expect(miss.json.errors?.[0]?.message).toBe('Unexpected error.')
    expect(again.cache).toBe('MISS')
    expect(again.text).not.toContain('boom')
  })

  it('shouldStore has the last say: it sees the request and the result as the client gets it', async () => {
    const seen: { data: unknown; variables: unknown }[] = []
    const { server, strata } = await start({
      shouldStore: ({ context, result, variables }) => {
        seen.push({ data: result.data, variables })
        const verdict = context.request.headers.get('x-store')
        if (verdict === 'throw') throw new Error('user callback failed')
        return verdict !== 'no'
      },
    })
    const query = 'query($n: Int) { posts(first: $n) { id } }'
    for (const verdict of ['no', 'throw']) {
      const headers = { 'x-store': verdict }
      const first = await server.query(query, { n: 2 }, headers)
      expect(first.json.data?.posts).toHaveLength(2)
      expect((await server.query(query, { n: 2 }, headers)).cache).toBe('MISS')
    }
    await server.query(query, { n: 2 })
    expect((await server.query(query, { n: 2 })).cache).toBe('HIT')
    expect(strata.stats().skippedStores.declined).toBe(4)
    expect(seen[0]).toEqual({ data: { posts: [{ id: '1' }, { id: '2' }] }, variables: { n: 2 } })
  })

  it('a result shouldStore declines is sent no-store, without an etag: no HTTP cache keeps it either', async () => {
    const { server } = await start({ shouldStore: () => false })
    const declined = await server.query('{ posts { id } }')
    expect(declined.cache).toBe('MISS')
    expect(declined.headers.get('cache-control')).toBe('no-store')
    expect(declined.headers.get('etag')).toBeNull()
  })

  it('does not store results whose maxAge is 0', async () => {
    const { server, strata } = await start()
    await server.query('{ uncached }')
    expect((await server.query('{ uncached }')).cache).toBe('MISS')
    expect(strata.stats().skippedStores.uncacheable).toBe(2)
  })

  it('does not store results larger than maxEntryBytes', async () => {
    const { server, strata } = await start({ maxEntryBytes: 1000 })
    await server.query('{ big(size: 2000) }')
    expect((await server.query('{ big(size: 2000) }')).cache).toBe('MISS')
    expect(strata.stats().skippedStores['too-large']).toBe(2)
    await server.query('{ big(size: 500) }')
    expect((await server.query('{ big(size: 500) }')).cache).toBe('HIT')
  })

  it('never caches mutations', async () => {
    const { server, store } = await start()
    const m = 'mutation { touchNothing }'
    expect((await server.query(m)).cache).toBe('BYPASS')
    expect((await server.query(m)).cache).toBe('BYPASS')
    expect((await server.query(m)).headers.get('cache-control')).toBe('no-store')
    expect(store.posts.size).toBe(3)
  })

  it('marks requests that fail validation as BYPASS', async () => {
    const { server } = await start()
    const res = await server.query('{ nope }')
    expect(res.cache).toBe('BYPASS')
    expect(res.json.errors).toHaveLength(1)
  })
})

describe('tenancy and sessions', () => {
  it('never serves one tenant an entry of another', async () => {
    const { server, store } = await start({
      tenant: ({ context }) => {
        const raw = context.request.headers.get('x-tenant-id')
        return raw === null ? null : decodeURIComponent(raw)
      },
    })
    const q = '{ posts { id title } }'
    expect((await server.query(q, {}, { 'x-tenant-id': 'acme' })).cache).toBe('MISS')
    expect((await server.query(q, {}, { 'x-tenant-id': 'globex' })).cache).toBe('MISS')
    for (const tenant of ['acme:*', 'acme*', '', 'ac%6De', 'акме', 'acme:t:globex']) {
      const header = encodeURIComponent(tenant)
      expect((await server.query(q, {}, { 'x-tenant-id': header })).cache, tenant).toBe('MISS')
    }
    expect((await server.query(q, {}, { 'x-tenant-id': 'acme' })).cache).toBe('HIT')
    expect(store.calls.posts).toBe(8)
  })

  it('bypasses, counts and logs a request without a tenant while tenancy is on', async () => {
    const lines: string[] = []
    const logger = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) })
    const { server, strata } = await start({ tenant: byHeader('x-tenant-id'), logger })
    const q = '{ posts { id } }'
    await server.query(q, {}, { 'x-tenant-id': 'acme' })
    const res = await server.query(q)
    expect(res.cache).toBe('BYPASS')
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect((await server.query(q)).cache).toBe('BYPASS')
    expect(strata.stats().bypasses['no-tenant']).toBe(2)
    expect(lines.filter((l) => l.includes('without a tenant'))).toHaveLength(1)
  })

  it('a key field only Strata asked for that fails changes nothing the client sees, and nothing is stored', async () => {
    // The id is guarded (it fails for this caller); the client never selects it, so never sees that.
    const schema = createSchema({
      typeDefs: `${strataDirectivesSdl}
        type Account @cacheControl(maxAge: 60) { id: ID! name: String! }
        type Profile @cacheControl(maxAge: 60) { id: ID name: String! }
        type Query { account: Account profile: Profile }`,
      resolvers: {
        Query: { account: () => ({ name: 'Ada' }), profile: () => ({ name: 'Bob' }) },
        Account: { id: () => new GraphQLError('not yours') },
        Profile: { id: () => new GraphQLError('not yours') },
      },
    })
    const plugin = useStrata({ tenant: false } as StrataOptions<Ctx>)
    const server = await startServer({ schema, plugins: [plugin as never] })
    servers.push(server)
    const plain = createYoga({ schema, logging: false })
    for (const query of [
      '{ account { name } }',
      '{ profile { name } }',
      '{ account { name } profile { name } }',
    ]) {
      const expected = await uncached(plain, query)
      const first = await server.query(query)
      expect(first.text, query).toBe(expected)
      expect(first.cache).toBe('MISS')
      expect(first.headers.get('cache-control')).toBe('no-store')
      expect((await server.query(query)).cache, query).toBe('MISS')
    }
    expect(plugin.strata.stats().skippedStores['added-field-error']).toBe(6)
  })

  it("bypasses a tenant that is not well-formed Unicode instead of sharing another tenant's entries", async () => {
    const lines: string[] = []
    const logger = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) })
    // The tenant comes from a JSON claim, as from a token: a lone surrogate survives JSON.parse.
    const tenant = ({ context }: { context: Ctx }) => {
      const claim = context.request.headers.get('x-tenant-claim')
      return claim === null ? null : (JSON.parse(claim) as string)
    }
    const { server, strata } = await start({ tenant, logger })
    const q = '{ posts { id } }'
    const replacement = { 'x-tenant-claim': '"\\ufffd"' } // U+FFFD, what UTF-8 makes of a lone surrogate
    const lone = { 'x-tenant-claim': '"\\ud800"' }
    expect((await server.query(q, {}, replacement)).cache).toBe('MISS')
    expect((await server.query(q, {}, replacement)).cache).toBe('HIT')
    const res = await server.query(q, {}, lone)
    expect(res.cache).toBe('BYPASS')
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect((await server.query(q, {}, lone)).cache).toBe('BYPASS')
    expect(strata.stats().bypasses['ill-formed-tenant']).toBe(2)
    expect(lines.filter((l) => l.includes('not well-formed Unicode'))).toHaveLength(1)
    await expect(strata.clear('\ud800')).rejects.toThrow(/not well-formed Unicode/)
    expect((await server.query(q, {}, replacement)).cache).toBe('HIT')
  })

  it('keys PRIVATE results by session and never shares them', async () => {
    const { server, store } = await start({ session: byHeader('x-user-id') })
    const q = '{ me { id name } }'
    const alice = await server.query(q, {}, { 'x-user-id': 'alice' })
    const bob = await server.query(q, {}, { 'x-user-id': 'bob' })
    expect(alice.json.data?.me).toEqual({ id: 'alice', name: 'User alice' })
    expect(bob.json.data?.me).toEqual({ id: 'bob', name: 'User bob' })
    expect(bob.cache).toBe('MISS')
    const again = await server.query(q, {}, { 'x-user-id': 'alice' })
    expect(again.cache).toBe('HIT')
    expect(again.json.data?.me).toEqual({ id: 'alice', name: 'User alice' })
    expect(again.headers.get('cache-control')).toMatch(/^max-age=(29|30), private$/)
    expect(store.calls.me).toBe(2)
  })

  it('neither reads nor stores PRIVATE results without a session', async () => {
    const { server, store, strata } = await start({ session: byHeader('x-user-id') })
    expect((await server.query('{ me { id } }')).cache).toBe('BYPASS')
    expect((await server.query('{ me { id } }')).cache).toBe('BYPASS')
    expect(store.calls.me).toBe(2)
    expect(strata.stats().bypasses['private-no-session']).toBe(2)
  })

  it('does not key PUBLIC operations by session', async () => {
    const { server } = await start({ session: byHeader('x-user-id') })
    await server.query('{ posts { id } }', {}, { 'x-user-id': 'alice' })
    expect((await server.query('{ posts { id } }', {}, { 'x-user-id': 'bob' })).cache).toBe('HIT')
  })
})

describe('schema version', () => {
  it('never serves entries stored under a different schema', async () => {
    const tier = memoryTier()
    const store = new BlogStore()
    const a = await start({ tiers: [tier] }, store)
    await a.server.query('{ posts { id } }')
    expect((await a.server.query('{ posts { id } }')).cache).toBe('HIT')
    const b = await start({ tiers: [tier], schemaVersion: 'v2' }, store)
    expect((await b.server.query('{ posts { id } }')).cache).toBe('MISS')
    const c = await start({ tiers: [tier] }, store)
    expect((await c.server.query('{ posts { id } }')).cache).toBe('HIT')
  })
})

describe('queries using @defer', () => {
  const deferred = '{ item(id: "1") { ... @defer { name } } }'
  async function send(server: TestServer, query = deferred) {
    const response = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'multipart/mixed, application/json' },
      body: JSON.stringify({ query }),
    })
    return {
      cache: response.headers.get('x-strata-cache'),
      type: response.headers.get('content-type') ?? '',
      text: await response.text(),
    }
  }
  async function serve(options: Partial<StrataOptions> = {}) {
    // Item 2's id fails (null for an ID!): a key field the rewrite adds when the client does not select it.
    const items = new Map([
      ['1', { id: '1', name: 'old' }],
      ['2', { id: null as unknown as string, name: 'two' }],
    ])
    const plugin = useStrata({ tenant: false, ...options } as StrataOptions)
    const server = await startServer({ schema: deferItemsSchema(items), plugins: [plugin as never] })
    servers.push(server)
    return { server, strata: plugin.strata }
  }

  it('by default stream as they would without Strata, and are never stored', async () => {
    const { server, strata } = await serve()
    for (let i = 0; i < 2; i++) {
      const response = await send(server)
      expect(response.cache).toBe('BYPASS')
      expect(response.type).toContain('multipart/mixed')
      expect(response.text).toContain('"name":"old"')
    }
    expect(strata.stats().bypasses.incremental).toBe(2)
  })

  it("with incremental: 'inline', execute in one result that is stored, served whole and invalidated", async () => {
    const { server } = await serve({ incremental: 'inline' })
    const miss = await send(server)
    expect(miss.cache).toBe('MISS')
    expect(miss.type).toContain('application/json') // one result, not a multipart stream
    expect(miss.text).toContain('"name":"old"')
    expect(miss.text).not.toContain('__strata')
    expect(miss.text).not.toContain('hasNext":true')
    const hit = await send(server)
    expect(hit.cache).toBe('HIT')
    expect(hit.text).toContain('{"data":{"item":{"name":"old"}}}')
    await server.query('mutation { rename(id: "1", name: "new") { id } }')
    const after = await send(server)
    expect(after.cache).toBe('MISS')
    expect(after.text).toContain('"name":"new"')
  })

  it("with incremental: 'inline', a query whose added key field fails runs as the client sent it, inlined too", async () => {
    const { server, strata } = await serve({ incremental: 'inline' })
    const response = await send(server, '{ item(id: "2") { ... @defer { name } } }')
    expect(response.type).toContain('application/json') // one result, not a multipart stream
    expect(response.text).toBe('{"data":{"item":{"name":"two"}}}')
    expect(response.cache).toBe('MISS')
    expect(strata.stats().skippedStores['added-field-error']).toBe(1)
  })
})
