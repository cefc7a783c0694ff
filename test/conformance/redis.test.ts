import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { redisTier } from '../../src/redis.js'
import { serviceUrl } from '../support/services.js'
import { describeTierConformance } from './tier-suite.js'

describeTierConformance('redis', async () => {
  const client = new Redis(await serviceUrl('redis'))
  const namespace = `conf-${randomUUID().slice(0, 8)}`
  const tier = redisTier({ client, namespace, shards: 4, skewToleranceMs: 100 })
  const { createHash } = await import('node:crypto')
  const slotOf = (key: string) =>
    Number.parseInt(createHash('md5').update(key).digest('hex').slice(0, 8), 16) % 4
  return {
    tier,
    guardsWrites: true,
    skewMs: 100,
    writeRaw: async (key, value) => {
      await client.set(`{${namespace}:${slotOf(key)}}e:${key}`, value, 'PX', 60_000)
    },
    cleanup: async () => {
      await client.quit()
    },
  }
})
