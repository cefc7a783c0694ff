import type { Plugin } from 'graphql-yoga'
import { afterEach, describe, expect, it } from 'vitest'
import {
  type CacheEntry,
  type CacheTier,
  memoryTier,
  type StrataOptions,
  useStrata,
} from '../../src/index.js'
import { BlogStore, blogSchema } from '../support/blog.js'
import { startServer, type TestServer } from '../support/server.js'

const servers: TestServer[] = []
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()))
})

async function start(options: Partial<StrataOptions> = {}, after: Plugin[] = [], store = new BlogStore()) {
  const plugin = useStrata({ tenant: false, ...options } as StrataOptions)
  const server = await startServer({ schema: blogSchema(store), plugins: [plugin, ...after] })
  servers.push(server)
  return { server, store, strata: plugin.strata }
}

describe('concurrency edge cases', () => {
  it('never hands one caller another caller’s uncacheable result through single-flight', async () => {
    const { server } = await start({ session: ({ context }) => context.request.headers.get('x-user-id') })
    const [alice, bob] = await Promise.all([
      server.query('{ viewer }', {}, { 'x-user-id': 'alice' }),
      server.query('{ viewer }', {}, { 'x-user-id': 'bob' }),
    ])
    expect(alice.json.data?.viewer).toBe('secret of alice')
    expect(bob.json.data?.viewer).toBe('secret of bob')
  })

  it('a plugin after Strata that fails a request does not leave later identical requests hanging', async () => {
    let failures = 1
    const flaky: Plugin = {
      onExecute() {
        if (failures-- > 0) throw new Error('flaky plugin')
      },
    }
    const { server } = await start({}, [flaky])
    const first = await server.query('{ posts { id } }')
    expect(first.status).toBe(500)
    const second = await server.query('{ posts { id } }')
    expect(second.json.data?.posts).toHaveLength(3)
  })

  it('does not store a result that another plugin produced instead of executing', async () => {
    const substitute: Plugin = {
      onExecute({ setResultAndStopExecution }) {
        setResultAndStopExecution({ data: { post: { id: '1', title: 'from elsewhere' } } })
      },
    }
    const { server, strata } = await start({}, [substitute])
    await server.query('{ post(id: "1") { id title } }')
    expect(strata.stats().stores).toBe(0)
  })

  it('a lower tier’s answer read before an invalidation is neither served nor promoted', async () => {
    const inner = memoryTier({ name: 'remote' })
    let hold: Promise<void> | undefined
    const remote: CacheTier = {
      ...inner,
      name: 'remote',
      shared: true,
      async get(key) {
        const entry = inner.get(key)
        await hold
        return entry
      },
      async set(key: string, entry: CacheEntry) {
        inner.set(key, entry)
      },
    }
    const local = memoryTier()
    const { server } = await start({ tiers: [local, remote], breaker: { timeoutMs: 5000 } })
    const one = '{ post(id: "1") { id title } }'
    await server.query(one)
    local.clear()
    let release!: () => void
    hold = new Promise((r) => {
      release = r
    })
    const read = server.query(one)
    await new Promise((r) => setTimeout(r, 30))
    await server.query('mutation { updatePost(id: "1", title: "After") { id } }')
    release()
    hold = undefined
    const stale = await read
    expect(stale.json.data?.post).toEqual({ id: '1', title: 'After' })
    const next = await server.query(one)
    expect(next.json.data?.post).toEqual({ id: '1', title: 'After' })
  })

  it('a result known to be stale is sent with no-store', async () => {
    const store = new BlogStore()
    const { server } = await start({ singleFlight: false }, [], store)
    const { started, release } = store.hold()
    const slow = server.query('{ slowPost(id: "1") { id title } }')
    await started
    await server.query('mutation { updatePost(id: "1", title: "New") { id } }')
    release()
    expect((await slow).headers.get('cache-control')).toBe('no-store')
  })
})

describe('documents that collide with the rewrite', () => {
  it('keeps a client alias that starts with the reserved prefix', async () => {
    const { server } = await start()
    const query = '{ post(id: "1") { id __strata_x: title __strata_k0: body } }'
    const miss = await server.query(query)
    expect(miss.json.data?.post).toEqual({ id: '1', __strata_x: 'Post 1', __strata_k0: 'Body of Post 1' })
    expect((await server.query(query)).text).toBe(miss.text)
  })

  it('a mutation aliasing the reserved prefix still invalidates the right entity', async () => {
    const { server } = await start()
    await server.query('{ post(id: "1") { id title } }')
    const m = await server.query('mutation { updatePost(id: "1", title: "NEW") { __strata_k0: title } }')
    expect(m.json.data?.updatePost).toEqual({ __strata_k0: 'NEW' })
    expect((await server.query('{ post(id: "1") { id title } }')).json.data?.post).toEqual({
      id: '1',
      title: 'NEW',
    })
  })

  it('a mutation returning a keyless type invalidates what shows that type', async () => {
    const { server } = await start()
    await server.query('{ tags { label } }')
    await server.query('{ firstTag { label } }')
    await server.query('mutation { addTag(label: "z") { label } }')
    expect((await server.query('{ tags { label } }')).json.data?.tags).toContainEqual({ label: 'z' })
    expect((await server.query('{ firstTag { label } }')).json.data?.firstTag).toEqual({ label: 'z' })
  })
})
