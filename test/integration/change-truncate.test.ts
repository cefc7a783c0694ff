import { createSchema } from 'graphql-yoga'
import pg from 'pg'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { memoryTier, type StrataPlugin, strataDirectivesSdl, useStrata } from '../../src/index.js'
import { postgresChanges, postgresChangesSql, postgresInstallSql } from '../../src/postgres.js'
import { startStrataServer, type TestServer } from '../support/server.js'
import { serviceUrl } from '../support/services.js'
import { waitFor } from '../support/wait.js'

// TRUNCATE has no transition tables: a watched table records the key '*' for its type, which
// invalidates Type:* (every entry in which an entity of the type appears) and Type (its lists).
const data = `trunc_data_${process.pid}`
const strataSchema = `trunc_strata_${process.pid}`
let admin: pg.Pool
const closers: (() => Promise<unknown>)[] = []

// One GraphQL type per table, each with a list and a single-entity query.
const tables = { item: 'Item', box: 'Box', widget: 'Widget', reading: 'Reading' } as const
type Table = keyof typeof tables

beforeAll(async () => {
  admin = new pg.Pool({ connectionString: await serviceUrl('postgres'), max: 4 })
  await admin.query(`
    DROP SCHEMA IF EXISTS ${data} CASCADE;
    CREATE SCHEMA ${data};
    CREATE TABLE ${data}.item (id int PRIMARY KEY, name text NOT NULL);
    CREATE TABLE ${data}.box (id int PRIMARY KEY, name text NOT NULL);
    CREATE TABLE ${data}.widget (id int PRIMARY KEY, name text NOT NULL, box_id int NOT NULL REFERENCES ${data}.box);
    CREATE TABLE ${data}.reading (id int, name text NOT NULL, region text NOT NULL) PARTITION BY LIST (region);
    CREATE TABLE ${data}.reading_eu PARTITION OF ${data}.reading FOR VALUES IN ('eu');
    CREATE TABLE ${data}.reading_us PARTITION OF ${data}.reading FOR VALUES IN ('us');
  `)
  // Install the change log and watch the tables (what an operator does once).
  await admin.query(`${postgresInstallSql(strataSchema)}\n${postgresChangesSql(strataSchema)}`)
  for (const [table, type] of Object.entries(tables))
    await admin.query(`SELECT ${strataSchema}.watch('${data}.${table}', '${type}', 'id')`)
})
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close()
})
afterAll(async () => {
  await admin?.query(`DROP SCHEMA IF EXISTS ${data} CASCADE`)
  await admin?.query(`DROP SCHEMA IF EXISTS ${strataSchema} CASCADE`)
  await admin?.end()
})

/** Two rows in every table (widgets in box 1). */
async function fill() {
  await admin.query(`
    INSERT INTO ${data}.item VALUES (1, 'i1'), (2, 'i2') ON CONFLICT DO NOTHING;
    INSERT INTO ${data}.box VALUES (1, 'b1'), (2, 'b2') ON CONFLICT DO NOTHING;
    INSERT INTO ${data}.widget VALUES (1, 'w1', 1), (2, 'w2', 1) ON CONFLICT DO NOTHING;
    DELETE FROM ${data}.reading; INSERT INTO ${data}.reading VALUES (1, 'r1', 'eu'), (2, 'r2', 'us');`)
}

function schema() {
  const fields = Object.entries(tables)
    .map(([table, type]) => `${table}s: [${type}!]! ${table}(id: ID!): ${type}`)
    .join('\n')
  const types = Object.values(tables)
    .map((type) => `type ${type} @cacheControl(maxAge: 60) { id: ID! name: String! }`)
    .join('\n')
  const Query: Record<string, (parent: unknown, args: { id?: string }) => Promise<unknown>> = {}
  for (const table of Object.keys(tables)) {
    Query[`${table}s`] = async () =>
      (await admin.query(`SELECT id, name FROM ${data}.${table} ORDER BY id`)).rows
    Query[table] = async (_, { id }) =>
      (await admin.query(`SELECT id, name FROM ${data}.${table} WHERE id = $1`, [id])).rows[0] ?? null
  }
  return createSchema({
    typeDefs: `${strataDirectivesSdl}\n${types}\ntype Query {\n${fields}\n}`,
    resolvers: { Query },
  })
}

async function instance() {
  const pool = new pg.Pool({ connectionString: await serviceUrl('postgres'), max: 4 })
  const plugin: StrataPlugin = useStrata({
    tenant: false,
    tiers: [memoryTier()],
    changes: postgresChanges({ pool, schema: strataSchema, mode: 'listen', pollMs: 20, followerPollMs: 200 }),
  })
  const server = await startStrataServer(schema(), plugin, closers, () => pool.end())
  if (!(await waitFor(async () => plugin.strata.cache.localTrusted, 5000)))
    throw new Error('change source did not start')
  return server
}

