import { randomUUID } from 'node:crypto'
import { GraphQLError, type GraphQLResolveInfo } from 'graphql'
import { createSchema, type Plugin } from 'graphql-yoga'
import { Redis } from 'ioredis'
import pg from 'pg'
import { afterEach, describe, expect, it } from 'vitest'
import {
  type CacheTier,
  cacheControlFromInfo,
  memoryTier,
  type StrataPlugin,
  strataDirectivesSdl,
  useStrata,
} from '../../src/index.js'
import { postgresTier } from '../../src/postgres.js'
import { redisTier } from '../../src/redis.js'
import { startServer, startStrataServer } from '../support/server.js'
import { serviceUrl } from '../support/services.js'
import { sleep, waitFor } from '../support/wait.js'

const closers: (() => Promise<unknown>)[] = []
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close()
})

/** Prices with a call counter; a read can be made to fail, or to hold its value until released. */
class Prices {
  amounts = new Map([['sku-1', 1]])
  calls = 0
  failing = false
  /** Reads tell the cache their result may not be stored (a dynamic hint of maxAge 0). */
  uncacheable = false
  /** The next read takes its value at once and returns it when the gate opens. */
  held: { gate: Promise<void>; started: () => void } | undefined

  hold(): { started: Promise<void>; release: () => void } {
    let release!: () => void
    let started!: () => void
    const gate = new Promise<void>((resolve) => {
      release = resolve
    })
    const began = new Promise<void>((resolve) => {
      started = resolve
    })
    this.held = { gate, started }
    return { started: began, release }
  }

  async read(id: string, info: GraphQLResolveInfo) {
    this.calls++
    if (this.failing) throw new GraphQLError('pricing backend down')
    if (this.uncacheable) cacheControlFromInfo(info).setCacheHint({ maxAge: 0 })
    const amount = this.amounts.get(id) ?? 0
    const held = this.held
    if (held) {
      this.held = undefined
      held.started()
      await held.gate
    }
    return { id, amount }
  }
}

function pricesSchema(prices: Prices) {
  return createSchema({
    typeDefs: /* GraphQL */ `
      ${strataDirectivesSdl}
      type Price @cacheControl(maxAge: 1) { id: ID! amount: Int! }
      type Query { price(id: ID!): Price }
      type Mutation { setPrice(id: ID!, amount: Int!): Price }
    `,
    resolvers: {
      Query: {
        price: (_: unknown, { id }: { id: string }, _context: unknown, info: GraphQLResolveInfo) =>
          prices.read(id, info),
      },
      Mutation: {
        setPrice: (_: unknown, { id, amount }: { id: string; amount: number }) => {
          prices.amounts.set(id, amount)
          return { id, amount }
        },
      },
    },
  })
}

const PRICE = '{ price(id: "sku-1") { amount } }'
const amountOf = (response: { json: { data?: Record<string, unknown> | null } }) =>
  (response.json.data?.price as { amount?: number } | null | undefined)?.amount

/** The tiers each case runs on: alone, so that the stale entry comes from that tier. */
const tierSetups: [string, () => Promise<CacheTier>][] = [
  ['memory', async () => memoryTier()],
  [
    'Redis',
    async () => {
      const client = new Redis(await serviceUrl('redis'))
      closers.push(() => client.quit())
      return redisTier({ client, namespace: `swr-${randomUUID().slice(0, 8)}` })
    },
  ],
  [
    'PostgreSQL',
    async () => {
      const pool = new pg.Pool({ connectionString: await serviceUrl('postgres'), max: 4 })
      closers.push(() => pool.end())
      const tier = postgresTier({ pool, schema: `strata_swr_${process.pid}` })
      await tier.clear()
      return tier
    },
  ],
]

