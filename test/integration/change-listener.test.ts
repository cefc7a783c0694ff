import pg from 'pg'
import pino, { type Logger } from 'pino'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { PostgresChangesOptions } from '../../src/changes/postgres-changes-options.js'
import type { ChangeSink, ChangeSource } from '../../src/changes/source.js'
import { postgresChanges } from '../../src/postgres.js'
import { withTimeout } from '../../src/timeout.js'
import { startProxy } from '../support/proxy.js'
import { serviceUrl } from '../support/services.js'
import { sleep, waitFor } from '../support/wait.js'

// The change listener's connection lifecycle and the log's epochs, against real PostgreSQL.
const strata = `lsn_strata_${process.pid}`
const data = `lsn_data_${process.pid}`
let admin: pg.Pool
const closers: (() => Promise<unknown>)[] = []

beforeAll(async () => {
  admin = new pg.Pool({ connectionString: await serviceUrl('postgres'), max: 4 })
  await admin.query(
    `CREATE SCHEMA IF NOT EXISTS ${data}; CREATE TABLE IF NOT EXISTS ${data}.p (id int PRIMARY KEY, v text)`,
  )
  const { source } = await listener()
  await source.close()
  await admin.query(`SELECT ${strata}.watch('${data}.p', 'P', 'id')`)
})
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close()
})
afterAll(async () => {
  await admin?.query(`DROP SCHEMA IF EXISTS ${data} CASCADE; DROP SCHEMA IF EXISTS ${strata} CASCADE`)
  await admin?.end()
})

/**
 * What a source told its sink (`events`: flushes, downs and ups, in order; `flushScopes`: each
 * flush's scope). An invalidation takes `slowInvalidate.ms`, and waits for `hold.until` when set.
 */
function recordingSink(
  slowInvalidate?: { ms: number },
  logger: Logger = pino({ level: 'silent' }),
  hold?: { until?: Promise<void> },
) {
  const seen = {
    tags: [] as string[],
    flushes: 0,
    flushScopes: [] as string[],
    downs: 0,
    ups: 0,
    events: [] as string[],
  }
  const sink: ChangeSink = {
    logger,
    invalidate: async (tags) => {
      seen.tags.push(...tags)
      if (slowInvalidate) await sleep(slowInvalidate.ms)
      await hold?.until
    },
    flush: async (_reason, scope) => {
      seen.flushes++
      seen.flushScopes.push(scope)
      seen.events.push('flush')
    },
    down: () => {
      seen.downs++
      seen.events.push('down')
    },
    up: () => {
      seen.ups++
      seen.events.push('up')
    },
  }
  return { sink, seen }
}

/** A source on its own pool, whose sessions (the clients `connect()` gave out) the test can break. */
async function listener(
  options: {
    start?: boolean
    slowInvalidate?: { ms: number }
    hold?: { until?: Promise<void> }
    logger?: Logger
    changes?: Partial<PostgresChangesOptions>
    /** Connection settings of its pool (`options: '-c ...'`). */
    pool?: pg.PoolConfig
  } = {},
) {
  const pool = new pg.Pool({ connectionString: await serviceUrl('postgres'), max: 6, ...options.pool })
  const sessions: pg.PoolClient[] = []
  const connect = pool.connect.bind(pool) as (...args: unknown[]) => Promise<pg.PoolClient> | undefined
  Object.assign(pool, {
    // pool.query calls connect with a callback: only the promise form hands out sessions.
    connect: (...args: unknown[]) => {
      if (args.length > 0) return connect(...args)
      return (connect() as Promise<pg.PoolClient>).then((client) => {
        sessions.push(client)
        return client
      })
    },
  })
  const source: ChangeSource = postgresChanges({
    pool,
    schema: strata,
    pollMs: 20,
    followerPollMs: 200,
    ...options.changes,
  })
  const { sink, seen } = recordingSink(options.slowInvalidate, options.logger, options.hold)
  closers.push(async () => {
    await source.close()
    await pool.end()
  })
  if (options.start !== false) await source.start(sink)
  return { source, sink, seen, sessions, pool }
}

/** Listener sessions of this schema, and whether each holds an advisory lock (the leader's). */
async function listenerSessions() {
  const { rows } = await admin.query(
    `SELECT a.pid, bool_or(l.granted) IS TRUE AS leads FROM pg_stat_activity a
     LEFT JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'advisory'
     WHERE a.application_name = $1 GROUP BY a.pid`,
    [`graphql-strata changes ${strata}`],
  )
  return rows as { pid: number; leads: boolean }[]
}

