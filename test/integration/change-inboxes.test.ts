import { readFileSync } from 'node:fs'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { postgresChangesSql, postgresInstallSql } from '../../src/postgres.js'
import { inSchema } from '../../src/tiers/sql-script.js'
import { serviceUrl } from '../support/services.js'

// Writers record into the inbox of their key's type; no Strata instance runs here, each test drains
// by hand and reads the log.
const data = `inbox_data_${process.pid}`
const strataSchema = `inbox_strata_${process.pid}`
let admin: pg.Pool

beforeAll(async () => {
  admin = new pg.Pool({ connectionString: await serviceUrl('postgres'), max: 4 })
  await admin.query(`DROP SCHEMA IF EXISTS ${data} CASCADE; CREATE SCHEMA ${data}`)
  await admin.query(`${postgresInstallSql(strataSchema)}\n${postgresChangesSql(strataSchema)}`)
})
afterAll(async () => {
  await admin?.query(`DROP SCHEMA IF EXISTS ${data} CASCADE`)
  await admin?.query(`DROP SCHEMA IF EXISTS ${strataSchema} CASCADE`)
  await admin?.end()
})

/** Drains everything, then returns the keys of `typeName` logged after `since`, sorted (NULL last). */
async function loggedSince(schema: string, since: number, typeName: string) {
  await admin.query(`SELECT ${schema}.drain(100000)`)
  const { rows } = await admin.query(
    `SELECT k.entity_key FROM ${schema}.changes c, unnest(c.type_names, c.entity_keys) AS k (type_name, entity_key)
     WHERE c.seq > $1 AND k.type_name = $2 ORDER BY c.seq`,
    [since, typeName],
  )
  return rows.map((row) => row.entity_key as string | null).sort(byKey)
}

// The order within one drain follows where rows landed in the inbox, so tests compare sorted keys.
const byKey = (x: string | null, y: string | null) =>
  x === y ? 0 : x === null ? 1 : y === null ? -1 : x < y ? -1 : 1

const lastSeq = async (schema: string) =>
  Number((await admin.query(`SELECT coalesce(max(seq), 0) AS seq FROM ${schema}.changes`)).rows[0].seq)

