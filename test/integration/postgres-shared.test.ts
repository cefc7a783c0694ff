import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import pg from 'pg'
import pino, { type Logger } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { type CacheTier, memoryTier, type StrataPlugin, useStrata } from '../../src/index.js'
import { postgresInstallSql, postgresTier } from '../../src/postgres.js'
import { redisTier } from '../../src/redis.js'
import { TieredCache } from '../../src/tiers/tiered.js'
import { withTimeout } from '../../src/timeout.js'
import { BlogStore, blogSchema } from '../support/blog.js'
import { startStrataServer } from '../support/server.js'
import { serviceUrl } from '../support/services.js'
import { sleep, waitFor } from '../support/wait.js'

const closers: (() => Promise<unknown>)[] = []
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close()
})

async function pool(options: pg.PoolConfig = {}) {
  const p = new pg.Pool({ connectionString: await serviceUrl('postgres'), max: 6, ...options })
  closers.push(() => p.end())
  return p
}

async function instance(tiers: CacheTier[], store: BlogStore, breaker = {}, logger?: Logger) {
  const plugin: StrataPlugin = useStrata({ tenant: false, debug: true, tiers, breaker, logger })
  const server = await startStrataServer(blogSchema(store), plugin, closers)
  await waitFor(() => plugin.strata.cache.localTrusted, 3000)
  return { server, strata: plugin.strata }
}

const LIST = '{ posts { id title } }'

async function expectFleetCoherent(
  a: Awaited<ReturnType<typeof instance>>,
  b: Awaited<ReturnType<typeof instance>>,
) {
  expect((await a.server.query(LIST)).cache).toBe('MISS')
  expect(await waitFor(async () => (await b.server.query(LIST)).cache === 'HIT', 1000)).toBe(true)
  const fromB = await b.server.query(LIST)
  expect(fromB.json.extensions?.strata).toMatchObject({ tier: 'memory' })
  await a.server.query('mutation { updatePost(id: "3", title: "Changed on A") { id } }')
  const mutatedAt = Date.now()
  const fresh = await waitFor(async () => (await b.server.query(LIST)).text.includes('Changed on A'), 100)
  expect(fresh, `B saw the mutation within 100 ms (after ${Date.now() - mutatedAt} ms)`).toBe(true)
  expect(b.strata.stats().busMessages).toBeGreaterThan(0)
}

