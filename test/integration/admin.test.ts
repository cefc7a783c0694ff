import { randomUUID } from 'node:crypto'
import { createSchema } from 'graphql-yoga'
import { Redis } from 'ioredis'
import pino from 'pino'
import { Registry } from 'prom-client'
import { afterEach, describe, expect, it } from 'vitest'
import {
  type CacheTier,
  memoryTier,
  type StrataPlugin,
  strataDirectivesSdl,
  useStrata,
} from '../../src/index.js'
import { redisTier } from '../../src/redis.js'
import { BlogStore, blogSchema } from '../support/blog.js'
import { startStrataServer, type TestServer } from '../support/server.js'
import { serviceUrl } from '../support/services.js'
import { sleep, waitFor } from '../support/wait.js'

const closers: (() => Promise<unknown>)[] = []
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close()
})

const SUPER = { authorization: 'Bearer super' }
const ACME_ADMIN = { authorization: 'Bearer tenant:acme' }
const acme = { 'x-tenant-id': 'acme' }
const globex = { 'x-tenant-id': 'globex' }

/** The tier, except that listing and deleting fail while `fault.down` (a shared tier lost mid-purge). */
function faulty(tier: CacheTier, fault: { down: boolean }): CacheTier {
  const gate = <T>(call: () => T): T => {
    if (fault.down) throw new Error(`${tier.name} is down`)
    return call()
  }
  const createBus = tier.createBus?.bind(tier)
  return {
    name: tier.name,
    shared: tier.shared,
    get: (key) => tier.get(key),
    set: (key, entry, options) => tier.set(key, entry, options),
    delete: (key) => gate(() => tier.delete(key)),
    invalidate: (tags) => tier.invalidate(tags),
    clear: (tenant) => tier.clear(tenant),
    list: (query) => gate(() => tier.list(query)),
    stats: () => tier.stats(),
    close: () => tier.close?.(),
    ...(createBus ? { createBus } : {}),
  }
}

async function start(
  extra: { warm?: boolean; fault?: { down: boolean }; namespace?: string; store?: BlogStore } = {},
) {
  const client = new Redis(await serviceUrl('redis'))
  const registry = new Registry()
  const redis = redisTier({
    client,
    namespace: extra.namespace ?? `admin-${randomUUID().slice(0, 8)}`,
    shards: 2,
    skewToleranceMs: 0,
  })
  const plugin: StrataPlugin = useStrata({
    tenant: ({ context }) => context.request.headers.get('x-tenant-id'),
    tiers: [memoryTier(), extra.fault ? faulty(redis, extra.fault) : redis],
    breaker: { cooldownMs: 50 },
    // Instances that share a namespace talk over its bus.
    ...(extra.namespace ? {} : { bus: false }),
    metrics: { registry },
    admin: {
      authorize: ({ context }) => {
        const auth = context.request.headers.get('authorization') ?? ''
        if (auth === 'Bearer super') return 'all'
        if (auth.startsWith('Bearer tenant:')) return { tenant: auth.slice('Bearer tenant:'.length) }
        return null
      },
    },
    ...(extra.warm
      ? { warm: { operations: [{ query: 'query Warm { posts { id title } }', headers: acme }] } }
      : {}),
  })
  const schema = blogSchema(extra.store ?? new BlogStore())
  const server = await startStrataServer(schema, plugin, closers, () => client.quit())
  await plugin.strata.ready()
  return { server, strata: plugin.strata, registry }
}

/** Caches a few entries for acme and globex, waiting for the (unawaited) writes to Redis. */
async function seed(server: TestServer) {
  for (const headers of [acme, globex]) {
    await server.query('query One { post(id: "1") { id title } }', {}, headers)
    await server.query('query Two { post(id: "2") { id title } }', {}, headers)
    await server.query('query List { posts { id } }', {}, headers)
    await server.query('query Labels { tags { label } }', {}, headers)
  }
  await sleep(30)
}

const admin = (server: TestServer, query: string, headers: Record<string, string> = SUPER, variables = {}) =>
  server.query(query, variables, headers)
const PURGE = 'removed { name count } total'

/** The admin field's data, or a clear failure. */
function strataData<T>(res: { json: { data?: Record<string, unknown> | null } }): T {
  const value = res.json.data?._strata
  if (value === null || value === undefined) throw new Error(`no admin data: ${JSON.stringify(res.json)}`)
  return value as T
}