const breakSocket = (client: pg.PoolClient) =>
  (
    client as unknown as { connection: { stream: { destroy(error: Error): void } } }
  ).connection.stream.destroy(new Error('read ECONNRESET (test)'))

async function waitsOnLock(pid: number | undefined): Promise<boolean> {
  return waitFor(async () => {
    const { rows } = await admin.query(
      `SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'`,
      [pid],
    )
    return rows.length > 0
  }, 3000)
}

describe('the change listener connection', () => {
  it('closed while it starts: no session is left behind, none holds the leader lock', async () => {
    const { source, sink } = await listener({ start: false })
    const started = source.start(sink)
    await sleep(1)
    await source.close()
    await started
    await sleep(300)
    expect(source.status().state).toBe('closed')
    expect(await listenerSessions()).toEqual([])
  })

  it('lost again while a reconnect catches up: one session remains, it leads, and changes still arrive', async () => {
    const { source, seen, sessions } = await listener()
    expect(source.status().state).toBe('leader')
    const locker = await admin.connect()
    try {
      // Every read of the log now waits: the first session is lost in the middle of one...
      await locker.query(`BEGIN; LOCK ${strata}.changes_state IN ACCESS EXCLUSIVE MODE`)
      expect(await waitsOnLock((sessions[0] as { processID?: number } | undefined)?.processID)).toBe(true)
      breakSocket(sessions[0] as pg.PoolClient)
      // ...and the reconnect's session is lost while its catch-up read waits.
      expect(await waitFor(async () => sessions.length >= 2, 3000)).toBe(true)
      expect(await waitsOnLock((sessions[1] as { processID?: number } | undefined)?.processID)).toBe(true)
      breakSocket(sessions[1] as pg.PoolClient)
      await sleep(70)
    } finally {
      await locker.query('COMMIT')
      locker.release()
    }
    expect(await waitFor(async () => source.status().state === 'leader', 5000)).toBe(true)
    await sleep(300) // a stray attempt, were there one, would have connected by now
    const open = await listenerSessions()
    expect(open).toHaveLength(1)
    expect(open[0]?.leads).toBe(true)
    await admin.query(
      `INSERT INTO ${data}.p VALUES (1001, 'after the losses') ON CONFLICT (id) DO UPDATE SET v = excluded.v`,
    )
    expect(await waitFor(async () => seen.tags.includes('P:1001'), 3000)).toBe(true)
    expect(seen.ups).toBe(seen.downs + 1) // up at start and after each outage, never while down
  })
  it('a connect that outlives its timeout gives its connection back: the pool is not exhausted', async () => {
    const proxy = await startProxy(await serviceUrl('postgres'))
    closers.push(() => proxy.close())
    // Two connections: one leaked by a timed-out connect and the listener's would leave the
    // application none.
    const pool = new pg.Pool({ connectionString: proxy.url, max: 2 })
    pool.on('error', () => {})
    closers.push(() => pool.end())
    proxy.hang() // PostgreSQL accepts TCP but does not answer
    const source = postgresChanges({ pool, schema: strata, autoInstall: false, pollMs: 20 })
    const { sink, seen } = recordingSink()
    closers.push(() => source.close())
    await source.start(sink) // its connect times out (10 s), and a retry is under way
    expect(source.status().state).toBe('down')
    await sleep(300)
    proxy.heal() // both connects now complete: the timed-out one's arrives late
    expect(await waitFor(() => seen.ups === 1, 5000), 'the retry listens').toBe(true)
    const answer = await withTimeout(pool.query('SELECT 1 AS one'), 3000).catch((error: Error) => error)
    expect(answer, "the application's query gets a connection").not.toBeInstanceOf(Error)
    expect(pool.totalCount - pool.idleCount, 'clients checked out: the listener alone').toBe(1)
    expect(await listenerSessions()).toHaveLength(1)
  })
})