const listOf = (table: Table) => `{ ${table}s { id name } }`
const oneOf = (table: Table) => `{ ${table}(id: "1") { id name } }`

/**
 * Caches the list and entity 1 of each table (waiting out the invalidation of rows just inserted
 * when they were cached empty), and checks both are then served from the cache.
 */
async function cache(server: TestServer, ...of: Table[]) {
  for (const table of of) {
    const filled = async () =>
      ((await server.query(listOf(table))).json.data?.[`${table}s`] as unknown[] | undefined)?.length === 2 &&
      (await server.query(oneOf(table))).json.data?.[table] !== null
    expect(await waitFor(filled, 2000)).toBe(true)
    for (const query of [listOf(table), oneOf(table)]) expect((await server.query(query)).cache).toBe('HIT')
  }
}

/** Whether every list of `of` reads empty and every entity 1 reads null, within the wait. */
async function freshAfterEmptying(server: TestServer, ...of: Table[]) {
  return waitFor(async () => {
    for (const table of of) {
      const list = (await server.query(listOf(table))).json.data?.[`${table}s`] as unknown[] | undefined
      const one = (await server.query(oneOf(table))).json.data?.[table]
      if (list?.length !== 0 || one !== null) return false
    }
    return true
  }, 2000)
}

describe('TRUNCATE of a watched table invalidates everything of its type', () => {
  it('TRUNCATE: cached lists and single entities are fresh within a bounded wait', async () => {
    await fill()
    const server = await instance()
    await cache(server, 'item')
    await admin.query(`TRUNCATE ${data}.item`)
    expect(await freshAfterEmptying(server, 'item')).toBe(true)
  })

  it('TRUNCATE ... CASCADE and TRUNCATE of two tables in one statement: every truncated type is fresh', async () => {
    await fill()
    const server = await instance()
    await cache(server, 'box', 'widget')
    await admin.query(`TRUNCATE ${data}.box CASCADE`) // widget references box: emptied too
    expect(await freshAfterEmptying(server, 'box', 'widget')).toBe(true)

    await fill()
    await cache(server, 'item', 'box', 'widget')
    await admin.query(`TRUNCATE ${data}.item, ${data}.widget`)
    expect(await freshAfterEmptying(server, 'item', 'widget')).toBe(true)
    expect((await server.query(listOf('box'))).cache).toBe('HIT') // not truncated: kept
  })

  it('TRUNCATE of a partitioned table (its partitions are emptied too)', async () => {
    await fill()
    const server = await instance()
    await cache(server, 'reading')
    await admin.query(`TRUNCATE ${data}.reading`)
    expect(await freshAfterEmptying(server, 'reading')).toBe(true)
  })

  it('a table watched before TRUNCATE was recorded gets the trigger on the next install; unwatch drops it', async () => {
    const trigger = async (table: string) =>
      (
        await admin.query(
          `SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = 'strata_changes_trunc'`,
          [`${data}.${table}`],
        )
      ).rows[0].n
    // What an earlier strata.watch left: every trigger but this one.
    await admin.query(`DROP TRIGGER strata_changes_trunc ON ${data}.item`)
    expect(await trigger('item')).toBe(0)
    const versionBefore = (
      await admin.query(`SELECT value FROM ${strataSchema}.meta WHERE key = 'changes_version'`)
    ).rows
    await admin.query(`${postgresInstallSql(strataSchema)}\n${postgresChangesSql(strataSchema)}`)
    expect(await trigger('item')).toBe(1)
    const versionAfter = (
      await admin.query(`SELECT value FROM ${strataSchema}.meta WHERE key = 'changes_version'`)
    ).rows
    expect(versionAfter).toEqual(versionBefore)

    await fill()
    const server = await instance()
    await cache(server, 'item')
    await admin.query(`TRUNCATE ${data}.item`)
    expect(await freshAfterEmptying(server, 'item')).toBe(true)

    await admin.query(`CREATE TABLE ${data}.scratch (id int PRIMARY KEY)`)
    await admin.query(`SELECT ${strataSchema}.watch('${data}.scratch', 'Scratch', 'id')`)
    expect(await trigger('scratch')).toBe(1)
    await admin.query(`SELECT ${strataSchema}.unwatch('${data}.scratch')`)
    expect(await trigger('scratch')).toBe(0)
  })
})