describe('the admin field', () => {
  it('refuses callers without an admin credential: FORBIDDEN, no data', async () => {
    const { server } = await start()
    await seed(server)
    const read = await admin(server, '{ _strata { entries { nodes { key } } } }', acme)
    expect(read.json.errors?.[0]?.extensions?.code).toBe('FORBIDDEN')
    expect(read.json.data?._strata).toBeNull()
    expect(read.text).not.toContain('strata:t:')
    const purge = await admin(server, `mutation { _strata { flush { ${PURGE} } } }`, acme)
    expect(purge.json.errors?.[0]?.extensions?.code).toBe('FORBIDDEN')
    expect((await server.query('query One { post(id: "1") { id title } }', {}, acme)).cache).toBe('HIT')
  })

  it('stats move with hits and misses; admin requests are neither cached nor counted', async () => {
    const { server } = await start()
    const stats = async () =>
      (
        await admin(
          server,
          '{ _strata { stats { hits misses hitRate operations { operationName hits misses } } } }',
        )
      ).json.data?._strata as {
        stats: { hits: number; misses: number; hitRate: number; operations: { operationName: string }[] }
      }
    const before = await stats()
    await server.query('query One { post(id: "1") { id } }', {}, acme)
    await server.query('query One { post(id: "1") { id } }', {}, acme)
    const after = await stats()
    expect(after.stats.misses - before.stats.misses).toBe(1)
    expect(after.stats.hits - before.stats.hits).toBe(1)
    expect(after.stats.hitRate).toBe(0.5)
    expect(after.stats.operations).toContainEqual({ operationName: 'One', hits: 1, misses: 1 })
    const again = await stats()
    expect(again.stats).toEqual(after.stats)
    expect((await admin(server, '{ _strata { stats { hits } } }')).cache).toBe('BYPASS')
  })

  it('lists entries with the tiers that hold them, and shows one entry with a preview', async () => {
    const { server } = await start()
    await seed(server)
    const page = (
      await admin(
        server,
        '{ _strata { entries(tenant: "acme", operationName: "One") { nodes { key tenant operationName tags size ttlSeconds tiers } cursor } } }',
      )
    ).json.data?._strata as {
      entries: { nodes: { key: string; tags: string[]; tiers: string[]; ttlSeconds: number }[] }
    }
    expect(page.entries.nodes).toHaveLength(1)
    const node = page.entries.nodes[0]!
    expect(node).toMatchObject({ tenant: 'acme', operationName: 'One', tiers: ['memory', 'redis'] })
    expect(node.tags).toContain('Post:1')
    expect(node.ttlSeconds).toBeGreaterThan(50)
    const one = await admin(
      server,
      'query($key: String!) { _strata { entry(key: $key) { key bodyPreview } } }',
      SUPER,
      { key: node.key },
    )
    expect(JSON.stringify(one.json)).toContain('Post 1')
  })

  const cached = async (server: TestServer, query: string, headers: Record<string, string>) =>
    (await server.query(query, {}, headers)).cache === 'HIT'

  it('each purge selector removes exactly the matching entries, in every tier', async () => {
    const { server } = await start()
    const purge = async (mutation: string) => {
      const res = await admin(server, `mutation { _strata { ${mutation} { ${PURGE} } } }`)
      return strataData<Record<string, { removed: { name: string; count: number }[] }>>(res)[
        mutation.split('(')[0] as string
      ]
    }
    await seed(server)
    // Post 1 and lists of posts, both tenants (mutation-style global invalidation by a super admin).
    expect((await purge('invalidateEntities(type: "Post", ids: ["1"])'))?.removed).toEqual([
      { name: 'memory', count: 4 },
      { name: 'redis', count: 4 },
    ])
    expect(await cached(server, 'query One { post(id: "1") { id title } }', acme)).toBe(false)
    expect(await cached(server, 'query Two { post(id: "2") { id title } }', acme)).toBe(true)
    await seed(server)
    expect((await purge('invalidateTypes(types: ["Tag"])'))?.removed).toContainEqual({
      name: 'redis',
      count: 2,
    })
    expect(await cached(server, 'query Labels { tags { label } }', globex)).toBe(false)
    expect(await cached(server, 'query Two { post(id: "2") { id title } }', globex)).toBe(true)
    await seed(server)
    // Post 2 alone, and the lists that show it, in both tenants.
    expect((await purge('invalidateTags(tags: ["Post:2"])'))?.removed).toContainEqual({
      name: 'memory',
      count: 4,
    })
    expect(await cached(server, 'query Labels { tags { label } }', acme)).toBe(true)
    await seed(server)
    expect((await purge('invalidateOperation(operationName: "List")'))?.removed).toEqual([
      { name: 'memory', count: 2 },
      { name: 'redis', count: 2 },
    ])
    expect(await cached(server, 'query List { posts { id } }', acme)).toBe(false)
    expect(await cached(server, 'query One { post(id: "1") { id title } }', acme)).toBe(true)
    await seed(server)
    expect((await purge('flush(tenant: "globex")'))?.removed).toEqual([
      { name: 'memory', count: 4 },
      { name: 'redis', count: 4 },
    ])
    expect(await cached(server, 'query One { post(id: "1") { id title } }', globex)).toBe(false)
    expect(await cached(server, 'query One { post(id: "1") { id title } }', acme)).toBe(true)
  })

  it('reached below the root (through a field returning Query), it is never stored nor served to others', async () => {
    const schema = createSchema({
      typeDefs: /* GraphQL */ `
        ${strataDirectivesSdl}
        type Item { id: ID! name: String! }
        type Query { items: [Item!]! root: Query! }
      `,
      resolvers: { Query: { items: () => [{ id: '1', name: 'one' }], root: () => ({}) } },
    })
    const plugin = useStrata({
      tenant: false,
      defaultMaxAge: 30, // the admin field has no hint of its own: this would make it cacheable
      admin: {
        authorize: ({ context }) =>
          context.request.headers.get('authorization') === SUPER.authorization ? 'all' : null,
      },
    })
    const server = await startStrataServer(schema, plugin, closers)
    expect((await server.query('{ items { id name } }')).cache).toBe('MISS') // an entry to list
    const listing = '{ root { _strata { entries { nodes { key } } } } }'
    const asAdmin = await admin(server, listing)
    expect(asAdmin.json.data).toEqual({
      root: { _strata: { entries: { nodes: [{ key: expect.any(String) }] } } },
    })
    expect(asAdmin.headers.get('cache-control')).toBe('no-store')
    const anyone = await server.query(listing)
    expect(anyone.cache).toBe('MISS')
    expect(anyone.json.errors?.[0]?.extensions?.code).toBe('FORBIDDEN')
    expect(anyone.text).not.toContain('strata:')
    expect(plugin.strata.stats().skippedStores).toMatchObject({ uncacheable: 1 })
  })

  it('a super admin passing tenant: null lists and flushes every tenant, as when it is omitted', async () => {
    const { server } = await start()
    await seed(server)
    const listed = await admin(
      server,
      'query($t: String) { _strata { entries(tenant: $t) { nodes { tenant } } } }',
      SUPER,
      {
        t: null,
      },
    )
    const tenants = strataData<{ entries: { nodes: { tenant: string }[] } }>(listed).entries.nodes.map(
      (n) => n.tenant,
    )
    expect(tenants.sort()).toEqual(['acme', 'acme', 'acme', 'acme', 'globex', 'globex', 'globex', 'globex'])
    const flushed = await admin(
      server,
      `mutation($t: String) { _strata { flush(tenant: $t) { ${PURGE} } } }`,
      SUPER,
      {
        t: null,
      },
    )
    expect(strataData<{ flush: { total: number } }>(flushed).flush.total).toBe(16) // 8 entries, 2 tiers
    expect(await cached(server, 'query One { post(id: "1") { id title } }', acme)).toBe(false)
    expect(await cached(server, 'query One { post(id: "1") { id title } }', globex)).toBe(false)
  })

  it('refuses a tenant argument that is not well-formed Unicode (it would name another tenant)', async () => {
    const { server, strata } = await start()
    await seed(server)
    for (const query of [
      `mutation($t: String) { _strata { flush(tenant: $t) { ${PURGE} } } }`,
      'query($t: String) { _strata { entries(tenant: $t) { nodes { key } } } }',
    ]) {
      const res = await admin(server, query, SUPER, { t: '\ud800' })
      expect(res.json.errors?.[0]?.extensions?.code, query).toBe('BAD_USER_INPUT')
      expect(res.json.errors?.[0]?.message).toMatch(/not well-formed Unicode/)
    }
    expect(await cached(server, 'query One { post(id: "1") { id title } }', acme)).toBe(true)
    expect(strata.cache.health().redis).toMatchObject({ state: 'closed', failures: 0 })
  })

  it('a tenant admin sees and purges only its own tenant', async () => {
    const { server } = await start()
    await seed(server)
    const mine = (await admin(server, '{ _strata { entries { nodes { tenant } } } }', ACME_ADMIN)).json.data
      ?._strata as {
      entries: { nodes: { tenant: string }[] }
    }
    expect(mine.entries.nodes.length).toBe(4)
    expect(new Set(mine.entries.nodes.map((n) => n.tenant))).toEqual(new Set(['acme']))
    for (const query of [
      '{ _strata { entries(tenant: "globex") { nodes { key } } } }',
      '{ _strata { stats { hits } } }',
      'mutation { _strata { flush(tenant: "globex") { total } } }',
    ]) {
      expect((await admin(server, query, ACME_ADMIN)).json.errors?.[0]?.extensions?.code, query).toBe(
        'FORBIDDEN',
      )
    }
    const globexKey = strataData<{ entries: { nodes: { key: string }[] } }>(
      await admin(server, '{ _strata { entries(tenant: "globex", first: 1) { nodes { key } } } }'),
    ).entries.nodes[0]?.key
    const peek = await admin(
      server,
      'query($key: String!) { _strata { entry(key: $key) { key } } }',
      ACME_ADMIN,
      { key: globexKey },
    )
    expect(peek.json.data?._strata).toEqual({ entry: null })
    const purged = await admin(
      server,
      `mutation { _strata { invalidateTags(tags: ["Post:1"]) { ${PURGE} } } }`,
      ACME_ADMIN,
    )
    // acme's post 1 and acme's list of posts, in memory and in Redis.
    expect(purged.json.data?._strata).toMatchObject({ invalidateTags: { total: 4 } })
    expect(await cached(server, 'query One { post(id: "1") { id title } }', acme)).toBe(false)
    expect(await cached(server, 'query One { post(id: "1") { id title } }', globex)).toBe(true)
  })

  it('health reports each tier and its circuit', async () => {
    const { server } = await start()
    const health = await admin(
      server,
      '{ _strata { health { localTiersInUse tiers { tier shared circuit } changes { state } } } }',
    )
    expect(health.json.data?._strata).toEqual({
      health: {
        localTiersInUse: true,
        tiers: [
          { tier: 'memory', shared: false, circuit: 'local' },
          { tier: 'redis', shared: true, circuit: 'closed' },
        ],
        changes: null,
      },
    })
  })
})