describe('a fleet sharing PostgreSQL', () => {
  it('memory + Redis + PostgreSQL on two instances: B is fresh within 100 ms of a mutation on A', async () => {
    const schema = `strata_fleet_${process.pid}`
    const store = new BlogStore()
    const namespace = `pgfleet-${randomUUID().slice(0, 8)}`
    const make = async () => {
      const client = new Redis(await serviceUrl('redis'))
      closers.push(() => client.quit())
      return instance(
        [
          memoryTier(),
          redisTier({ client, namespace, shards: 4 }),
          postgresTier({ pool: await pool(), schema }),
        ],
        store,
      )
    }
    const a = await make()
    const b = await make()
    closers.push(async () => (await pool()).query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`))
    await expectFleetCoherent(a, b)
  })

  it('memory + PostgreSQL only: the bus is LISTEN/NOTIFY', async () => {
    const schema = `strata_notify_${process.pid}`
    const store = new BlogStore()
    const a = await instance([memoryTier(), postgresTier({ pool: await pool(), schema })], store)
    const b = await instance([memoryTier(), postgresTier({ pool: await pool(), schema })], store)
    closers.push(async () => (await pool()).query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`))
    await expectFleetCoherent(a, b)
  })

  it('a killed LISTEN connection is a gap: local tiers are flushed, then used again after reconnecting', async () => {
    const schema = `strata_gap_${process.pid}`
    const { server, strata } = await instance(
      [memoryTier(), postgresTier({ pool: await pool(), schema })],
      new BlogStore(),
    )
    closers.push(async () => (await pool()).query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`))
    await server.query(LIST)
    expect((await server.query(LIST)).json.extensions?.strata).toMatchObject({ tier: 'memory' })
    const admin = await pool()
    const killed = await admin.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = $1`,
      [`LISTEN ${schema}_bus`],
    )
    expect(killed.rowCount).toBe(1)
    expect(await waitFor(() => strata.stats().busGaps > 0, 3000)).toBe(true)
    expect(await waitFor(() => strata.cache.localTrusted, 5000)).toBe(true)
    expect((await server.query(LIST)).json.extensions?.strata).toMatchObject({ tier: 'postgres' })
  })

  it('a PostgreSQL statement timeout makes the tier skipped: 0 failed requests, then recovery', async () => {
    const schema = `strata_timeout_${process.pid}`
    const tierPool = await pool({ options: '-c statement_timeout=50' })
    const tier = postgresTier({ pool: tierPool, schema })
    const { server, strata } = await instance([tier], new BlogStore(), { timeoutMs: 1000, cooldownMs: 100 })
    closers.push(async () => (await pool()).query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`))
    await server.query(LIST) // installs the schema
    await sleep(50)
    const locker = await (await pool()).connect()
    await locker.query('BEGIN')
    await locker.query(`LOCK TABLE ${schema}.entries IN ACCESS EXCLUSIVE MODE`)
    let failures = 0
    for (let i = 0; i < 20; i++) {
      const res = await server.query(i % 2 ? LIST : '{ tags { label } }')
      if (res.status !== 200 || res.json.errors || !res.json.data) failures++
    }
    expect(failures).toBe(0)
    expect(strata.cache.health().postgres?.state).toBe('open')
    await locker.query('ROLLBACK')
    locker.release()
    expect(await waitFor(() => strata.cache.health().postgres?.state === 'closed', 5000)).toBe(true)
    // A miss's write lands after its response (and, with a 50 ms statement timeout on a loaded
    // machine, may itself be skipped): poll until a read is served by the recovered tier.
    const recovered = await waitFor(async () => {
      const { strata: served } = (await server.query('{ posts(first: 1) { id } }')).json.extensions ?? {}
      return (served as { tier?: string } | undefined)?.tier === 'postgres'
    }, 5000)
    expect(recovered).toBe(true)
  })
})

describe('a PostgreSQL tier on a pool whose transactions default to another isolation level', () => {
  const refusal = (level: string) =>
    new RegExp(
      `this transaction runs at ${level} .*Strata's statements need read committed: give Strata a pool of its own`,
    )

  it.each([
    ['repeatable read', 'repeatable\\ read'],
    ['serializable', 'serializable'],
  ])(
    '%s: the install refuses, saying what to do; the tier is skipped and no request fails',
    async (level, setting) => {
      const schema = `strata_iso_${process.pid}`
      const lines: string[] = []
      const logger = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) })
      const tierPool = await pool({ options: `-c default_transaction_isolation=${setting}` })
      const { server } = await instance(
        [memoryTier(), postgresTier({ pool: tierPool, schema })],
        new BlogStore(),
        {},
        logger,
      )
      closers.push(async () => (await pool()).query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`))
      let failures = 0
      for (let i = 0; i < 4; i++) {
        const res = await server.query(LIST)
        if (res.status !== 200 || res.json.errors || !res.json.data) failures++
      }
      expect(failures).toBe(0)
      const skipped = lines
        .map(
          (line) =>
            JSON.parse(line) as { msg: string; tier?: string; err?: { message: string; code?: string } },
        )
        .find((line) => line.msg === 'strata: cache tier failed; skipped' && line.tier === 'postgres')
      expect(skipped?.err?.code).toBe('SR001')
      expect(skipped?.err?.message).toMatch(refusal(level))
      expect(skipped?.err?.message).toContain("options: '-c default_transaction_isolation=read\\ committed'")
      const installed = await (await pool()).query('SELECT to_regclass($1) AS entries', [`${schema}.entries`])
      expect(installed.rows[0].entries).toBeNull() // the script stopped before creating anything
    },
  )

  it('installed by hand, at REPEATABLE READ it refuses writes and invalidations: a write an invalidation in flight removes is never stored', async () => {
    const schema = `strata_iso_hand_${process.pid}`
    const admin = await pool()
    await admin.query(postgresInstallSql(schema))
    closers.push(() => admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`))
    const settings = { schema, autoInstall: false, purgeIntervalMs: 0 }
    const tier = postgresTier({
      pool: await pool({ options: '-c default_transaction_isolation=repeatable\\ read' }),
      ...settings,
    })
    const reader = postgresTier({ pool: admin, ...settings })
    /** What `run` rejects with (undefined if it resolves). */
    const failure = async (run: () => unknown) => {
      try {
        await run()
      } catch (error) {
        return error
      }
    }
    const now = Date.now()
    const entry = {
      body: '{"data":{"post":{"id":"1","title":"old"}}}',
      size: 42,
      tags: ['Post:1'],
      tenant: null,
      operationName: 'Q',
      scope: 'PUBLIC' as const,
      createdAt: now,
      expiresAt: now + 60_000,
    }
    // Another instance invalidates Post:1 while an execution that began before it stores its result.
    const other = await admin.connect()
    let settled = false
    try {
      await other.query('BEGIN')
      await other.query(`SELECT ${schema}.invalidate($1, $2)`, [['Post:1'], Date.now()])
      const write = failure(() => tier.set('k1', entry, { startedAt: now - 50 }))
      void write.finally(() => {
        settled = true
      })
      const waiting = async () =>
        (
          await admin.query(
            `SELECT count(*)::int AS n FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE $1`,
            [`%${schema}.put(%`],
          )
        ).rows[0].n > 0
      expect(await waitFor(async () => settled || (await waiting()), 3000)).toBe(true)
      await other.query('COMMIT')
      expect(await write).toMatchObject({
        code: 'SR001',
        message: expect.stringMatching(refusal('repeatable read')),
      })
    } finally {
      await other.query('ROLLBACK').catch(() => undefined)
      other.release()
    }
    expect(await reader.get('k1')).toBeUndefined()
    expect(await failure(() => tier.invalidate(['Post:2']))).toMatchObject({ code: 'SR001' })
    expect(await failure(() => tier.fence?.(null))).toMatchObject({ code: 'SR001' })
    expect(await failure(() => tier.clear())).toMatchObject({ code: 'SR001' })
    // READ UNCOMMITTED is READ COMMITTED in PostgreSQL: accepted.
    const lax = postgresTier({
      pool: await pool({ options: '-c default_transaction_isolation=read\\ uncommitted' }),
      ...settings,
    })
    await lax.set('k2', { ...entry, tags: ['Post:3'] })
    expect(await lax.invalidate(['Post:3'])).toBe(1)
  })
})

