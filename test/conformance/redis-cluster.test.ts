import { createHash } from 'node:crypto'
import { Cluster } from 'ioredis'
import { redisTier } from '../../src/redis.js'
import { startLocalCluster } from '../support/redis-cluster.js'
import { describeTierConformance } from './tier-suite.js'

describeTierConformance('redis cluster (3 nodes)', async () => {
  const cluster = await startLocalCluster()
  const client = new Cluster(cluster.ports.map((port) => ({ host: '127.0.0.1', port })))
  await new Promise<void>((resolve, reject) => {
    client.once('ready', () => resolve())
    client.once('error', reject)
  })
  const shards = 8
  // The shards must land on every node, or the cluster paths (per-node SCAN, routing) go untested.
  const nodeOf = (slot: number) => (slot <= 5460 ? 0 : slot <= 10922 ? 1 : 2) // redis-cli --cluster create's split
  const slots = await Promise.all(
    Array.from({ length: shards }, (_, shard) => client.call('CLUSTER', 'KEYSLOT', `{cluster:${shard}}`)),
  )
  if (new Set(slots.map((slot) => nodeOf(Number(slot)))).size !== 3)
    throw new Error('shards do not spread over all 3 nodes')
  const tier = redisTier({ client, namespace: 'cluster', shards, skewToleranceMs: 100 })
  const slotOf = (key: string) =>
    Number.parseInt(createHash('md5').update(key).digest('hex').slice(0, 8), 16) % shards
  return {
    tier,
    guardsWrites: true,
    skewMs: 100,
    writeRaw: async (key, value) => {
      await client.set(`{cluster:${slotOf(key)}}e:${key}`, value, 'PX', 60_000)
    },
    cleanup: async () => {
      await client.quit()
      await cluster.stop()
    },
  }
})