describe("the change log's epochs", () => {
  it("a reader still applying the old epoch never moves the new epoch's checkpoint", async () => {
    const slow = { ms: 0 }
    const a = await listener({ slowInvalidate: slow })
    await admin.query(`SELECT setval('${strata}.changes_seq_seq', 5000)`)
    slow.ms = 600
    await admin.query(
      `INSERT INTO ${data}.p VALUES (2001, 'old epoch') ON CONFLICT (id) DO UPDATE SET v = excluded.v`,
    )
    expect(await waitFor(async () => a.seen.tags.includes('P:2001'), 3000)).toBe(true)
    // While a applies it, a crash empties the log (UNLOGGED) and its state; numbering starts over.
    await admin.query(
      `BEGIN; DELETE FROM ${strata}.changes_state; TRUNCATE ${strata}.changes;
       ALTER SEQUENCE ${strata}.changes_seq_seq RESTART; SELECT ${strata}.start_epoch(); COMMIT`,
    )
    await sleep(700)
    slow.ms = 0
    const { rows } = await admin.query(`SELECT checkpoint::int FROM ${strata}.changes_state`)
    expect(rows[0]?.checkpoint).toBeLessThan(5000)
    // A change of the new epoch reaches a reader that starts now.
    const b = await listener()
    await admin.query(
      `INSERT INTO ${data}.p VALUES (2002, 'new epoch') ON CONFLICT (id) DO UPDATE SET v = excluded.v`,
    )
    expect(await waitFor(async () => b.seen.tags.includes('P:2002'), 3000)).toBe(true)
    expect(await waitFor(async () => a.seen.tags.includes('P:2002'), 3000)).toBe(true)
  })

  it('a new epoch starts where the sequence stands (PostgreSQL 14 keeps counting after a crash): nothing below waits', async () => {
    const a = await listener()
    // A crash on PostgreSQL 14: the log and its state are empty, the (logged) sequence goes on.
    await admin.query(
      `BEGIN; DELETE FROM ${strata}.changes_state; TRUNCATE ${strata}.changes;
       SELECT setval('${strata}.changes_seq_seq', 3000000); COMMIT`,
    )
    const writer = await admin.connect()
    try {
      await writer.query('BEGIN; SELECT txid_current()') // a transaction in flight throughout
      // The leader starts a new epoch, which every reader answers with a flush.
      expect(await waitFor(async () => a.seen.flushes > 0, 3000)).toBe(true)
      const { rows } = await admin.query(`SELECT checkpoint::int FROM ${strata}.changes_state`)
      expect(rows[0]?.checkpoint).toBeGreaterThanOrEqual(3000000)
      await admin.query(
        `INSERT INTO ${data}.p VALUES (3001, 'after the crash') ON CONFLICT (id) DO UPDATE SET v = excluded.v`,
      )
      expect(await waitFor(async () => a.seen.tags.includes('P:3001'), 3000)).toBe(true)
      expect(a.source.status().pending).toBe(0)
    } finally {
      await writer.query('COMMIT')
      writer.release()
    }
  })

  /** What a crash does to the log: empties it and its state row (UNLOGGED) and ends every session, at once. */
  const crash = () =>
    admin.query(
      `BEGIN; DELETE FROM ${strata}.changes_state; TRUNCATE ${strata}.changes;
       SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'graphql-strata changes ${strata}';
       COMMIT`,
    )

  it('the leader, reconnecting after a crash emptied the log, flushes before it trusts local tiers again', async () => {
    const a = await listener()
    expect(a.source.status().state).toBe('leader')
    const before = a.seen.events.length
    await crash()
    expect(await waitFor(async () => a.seen.events.slice(before).includes('up'), 3000)).toBe(true)
    await sleep(100)
    expect(a.seen.events.slice(before)).toEqual(['down', 'flush', 'up'])
    // Changes lost with the log may not have reached the shared tiers either: every tier is flushed.
    expect(a.seen.flushScopes).toEqual(['all'])
  })

  it('a follower that finds the log emptied by a crash starts the new epoch itself and flushes before it trusts local tiers again', async () => {
    // The leader has not started the new epoch yet: a session holding its lock stands for it.
    const leader = await admin.connect()
    let b: Awaited<ReturnType<typeof listener>>
    try {
      await leader.query('SELECT pg_advisory_lock(hashtext($1))', [`graphql-strata changes v3 ${strata}`])
      b = await listener()
      expect(b.source.status().state).toBe('follower')
      const before = b.seen.events.length
      await crash()
      expect(await waitFor(async () => b.seen.events.slice(before).includes('up'), 3000)).toBe(true)
      await sleep(300) // a later read (followerPollMs) must not be what flushes
      // Local tiers are trusted again (up) only once the lost changes are answered with a flush.
      expect(b.seen.events.slice(before)).toEqual(['down', 'flush', 'up'])
      const { rows } = await admin.query(`SELECT count(*)::int AS n FROM ${strata}.changes_state`)
      expect(rows[0]?.n).toBe(1)
    } finally {
      await leader.query('SELECT pg_advisory_unlock_all()')
      leader.release()
    }
    // The follower then leads, and changes of the new epoch arrive.
    await admin.query(
      `INSERT INTO ${data}.p VALUES (4001, 'new epoch') ON CONFLICT (id) DO UPDATE SET v = excluded.v`,
    )
    expect(await waitFor(async () => b.seen.tags.includes('P:4001'), 3000)).toBe(true)
  })
})

