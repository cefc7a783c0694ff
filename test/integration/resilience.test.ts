import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import pg from 'pg'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { type CacheEntry, type CacheTier, memoryTier, type StrataPlugin, useStrata } from '../../src/index.js'
import { PostgresBus, postgresChanges, postgresTier } from '../../src/postgres.js'
import { redisTier } from '../../src/redis.js'
import type { BusMessage } from '../../src/tiers/tier.js'
import { TieredCache } from '../../src/tiers/tiered.js'
import { entryOf } from '../conformance/tier-suite.js'
import { BlogStore, blogSchema } from '../support/blog.js'
import { createPgBlog } from '../support/pg-blog.js'
import { startProxy } from '../support/proxy.js'
import { startStrataServer } from '../support/server.js'
import { serviceUrl } from '../support/services.js'
import { sleep, waitFor } from '../support/wait.js'

const closers: (() => Promise<unknown>)[] = []
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close().catch(() => undefined)
})
const silent = pino({ level: 'silent' })
const LIST = '{ posts { id title } }'

async function redisInstance(namespace: string) {
  const client = new Redis(await serviceUrl('redis'))
  const plugin: StrataPlugin = useStrata({
    tenant: false,
    tiers: [memoryTier(), redisTier({ client, namespace })],
  })
  const server = await startStrataServer(blogSchema(new BlogStore()), plugin, closers, () => client.quit())
  await plugin.strata.ready()
  return { server, strata: plugin.strata, client }
}

describe('the bus ignores what it did not send', () => {
  it('malformed or foreign PUBLISH messages neither crash the process nor flush the memory tier', async () => {
    const namespace = `stray-${randomUUID().slice(0, 8)}`
    const { server, strata, client } = await redisInstance(namespace)
    await server.query(LIST)
    for (const raw of [
      '{"m":{"kind":"delete"}}',
      '{"o":"x","m":{"kind":"delete"}}',
      '{"o":"x","m":{"kind":"boom"}}',
      'not json',
      '{"o":"x","m":{"kind":"invalidate","tags":[1]}}',
      '{"o":"x","m":{"kind":"delete","keys":[],"where":{"tenant":5}}}',
      '{"o":"x","m":{"kind":"delete","keys":[],"where":"acme"}}',
    ]) {
      await client.publish(`${namespace}:bus`, raw)
    }
    await sleep(50)
    expect(strata.stats().busMessages).toBe(0)
    expect((await server.query(LIST)).cache).toBe('HIT')
  })

  it('NOTIFY payloads are split by bytes: 400 non-ASCII tags arrive whole', async () => {
    const pool = new pg.Pool({ connectionString: await serviceUrl('postgres'), max: 3 })
    closers.push(() => pool.end())
    const channel = `bus_${randomUUID().slice(0, 8)}`
    const sender = new PostgresBus(pool, channel)
    const receiver = new PostgresBus(pool, channel)
    const received: string[] = []
    const up = new Promise<void>((resolve) => {
      void receiver.start({
        onMessage: (m: BusMessage) => m.kind === 'invalidate' && received.push(...m.tags),
        onDown: () => {},
        onUp: resolve,
      })
    })
    closers.push(
      () => receiver.close(),
      () => sender.close(),
    )
    await up
    const tags = Array.from({ length: 400 }, (_, i) => `Post:記事-${i}-${'ü'.repeat(10)}`)
    await sender.publish({ kind: 'invalidate', tags })
    expect(await waitFor(() => received.length === 400, 2000)).toBe(true)
    expect(received).toEqual(tags)
  })
})

