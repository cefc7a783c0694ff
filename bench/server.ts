// Benchmark target: the blog example (data on embedded PGlite), with or without Strata.
// MODE=uncached | strata | redis-only | postgres-only | peer. With Strata, `x-bench-nonce` feeds
// extraKeyData, so a load that sends a fresh nonce per request exercises the full miss path
// (execute + store), and `x-bench-bypass` switches the cache off per request (bare hook cost).
// The *-only modes cache in that shared tier alone (REDIS_URL / CACHE_DATABASE_URL, else local).
// MODE=peer serves through The Guild's @graphql-yoga/plugin-response-cache instead of Strata, with
// its defaults (in-memory LRU); its key gets the tenant and the nonce through `session`, the way
// its documentation keys per user.

import { useResponseCache } from '@graphql-yoga/plugin-response-cache'
import type { CacheTier } from 'graphql-strata'
import { postgresTier } from 'graphql-strata/postgres'
import { redisTier } from 'graphql-strata/redis'
import { Redis } from 'ioredis'
import pg from 'pg'
import { startBlogServer } from '../examples/blog/app.js'

const mode = process.env.MODE ?? 'strata'
const closers: (() => Promise<unknown>)[] = []
let tiers: CacheTier[] | undefined
if (mode === 'redis-only') {
  const client = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379')
  closers.push(() => client.quit())
  tiers = [redisTier({ client, namespace: 'strata-bench' })]
} else if (mode === 'postgres-only') {
  const pool = new pg.Pool({
    connectionString: process.env.CACHE_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  })
  closers.push(() => pool.end())
  tiers = [postgresTier({ pool, schema: 'strata_bench' })]
}

const server = await startBlogServer({
  port: 0,
  // The cache paths are measured alone: on the embedded database the change listener's polling
  // shares PGlite's single thread with the resolvers (measured separately in RESULTS.md).
  changes: process.env.CHANGES === '1',
  ...(mode === 'peer'
    ? {
        plugins: [
          useResponseCache({
            session: (request) =>
              `${request.headers.get('x-tenant-id')}|${request.headers.get('x-bench-nonce')}`,
          }),
        ],
      }
    : {}),
  strata:
    mode === 'uncached' || mode === 'peer'
      ? false
      : {
          extraKeyData: ({ context }) => context.request.headers.get('x-bench-nonce'),
          enabled: ({ context }) => !context.request.headers.has('x-bench-bypass'),
          ...(tiers ? { tiers } : {}),
        },
})
if (tiers) await server.strata.clear()
process.stdout.write(`READY ${server.url}\n`)
process.on('SIGTERM', () => {
  void server
    .close()
    .then(() => Promise.all(closers.map((close) => close())))
    .then(() => process.exit(0))
})