describe('pruning the change log', () => {
  it('a follower that missed pruned changes flushes its local tiers only: the shared tiers had them applied', async () => {
    const a = await listener({ changes: { pruneIntervalMs: 20, retentionMs: 1 } })
    expect(a.source.status().state).toBe('leader')
    const hold: { until?: Promise<void> } = {}
    const b = await listener({ hold })
    expect(b.source.status().state).toBe('follower')
    let release = () => {}
    hold.until = new Promise<void>((resolve) => {
      release = resolve
    })
    const write = (id: number) =>
      admin.query(`INSERT INTO ${data}.p VALUES ($1, 'x') ON CONFLICT (id) DO UPDATE SET v = excluded.v`, [
        id,
      ])
    // Generous bounds: with other test files running, the leader's prune timer can lag by seconds.
    try {
      await write(6101)
      // b stops in the middle of applying a change...
      expect(await waitFor(async () => b.seen.tags.includes('P:6101'), 10_000)).toBe(true)
      // ...while the leader applies the next one and prunes the log up to the checkpoint.
      await write(6102)
      expect(
        await waitFor(async () => {
          const { rows } = await admin.query(
            `SELECT pruned_through >= checkpoint AND NOT EXISTS (SELECT 1 FROM ${strata}.changes) AS done
             FROM ${strata}.changes_state`,
          )
          return a.seen.tags.includes('P:6102') && rows[0]?.done === true
        }, 10_000),
      ).toBe(true)
    } finally {
      release()
    }
    expect(await waitFor(async () => b.seen.flushes > 0, 10_000)).toBe(true)
    // Pruning stops at the checkpoint, which readers move once every tier had a change applied:
    // only b's local tiers missed it, and other instances lose nothing.
    expect(b.seen.flushScopes).toEqual(['local'])
    await write(6103)
    expect(await waitFor(async () => b.seen.tags.includes('P:6103'), 10_000)).toBe(true)
  })

  it('a failing prune is logged once per streak of failures, and retried until it works', async () => {
    const lines: string[] = []
    const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(line) })
    const logged = (prefix: string) =>
      lines
        .map(
          (line) =>
            JSON.parse(line) as { level: number; msg: string; failures?: number; err?: { message: string } },
        )
        .filter((line) => line.msg.startsWith(prefix))
    const failed = () => logged('strata: pruning the change log failed')
    const works = () => logged('strata: pruning the change log works again')
    const a = await listener({ logger, changes: { pruneIntervalMs: 20, retentionMs: 1 } })
    expect(a.source.status().state).toBe('leader')
    // Every prune fails (its statement names the column) while reading the log goes on.
    const breakPruning = () => admin.query(`ALTER TABLE ${strata}.changes RENAME COLUMN at TO at_gone`)
    const repairPruning = () => admin.query(`ALTER TABLE ${strata}.changes RENAME COLUMN at_gone TO at`)
    for (const streak of [1, 2]) {
      await breakPruning()
      try {
        expect(await waitFor(async () => failed().length === streak, 3000)).toBe(true)
        await sleep(300) // some fifteen more failures: none is logged
      } finally {
        await repairPruning()
      }
      expect(failed()).toHaveLength(streak)
      expect(failed()[streak - 1]?.level).toBe(40) // warn
      expect(failed()[streak - 1]?.err?.message).toContain('"at"')
      // Pruning was retried all along: it works again, which is logged once.
      expect(await waitFor(async () => works().length === streak, 3000)).toBe(true)
      expect(works()[streak - 1]?.failures).toBeGreaterThan(5)
    }
    // And it prunes: an applied change older than the retention leaves the log.
    await admin.query(
      `INSERT INTO ${data}.p VALUES (5001, 'pruned') ON CONFLICT (id) DO UPDATE SET v = excluded.v`,
    )
    expect(await waitFor(async () => a.seen.tags.includes('P:5001'), 3000)).toBe(true)
    expect(
      await waitFor(async () => {
        const { rows } = await admin.query(`SELECT count(*)::int AS n FROM ${strata}.changes`)
        return rows[0]?.n === 0
      }, 3000),
    ).toBe(true)
    expect(failed()).toHaveLength(2)
  })
})

