import { randomUUID } from 'node:crypto'
import type { Socket } from 'node:net'
import pg from 'pg'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { memoryTier, useStrata } from '../../src/index.js'
import { PostgresBus } from '../../src/postgres.js'
import type { BusMessage } from '../../src/tiers/tier.js'
import { type FaultProxy, startProxy } from '../support/proxy.js'
import { serviceUrl } from '../support/services.js'
import { sleep, waitFor } from '../support/wait.js'

const closers: (() => Promise<unknown>)[] = []
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close().catch(() => undefined)
})

type Hold = 'connect' | 'listen'

/**
 * A real pg.Pool for the bus alone (its sessions are told apart by application_name), wrapped so a
 * test can cut the socket of the next LISTEN while it is in flight, or hold the next connect or
 * LISTEN until released. With `proxy`, the bus's pool reaches PostgreSQL through it (the test's
 * own admin connections never do).
 */
async function busPool(proxy?: FaultProxy) {
  const url = await serviceUrl('postgres')
  const app = `strata_bus_${randomUUID().slice(0, 8)}`
  const pool = new pg.Pool({ connectionString: proxy?.url ?? url, max: 10, application_name: app })
  // A connection the bus gave back (destroyed) may still be closing when the test kills it.
  pool.on('error', () => {})
  const admin = new pg.Pool({ connectionString: url, max: 2 })
  const kill = () =>
    admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [app])
  let ended = false
  const end = () => {
    const ending = pool.end().then(() => {
      ended = true
    })
    return Promise.race([ending, sleep(2000)]).then(() => ended)
  }
  closers.push(
    () => admin.end(),
    // A leaked connection would keep pool.end() waiting forever: kill it so the worker can exit.
    async () => {
      await kill()
      if (!ended) await end()
    },
  )

  let cutNextListen = false
  let hold: Hold | undefined
  let reached = () => {}
  let open = () => {}

  const connect = async () => {
    harness.attempts++
    const client = await pool.connect()
    harness.connects++
    const query = client.query.bind(client) as (text: string) => Promise<unknown>
    const listen = (run: (text: string) => Promise<unknown>) => {
      ;(client as unknown as { query: (text: string) => Promise<unknown> }).query = (text) =>
        text.startsWith('LISTEN') ? run(text) : query(text)
    }
    if (cutNextListen) {
      cutNextListen = false
      listen((text) => {
        const sent = query(text)
        ;(client as unknown as { connection: { stream: Socket } }).connection.stream.destroy()
        return sent
      })
    }
    const held = hold
    hold = undefined
    if (held) {
      const gate = new Promise<void>((resolve) => {
        open = resolve
      })
      if (held === 'listen') {
        listen(async (text) => {
          reached()
          await gate
          return query(text)
        })
      } else {
        reached()
        await gate
      }
    }
    return client
  }

  const harness = {
    /** What the bus is given: the real pool, with connect() going through the wrapper above. */
    pool: { query: pool.query.bind(pool), connect },
    /** Calls of connect(), failed ones included. */
    attempts: 0,
    connects: 0,
    kill,
    end,
    /** The bus's sessions as PostgreSQL sees them. */
    backends: async () =>
      Number(
        (await admin.query('SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1', [app]))
          .rows[0].n,
      ),
    /** Clients the bus took from the pool and has not given back. */
    checkedOut: () => pool.totalCount - pool.idleCount,
    cutNextListen: () => {
      cutNextListen = true
    },
    /** Holds the next connect (or its LISTEN); resolves once the bus is waiting there. */
    hold: (what: Hold) => {
      hold = what
      return new Promise<void>((resolve) => {
        reached = resolve
      })
    },
    release: () => open(),
    publisher: (channel: string) => new PostgresBus(admin, channel),
  }
  return harness
}

function recorder() {
  const events: string[] = []
  const messages: BusMessage[] = []
  const handlers = {
    onMessage: (message: BusMessage) => messages.push(message),
    onDown: () => events.push('down'),
    onUp: () => events.push('up'),
  }
  return { events, messages, handlers, ups: () => events.filter((e) => e === 'up').length }
}