describe.each(tierSetups)('staleWhileRevalidate on the %s tier', (_name, makeTier) => {
  async function instance(prices: Prices, staleWhileRevalidate = 30) {
    const plugin: StrataPlugin = useStrata({
      tenant: false,
      debug: true,
      staleWhileRevalidate,
      tiers: [await makeTier()],
    })
    const server = await startStrataServer(pricesSchema(prices), plugin, closers)
    return { server, strata: plugin.strata }
  }

  /** Caches the price, then waits until its maxAge (1 s) has passed. */
  async function cachedThenAged(server: Awaited<ReturnType<typeof instance>>['server']) {
    expect((await server.query(PRICE)).cache).toBe('MISS')
    expect(await waitFor(async () => (await server.query(PRICE)).cache === 'HIT', 1000)).toBe(true)
    await sleep(1100)
  }

  it('serves an aged entry stale at once, refreshes it once in the background, then serves the new data', async () => {
    const prices = new Prices()
    const { server, strata } = await instance(prices)
    await cachedThenAged(server)
    prices.amounts.set('sku-1', 2) // changed without Strata knowing: only age can end the entry
    const callsBefore = prices.calls
    const { release } = prices.hold() // the refresh waits until every stale read was answered

    const stale = await Promise.all([1, 2, 3, 4, 5].map(() => server.query(PRICE)))
    release()
    for (const response of stale) {
      expect(response.cache).toBe('STALE')
      expect(amountOf(response)).toBe(1)
      expect(response.headers.get('cache-control')).toBe('no-store')
      expect(response.headers.get('etag')).toBeNull()
      expect(response.json.extensions?.strata).toMatchObject({ hit: true, ttl: 0, stale: true })
    }
    const refreshed = await waitFor(async () => {
      const read = await server.query(PRICE)
      return read.cache === 'HIT' && amountOf(read) === 2
    }, 2000)
    expect(refreshed, 'a later read is a fresh hit with the new amount').toBe(true)
    expect(prices.calls - callsBefore, 'five stale reads, one refresh').toBe(1)
    const stats = strata.stats()
    expect(stats.staleHits).toBeGreaterThanOrEqual(5)
    expect(stats.refreshes).toBe(1)
  })

  it('keeps serving the stale entry while refreshes fail, until its grace ends', async () => {
    const prices = new Prices()
    const { server, strata } = await instance(prices, 2)
    await cachedThenAged(server)
    prices.failing = true
    for (let i = 0; i < 2; i++) {
      const read = await server.query(PRICE)
      expect(read.cache).toBe('STALE')
      expect(amountOf(read)).toBe(1)
      expect(read.json.errors).toBeUndefined()
      expect(await waitFor(() => strata.stats().skippedStores.errors === i + 1, 1000)).toBe(true)
    }
    expect(strata.stats().refreshes).toBe(2)
    // maxAge 1 s + grace 2 s from the store, which was more than 1.1 s ago.
    await sleep(2000)
    const after = await server.query(PRICE)
    expect(after.cache).toBe('MISS')
    expect(after.json.errors?.[0]?.message).toBe('pricing backend down')
  })

  it('removes the stale entry when its refresh may not be stored (it became uncacheable)', async () => {
    const prices = new Prices()
    const { server, strata } = await instance(prices)
    await cachedThenAged(server)
    prices.uncacheable = true
    expect((await server.query(PRICE)).cache).toBe('STALE')
    expect(await waitFor(() => strata.stats().skippedStores.uncacheable === 1, 2000)).toBe(true)
    // Not served stale for the rest of its grace: from now on every read executes.
    expect(await waitFor(async () => (await server.query(PRICE)).cache === 'MISS', 2000)).toBe(true)
    expect((await server.query(PRICE)).cache).toBe('MISS')
  })

  it('never serves an invalidated entry stale', async () => {
    const prices = new Prices()
    const { server } = await instance(prices)
    await cachedThenAged(server)
    await server.query('mutation { setPrice(id: "sku-1", amount: 7) { id amount } }')
    const read = await server.query(PRICE)
    expect(read.cache).toBe('MISS')
    expect(amountOf(read)).toBe(7)
  })

  it('does not store a refresh whose execution began before an invalidation of its entry', async () => {
    const prices = new Prices()
    const { server, strata } = await instance(prices)
    await cachedThenAged(server)
    const { started, release } = prices.hold()
    expect((await server.query(PRICE)).cache).toBe('STALE')
    await started // the refresh read amount 1 and waits
    await server.query('mutation { setPrice(id: "sku-1", amount: 3) { id amount } }')
    release()
    expect(
      await waitFor(() => strata.stats().skippedStores['invalidated-during-execution'] === 1, 2000),
    ).toBe(true)
    const read = await server.query(PRICE)
    expect(read.cache).toBe('MISS')
    expect(amountOf(read)).toBe(3)
  })
})

describe('a refresh that hangs', () => {
  it('no longer stops the key from being refreshed once singleFlight.maxWaitMs has passed', async () => {
    const prices = new Prices()
    const plugin = useStrata({ tenant: false, staleWhileRevalidate: 30, singleFlight: { maxWaitMs: 200 } })
    const server = await startStrataServer(pricesSchema(prices), plugin, closers)
    await server.query(PRICE)
    await sleep(1100)
    const { started, release } = prices.hold()
    expect((await server.query(PRICE)).cache).toBe('STALE')
    await started // the first refresh hangs
    expect((await server.query(PRICE)).cache).toBe('STALE') // within the wait: no second refresh
    expect(plugin.strata.stats().refreshes).toBe(1)
    await sleep(250)
    prices.amounts.set('sku-1', 9)
    expect((await server.query(PRICE)).cache).toBe('STALE')
    expect(plugin.strata.stats().refreshes).toBe(2)
    const refreshed = await waitFor(async () => amountOf(await server.query(PRICE)) === 9, 2000)
    expect(refreshed, 'the second refresh stored the new amount').toBe(true)
    release()
  })
})