describe('shared tiers refuse stale promotions', () => {
  it('an entry read from PostgreSQL before another instance invalidated it is not promoted into Redis', async () => {
    const client = new Redis(await serviceUrl('redis'))
    const pool = new pg.Pool({ connectionString: await serviceUrl('postgres'), max: 4 })
    const schema = `promo_${process.pid}`
    closers.push(
      () => client.quit(),
      () => pool.end(),
      () => pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`),
    )
    const redis = redisTier({ client, namespace: `promo-${randomUUID().slice(0, 8)}`, skewToleranceMs: 0 })
    const postgres = postgresTier({ pool, schema, skewToleranceMs: 0 })
    let hold: Promise<void> | undefined
    const slowPostgres: CacheTier = {
      ...postgres,
      name: 'postgres',
      shared: true,
      async get(key) {
        const entry = await postgres.get(key)
        await hold
        return entry
      },
    }
    const key = 'strata:g:promotion-test'
    const body = '{"data":{"post":{"id":"1","title":"old"}}}'
    const now = Date.now()
    const entry: CacheEntry = {
      body,
      size: body.length,
      tags: ['Post:1'],
      tenant: null,
      operationName: null,
      scope: 'PUBLIC',
      createdAt: now,
      expiresAt: now + 60_000,
    }
    await postgres.set(key, entry)
    const reader = new TieredCache([redis, slowPostgres], silent)
    let release!: () => void
    hold = new Promise((r) => {
      release = r
    })
    const read = reader.get(key, () => true, Date.now())
    await sleep(30)
    // Another instance invalidates Post:1 in both shared tiers while the read is in flight.
    await redis.invalidate(['Post:1'])
    await postgres.invalidate(['Post:1'])
    release()
    expect((await read)?.entry.body).toBe(body) // this read already had it...
    await sleep(50)
    expect(await redis.get(key)).toBeUndefined() // ...but it was not promoted into Redis
    await reader.close()
  })

  it('an entry older than an invalidation Redis has applied is not promoted into Redis from a PostgreSQL that has not yet', async () => {
    const client = new Redis(await serviceUrl('redis'))
    const pool = new pg.Pool({ connectionString: await serviceUrl('postgres'), max: 4 })
    const schema = `promo_late_${process.pid}`
    closers.push(
      () => client.quit(),
      () => pool.end(),
      () => pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`),
    )
    // No skew tolerance: the lookup below begins after the invalidation, as one does more than
    // skewToleranceMs after it.
    const redis = redisTier({ client, namespace: `promo-${randomUUID().slice(0, 8)}`, skewToleranceMs: 0 })
    const postgres = postgresTier({ pool, schema, skewToleranceMs: 0, purgeIntervalMs: 0 })
    await postgres.set(
      'strata:g:stale',
      entryOf('{"data":{"post":{"id":"1","title":"old"}}}', ['Post:1'], { tenant: null }),
    )
    // Another instance invalidates Post:1: Redis is clean and stamped, PostgreSQL's DELETE is still
    // running (slow, or deferred behind that instance's open circuit).
    await redis.invalidate(['Post:1'])
    await sleep(5) // the lookups below begin strictly after it
    await postgres.set(
      'strata:g:fresh',
      entryOf('{"data":{"post":{"id":"2","title":"new"}}}', ['Post:2'], { tenant: null }),
    )
    const reader = new TieredCache([redis, postgres], silent)
    closers.push(async () => reader.close())
    // A lookup that begins after the invalidation still finds the old entry in PostgreSQL...
    expect((await reader.get('strata:g:stale', () => true, Date.now()))?.tier).toBe('postgres')
    expect((await reader.get('strata:g:fresh', () => true, Date.now()))?.tier).toBe('postgres')
    // ...but Redis refuses its promotion, as it accepts that of an entry no invalidation concerns.
    expect(await waitFor(async () => (await redis.get('strata:g:fresh')) !== undefined, 2000)).toBe(true)
    expect(await redis.get('strata:g:stale')).toBeUndefined()
  })
})

describe('the change listener survives a hostile network', () => {
  async function setup(databaseUrl: string, options: { pingMs?: number } = {}) {
    const admin = new pg.Pool({ connectionString: await serviceUrl('postgres'), max: 3 })
    const name = `res_${randomUUID().slice(0, 6)}`
    const blog = await createPgBlog(admin, `${name}_data`)
    const pool = new pg.Pool({ connectionString: databaseUrl, max: 3 })
    pool.on('error', () => {})
    const plugin: StrataPlugin = useStrata({
      tenant: false,
      tiers: [memoryTier()],
      logger: silent,
      changes: postgresChanges({
        pool,
        schema: `${name}_strata`,
        pollMs: 20,
        followerPollMs: 100,
        ...options,
      }),
    })
    const _server = await startStrataServer(
      blog.schema,
      plugin,
      closers,
      () => admin.end(),
      () => admin.query(`DROP SCHEMA IF EXISTS ${name}_strata CASCADE`),
      () => blog.drop(),
      () => pool.end(),
    )
    return { admin, name, strata: plugin.strata }
  }

  it('starts when PostgreSQL is unreachable at first, once it comes back', async () => {
    const proxy = await startProxy(await serviceUrl('postgres'))
    closers.push(() => proxy.close())
    proxy.cut()
    const { strata } = await setup(proxy.url)
    await sleep(300)
    expect(strata.changes()?.state).toBe('down')
    expect(strata.cache.localTrusted).toBe(false)
    proxy.heal()
    expect(await waitFor(() => strata.cache.localTrusted, 15_000)).toBe(true)
    expect(strata.changes()?.state).toBe('leader')
  })

  it('notices a silently dead listener connection, stops trusting local tiers, and recovers', async () => {
    const proxy = await startProxy(await serviceUrl('postgres'))
    closers.push(() => proxy.close())
    const { strata } = await setup(proxy.url, { pingMs: 200 })
    expect(await waitFor(() => strata.cache.localTrusted, 5000)).toBe(true)
    proxy.hang()
    expect(await waitFor(() => !strata.cache.localTrusted, 12_000)).toBe(true)
    proxy.heal()
    expect(
      await waitFor(() => strata.cache.localTrusted && strata.changes()?.state === 'leader', 15_000),
    ).toBe(true)
  })

  it('a failing catch-up during reconnects leaks no listener session', async () => {
    const { admin, name, strata } = await setup(await serviceUrl('postgres'))
    expect(await waitFor(() => strata.cache.localTrusted, 5000)).toBe(true)
    const sessions = async () =>
      Number(
        (
          await admin.query('SELECT count(*) FROM pg_stat_activity WHERE application_name = $1', [
            `graphql-strata changes ${name}_strata`,
          ])
        ).rows[0].count,
      )
    await admin.query(`ALTER TABLE ${name}_strata.changes_state RENAME TO changes_state_away`)
    await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, [
      `graphql-strata changes ${name}_strata`,
    ])
    await sleep(1500)
    await admin.query(`ALTER TABLE ${name}_strata.changes_state_away RENAME TO changes_state`)
    expect(
      await waitFor(() => strata.cache.localTrusted && strata.changes()?.state === 'leader', 15_000),
    ).toBe(true)
    await sleep(200)
    expect(await sessions()).toBe(1)
  })
})