describe('PostgresBus reconnects', () => {
  it('killing the listening backend, even while a reconnect LISTENs, never leaves more than one bus connection', async () => {
    const t = await busPool()
    const channel = `bus_${randomUUID().slice(0, 8)}`
    const bus = new PostgresBus(t.pool, channel)
    const { events, messages, handlers, ups } = recorder()
    await bus.start(handlers)
    closers.push(() => bus.close())
    expect(events).toEqual(['up'])

    for (let round = 1; round <= 4; round++) {
      const cut = round % 2 === 0
      // On even rounds the reconnect's socket is destroyed while its LISTEN is in flight.
      if (cut) t.cutNextListen()
      const connects = t.connects
      await t.kill()
      expect(await waitFor(() => ups() === round + 1, 5000), `round ${round}: up again`).toBe(true)
      await sleep(500) // longer than the backoff: a second reconnect chain would have connected by now
      expect(t.checkedOut(), `round ${round}: clients checked out`).toBe(1)
      expect(await waitFor(async () => (await t.backends()) === 1, 2000), `round ${round}: one session`).toBe(
        true,
      )
      // A cut round takes two connections: the first failed during LISTEN, as intended.
      expect(t.connects - connects, `round ${round}: connections taken`).toBe(cut ? 2 : 1)
    }
    expect(events).toEqual(['up', 'down', 'up', 'down', 'up', 'down', 'up', 'down', 'up'])

    await t.publisher(channel).publish({ kind: 'invalidate', tags: ['Post:1'] })
    expect(await waitFor(() => messages.length > 0, 2000)).toBe(true)
    expect(messages).toEqual([{ kind: 'invalidate', tags: ['Post:1'] }])

    await bus.close()
    expect(await t.end()).toBe(true)
  })

  it.each([
    ['start() waits for its connection', 'start', 'connect'],
    ['a reconnect waits for its connection', 'reconnect', 'connect'],
    ['a reconnect LISTENs', 'reconnect', 'listen'],
  ] as const)('close() while %s leaves no connection behind', async (_, phase, hold) => {
    const t = await busPool()
    const bus = new PostgresBus(t.pool, `bus_${randomUUID().slice(0, 8)}`)
    const { events, handlers } = recorder()
    let starting: Promise<void>
    if (phase === 'start') {
      const reached = t.hold(hold)
      starting = bus.start(handlers)
      await reached
    } else {
      await bus.start(handlers)
      starting = Promise.resolve()
      const reached = t.hold(hold)
      await t.kill()
      await reached
    }
    const before = [...events]
    await bus.close()
    t.release()
    await starting
    await sleep(200) // whatever the held connect does next, it has done it
    expect(t.checkedOut(), 'clients checked out').toBe(0)
    expect(await waitFor(async () => (await t.backends()) === 0, 2000), 'no bus session left').toBe(true)
    expect(await t.end(), 'pool.end() resolves').toBe(true)
    expect(events, 'no onUp after close()').toEqual(before)
  })
})

