import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { afterAll, describe, expect, it } from 'vitest'
import { redisTier } from '../../src/redis.js'
import { purgeListing } from '../../src/tiers/purge.js'
import { listBudget } from '../../src/tiers/redis.js'
import { entryOf, keyFor } from '../conformance/tier-suite.js'
import { serviceUrl } from '../support/services.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('redis tier index hygiene', () => {
  const clients: Redis[] = []
  afterAll(async () => {
    for (const client of clients) await client.quit()
  })

  it('tag indexes drop expired members, expire with their last member, and stamps expire', async () => {
    const client = new Redis(await serviceUrl('redis'))
    clients.push(client)
    const namespace = `idx-${randomUUID().slice(0, 8)}`
    const tier = redisTier({ client, namespace, shards: 1, stampTtlMs: 300 })
    const index = `{${namespace}:0}x:Hot`
    // Written together, with a TTL the writes cannot outlast even on a loaded machine.
    await Promise.all(
      Array.from({ length: 500 }, () => tier.set(keyFor(), entryOf('{"x":1}', ['Hot'], { ttlMs: 1000 }))),
    )
    expect(await client.zcard(index)).toBe(500)
    const expiry = Number(await client.call('PEXPIRETIME', index))
    expect(expiry).toBeGreaterThan(Date.now())
    expect(expiry).toBeLessThanOrEqual(Date.now() + 1000)
    await sleep(1050)
    // Writing one more entry under the tag prunes every expired member.
    await tier.set(keyFor(), entryOf('{"x":1}', ['Hot'], { ttlMs: 60_000 }))
    expect(await client.zcard(index)).toBe(1)
    await tier.invalidate(['Hot'])
    const stamp = `{${namespace}:0}i:Hot`
    expect(Number(await client.pttl(stamp))).toBeGreaterThan(0)
    await sleep(350)
    expect(await client.exists(stamp, index)).toBe(0)
    const [, left] = await client.scan('0', 'MATCH', `{${namespace}:*`, 'COUNT', 1000)
    expect(left.filter((k) => !k.endsWith('}f'))).toEqual([])
  })

  it('a full clear leaves the index and stamp of what is written and invalidated while it runs', async () => {
    const client = new Redis(await serviceUrl('redis'))
    clients.push(client)
    // A database of its own: with other files' keys beside it, SCAN needs several calls, and a later
    // one may return the entry written during the clear (SCAN may or may not return keys added
    // while it runs), which this test's race must not depend on.
    await client.select(13)
    const namespace = `idx-${randomUUID().slice(0, 8)}`
    const before = keyFor()
    const during = keyFor()
    let inClear = false
    // The clear has listed the keys to remove when it unlinks the first batch: an execution that
    // began after the clear's fence stores an entry under a tag that already had one, and another
    // tag is invalidated, both before that batch goes.
    const racing = new Proxy(client, {
      get(target, property, receiver) {
        if (property !== 'unlink') return Reflect.get(target, property, receiver)
        return async (...keys: string[]) => {
          if (inClear) {
            inClear = false
            await sleep(5)
            await tier.set(during, entryOf('{"x":2}', ['Post:1']), { startedAt: Date.now() })
            await tier.invalidate(['Post:2'])
          }
          return target.unlink(...keys)
        }
      },
    })
    const tier = redisTier({ client: racing, namespace, shards: 1, skewToleranceMs: 0 })
    await tier.set(before, entryOf('{"x":1}', ['Post:1']))
    await tier.invalidate(['Unrelated']) // a stamp and an index key exist before the clear too
    inClear = true
    expect(await tier.clear()).toBe(1)
    expect(inClear).toBe(false)
    expect(await tier.get(before)).toBeUndefined()
    expect((await tier.get(during))?.body).toBe('{"x":2}')
    // Its index still finds it, and the stamp made during the clear still refuses older writes.
    expect(await tier.invalidate(['Post:1'])).toBe(1)
    expect(await tier.get(during)).toBeUndefined()
    await tier.set(before, entryOf('{"x":3}', ['Post:2']), { startedAt: Date.now() - 1000 })
    expect(await tier.get(before)).toBeUndefined()
  })
})

describe('redis tier listings', () => {
  const clients: Redis[] = []
  afterAll(async () => {
    for (const client of clients) await client.quit()
  })

  it('each list call examines a bounded part of the keyspace: a sparse match comes in partial pages with a cursor, each entry once, and a purge pages through to all of them', async () => {
    const client = new Redis(await serviceUrl('redis'))
    clients.push(client)
    const namespace = `lst-${randomUUID().slice(0, 8)}`
    // 12,000 keys that SCAN examines and the entry pattern does not match...
    const filler = Array.from({ length: 12_000 }, (_, i) => `{${namespace}:0}z:${i}`)
    for (let i = 0; i < filler.length; i += 1000) {
      const batch = client.pipeline()
      for (const key of filler.slice(i, i + 1000)) batch.set(key, '1', 'PX', 60_000)
      await batch.exec()
    }
    // ...1,500 entries read and rejected by the filter, and the 5 it lists.
    const writer = redisTier({ client, namespace, shards: 4 })
    await Promise.all(
      Array.from({ length: 1500 }, () =>
        writer.set(keyFor(), entryOf('{}', ['T'], { operationName: 'Other' })),
      ),
    )
    const rare = Array.from({ length: 5 }, () => keyFor())
    for (const key of rare) await writer.set(key, entryOf('{}', ['T'], { operationName: 'Rare' }))

    let scans = 0
    let reads = 0
    let largestBatch = 0
    let inFlight = 0
    let mostInFlight = 0
    const counting = new Proxy(client, {
      get(target, property, receiver) {
        if (property === 'scan') {
          return async (...args: unknown[]) => {
            scans++
            const answer: [string, string[]] = await Reflect.apply(target.scan, target, args)
            largestBatch = Math.max(largestBatch, answer[1].length)
            return answer
          }
        }
        if (property === 'get') {
          return async (key: string) => {
            reads++
            inFlight++
            mostInFlight = Math.max(mostInFlight, inFlight)
            try {
              return await target.get(key)
            } finally {
              inFlight--
            }
          }
        }
        return Reflect.get(target, property, receiver)
      },
    })
    const tier = redisTier({ client: counting, namespace, shards: 4 })
    const seen: string[] = []
    const calls: { scans: number; reads: number; largestBatch: number }[] = []
    let cursor: string | undefined
    do {
      scans = 0
      reads = 0
      largestBatch = 0
      const page = await tier.list({ operationName: 'Rare', limit: 10, cursor })
      calls.push({ scans, reads, largestBatch })
      seen.push(...page.entries.map((entry) => entry.key))
      cursor = page.cursor
    } while (cursor !== undefined)
    expect(seen.sort()).toEqual([...rare].sort())
    expect(calls.length).toBeGreaterThan(1) // before: one call walked the whole keyspace
    expect(mostInFlight).toBeGreaterThan(10) // a page's reads go out together (before: one at a time)
    for (const call of calls) {
      expect(call.scans).toBeLessThanOrEqual(listBudget.scans)
      expect(call.reads).toBeLessThan(listBudget.reads + call.largestBatch) // the last batch is finished
    }
    const purged = await purgeListing(tier, { tenant: undefined, operationName: 'Rare' })
    expect(purged.sort()).toEqual([...rare].sort())
    await client.unlink(...filler)
  })
})