describe('a pool whose transactions default to another isolation level than READ COMMITTED', () => {
  const repeatableRead = { options: '-c default_transaction_isolation=repeatable\\ read' }
  const serializable = { options: '-c default_transaction_isolation=serializable' }
  const write = (id: number, v: string) =>
    admin.query(`INSERT INTO ${data}.p VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET v = excluded.v`, [
      id,
      v,
    ])

  it("listen mode at REPEATABLE READ: a checkpoint another instance moved meanwhile ends no listener's session", async () => {
    const a = await listener({ pool: repeatableRead })
    expect(a.source.status().state).toBe('leader')
    const [session] = await listenerSessions()
    const other = await admin.connect() // another instance moving the checkpoint
    try {
      await other.query(`BEGIN; UPDATE ${strata}.changes_state SET checkpoint = checkpoint`)
      await write(7001, 'x')
      expect(await waitFor(async () => a.seen.tags.includes('P:7001'), 3000)).toBe(true)
      expect(await waitsOnLock(session?.pid)).toBe(true) // its own checkpoint waits for that row
      await other.query('COMMIT')
    } finally {
      await other.query('ROLLBACK').catch(() => undefined)
      other.release()
    }
    await write(7002, 'x')
    expect(await waitFor(async () => a.seen.tags.includes('P:7002'), 3000)).toBe(true)
    expect(a.source.status()).toMatchObject({ state: 'leader', reconnects: 0, lastError: null })
    expect(a.seen.downs).toBe(0)
  })

  it("listen mode at SERIALIZABLE: the leader's drains make no writer's transaction fail", async () => {
    const a = await listener({ pool: serializable })
    expect(a.source.status().state).toBe('leader')
    const url = await serviceUrl('postgres')
    const w = new pg.Client({ connectionString: url, ...serializable })
    const t = new pg.Client({ connectionString: url, ...serializable })
    await w.connect()
    await t.connect()
    closers.push(async () => {
      await w.end()
      await t.end()
    })
    await write(7101, 'x')
    await write(7102, 'x')
    const failures: string[] = []
    for (let i = 0; i < 5; i++) {
      const drained = a.seen.tags.filter((tag) => tag === 'P:7102').length
      try {
        // W reads a row that T then changes: W precedes T, and nothing else orders them, so without
        // Strata this schedule commits. The leader drains the inboxes (T's change) while W is open.
        await w.query('BEGIN')
        await w.query(`SELECT v FROM ${data}.p WHERE id = 7102`)
        await t.query(`UPDATE ${data}.p SET v = $1 WHERE id = 7102`, [`t${i}`])
        await w.query(`UPDATE ${data}.p SET v = $1 WHERE id = 7101`, [`w${i}`])
        expect(
          await waitFor(async () => a.seen.tags.filter((tag) => tag === 'P:7102').length > drained, 3000),
        ).toBe(true)
        await w.query('COMMIT')
      } catch (error) {
        failures.push((error as Error).message)
        await w.query('ROLLBACK').catch(() => undefined)
      }
    }
    expect(failures).toEqual([])
    expect(a.seen.downs).toBe(0)
  })

  it('poll mode at REPEATABLE READ: the install refuses, saying what to do, is logged and retried', async () => {
    const lines: string[] = []
    const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(line) })
    const a = await listener({ pool: repeatableRead, logger, changes: { mode: 'poll' } })
    expect(a.source.status().state).toBe('down')
    const refusal =
      /this transaction runs at repeatable read .*Strata's statements need read committed: give Strata a pool of its own/
    expect(a.source.status().lastError).toMatch(refusal)
    const lost = lines
      .map((line) => JSON.parse(line) as { msg: string; err?: { message: string; code?: string } })
      .find((line) => line.msg === 'strata: change listener lost; reconnecting')
    expect(lost?.err?.code).toBe('SR001')
    expect(lost?.err?.message).toMatch(refusal)
    expect(await waitFor(async () => a.source.status().reconnects > 0, 3000)).toBe(true)
    expect(a.source.status().state).toBe('down')
  })

  it('poll mode at SERIALIZABLE, installed by hand: drains and pruning are refused on its pool', async () => {
    const lines: string[] = []
    const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(line) })
    const a = await listener({
      pool: serializable,
      logger,
      changes: { mode: 'poll', autoInstall: false, pruneIntervalMs: 20, retentionMs: 1 },
    })
    const refusal = /this transaction runs at serializable .*Strata's statements need read committed/
    expect(a.source.status().state).toBe('down')
    expect(a.source.status().lastError).toMatch(refusal) // the drain's
    const pruneFailed = async () =>
      lines
        .map((line) => JSON.parse(line) as { msg: string; err?: { message: string } })
        .find((line) => line.msg.startsWith('strata: pruning the change log failed'))
    expect(await waitFor(async () => (await pruneFailed()) !== undefined, 3000)).toBe(true)
    expect((await pruneFailed())?.err?.message).toMatch(refusal)
  })
})