describe('change inboxes', () => {
  it.each([
    ['integer', 'changes_inbox_int4', '7', '8'],
    ['bigint', 'changes_inbox_int8', '9000000007', '9000000008'],
    [
      'uuid',
      'changes_inbox_uuid',
      '6f1c3b0e-0000-4000-8000-000000000007',
      '6f1c3b0e-0000-4000-8000-000000000008',
    ],
    ['text', 'changes_inbox_text', 'seven', 'eight'],
    ['varchar(20)', 'changes_inbox_text', 'seven', 'eight'],
    ['numeric', 'changes_inbox', '7.50', '8.50'],
  ])(
    'a %s key records into %s and reaches the log as text, old keys and NULL keys included',
    async (type, inbox, a, b) => {
      const table = `${data}.k_${inbox}_${type.replace(/\W/g, '')}`
      const typeName = `K${type.replace(/\W/g, '')}`
      await admin.query(`CREATE TABLE ${table} (id ${type}, v int)`)
      await admin.query(`SELECT ${strataSchema}.watch('${table}', '${typeName}', 'id')`)
      await admin.query(`SELECT ${strataSchema}.drain(100000)`)
      const since = await lastSeq(strataSchema)
      await admin.query(`INSERT INTO ${table} VALUES ($1, 0)`, [a])
      const waiting = await admin.query(
        `SELECT count(*)::int AS n FROM ${strataSchema}.${inbox} WHERE type_name = $1`,
        [typeName],
      )
      expect(waiting.rows[0].n).toBe(1)
      await admin.query(`UPDATE ${table} SET v = 1`)
      await admin.query(`UPDATE ${table} SET id = $1`, [b]) // new key from the statement, old from the key trigger
      await admin.query(`DELETE FROM ${table}`)
      await admin.query(`INSERT INTO ${table} VALUES (NULL, 0)`) // a NULL key never fails the writer
      // a: INSERT, UPDATE, and the old key of the key change; b: the new key, DELETE; then the NULL key.
      expect(await loggedSince(strataSchema, since, typeName)).toEqual([a, a, a, b, b, null].sort(byKey))
    },
  )

  it('a partitioned table records keys as text, so a later change of the key type breaks no writer', async () => {
    const table = `${data}.parted`
    await admin.query(`CREATE TABLE ${table} (id int, region text) PARTITION BY LIST (region);
      CREATE TABLE ${table}_eu PARTITION OF ${table} FOR VALUES IN ('eu')`)
    await admin.query(`SELECT ${strataSchema}.watch('${table}', 'Parted', 'id')`)
    await admin.query(`SELECT ${strataSchema}.drain(100000)`)
    const since = await lastSeq(strataSchema)
    await admin.query(`ALTER TABLE ${table} ALTER COLUMN id TYPE bigint`)
    await admin.query(`INSERT INTO ${table} VALUES (5000000000, 'eu')`)
    expect(await loggedSince(strataSchema, since, 'Parted')).toEqual(['5000000000'])
  })

  it("a table another Strata schema watches: watch refuses it, naming that schema, and unwatch leaves that schema's triggers", async () => {
    const other = `inbox_other_${process.pid}` // another application's Strata, in the same database
    const table = `${data}.shared`
    await admin.query(`${postgresInstallSql(other)}\n${postgresChangesSql(other)}`)
    try {
      await admin.query(`CREATE TABLE ${table} (id int PRIMARY KEY, v int)`)
      await admin.query(`SELECT ${other}.watch('${table}', 'Shared', 'id')`)
      // The trigger names are the same in every schema: watching here would replace the other's.
      const refused = await admin
        .query(`SELECT ${strataSchema}.watch('${table}', 'Mine', 'id')`)
        .catch((error: pg.DatabaseError) => error)
      expect(refused).toMatchObject({ code: '42710' }) // duplicate_object
      expect((refused as Error).message).toContain(
        `${table} is watched by the Strata schema ${other} already`,
      )
      await admin.query(`SELECT ${strataSchema}.unwatch('${table}')`) // not this schema's: nothing to drop
      const watched = await admin.query(
        `SELECT count(*)::int AS n FROM ${strataSchema}.watched WHERE table_name = $1::regclass`,
        [table],
      )
      expect(watched.rows[0].n).toBe(0)

      const since = await lastSeq(other)
      await admin.query(`INSERT INTO ${table} VALUES (1, 0)`)
      await admin.query(`UPDATE ${table} SET id = 2`) // the key trigger too
      await admin.query(`TRUNCATE ${table}`)
      expect(await loggedSince(other, since, 'Shared')).toEqual(['*', '1', '1', '2'])
      expect(await loggedSince(strataSchema, 0, 'Mine')).toEqual([])
      // Its own unwatch still drops them.
      await admin.query(`SELECT ${other}.unwatch('${table}')`)
      const triggers = await admin.query(
        `SELECT count(*)::int AS n FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal`,
        [table],
      )
      expect(triggers.rows[0].n).toBe(0)
      // And the table can then be watched here.
      await admin.query(`SELECT ${strataSchema}.watch('${table}', 'Mine', 'id')`)
      await admin.query(`INSERT INTO ${table} VALUES (3, 0)`)
      expect(await loggedSince(strataSchema, 0, 'Mine')).toEqual(['3'])
    } finally {
      await admin.query(`DROP TABLE IF EXISTS ${table}; DROP SCHEMA IF EXISTS ${other} CASCADE`)
    }
  })

  it('an upgrade by a role that owns neither the watched table nor the inbox leaves every writer working', async () => {
    const schema = `inbox_roles_${process.pid}`
    const app = `inbox_app_${process.pid}` // installed version 2 and owns the change tables
    const migrator = `inbox_mig_${process.pid}` // owns and watched a table
    const database = (await admin.query('SELECT current_database() AS db')).rows[0].db
    const v2 = readFileSync(new URL('../fixtures/changes-v2.sql', import.meta.url), 'utf8')
    const session = await admin.connect()
    const notices: string[] = []
    session.on('notice', (notice) => notices.push(notice.message ?? ''))
    const as = async (role: string, sql: string) => {
      await session.query(`SET ROLE ${role}`)
      try {
        return await session.query(sql)
      } finally {
        await session.query('RESET ROLE')
      }
    }
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE; DROP ROLE IF EXISTS ${app}; DROP ROLE IF EXISTS ${migrator};
      CREATE ROLE ${app}; CREATE ROLE ${migrator}; GRANT CREATE ON DATABASE ${database} TO ${app};
      GRANT USAGE, CREATE ON SCHEMA ${data} TO ${migrator}`)
    try {
      await as(app, `${postgresInstallSql(schema)}\n${inSchema(v2, schema)}`)
      await as(
        app,
        `GRANT USAGE, CREATE ON SCHEMA ${schema} TO ${migrator};
        GRANT SELECT, INSERT, UPDATE ON ${schema}.watched TO ${migrator}; GRANT INSERT ON ${schema}.changes_inbox TO ${migrator}`,
      )
      await as(
        migrator,
        `CREATE TABLE ${data}.owned (id int PRIMARY KEY, v int); SELECT ${schema}.watch('${data}.owned', 'Owned', 'id')`,
      )

      // The application upgrades (autoInstall): it may not replace the migrator's triggers, which
      // keep recording into the text inbox.
      await as(app, `${postgresInstallSql(schema)}\n${postgresChangesSql(schema)}`)
      expect(notices.some((message) => message.includes('could not regenerate the triggers'))).toBe(true)
      await as(migrator, `INSERT INTO ${data}.owned VALUES (1, 0)`)
      // Had a superuser upgraded instead (the typed inboxes would be new, and its own), the
      // application would own them all the same.
      await admin.query(`UPDATE ${schema}.meta SET value = '2' WHERE key = 'changes_version';
        DROP TABLE ${schema}.changes_inbox_int4, ${schema}.changes_inbox_int8, ${schema}.changes_inbox_text, ${schema}.changes_inbox_uuid`)
      await admin.query(`${postgresInstallSql(schema)}\n${postgresChangesSql(schema)}`)
      const owners = await admin.query(
        `SELECT DISTINCT pg_get_userbyid(relowner) AS owner FROM pg_class
         WHERE relnamespace = $1::regnamespace AND relname LIKE 'changes_inbox%'`,
        [schema],
      )
      expect(owners.rows).toEqual([{ owner: app }])
      await as(migrator, `INSERT INTO ${data}.owned VALUES (2, 0)`) // now into the typed inbox
      await as(app, `INSERT INTO ${schema}.changes_inbox_int4 VALUES ('Owned', 3)`)
      expect(await loggedSince(schema, 0, 'Owned')).toEqual(['1', '2', '3'])
    } finally {
      session.release()
      await admin.query(`DROP TABLE IF EXISTS ${data}.owned; DROP SCHEMA IF EXISTS ${schema} CASCADE;
        REVOKE CREATE ON DATABASE ${database} FROM ${app}; REVOKE ALL ON SCHEMA ${data} FROM ${migrator};
        DROP ROLE IF EXISTS ${app}; DROP ROLE IF EXISTS ${migrator}`)
    }
  })

  it('upgrades a version 2 install in place: grants, NULL keys, typed inboxes; nothing waiting is lost', async () => {
    const schema = `inbox_v2_${process.pid}`
    const writer = `inbox_writer_${process.pid}`
    const v2 = readFileSync(new URL('../fixtures/changes-v2.sql', import.meta.url), 'utf8')
    await admin.query(
      `DROP SCHEMA IF EXISTS ${schema} CASCADE; DROP ROLE IF EXISTS ${writer}; CREATE ROLE ${writer}`,
    )
    try {
      await admin.query(`${postgresInstallSql(schema)}\n${inSchema(v2, schema)}`)
      await admin.query(
        `GRANT USAGE ON SCHEMA ${schema} TO ${writer}; GRANT INSERT ON ${schema}.changes_inbox TO ${writer}`,
      )
      await admin.query(`CREATE TABLE ${data}.up (id int PRIMARY KEY, v int)`)
      await admin.query(`SELECT ${schema}.watch('${data}.up', 'Up', 'id')`)
      await admin.query(`SELECT ${schema}.drain(100000)`)
      const since = await lastSeq(schema)
      await admin.query(`INSERT INTO ${data}.up VALUES (1, 0)`) // waits in version 2's inbox

      await admin.query(`${postgresInstallSql(schema)}\n${postgresChangesSql(schema)}`)
      const meta = await admin.query(`SELECT value FROM ${schema}.meta WHERE key = 'changes_version'`)
      expect(meta.rows[0].value).toBe('3')
      const granted = await admin.query(`SELECT has_table_privilege($1, $2, 'INSERT') AS ok`, [
        writer,
        `${schema}.changes_inbox_int4`,
      ])
      expect(granted.rows[0].ok).toBe(true)
      await admin.query(`INSERT INTO ${data}.up VALUES (2, 0)`)
      const typed = await admin.query(`SELECT entity_key FROM ${schema}.changes_inbox_int4`)
      expect(typed.rows).toEqual([{ entity_key: 2 }])
      await admin.query(`INSERT INTO ${schema}.changes_inbox (type_name, entity_key) VALUES ('Up', NULL)`)

      await admin.query(`${postgresInstallSql(schema)}\n${postgresChangesSql(schema)}`) // again: no change
      expect(await loggedSince(schema, since, 'Up')).toEqual(['1', '2', null])

      // A version 2 instance reinstalling during a rolling deploy puts back its own drain(); version 3
      // instances drain through drain_inboxes(), which it leaves alone.
      await admin.query(`${postgresInstallSql(schema)}\n${inSchema(v2, schema)}`)
      await admin.query(`INSERT INTO ${data}.up VALUES (3, 0)`)
      await admin.query(`SELECT ${schema}.drain_inboxes(100000)`)
      expect(await loggedSince(schema, since, 'Up')).toEqual(['1', '2', '3', null])
    } finally {
      await admin.query(`DROP TABLE IF EXISTS ${data}.up; DROP SCHEMA IF EXISTS ${schema} CASCADE`)
      await admin.query(`DROP ROLE IF EXISTS ${writer}`)
    }
  })
})
