import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { afterAll, describe, expect, it } from 'vitest'
import { redisTier } from '../../src/redis.js'
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
    for (let i = 0; i < 500; i++) await tier.set(keyFor(), entryOf('{"x":1}', ['Hot'], { ttlMs: 200 }))
    expect(await client.zcard(index)).toBe(500)
    const expiry = Number(await client.call('PEXPIRETIME', index))
    expect(expiry).toBeGreaterThan(Date.now())
    expect(expiry).toBeLessThanOrEqual(Date.now() + 200)
    await sleep(250)
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
