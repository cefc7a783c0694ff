import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type BlogServer, startBlogServer } from '../../examples/blog/app.js'
import { serviceUrl } from '../support/services.js'

async function ask(server: BlogServer, query: string, headers: Record<string, string> = {}) {
  const response = await fetch(server.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-tenant-id': 'acme', ...headers },
    body: JSON.stringify({ query }),
  })
  const text = await response.text()
  return { cache: response.headers.get('x-strata-cache'), text, json: JSON.parse(text) }
}

const LIST = '{ posts(first: 10) { id title author { id name } } }'

for (const setup of [
  'embedded PGlite',
  'real PostgreSQL',
  'real PostgreSQL and Redis (three tiers)',
] as const) {
  describe(`examples/blog on ${setup}`, () => {
    let server: BlogServer
    beforeAll(async () => {
      const databaseUrl = setup === 'embedded PGlite' ? undefined : await serviceUrl('postgres')
      const redisUrl = setup.includes('Redis') ? await serviceUrl('redis') : undefined
      server = await startBlogServer({ port: 0, databaseUrl, redisUrl })
    }, 120_000)
    afterAll(() => server?.close())

    it('serves MISS then HIT, per tenant, and BYPASS without a tenant', async () => {
      const miss = await ask(server, LIST)
      const hit = await ask(server, LIST)
      expect(miss.cache).toBe('MISS')
      expect(hit.cache).toBe('HIT')
      expect(hit.text).toBe(miss.text)
      expect(miss.json.data.posts.length).toBeGreaterThan(0)
      const globex = await ask(server, LIST, { 'x-tenant-id': 'globex' })
      expect(globex.cache).toBe('MISS')
      expect(globex.text).not.toBe(miss.text)
      expect((await ask(server, LIST, { 'x-tenant-id': '' })).cache).not.toBe('HIT')
    })

    it('a createPost mutation makes the next list read fresh', async () => {
      await ask(server, LIST)
      const created = await ask(
        server,
        'mutation { createPost(title: "Cache me", body: "b", authorId: "1") { id } }',
      )
      expect(created.cache).toBe('BYPASS')
      const after = await ask(server, LIST)
      expect(after.cache).toBe('MISS')
      expect(after.text).toContain('Cache me')
    })

    it('caches the PRIVATE me field per user only', async () => {
      const one = await ask(server, '{ me { id name } }', { 'x-user-id': '1' })
      const two = await ask(server, '{ me { id name } }', { 'x-user-id': '2' })
      expect(one.cache).toBe('MISS')
      expect(two.cache).toBe('MISS')
      expect(two.text).not.toBe(one.text)
      expect((await ask(server, '{ me { id name } }', { 'x-user-id': '1' })).text).toBe(one.text)
      expect((await ask(server, '{ me { id name } }')).cache).toBe('BYPASS')
    })
  })
}

describe('examples/blog: SQL outside GraphQL invalidates the cache (embedded PGlite)', () => {
  let server: BlogServer
  beforeAll(async () => {
    server = await startBlogServer({ port: 0 })
  }, 120_000)
  afterAll(() => server?.close())

  it('the admin field answers the documented token, and /metrics exposes the counters', async () => {
    await ask(server, '{ posts(first: 2) { id } }')
    const query = '{ _strata { stats { hits misses } entries(tenant: "acme") { nodes { operationName } } } }'
    const refused = await ask(server, query)
    expect(refused.json.errors?.[0]?.extensions?.code).toBe('FORBIDDEN')
    const allowed = await ask(server, query, { authorization: 'Bearer strata-admin-demo' })
    expect(allowed.json.data._strata.stats.misses).toBeGreaterThan(0)
    const metrics = await (await fetch(server.url.replace('/graphql', '/metrics'))).text()
    expect(metrics).toContain('strata_requests_total{outcome="miss"')
  })

  it('an SQL UPDATE posted to the demo /sql endpoint makes the cached post fresh', async () => {
    const query = '{ post(id: "1") { id title } }'
    await ask(server, query)
    expect((await ask(server, query)).cache).toBe('HIT')
    const sql = await fetch(server.url.replace('/graphql', '/sql'), {
      method: 'POST',
      body: "UPDATE blog_example.posts SET title = 'Edited in SQL' WHERE id = 1",
    })
    expect(sql.status).toBe(200)
    let fresh = false
    for (let i = 0; i < 100 && !fresh; i++) {
      fresh = (await ask(server, query)).text.includes('Edited in SQL')
      if (!fresh) await new Promise((r) => setTimeout(r, 10))
    }
    expect(fresh).toBe(true)
  })
})
