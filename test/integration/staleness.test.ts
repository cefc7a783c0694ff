import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import pg from 'pg'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { memoryTier, type StrataPlugin, useStrata } from '../../src/index.js'
import { postgresChanges } from '../../src/postgres.js'
import { redisTier } from '../../src/redis.js'
import { createPgBlog } from '../support/pg-blog.js'
import { startStrataServer, type TestServer } from '../support/server.js'
import { serviceUrl } from '../support/services.js'

/**
 * Staleness checker: random reads on three instances while SQL writes (outside GraphQL) and
 * GraphQL mutations run, for a bounded time. Asserts that no read returns data older than a
 * commit that finished more than a second before the read started, and that a mutation's own
 * instance never serves anything older than the mutation once it has responded.
 */
const data = `stale_data_${process.pid}`
const strataSchema = `stale_strata_${process.pid}`
const RUN_MS = 4000
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const closers: (() => Promise<unknown>)[] = []
let admin: pg.Pool
let blog: Awaited<ReturnType<typeof createPgBlog>>

beforeAll(async () => {
  admin = new pg.Pool({ connectionString: await serviceUrl('postgres'), max: 4 })
  blog = await createPgBlog(admin, data)
})
afterAll(async () => {
  for (const close of closers.splice(0).reverse()) await close()
  await blog?.drop()
  await admin?.query(`DROP SCHEMA IF EXISTS ${strataSchema} CASCADE`)
  await admin?.end()
})

async function instance(namespace: string): Promise<{ server: TestServer; strata: StrataPlugin['strata'] }> {
  const pool = new pg.Pool({ connectionString: await serviceUrl('postgres'), max: 4 })
  const client = new Redis(await serviceUrl('redis'))
  const plugin = useStrata({
    tenant: false,
    tiers: [memoryTier(), redisTier({ client, namespace, shards: 4 })],
    changes: postgresChanges({ pool, schema: strataSchema, pollMs: 20, followerPollMs: 200 }),
  })
  const server = await startStrataServer(
    blog.schema,
    plugin,
    closers,
    () => pool.end(),
    () => client.quit(),
  )
  for (let i = 0; i < 500 && !plugin.strata.cache.localTrusted; i++) await sleep(10)
  return { server, strata: plugin.strata }
}

it('zero reads older than a commit finished over 1 s before, zero read-your-writes violations', async () => {
  const namespace = `stale-${randomUUID().slice(0, 8)}`
  const first = await instance(namespace)
  await admin.query(`SELECT ${strataSchema}.watch('${data}.post', 'Post', 'id')`)
  const fleet = [first, await instance(namespace), await instance(namespace)]

  // Versions are per post and increase in commit order: SQL writes own posts 1-3, mutations 4-5.
  const committed = new Map<number, { version: number; at: number }[]>()
  const record = (id: number, version: number, at: number) => {
    const list = committed.get(id) ?? []
    list.push({ version, at })
    committed.set(id, list)
  }
  for (let id = 1; id <= 5; id++) record(id, 0, 0)
  const versionOf = (res: { json: { data?: Record<string, unknown> | null } }): number => {
    const post = res.json.data?.post as { title?: string } | null | undefined
    if (typeof post?.title !== 'string') throw new Error(`unexpected response: ${JSON.stringify(res.json)}`)
    return Number(post.title.slice(1))
  }
  const deadline = Date.now() + RUN_MS
  const staleness: number[] = []
  let reads = 0
  let violations = 0
  let ryw = 0

  const sqlWriter = async () => {
    const next = new Map<number, number>()
    for (let i = 0; Date.now() < deadline; i++) {
      const id = 1 + (i % 3)
      const version = (next.get(id) ?? 0) + 1
      next.set(id, version)
      await admin.query(`UPDATE ${data}.post SET title = $2 WHERE id = $1`, [id, `v${version}`])
      record(id, version, Date.now())
      await sleep(10)
    }
  }
  const mutator = async () => {
    const next = new Map<number, number>()
    for (let i = 0; Date.now() < deadline; i++) {
      const id = 4 + (i % 2)
      const version = (next.get(id) ?? 0) + 1
      next.set(id, version)
      const target = fleet[i % fleet.length] as (typeof fleet)[number]
      await target.server.query('mutation($id: ID!, $t: String!) { setTitle(id: $id, title: $t) { id } }', {
        id: String(id),
        t: `v${version}`,
      })
      record(id, version, Date.now())
      const after = await target.server.query('query($id: ID!) { post(id: $id) { title } }', {
        id: String(id),
      })
      if (versionOf(after) < version) ryw++
      await sleep(25)
    }
  }
  const reader = async (server: TestServer) => {
    while (Date.now() < deadline) {
      const id = 1 + Math.floor(Math.random() * 5)
      const started = Date.now()
      const res = await server.query('query($id: ID!) { post(id: $id) { title } }', { id: String(id) })
      const seen = versionOf(res)
      reads++
      const history = committed.get(id) ?? []
      // The first version newer than the one served that had committed before the read started.
      const missed = history.find((c) => c.version > seen && c.at < started)
      const lag = missed ? started - missed.at : 0
      staleness.push(lag)
      if (lag > 1000) violations++
    }
  }
  await Promise.all([sqlWriter(), mutator(), ...fleet.map(({ server }) => reader(server))])

  staleness.sort((a, b) => a - b)
  const p99 = staleness[Math.floor(staleness.length * 0.99)] ?? 0
  const max = staleness.at(-1) ?? 0
  process.stdout.write(`staleness checker: ${reads} reads, p99 staleness ${p99} ms, max ${max} ms\n`)
  expect(reads).toBeGreaterThan(100)
  expect(violations).toBe(0)
  expect(ryw).toBe(0)
})
