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
})