describe('a purge a shared tier misses', () => {
  it('is deferred, then applied there before the tier serves again', async () => {
    const fault = { down: false }
    const { server } = await start({ fault })
    await seed(server)
    const LIST = 'query List { posts { id } }'
    fault.down = true
    const purged = strataData<{ invalidateOperation: unknown }>(
      await admin(
        server,
        `mutation { _strata { invalidateOperation(operationName: "List") { ${PURGE} deferred } } }`,
      ),
    )
    // acme's and globex's List from memory; Redis failed while listing.
    expect(purged.invalidateOperation).toEqual({
      removed: [
        { name: 'memory', count: 2 },
        { name: 'redis', count: 0 },
      ],
      total: 2,
      deferred: ['redis'],
    })
    const health = strataData<{ health: { tiers: unknown[] } }>(
      await admin(server, '{ _strata { health { tiers { tier circuit pendingInvalidations } } } }'),
    )
    expect(health.health.tiers[1]).toEqual({ tier: 'redis', circuit: 'open', pendingInvalidations: 'flush' })
    // While the circuit is open, Redis is not read: no stale hit from it.
    expect((await server.query(LIST, {}, acme)).cache).not.toBe('HIT')
    fault.down = false
    const back = async () =>
      strataData<{ health: { tiers: { circuit: string }[] } }>(
        await admin(server, '{ _strata { health { tiers { circuit } } } }'),
      ).health.tiers[1]?.circuit === 'closed'
    expect(await waitFor(back, 5000)).toBe(true)
    // Redis was cleared before it served again: globex's List is not found there either.
    expect((await server.query(LIST, {}, globex)).cache).toBe('MISS')
  })

  it('other instances drop from memory all that the purge could have matched', async () => {
    const namespace = `admin-${randomUUID().slice(0, 8)}`
    const fault = { down: false }
    const a = await start({ fault, namespace })
    const b = await start({ namespace })
    const LIST = 'query List { posts { id } }'
    // Only b has globex's List in memory, so a's listing of its own memory cannot find it.
    expect((await b.server.query(LIST, {}, globex)).cache).toBe('MISS')
    expect((await b.server.query(LIST, {}, globex)).cache).toBe('HIT')
    await sleep(30)
    fault.down = true
    const purged = strataData<{ invalidateOperation: unknown }>(
      await admin(
        a.server,
        'mutation { _strata { invalidateOperation(operationName: "List") { total deferred } } }',
      ),
    )
    expect(purged.invalidateOperation).toEqual({ total: 0, deferred: ['redis'] })
    fault.down = false
    const back = async () => a.strata.cache.health().redis?.state === 'closed'
    expect(await waitFor(back, 5000)).toBe(true)
    expect((await b.server.query(LIST, {}, globex)).cache).toBe('MISS')
  })
})

