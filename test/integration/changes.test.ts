import pg from 'pg'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { memoryTier, type StrataPlugin, useStrata } from '../../src/index.js'
import { postgresChanges } from '../../src/postgres.js'
import { createPgBlog } from '../support/pg-blog.js'
import { startStrataServer, type TestServer } from '../support/server.js'
import { serviceUrl } from '../support/services.js'
import { sleep, waitFor } from '../support/wait.js'

const data = `chg_data_${process.pid}`
const strataSchema = `chg_strata_${process.pid}`
let admin: pg.Pool
let blog: Awaited<ReturnType<typeof createPgBlog>>
const closers: (() => Promise<unknown>)[] = []

beforeAll(async () => {
  admin = new pg.Pool({ connectionString: await serviceUrl('postgres'), max: 4 })
  blog = await createPgBlog(admin, data)
  const source = postgresChanges({ pool: admin, schema: strataSchema })
  // Install the change log and watch the tables (what an operator does once).
  await source.start({
    logger: (await import('pino')).default({ level: 'silent' }),
    invalidate: async () => {},
    flush: async () => {},
    down: () => {},
    up: () => {},
  })
  await source.close()
  await admin.query(`SELECT ${strataSchema}.watch('${data}.post', 'Post', 'id', 'tenant_id')`)
  await admin.query(`SELECT ${strataSchema}.watch('${data}.line', 'Line', 'order_id,pos')`)
})
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close()
})
afterAll(async () => {
  await blog?.drop()
  await admin?.query(`DROP SCHEMA IF EXISTS ${strataSchema} CASCADE`)
  await admin?.end()
})

async function instance(options: { mode?: 'listen' | 'poll' } = {}) {
  const pool = new pg.Pool({ connectionString: await serviceUrl('postgres'), max: 4 })
  const plugin: StrataPlugin = useStrata({
    tenant: false,
    tiers: [memoryTier()],
    keyFields: { Line: ['orderId', 'pos'] },
    changes: postgresChanges({
      pool,
      schema: strataSchema,
      mode: options.mode ?? 'listen',
      pollMs: 20,
      followerPollMs: 200,
    }),
  })
  const server = await startStrataServer(blog.schema, plugin, closers, () => pool.end())
  if (!(await waitFor(async () => plugin.strata.cache.localTrusted, 5000)))
    throw new Error('change source did not start')
  return { server, strata: plugin.strata, pool }
}

const POST = 'query($id: ID!) { post(id: $id) { id title } }'
const titleOf = async (server: TestServer, id: number) =>
  (await server.query(POST, { id: String(id) })).json.data?.post as { title: string } | null

