import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { memoryTier, type StrataPlugin, useStrata } from '../../src/index.js'
import { redisTier } from '../../src/redis.js'
import { RedisBus, type RedisBusTiming } from '../../src/tiers/redis-bus.js'
import { BlogStore, blogSchema } from '../support/blog.js'
import { type FaultProxy, startProxy } from '../support/proxy.js'
import { startStrataServer } from '../support/server.js'
import { serviceUrl } from '../support/services.js'
import { sleep, waitFor } from '../support/wait.js'

const closers: (() => Promise<unknown>)[] = []
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close()
})

/** One Yoga instance with a memory tier in front of Redis (optionally through a fault proxy). */
async function instance(redisUrl: string, namespace: string, store: BlogStore, timing?: RedisBusTiming) {
  const client = new Redis(redisUrl, { maxRetriesPerRequest: null, retryStrategy: () => 50 })
  client.on('error', () => {}) // connection faults are the point of some tests; ioredis reconnects
  const plugin: StrataPlugin = useStrata({
    tenant: false,
    debug: true,
    tiers: [memoryTier(), redisTier({ client, namespace, shards: 4, skewToleranceMs: 50 })],
    breaker: { cooldownMs: 100 },
    ...(timing ? { bus: new RedisBus(client, `${namespace}:bus`, timing) } : {}),
  })
  const server = await startStrataServer(blogSchema(store), plugin, closers, () =>
    client.quit().catch(() => undefined),
  )
  await waitFor(() => plugin.strata.cache.localTrusted, 2000)
  return { server, strata: plugin.strata }
}

const LIST = '{ posts { id title } }'

describe('a fleet sharing Redis', () => {
  it('B serves what A stored, and after a mutation on A, B reads fresh data within 100 ms', async () => {
    const url = await serviceUrl('redis')
    const namespace = `fleet-${randomUUID().slice(0, 8)}`
    const store = new BlogStore()
    const a = await instance(url, namespace, store)
    const b = await instance(url, namespace, store)
    expect((await a.server.query(LIST)).cache).toBe('MISS')
    await sleep(20) // the write to Redis does not delay the response
    const fromRedis = await b.server.query(LIST)
    expect(fromRedis.cache).toBe('HIT')
    expect(fromRedis.json.extensions?.strata).toMatchObject({ tier: 'redis' })
    expect((await b.server.query(LIST)).json.extensions?.strata).toMatchObject({ tier: 'memory' })

    await a.server.query('mutation { updatePost(id: "2", title: "Fresh") { id } }')
    const mutatedAt = Date.now()
    let lag = Number.POSITIVE_INFINITY
    const fresh = await waitFor(async () => {
      const read = await b.server.query(LIST)
      if (!read.text.includes('Fresh')) return false
      lag = Date.now() - mutatedAt
      return true
    }, 100)
    expect(fresh, 'B saw the mutation within 100 ms').toBe(true)
    expect(lag).toBeLessThanOrEqual(100)
    expect(b.strata.stats().busMessages).toBeGreaterThan(0)
  })

  it('while the bus is down, local tiers are flushed and skipped; they are used again once it is back', async () => {
    const url = await serviceUrl('redis')
    const namespace = `gap-${randomUUID().slice(0, 8)}`
    const b = await instance(url, namespace, new BlogStore())
    await b.server.query(LIST)
    expect((await b.server.query(LIST)).json.extensions?.strata).toMatchObject({ tier: 'memory' })
    const admin = new Redis(url)
    closers.push(() => admin.quit())
    await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub')
    expect(await waitFor(() => b.strata.stats().busGaps > 0, 2000)).toBe(true)
    expect(await waitFor(() => b.strata.cache.localTrusted, 3000)).toBe(true)
    const after = await b.server.query(LIST)
    expect(after.json.extensions?.strata).toMatchObject({ tier: 'redis' })
  })
})