describe('a purge that lists entries', () => {
  const SLOW = 'query Slow { slowPost(id: "1") { id title } }'
  it.each([
    ['a tenant admin purging a tag', `invalidateTags(tags: ["Post:1"]) { total }`, ACME_ADMIN],
    ['an operation purge', `invalidateOperation(operationName: "Slow") { total }`, SUPER],
  ])('stores nowhere what executions running during it computed: %s', async (_, purge, headers) => {
    const namespace = `admin-${randomUUID().slice(0, 8)}`
    const store = new BlogStore()
    const a = await start({ namespace })
    const b = await start({ namespace, store })
    const { started, release } = store.hold()
    const slowRead = b.server.query(SLOW, {}, acme)
    await started // b read post 1 as it was, and is still executing
    const post = store.posts.get('1')
    if (!post) throw new Error('the blog has no post 1')
    post.title = 'New' // changed outside GraphQL: the admin purges what depends on it
    const purged = await admin(a.server, `mutation { _strata { ${purge} } }`, headers)
    expect(purged.json.errors).toBeUndefined()
    expect(await waitFor(async () => b.strata.stats().busMessages > 0, 2000)).toBe(true)
    release()
    expect((await slowRead).json.data?.slowPost).toEqual({ id: '1', title: 'Post 1' })
    expect(b.strata.stats().skippedStores['invalidated-during-execution']).toBe(1)
    store.gate = undefined
    await sleep(30) // a write to Redis, had there been one, has landed
    // Neither b's memory nor Redis holds the result computed before the purge.
    const after = await b.server.query(SLOW, {}, acme)
    expect(after.cache).toBe('MISS')
    expect(after.json.data?.slowPost).toEqual({ id: '1', title: 'New' })
  })
})