describe('database changes invalidate the cache', () => {
  it('SQL UPDATE, INSERT and DELETE outside GraphQL: the next read is fresh within a bounded wait', async () => {
    const { server } = await instance()
    await server.query(POST, { id: '1' })
    expect((await server.query(POST, { id: '1' })).cache).toBe('HIT')
    await admin.query(`UPDATE ${data}.post SET title = 'sql-update' WHERE id = 1`)
    expect(await waitFor(async () => (await titleOf(server, 1))?.title === 'sql-update', 1000)).toBe(true)

    expect(await titleOf(server, 100)).toBeNull()
    await admin.query(`INSERT INTO ${data}.post (id, title) VALUES (100, 'inserted')`)
    expect(await waitFor(async () => (await titleOf(server, 100))?.title === 'inserted', 1000)).toBe(true)

    await server.query('{ posts { id } }')
    await admin.query(`DELETE FROM ${data}.post WHERE id = 100`)
    expect(await waitFor(async () => (await titleOf(server, 100)) === null, 1000)).toBe(true)
    expect(
      await waitFor(async () => !(await server.query('{ posts { id } }')).text.includes('"100"'), 1000),
    ).toBe(true)
  })

  it('multi-row statements and COPY', async () => {
    const { server } = await instance()
    for (const id of [2, 3]) await server.query(POST, { id: String(id) })
    await admin.query(`UPDATE ${data}.post SET title = 'bulk' WHERE id IN (2, 3)`)
    expect(
      await waitFor(
        async () =>
          (await titleOf(server, 2))?.title === 'bulk' && (await titleOf(server, 3))?.title === 'bulk',
        1000,
      ),
    ).toBe(true)
    expect(await titleOf(server, 200)).toBeNull()
    await admin.query(`COPY ${data}.post (id, title) FROM PROGRAM 'printf "200\\tcopied\\n201\\tcopied\\n"'`)
    expect(await waitFor(async () => (await titleOf(server, 200))?.title === 'copied', 1000)).toBe(true)
    await admin.query(`DELETE FROM ${data}.post WHERE id >= 200`)
  })

  it('a changed key invalidates the old key too, whether the UPDATE or a BEFORE trigger changed it', async () => {
    await admin.query(`INSERT INTO ${data}.post (id, title) VALUES (6, 'six'), (7, 'seven')`)
    const { server } = await instance()
    for (const id of [6, 7]) expect(await titleOf(server, id)).not.toBeNull()
    expect((await server.query(POST, { id: '6' })).cache).toBe('HIT')
    await admin.query(`UPDATE ${data}.post SET id = 306 WHERE id = 6`)
    expect(await waitFor(async () => (await titleOf(server, 6)) === null, 1000)).toBe(true)
    expect(await titleOf(server, 306)).not.toBeNull()

    // The key is not in the SET list: only comparing OLD and NEW rows catches this one.
    await admin.query(`
      CREATE FUNCTION ${data}.rekey() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.title = 'rekey' THEN NEW.id := NEW.id + 1000; END IF; RETURN NEW; END $$;
      CREATE TRIGGER rekey BEFORE UPDATE ON ${data}.post FOR EACH ROW EXECUTE FUNCTION ${data}.rekey();`)
    try {
      expect((await server.query(POST, { id: '7' })).cache).toBe('HIT')
      await admin.query(`UPDATE ${data}.post SET title = 'rekey' WHERE id = 7`)
      expect(await waitFor(async () => (await titleOf(server, 7)) === null, 1000)).toBe(true)
      expect((await titleOf(server, 1007))?.title).toBe('rekey')
    } finally {
      await admin.query(`DROP TRIGGER rekey ON ${data}.post; DROP FUNCTION ${data}.rekey()`)
      await admin.query(`DELETE FROM ${data}.post WHERE id IN (306, 1007)`)
    }
  })

  it('writers only append to the inbox; a drain moves each committed change into the log exactly once', async () => {
    // No instance runs here: this test is the only drainer.
    const log = async () =>
      (
        await admin.query(
          `SELECT k.entity_key FROM ${strataSchema}.changes c, unnest(c.type_names, c.entity_keys) AS k (type_name, entity_key)
           WHERE c.seq > $1 AND k.type_name = 'Post' ORDER BY c.seq`,
          [start],
        )
      ).rows.map((row) => row.entity_key)
    const drain = async () => (await admin.query(`SELECT ${strataSchema}.drain() AS moved`)).rows[0].moved
    await admin.query(`INSERT INTO ${data}.post (id, title) VALUES (8, 'eight'), (9, 'nine')`)
    await drain()
    const start = (await admin.query(`SELECT coalesce(max(seq), 0) AS seq FROM ${strataSchema}.changes`))
      .rows[0].seq
    const writer = await admin.connect()
    try {
      await writer.query('BEGIN')
      await writer.query(`UPDATE ${data}.post SET title = 'open' WHERE id = 8`)
      await admin.query(`UPDATE ${data}.post SET title = 'committed' WHERE id = 9`)
      expect(await drain()).toBe(1) // the open transaction's row is not visible yet
      expect(await log()).toEqual(['9'])
      await writer.query('COMMIT')
      expect(await drain()).toBe(1)
      expect(await drain()).toBe(0)
      expect(await log()).toEqual(['9', '8'])
      const inbox = await admin.query(`SELECT count(*)::int AS n FROM ${strataSchema}.changes_inbox`)
      expect(inbox.rows[0].n).toBe(0)

      // More waiting than a drain may move: the first rows go by row id, the rest (which fit) all at
      // once; an open transaction's row still waits, whichever way a drain goes.
      const drainUpTo = async (limit: number) =>
        (await admin.query(`SELECT ${strataSchema}.drain_inboxes($1) AS moved`, [limit])).rows[0].moved
      const before = (await log()).length
      await writer.query('BEGIN')
      await writer.query(`UPDATE ${data}.post SET title = 'open again' WHERE id = 8`)
      await admin.query(
        `INSERT INTO ${data}.post (id, title) SELECT g, 'many' FROM generate_series(10, 14) g`,
      )
      expect([await drainUpTo(2), await drainUpTo(2), await drainUpTo(2), await drainUpTo(2)]).toEqual([
        2, 2, 1, 0,
      ])
      await writer.query('COMMIT')
      expect(await drainUpTo(2)).toBe(1)
      const moved = (await log()).slice(before)
      expect(moved.slice(0, 5).sort()).toEqual(['10', '11', '12', '13', '14'])
      expect(moved.slice(5)).toEqual(['8'])
      await admin.query(`UPDATE ${data}.post SET title = 'last' WHERE id = 8`)
      expect(await drainUpTo(2 ** 31 - 1)).toBe(1) // the largest budget the function takes
    } finally {
      await writer.query('ROLLBACK').catch(() => undefined)
      writer.release()
      await admin.query(`DELETE FROM ${data}.post WHERE id IN (8, 9) OR id BETWEEN 10 AND 14`)
    }
  })

  it('a row moved to another partition records its old key; a drain at REPEATABLE READ is refused and moves nothing', async () => {
    // No instance runs here: this test drains by hand.
    await admin.query(`
      CREATE TABLE ${data}.part (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);
      CREATE TABLE ${data}.part_a PARTITION OF ${data}.part FOR VALUES FROM (0) TO (100);
      CREATE TABLE ${data}.part_b PARTITION OF ${data}.part FOR VALUES FROM (100) TO (200);
      INSERT INTO ${data}.part VALUES (6, 0);
      SELECT ${strataSchema}.watch('${data}.part', 'Part', 'id');`)
    const drain = async () => (await admin.query(`SELECT ${strataSchema}.drain() AS moved`)).rows[0].moved
    try {
      await drain()
      const start = (await admin.query(`SELECT coalesce(max(seq), 0) AS seq FROM ${strataSchema}.changes`))
        .rows[0].seq
      await admin.query(`UPDATE ${data}.part SET id = 150 WHERE id = 6`)
      await admin.query(`UPDATE ${data}.part SET v = 1 WHERE id = 150`)
      expect(await drain()).toBe(3)
      const logged = await admin.query(
        `SELECT DISTINCT k.entity_key FROM ${strataSchema}.changes c, unnest(c.type_names, c.entity_keys) AS k (type_name, entity_key)
         WHERE c.seq > $1 AND k.type_name = 'Part' ORDER BY k.entity_key`,
        [start],
      )
      expect(logged.rows.map((row) => row.entity_key)).toEqual(['150', '6'])

      // At REPEATABLE READ (a database default, say), a snapshot taken before another drain committed
      // would see rows already moved: a drain there is refused, saying what to do, and moves nothing.
      const late = await admin.connect()
      try {
        await admin.query(`UPDATE ${data}.part SET v = 2 WHERE id = 150`)
        await late.query('BEGIN ISOLATION LEVEL REPEATABLE READ')
        const refused = await late
          .query(`SELECT ${strataSchema}.drain_inboxes() AS moved`)
          .catch((error: pg.DatabaseError) => error)
        expect(refused).toMatchObject({ code: 'SR001' })
        expect((refused as Error).message).toMatch(
          /this transaction runs at repeatable read .*; Strata's statements need read committed/,
        )
        await late.query('ROLLBACK')
        expect(await drain()).toBe(1) // still there, for a drain at READ COMMITTED
      } finally {
        await late.query('ROLLBACK').catch(() => undefined)
        late.release()
      }
    } finally {
      await admin.query(`SELECT ${strataSchema}.unwatch('${data}.part'); DROP TABLE ${data}.part`)
    }
  })

  it('the leader vacuums the inbox while it drains', async () => {
    const vacuums = async () =>
      Number(
        (
          await admin.query(
            `SELECT vacuum_count FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'changes_inbox'`,
            [strataSchema],
          )
        ).rows[0].vacuum_count,
      )
    await instance()
    const before = await vacuums()
    let vacuumed = false
    for (let i = 0; i < 60 && !vacuumed; i++) {
      await admin.query(`UPDATE ${data}.post SET title = title WHERE id = 1`)
      await sleep(50)
      vacuumed = (await vacuums()) > before
    }
    expect(vacuumed).toBe(true)
  })

  it('a bulk load is drained and read in bounded steps, and a change after it still arrives', async () => {
    const { server, strata } = await instance()
    await server.query(POST, { id: '1' })
    await admin.query(
      `INSERT INTO ${data}.post (id, title) SELECT g, 'bulk' FROM generate_series(1000, 13999) g`,
    )
    await admin.query(`UPDATE ${data}.post SET title = 'after-bulk' WHERE id = 1`)
    try {
      expect(await waitFor(async () => (await titleOf(server, 1))?.title === 'after-bulk', 5000)).toBe(true)
      const log = await admin.query(
        `SELECT max(cardinality(entity_keys))::int AS largest, max(seq)::int AS last FROM ${strataSchema}.changes`,
      )
      expect(log.rows[0].largest).toBeLessThanOrEqual(5000) // a drain moves one batch
      expect(
        await waitFor(async () => (strata.changes()?.appliedThrough ?? 0) >= log.rows[0].last, 2000),
      ).toBe(true)
    } finally {
      await admin.query(`DELETE FROM ${data}.post WHERE id >= 1000`)
    }
  })

  it('writers and drains at the same time: every committed change reaches the log once, no rolled-back one', async () => {
    // No instance runs here: two drainers race each other and four writers, with budgets small
    // enough that drains go both ways (everything waiting, and the first rows by row id).
    await admin.query(`CREATE TABLE ${data}.burst (id int PRIMARY KEY)`)
    await admin.query(`SELECT ${strataSchema}.watch('${data}.burst', 'Burst', 'id')`)
    const pool = new pg.Pool({ connectionString: await serviceUrl('postgres'), max: 6 })
    try {
      const start = (await admin.query(`SELECT coalesce(max(seq), 0) AS seq FROM ${strataSchema}.changes`))
        .rows[0].seq
      const committed: number[] = []
      let writing = true
      const writer = async (w: number) => {
        const client = await pool.connect()
        try {
          for (let t = 0; t < 60; t++) {
            const first = w * 100_000 + t * 10
            const rows = 1 + ((t * 7 + w) % 6) // one to six rows per statement
            await client.query('BEGIN')
            await client.query(`INSERT INTO ${data}.burst SELECT generate_series($1::int, $2::int)`, [
              first,
              first + rows - 1,
            ])
            if (t % 3 === 0) await sleep(2) // in flight while drains run
            if (t % 5 === 4) {
              await client.query('ROLLBACK')
            } else {
              await client.query('COMMIT')
              for (let id = first; id < first + rows; id++) committed.push(id)
            }
          }
        } finally {
          client.release()
        }
      }
      const drainer = async (budgets: number[]) => {
        const client = await pool.connect()
        try {
          for (let i = 0; writing; i++) {
            await client.query(`SELECT ${strataSchema}.drain_inboxes($1)`, [budgets[i % budgets.length]])
          }
        } finally {
          client.release()
        }
      }
      const drains = [drainer([3, 1000]), drainer([7])]
      await Promise.all([0, 1, 2, 3].map(writer))
      writing = false
      await Promise.all(drains)
      while ((await admin.query(`SELECT ${strataSchema}.drain_inboxes(1000) AS moved`)).rows[0].moved !== 0);
      const logged = (
        await admin.query(
          `SELECT k.entity_key::int AS id FROM ${strataSchema}.changes c, unnest(c.type_names, c.entity_keys) AS k (type_name, entity_key)
           WHERE c.seq > $1 AND k.type_name = 'Burst'`,
          [start],
        )
      ).rows.map((row) => row.id as number)
      expect(committed.length).toBeGreaterThan(500)
      expect(logged.sort((a, b) => a - b)).toEqual(committed.sort((a, b) => a - b))
      const largest = await admin.query(
        `SELECT max(cardinality(entity_keys))::int AS n FROM ${strataSchema}.changes WHERE seq > $1`,
        [start],
      )
      expect(largest.rows[0].n).toBeLessThanOrEqual(1000)
    } finally {
      await pool.end()
      await admin.query(`SELECT ${strataSchema}.unwatch('${data}.burst'); DROP TABLE ${data}.burst`)
    }
  })

  it("a change whose key is NULL invalidates the type's lists", async () => {
    await admin.query(`CREATE TABLE ${data}.post_flag (post_id int, flag text)`)
    await admin.query(`SELECT ${strataSchema}.watch('${data}.post_flag', 'Post', 'post_id')`)
    try {
      const { server } = await instance()
      const posts = '{ posts { id } }'
      await server.query(posts)
      expect((await server.query(posts)).cache).toBe('HIT')
      await admin.query(`INSERT INTO ${data}.post_flag VALUES (NULL, 'x')`)
      expect(await waitFor(async () => (await server.query(posts)).cache === 'MISS', 1000)).toBe(true)
    } finally {
      await admin.query(`SELECT ${strataSchema}.unwatch('${data}.post_flag'); DROP TABLE ${data}.post_flag`)
    }
  })

  it('a composite-key table', async () => {
    const { server } = await instance()
    const line = 'query { line(orderId: "1", pos: 2) { orderId pos qty } }'
    expect((await server.query(line)).json.data?.line).toMatchObject({ qty: 20 })
    expect((await server.query(line)).cache).toBe('HIT')
    await admin.query(`UPDATE ${data}.line SET qty = 21 WHERE order_id = 1 AND pos = 2`)
    expect(
      await waitFor(async () => JSON.stringify((await server.query(line)).json).includes('21'), 1000),
    ).toBe(true)
  })

  it('the listener connection killed while writes continue: after reconnecting, no change is lost', async () => {
    const { server, strata } = await instance()
    const ids = [1, 2, 3, 4, 5]
    let version = 0
    const writes = (async () => {
      for (let i = 0; i < 60; i++) {
        version++
        await admin.query(`UPDATE ${data}.post SET title = $2 WHERE id = $1`, [ids[i % 5], `k${version}`])
        for (const id of ids) await server.query(POST, { id: String(id) }) // keep everything cached
        await sleep(5)
      }
    })()
    await sleep(60)
    const killed = await admin.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`,
      [`graphql-strata changes ${strataSchema}`],
    )
    expect(killed.rowCount).toBeGreaterThan(0)
    await writes
    expect(
      await waitFor(async () => strata.changes()?.reconnects !== 0 && strata.cache.localTrusted, 5000),
    ).toBe(true)
    const truth = (await admin.query(`SELECT id, title FROM ${data}.post ORDER BY id`)).rows as {
      id: number
      title: string
    }[]
    for (const { id, title } of truth) {
      expect(
        await waitFor(async () => (await titleOf(server, id))?.title === title, 1000),
        `post ${id}`,
      ).toBe(true)
    }
  })

  it('a gap the log cannot cover flushes the cache', async () => {
    const { server, strata } = await instance()
    await server.query(POST, { id: '4' })
    expect((await server.query(POST, { id: '4' })).cache).toBe('HIT')
    await admin.query(`UPDATE ${strataSchema}.changes_state SET pruned_through = pruned_through + 1000000000`)
    expect(await waitFor(async () => (strata.changes()?.flushes ?? 0) > 0, 2000)).toBe(true)
    expect((await server.query(POST, { id: '4' })).cache).toBe('MISS')
    await admin.query(`UPDATE ${strataSchema}.changes_state SET pruned_through = 0`)
  })

  it('three instances are all invalidated, in listen and in poll mode', async () => {
    const fleet = [await instance(), await instance(), await instance({ mode: 'poll' })]
    for (const { server } of fleet) await server.query(POST, { id: '5' })
    await admin.query(`UPDATE ${data}.post SET title = 'everyone' WHERE id = 5`)
    for (const { server } of fleet) {
      expect(await waitFor(async () => (await titleOf(server, 5))?.title === 'everyone', 1500)).toBe(true)
    }
    expect(fleet.filter(({ strata }) => strata.changes()?.state === 'leader')).toHaveLength(1)
  })
})