describe('PostgresBus starts while PostgreSQL is unreachable', () => {
  /** A proxy refusing connections: PostgreSQL is unreachable until `heal()`. */
  async function cutProxy() {
    const proxy = await startProxy(await serviceUrl('postgres'))
    closers.push(() => proxy.close())
    proxy.cut()
    return proxy
  }

  it('start() resolves, the bus retries until PostgreSQL is back, then reports up and delivers', async () => {
    const proxy = await cutProxy()
    const t = await busPool(proxy)
    const channel = `bus_${randomUUID().slice(0, 8)}`
    const bus = new PostgresBus(t.pool, channel)
    const { events, messages, handlers, ups } = recorder()
    await bus.start(handlers)
    closers.push(() => bus.close())
    expect(events, 'not up, and no onDown: nothing was missed').toEqual([])
    await sleep(400)
    expect(t.attempts, 'retrying').toBeGreaterThanOrEqual(3)
    expect(t.connects).toBe(0)
    expect(events).toEqual([])

    proxy.heal()
    expect(await waitFor(() => ups() === 1, 5000), 'up once PostgreSQL is back').toBe(true)
    await sleep(500) // longer than the backoff: a second retry chain would have connected by now
    expect(events).toEqual(['up'])
    expect(t.connects, 'connections taken').toBe(1)
    expect(t.checkedOut(), 'clients checked out').toBe(1)
    expect(await waitFor(async () => (await t.backends()) === 1, 2000), 'one session').toBe(true)

    await t.publisher(channel).publish({ kind: 'invalidate', tags: ['Post:1'] })
    expect(await waitFor(() => messages.length > 0, 2000)).toBe(true)
    expect(messages).toEqual([{ kind: 'invalidate', tags: ['Post:1'] }])

    await bus.close()
    expect(await t.end(), 'pool.end() resolves').toBe(true)
  })

  it('start() resolves while PostgreSQL accepts TCP but never answers, and a connect that arrives late is given back', async () => {
    const proxy = await startProxy(await serviceUrl('postgres'))
    closers.push(() => proxy.close())
    proxy.hang()
    const t = await busPool(proxy)
    const bus = new PostgresBus(t.pool, `bus_${randomUUID().slice(0, 8)}`)
    const { events, handlers, ups } = recorder()
    closers.push(() => bus.close())
    const started = await Promise.race([
      bus.start(handlers).then(() => 'started'),
      sleep(8000).then(() => 'still starting'),
    ])
    expect(started, 'its connect timed out (5 s) and a retry is under way').toBe('started')
    expect(events).toEqual([])
    proxy.heal() // the timed-out connect completes now, late
    expect(await waitFor(() => ups() === 1, 5000), 'up once PostgreSQL answers').toBe(true)
    await sleep(500)
    expect(t.checkedOut(), 'clients checked out: the listening one alone').toBe(1)
    expect(await waitFor(async () => (await t.backends()) === 1, 2000), 'one session').toBe(true)
  })

  it.each([
    ['between retries', false],
    ['while a retry connects', true],
  ] as const)('close() %s leaves no connection and no retry behind', async (_, held) => {
    const proxy = await cutProxy()
    const t = await busPool(proxy)
    const bus = new PostgresBus(t.pool, `bus_${randomUUID().slice(0, 8)}`)
    const { events, handlers } = recorder()
    await bus.start(handlers)
    closers.push(() => bus.close())
    await sleep(300)
    expect(t.attempts, 'retrying').toBeGreaterThanOrEqual(2)
    if (held) {
      const reached = t.hold('connect')
      proxy.heal()
      await reached // a retry got its connection and waits here
    }
    await bus.close()
    const attempts = t.attempts
    proxy.heal()
    t.release()
    await sleep(2000) // longer than the next backoff: a retry still scheduled would have run
    expect(t.attempts, 'no attempt after close()').toBe(attempts)
    expect(t.checkedOut(), 'clients checked out').toBe(0)
    expect(await waitFor(async () => (await t.backends()) === 0, 2000), 'no bus session left').toBe(true)
    expect(await t.end(), 'pool.end() resolves').toBe(true)
    expect(events, 'no onUp after close()').toEqual([])
  })

  it('the plugin uses its local tiers once the bus is up, and says it is retrying until then', async () => {
    const proxy = await cutProxy()
    const t = await busPool(proxy)
    const lines: string[] = []
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) })
    const plugin = useStrata({
      tenant: false,
      tiers: [memoryTier()],
      bus: new PostgresBus(t.pool, `bus_${randomUUID().slice(0, 8)}`),
      logger,
    })
    closers.push(() => plugin.strata.close())
    await plugin.strata.ready()
    expect(plugin.strata.cache.localTrusted).toBe(false)
    const logged = lines.map((line) => JSON.parse(line) as { level: number; msg: string })
    const retrying = logged.filter(
      (line) =>
        line.msg ===
        'strata: invalidation bus could not connect; retrying; local tiers unused until it is up',
    )
    // Once, at warn, saying why (the bus retries meanwhile: those failures are debug).
    expect(retrying).toEqual([
      expect.objectContaining({
        level: 40,
        reason: expect.stringMatching(/^listener could not connect: .+/),
      }),
    ])
    expect(
      logged.filter((line) => line.level >= 50),
      'no error logged',
    ).toEqual([])

    proxy.heal()
    expect(await waitFor(() => plugin.strata.cache.localTrusted, 5000), 'local tiers in use').toBe(true)
    await plugin.strata.close()
    expect(await t.end(), 'pool.end() resolves').toBe(true)
  })
})