describe('an invalidation PostgreSQL applies late', () => {
  /**
   * Two instances over one Redis and one PostgreSQL; A reaches PostgreSQL through `wrap`. B has the
   * list cached in every tier when the test begins.
   */
  async function fleet(name: string, wrap: (tier: CacheTier) => CacheTier) {
    const schema = `${name}_${process.pid}`
    const store = new BlogStore()
    const namespace = `${name}-${randomUUID().slice(0, 8)}`
    const tiers = async () => {
      const client = new Redis(await serviceUrl('redis'))
      closers.push(() => client.quit())
      return [memoryTier(), redisTier({ client, namespace }), postgresTier({ pool: await pool(), schema })]
    }
    const [memoryA, redisA, postgresA] = (await tiers()) as [CacheTier, CacheTier, CacheTier]
    await postgresA.get('installed') // A's tier has run its install script
    const a = await instance([memoryA, redisA, wrap(postgresA)], store, {
      invalidateTimeoutMs: 200,
      cooldownMs: 100,
    })
    const bTiers = await tiers()
    const b = await instance(bTiers, store)
    closers.push(async () => (await pool()).query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`))
    const postgres = bTiers[2] as CacheTier
    await b.server.query(LIST)
    const stored = async () => (await postgres.list({ limit: 10 })).entries.length === 1
    expect(await waitFor(stored, 2000)).toBe(true)
    return { a, b, schema, key: (await postgres.list({ limit: 1 })).entries[0]?.key as string }
  }

  /** B reads the old list from PostgreSQL after A's mutation, and so holds it in its memory tier. */
  async function expectOldCopyInMemory(b: Awaited<ReturnType<typeof instance>>) {
    // A told B over the bus before its mutation answered, but B applies it when it arrives.
    expect(await waitFor(() => b.strata.stats().busMessages > 0, 2000), 'B heard from A').toBe(true)
    const fromPostgres = await b.server.query(LIST)
    expect(fromPostgres.json.extensions?.strata).toMatchObject({ tier: 'postgres' })
    expect(fromPostgres.text).not.toContain('Changed on A')
    const fromMemory = await b.server.query(LIST)
    expect(fromMemory.json.extensions?.strata).toMatchObject({ tier: 'memory' })
    expect(fromMemory.text).not.toContain('Changed on A')
  }

  it('deferred by the invalidating instance’s open circuit: once it is replayed, copies made meanwhile are dropped everywhere', async () => {
    let reachable = true
    const { a, b } = await fleet('late_deferred', (tier) => ({
      ...tier,
      get: async (key) => (reachable ? tier.get(key) : Promise.reject(new Error('A: no connection'))),
      invalidate: async (tags) =>
        reachable ? tier.invalidate(tags) : Promise.reject(new Error('A: no connection')),
    }))
    reachable = false
    // A's mutation: memory and Redis are clean, PostgreSQL's part waits in A's breaker.
    await a.server.query('mutation { updatePost(id: "3", title: "Changed on A") { id } }')
    expect(a.strata.cache.health().postgres).toMatchObject({ state: 'open', pendingTags: 2 })
    await expectOldCopyInMemory(b)
    reachable = true
    expect(await waitFor(async () => (await b.server.query(LIST)).text.includes('Changed on A'), 5000)).toBe(
      true,
    )
    expect(a.strata.cache.health().postgres?.state).toBe('closed')
  })

  it('slower than the invalidation timeout: once it has completed, copies made meanwhile are dropped everywhere', async () => {
    const { a, b, schema, key } = await fleet('late_slow', (tier) => tier)
    // Something holds the entry's row (a long transaction, a lock queue): PostgreSQL's DELETE waits.
    const locker = await (await pool()).connect()
    closers.push(async () => locker.release())
    await locker.query('BEGIN')
    await locker.query(`SELECT 1 FROM ${schema}.entries WHERE key = $1 FOR UPDATE`, [key])
    // A's mutation gives up on PostgreSQL after invalidateTimeoutMs and tells the other instances.
    await a.server.query('mutation { updatePost(id: "3", title: "Changed on A") { id } }')
    expect(a.strata.cache.health().postgres?.state).toBe('open')
    await expectOldCopyInMemory(b)
    await locker.query('COMMIT')
    expect(await waitFor(async () => (await b.server.query(LIST)).text.includes('Changed on A'), 5000)).toBe(
      true,
    )
  })
})

describe('the install script, run by every instance at start', () => {
  /** A session outside the pool holding `lock` on the entries table until the test ends (or `release`). */
  async function holdEntries(schema: string, lock: string) {
    const session = new pg.Client({ connectionString: await serviceUrl('postgres') })
    await session.connect()
    let open = true
    const release = async () => {
      if (!open) return
      open = false
      await session.query('ROLLBACK')
      await session.end()
    }
    closers.push(release)
    await session.query('BEGIN')
    await session.query(lock.replace('$entries', `${schema}.entries`))
    return release
  }

  /** Lock requests on the entries table that wait (every later query on the table queues behind one). */
  async function waitingOnEntries(p: pg.Pool, schema: string): Promise<number> {
    const { rows } = await p.query(
      'SELECT count(*)::int AS n FROM pg_locks WHERE relation = to_regclass($1) AND NOT granted',
      [`${schema}.entries`],
    )
    return rows[0].n
  }

  async function installedSchema(name: string) {
    const schema = `${name}_${process.pid}`
    const p = await pool({ max: 4 })
    closers.push(async () => (await pool()).query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`))
    await postgresTier({ pool: p, schema, purgeIntervalMs: 0 }).get('installed')
    return { schema, p }
  }

  it('installed already, it takes no lock on the table: it completes while pg_dump holds it, and nothing queues', async () => {
    const { schema, p } = await installedSchema('strata_inst_dump')
    await holdEntries(schema, 'SELECT count(*) FROM $entries') // pg_dump's ACCESS SHARE, for its whole run
    const starting = Promise.resolve(postgresTier({ pool: p, schema, purgeIntervalMs: 0 }).get('x'))
    let settled = false
    let queued = false
    const done = starting.then(
      () => 'installed',
      (error: unknown) => `failed: ${String(error)}`,
    )
    void done.finally(() => {
      settled = true
    })
    // Before: its ALTER ... SET COMPRESSION asked for ACCESS EXCLUSIVE and waited for the dump to end,
    // and every later query on the table waited behind it.
    const watched = waitFor(async () => {
      if (!settled) queued = (await waitingOnEntries(p, schema)) > 0
      return settled || queued
    }, 10_000)
    const outcome = await Promise.race([
      done,
      watched.then(() => (queued ? 'queued behind the dump' : 'neither')),
    ])
    await watched
    expect(outcome).toBe('installed')
    expect(queued).toBe(false)
    expect(await waitingOnEntries(p, schema)).toBe(0)
  })

  it('a lock it needs (a missing index) held by a long writer fails it after its lock_timeout, without a failed request; it succeeds once released', async () => {
    const { schema, p } = await installedSchema('strata_inst_index')
    await p.query(`DROP INDEX ${schema}.entries_tenant`)
    const release = await holdEntries(schema, 'LOCK TABLE $entries IN ROW EXCLUSIVE MODE') // a long DELETE
    const starting = postgresTier({ pool: p, schema, purgeIntervalMs: 0 })
    // Before: CREATE INDEX waited for the writer with no limit (bounded here to tell the cases apart).
    await expect(withTimeout(Promise.resolve(starting.get('x')), 10_000)).rejects.toThrow(
      /postgres: install script failed .*lock timeout/,
    )
    expect(await waitingOnEntries(p, schema)).toBe(0)
    const cache = new TieredCache(
      [postgresTier({ pool: p, schema, purgeIntervalMs: 0 })],
      pino({ level: 'silent' }),
    )
    closers.push(async () => cache.close())
    await expect(cache.get('strata:g:k')).resolves.toBeUndefined() // a miss, never an error
    await release()
    await expect(starting.get('x')).resolves.toBeUndefined() // the install is retried by the next call
    const { rows } = await p.query('SELECT to_regclass($1) IS NOT NULL AS present', [
      `${schema}.entries_tenant`,
    ])
    expect(rows[0].present).toBe(true)
  })

  it('setting lz4 compression, only while the column lacks it, is left for a later start when the table is held', async () => {
    const { schema, p } = await installedSchema('strata_inst_lz4')
    const compression = async () =>
      (
        await p.query(
          `SELECT attcompression AS c FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = 'value'`,
          [`${schema}.entries`],
        )
      ).rows[0].c
    const lz4 = (
      await p.query(
        `SELECT 'lz4' = ANY (enumvals) AS yes FROM pg_settings WHERE name = 'default_toast_compression'`,
      )
    ).rows[0].yes
    expect(await compression()).toBe(lz4 ? 'l' : '')
    await p.query(`ALTER TABLE ${schema}.entries ALTER COLUMN value SET COMPRESSION pglz`)
    const release = await holdEntries(schema, 'SELECT count(*) FROM $entries')
    // Before: the ALTER waited for the reader with no limit (bounded here to tell the cases apart).
    await expect(
      withTimeout(Promise.resolve(postgresTier({ pool: p, schema, purgeIntervalMs: 0 }).get('x')), 10_000),
    ).resolves.toBeUndefined()
    expect(await compression()).toBe('p')
    await release()
    await postgresTier({ pool: p, schema, purgeIntervalMs: 0 }).get('x')
    expect(await compression()).toBe(lz4 ? 'l' : 'p')
  })
})