describe('staleWhileRevalidate with cacheErrors', () => {
  it('a refresh that fails with an error raised on purpose does not replace the stale data (stale-if-error)', async () => {
    const prices = new Prices()
    const plugin = useStrata({ tenant: false, cacheErrors: true, staleWhileRevalidate: 30 })
    const server = await startStrataServer(pricesSchema(prices), plugin, closers)
    expect((await server.query(PRICE)).cache).toBe('MISS')
    await sleep(1100)
    prices.failing = true // the backend throws a GraphQLError, which cacheErrors would store on a miss
    expect((await server.query(PRICE)).cache).toBe('STALE')
    expect(await waitFor(() => plugin.strata.stats().skippedStores.errors === 1, 1000)).toBe(true)
    const again = await server.query(PRICE)
    expect(again.cache).toBe('STALE')
    expect(amountOf(again)).toBe(1)
    expect(again.json.errors).toBeUndefined()
  })
})

describe('staleWhileRevalidate off (the default)', () => {
  it('an entry past its maxAge is a miss', async () => {
    const prices = new Prices()
    const plugin = useStrata({ tenant: false })
    const server = await startStrataServer(pricesSchema(prices), plugin, closers)
    expect((await server.query(PRICE)).cache).toBe('MISS')
    expect((await server.query(PRICE)).cache).toBe('HIT')
    await sleep(1100)
    expect((await server.query(PRICE)).cache).toBe('MISS')
    expect(plugin.strata.stats().staleHits).toBe(0)
  })
})

describe('the admin field on stale entries', () => {
  it('lists an aged entry with ttlSeconds 0 and the grace left in servedForSeconds, and counts stale hits', async () => {
    const prices = new Prices()
    const plugin = useStrata({ tenant: false, staleWhileRevalidate: 30, admin: { authorize: () => 'all' } })
    const server = await startStrataServer(pricesSchema(prices), plugin, closers)
    await server.query(PRICE)
    await sleep(1100)
    const { release } = prices.hold()
    expect((await server.query(PRICE)).cache).toBe('STALE')
    const listed = await server.query(
      '{ _strata { entries { nodes { ttlSeconds servedForSeconds } } stats { hits staleHits refreshes } } }',
    )
    release()
    const admin = listed.json.data?._strata as {
      entries: { nodes: { ttlSeconds: number; servedForSeconds: number }[] }
      stats: { hits: number; staleHits: number; refreshes: number }
    }
    expect(admin.entries.nodes).toHaveLength(1)
    expect(admin.entries.nodes[0]?.ttlSeconds).toBe(0)
    expect(admin.entries.nodes[0]?.servedForSeconds).toBeGreaterThanOrEqual(27)
    expect(admin.entries.nodes[0]?.servedForSeconds).toBeLessThanOrEqual(29)
    expect(admin.stats).toEqual({ hits: 1, staleHits: 1, refreshes: 1 })
  })
})

describe("background work and the server's waitUntil", () => {
  it("a miss's write to a shared tier and a stale hit's refresh are handed to waitUntil", async () => {
    const registered: Promise<unknown>[] = []
    const spy: Plugin = {
      onContextBuilding({ context, extendContext }) {
        const original = (context as { waitUntil?: (promise: Promise<unknown>) => void }).waitUntil
        extendContext({
          waitUntil: (promise: Promise<unknown>) => {
            registered.push(promise)
            original?.(promise)
          },
        } as never)
      },
    }
    const namespace = `swr-wait-${randomUUID().slice(0, 8)}`
    const make = async (plugins: Plugin[]) => {
      const client = new Redis(await serviceUrl('redis'))
      closers.push(() => client.quit())
      const plugin = useStrata({
        tenant: false,
        staleWhileRevalidate: 30,
        tiers: [redisTier({ client, namespace })],
      })
      const server = await startServer({ schema: pricesSchema(prices), plugins: [...plugins, plugin] })
      closers.push(
        () => plugin.strata.close(),
        () => server.close(),
      )
      return server
    }
    const prices = new Prices()
    const a = await make([spy])
    const b = await make([])

    expect((await a.query(PRICE)).cache).toBe('MISS')
    expect(registered).toHaveLength(1)
    await registered[0]
    expect((await b.query(PRICE)).cache, 'the write had landed when its promise settled').toBe('HIT')

    await sleep(1100)
    prices.amounts.set('sku-1', 5)
    expect((await a.query(PRICE)).cache).toBe('STALE')
    expect(registered).toHaveLength(2)
    await registered[1]
    const after = await b.query(PRICE)
    expect([after.cache, amountOf(after)], 'the refresh was stored when its promise settled').toEqual([
      'HIT',
      5,
    ])
  })
})