describe('Redis faults never fail a request', () => {
  let proxy: FaultProxy | undefined
  afterAll(() => proxy?.close())

  for (const fault of ['hang', 'cut'] as const) {
    it(`Redis that ${fault === 'hang' ? 'stops answering' : 'goes away'} mid-traffic: 0 failed requests, then recovery`, async () => {
      proxy = await startProxy(await serviceUrl('redis'))
      const namespace = `fault-${randomUUID().slice(0, 8)}`
      const store = new BlogStore()
      const { server, strata } = await instance(proxy.url, namespace, store)
      const queries = [
        LIST,
        '{ post(id: "1") { id title } }',
        '{ tags { label } }',
        '{ posts(first: 1) { id } }',
      ]
      let failures = 0
      let served = 0
      const traffic = (async () => {
        for (let i = 0; i < 120; i++) {
          const res = await server.query(queries[i % queries.length] as string)
          if (res.status !== 200 || !res.json.data || res.json.errors) failures++
          else served++
          await strata.cache.clearLocal() // every request goes to Redis
          await sleep(10) // spread the traffic over the fault window
        }
      })()
      await sleep(50)
      if (fault === 'hang') proxy.hang()
      else proxy.cut()
      await sleep(700)
      proxy.heal()
      await traffic
      expect(failures).toBe(0)
      expect(served).toBe(120)
      expect(strata.cache.health().redis?.failures).toBeGreaterThan(0)
      expect(await waitFor(() => strata.cache.health().redis?.state === 'closed', 10_000)).toBe(true)
      await strata.cache.clearLocal()
      await server.query('{ posts(first: 2) { id } }')
      await sleep(20)
      await strata.cache.clearLocal()
      const recovered = await server.query('{ posts(first: 2) { id } }')
      expect(recovered.json.extensions?.strata).toMatchObject({ tier: 'redis' })
      await proxy.close()
      proxy = undefined
    })
  }

  it('Redis that stops answering: a mutation still answers, and other instances stop trusting their memory', async () => {
    proxy = await startProxy(await serviceUrl('redis'))
    const namespace = `stall-${randomUUID().slice(0, 8)}`
    const store = new BlogStore()
    const a = await instance(proxy.url, namespace, store)
    const b = await instance(proxy.url, namespace, store, { pingMs: 100, pingTimeoutMs: 200 })
    await b.server.query(LIST)
    expect((await b.server.query(LIST)).json.extensions?.strata).toMatchObject({ tier: 'memory' })
    proxy.hang()
    // The publication to B queues on the stalled connection; the mutation does not wait for it.
    const mutation = await a.server.query('mutation { updatePost(id: "2", title: "Fresh") { id } }')
    expect(mutation.status).toBe(200)
    expect(mutation.json.data).toEqual({ updatePost: { id: '2' } })
    expect(a.strata.stats().busErrors).toBe(1)
    // B's listener stopped answering its pings: B flushed its memory and stopped using it.
    expect(await waitFor(() => !b.strata.cache.localTrusted, 3000)).toBe(true)
    expect((await b.server.query(LIST)).text).toContain('Fresh')
    proxy.heal()
    expect(await waitFor(() => b.strata.cache.localTrusted, 5000)).toBe(true)
    expect(b.strata.stats().busGaps).toBe(1)
    await proxy.close()
    proxy = undefined
  })

  it('a bus started while Redis is unreachable does not hold startup up, comes up when Redis answers, and closes while it is away', async () => {
    proxy = await startProxy(await serviceUrl('redis'))
    proxy.cut()
    const channel = `absent-${randomUUID().slice(0, 8)}:bus`
    const client = new Redis(proxy.url).on('error', () => undefined) // it is meant to fail for a while
    const publisher = new Redis(await serviceUrl('redis'))
    closers.push(async () => {
      client.disconnect()
      await publisher.quit()
    })
    const bus = new RedisBus(client, channel, { pingMs: 100, pingTimeoutMs: 200 })
    const events: string[] = []
    const received: unknown[] = []
    const failures: string[] = []
    const handlers = {
      onMessage: (message: unknown) => received.push(message),
      onDown: () => events.push('down'),
      onUp: () => events.push('up'),
      onConnectError: (reason: string) => failures.push(reason),
    }
    // Resolves, not up: ioredis would keep the SUBSCRIBE queued for a minute or more.
    expect(await settles(bus.start(handlers), 3000)).toBe(true)
    expect(events).toEqual([])
    // Each failed attempt says why, so the engine can log it.
    expect(await waitFor(() => failures.length > 0, 3000), 'a connect failure reported').toBe(true)
    expect(failures[0]).toMatch(/^redis bus could not (connect|subscribe): .+/)
    proxy.heal()
    expect(await waitFor(() => events.includes('up'), 5000)).toBe(true)
    const other = new RedisBus(publisher, channel)
    await other.publish({ kind: 'invalidate', tags: ['Post:1'] })
    expect(await waitFor(() => received.length === 1, 2000)).toBe(true)
    proxy.cut()
    expect(await waitFor(() => events.includes('down'), 3000)).toBe(true)
    // Closing while Redis is away returns, whether the bus was ever up or not: nothing waits in
    // ioredis' offline queue.
    const never = new RedisBus(client, channel, { pingMs: 100, pingTimeoutMs: 200 })
    await never.start({ ...handlers, onUp: () => events.push('never up') })
    expect(await settles(never.close(), 3000)).toBe(true)
    expect(await settles(bus.close(), 3000)).toBe(true)
    const before = events.length
    proxy.heal()
    await sleep(500)
    expect(events.length).toBe(before) // closed: it did not reconnect and subscribe again
    expect(events).toEqual(['up', 'down'])
    await proxy.close()
    proxy = undefined
  })
})

/** Whether `promise` settles within `ms` (a liveness check: something that should return at all). */
async function settles(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let done = false
  void promise.finally(() => {
    done = true
  })
  return waitFor(() => done, ms)
}