describe('metrics and warming', () => {
  it('exposes Prometheus counters and lookup latency', async () => {
    const { server, registry } = await start()
    await server.query('query One { post(id: "1") { id } }', {}, acme)
    await server.query('query One { post(id: "1") { id } }', {}, acme)
    await server.query('{ posts { id } }')
    const text = await registry.metrics()
    expect(text).toMatch(/strata_requests_total\{outcome="hit",operation="One",tier="memory",reason=""\} 1/)
    expect(text).toMatch(/strata_requests_total\{outcome="miss",operation="One",tier="",reason=""\} 1/)
    expect(text).toMatch(
      /strata_requests_total\{outcome="bypass",operation="\(anonymous\)",tier="",reason="no-tenant"\} 1/,
    )
    expect(text).toMatch(/strata_lookup_seconds_count\{tier="memory"\} [1-9]/)
    expect(text).toMatch(/strata_tier_up\{tier="redis"\} 1/)
  })

  it('a failing warm-up operation is logged, never fatal; afterFlush warms again', async () => {
    const lines: string[] = []
    const logger = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) })
    const plugin = useStrata({
      tenant: ({ context }) => context.request.headers.get('x-tenant-id'),
      logger,
      warm: {
        operations: [
          { query: '{ nope }', headers: acme },
          { query: 'query Warm { posts { id } }', headers: acme },
        ],
        afterFlush: true,
      },
    })
    const server = await startStrataServer(blogSchema(new BlogStore()), plugin, closers)
    await plugin.strata.ready()
    expect(lines.some((line) => line.includes('warm-up operation failed'))).toBe(true)
    expect((await server.query('query Warm { posts { id } }', {}, acme)).cache).toBe('HIT')
    await plugin.strata.clear()
    await plugin.strata.ready()
    expect(await waitFor(async () => plugin.strata.stats().stores === 2, 2000)).toBe(true)
    expect((await server.query('query Warm { posts { id } }', {}, acme)).cache).toBe('HIT')
  })

  it('warming fills the cache before the first request', async () => {
    const { server, strata } = await start({ warm: true })
    expect(strata.stats().stores).toBe(1)
    expect((await server.query('query Warm { posts { id title } }', {}, acme)).cache).toBe('HIT')
  })
})
