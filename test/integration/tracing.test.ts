import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base'
import { afterEach, describe, expect, it } from 'vitest'
import { type StrataOptions, useStrata } from '../../src/index.js'
import { BlogStore, blogSchema } from '../support/blog.js'
import { startStrataServer } from '../support/server.js'
import { sleep, waitFor } from '../support/wait.js'

const closers: (() => Promise<unknown>)[] = []
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close()
})

/** A server whose Strata reports to the OpenTelemetry SDK, with the finished spans. */
async function traced(options: Partial<StrataOptions> = {}) {
  const exporter = new InMemorySpanExporter()
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
  closers.push(() => provider.shutdown())
  // The SDK's own Tracer: it must fit the option's type as it is.
  const plugin = useStrata({ tenant: false, tracer: provider.getTracer('graphql-strata'), ...options })
  const server = await startStrataServer(blogSchema(new BlogStore()), plugin, closers)
  const spans = (name: string): ReadableSpan[] => exporter.getFinishedSpans().filter((s) => s.name === name)
  return { server, strata: plugin.strata, spans }
}

describe('OpenTelemetry spans', () => {
  it('a lookup span per cached operation tells MISS or HIT, the tier and the operation', async () => {
    const { server, spans } = await traced()
    await server.query('query Feed { posts { id } }')
    await server.query('query Feed { posts { id } }')
    await server.query('mutation { updatePost(id: "1", title: "x") { id } }') // not looked up
    const lookups = spans('strata.lookup').map((span) => span.attributes)
    expect(lookups).toEqual([
      { 'graphql.operation.name': 'Feed', 'strata.cache.status': 'MISS' },
      { 'graphql.operation.name': 'Feed', 'strata.cache.status': 'HIT', 'strata.cache.tier': 'memory' },
    ])
  })

  it('an invalidation span counts the tags and the entries removed; a clear span the entries', async () => {
    const { server, strata, spans } = await traced()
    await server.query('{ posts { id } }')
    await server.query('mutation { updatePost(id: "1", title: "x") { id } }')
    const [invalidate] = spans('strata.invalidate')
    expect(invalidate?.attributes).toEqual({ 'strata.tags': 2, 'strata.removed': 1 })
    await server.query('{ posts { id } }')
    await strata.clear()
    expect(spans('strata.clear').map((span) => span.attributes)).toEqual([
      { 'strata.tenant': '(all)', 'strata.removed': 1 },
    ])
  })

  it('a stale hit is reported STALE, and its background refresh has a span of its own', async () => {
    const { server, spans } = await traced({
      staleWhileRevalidate: 30,
      hints: { 'Query.posts': { maxAge: 1 } },
    })
    await server.query('query Feed { posts { id } }')
    await sleep(1100)
    expect((await server.query('query Feed { posts { id } }')).cache).toBe('STALE')
    expect(await waitFor(() => spans('strata.refresh').length === 1, 2000)).toBe(true)
    expect(spans('strata.lookup').at(-1)?.attributes['strata.cache.status']).toBe('STALE')
    expect(spans('strata.refresh')[0]?.attributes).toEqual({ 'graphql.operation.name': 'Feed' })
  })
})

describe('a tracer that throws', () => {
  /** A tracer failing where `where` says: starting spans, or every call on the spans it starts. */
  function throwingTracer(where: 'startSpan' | 'span') {
    const fail = () => {
      throw new Error('tracer broke')
    }
    const span = { setAttribute: fail, setStatus: fail, recordException: fail, end: fail }
    return { startSpan: where === 'startSpan' ? fail : () => span }
  }

  it.each(['startSpan', 'span'] as const)(
    'never fails a request, an invalidation, a clear or a refresh (%s throws)',
    async (where) => {
      const store = new BlogStore()
      const plugin = useStrata({
        tenant: false,
        tracer: throwingTracer(where),
        staleWhileRevalidate: 30,
        hints: { 'Query.posts': { maxAge: 1 } },
      })
      const server = await startStrataServer(blogSchema(store), plugin, closers)
      const miss = await server.query('{ post(id: "1") { id title } }')
      expect([miss.status, miss.cache, miss.json.errors]).toEqual([200, 'MISS', undefined])
      const hit = await server.query('{ post(id: "1") { id title } }')
      expect([hit.status, hit.cache, hit.json.data]).toEqual([200, 'HIT', miss.json.data])

      const mutation = await server.query('mutation { updatePost(id: "1", title: "new") { id } }')
      expect([mutation.status, mutation.json.errors]).toEqual([200, undefined])
      const after = await server.query('{ post(id: "1") { id title } }')
      expect([after.cache, after.json.data], 'the mutation invalidated the entry').toEqual([
        'MISS',
        { post: { id: '1', title: 'new' } },
      ])
      await expect(plugin.strata.clear()).resolves.toBeDefined()

      await server.query('{ posts { id } }')
      await sleep(1100)
      expect((await server.query('{ posts { id } }')).cache).toBe('STALE')
      expect(await waitFor(() => plugin.strata.stats().stores === 4, 2000), 'the refresh stored').toBe(true)
      expect(plugin.strata.stats().failedRefreshes).toBe(0)
    },
  )
})
