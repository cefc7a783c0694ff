import { GraphQLError } from 'graphql'
import { createYoga, type Plugin } from 'graphql-yoga'
import { afterEach, describe, expect, it } from 'vitest'
import { memoryTier, type StrataOptions, useStrata } from '../../src/index.js'
import { BlogStore, blogSchema } from '../support/blog.js'
import { startServer, type TestServer } from '../support/server.js'

const servers: TestServer[] = []
const plugins: { strata: { close(): Promise<unknown> } }[] = []
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()))
  await Promise.all(plugins.splice(0).map((p) => p.strata.close()))
})

type Ctx = { request: Request }

async function start(
  options: Partial<StrataOptions<Ctx>> = {},
  store = new BlogStore(),
  others: Plugin[] = [],
) {
  const plugin = useStrata<Ctx>({ tenant: false, tiers: [memoryTier()], ...options } as StrataOptions<Ctx>)
  const server = await startServer({
    schema: blogSchema(store),
    plugins: [plugin as never, ...others],
    batching: true,
  })
  servers.push(server)
  plugins.push(plugin)
  return { server, store, strata: plugin.strata }
}

/** A GraphQL-over-HTTP GET, as a browser or a CDN revalidates it. */
async function get(server: TestServer, query: string, headers: Record<string, string> = {}) {
  const url = `${server.url}?query=${encodeURIComponent(query)}`
  const response = await fetch(url, { headers: { accept: 'application/graphql-response+json', ...headers } })
  return {
    status: response.status,
    text: await response.text(),
    etag: response.headers.get('etag'),
    cache: response.headers.get('x-strata-cache'),
    cacheControl: response.headers.get('cache-control'),
  }
}

const posts = '{ posts { id title } }'

describe('entity tags and conditional GETs, through Yoga over HTTP', () => {
  it('a cacheable response carries a weak etag; a GET naming it is answered 304 with no body, with its cache headers', async () => {
    const { server, store } = await start()
    const first = await get(server, posts)
    expect(first.status).toBe(200)
    expect(first.cache).toBe('MISS')
    expect(first.etag).toMatch(/^W\/"[A-Za-z0-9_-]+"$/)

    const again = await get(server, posts, { 'if-none-match': first.etag as string })
    expect(again.status).toBe(304)
    expect(again.text).toBe('')
    expect(again.cache).toBe('HIT')
    expect(again.etag).toBe(first.etag)
    expect(again.cacheControl).toMatch(/^max-age=\d+, public$/)
    expect(store.calls.posts).toBe(1)

    // A list of tags, the strong form of the same tag, and `*` all match (weak comparison).
    const opaque = (first.etag as string).slice(2)
    for (const condition of [`"other", ${first.etag}`, opaque, '*']) {
      expect((await get(server, posts, { 'if-none-match': condition })).status).toBe(304)
    }
    // Another tag does not.
    const other = await get(server, posts, { 'if-none-match': 'W/"other"' })
    expect(other.status).toBe(200)
    expect(other.text).toBe(first.text)
  })

  it('the tag follows the data: a changed result gets a new tag and a full answer, an unchanged one re-executed keeps it', async () => {
    const { server, store, strata } = await start()
    const first = await get(server, posts)

    // Purged and executed again, same data: the client's copy is still current.
    await strata.invalidateTypes(['Post'])
    const unchanged = await get(server, posts, { 'if-none-match': first.etag as string })
    expect(unchanged.cache).toBe('MISS')
    expect(unchanged.status).toBe(304)
    expect(store.calls.posts).toBe(2)

    // A mutation changes a title: the old tag no longer matches.
    await server.query('mutation { updatePost(id: "1", title: "Changed") { id title } }')
    const changed = await get(server, posts, { 'if-none-match': first.etag as string })
    expect(changed.status).toBe(200)
    expect(changed.cache).toBe('MISS')
    expect(changed.text).toContain('Changed')
    expect(changed.etag).not.toBe(first.etag)
    expect((await get(server, posts, { 'if-none-match': changed.etag as string })).status).toBe(304)
  })

  it('the tag is the same on every instance: another instance answers 304 to a tag it never sent', async () => {
    const store = new BlogStore()
    const a = await start({}, store)
    const b = await start({}, store)
    const fromA = await get(a.server, posts)
    const onB = await get(b.server, posts, { 'if-none-match': fromA.etag as string })
    expect(onB.cache).toBe('MISS')
    expect(onB.status).toBe(304)
    expect(onB.etag).toBe(fromA.etag)
  })

  it('a cacheable response varies on Accept, beside what CORS varies on; one that may not be stored does not', async () => {
    const { server } = await start()
    const response = await fetch(`${server.url}?query=${encodeURIComponent(posts)}`, {
      headers: { accept: 'application/graphql-response+json', origin: 'http://example.test' },
    })
    expect(response.headers.get('cache-control')).toMatch(/^max-age=/)
    const vary = (response.headers.get('vary') ?? '').split(',').map((name) => name.trim().toLowerCase())
    expect(vary).toContain('accept')
    expect(vary.filter((name) => name === 'accept')).toHaveLength(1)
    expect(vary).toContain('origin') // Yoga's CORS: kept
    const uncacheable = await fetch(`${server.url}?query=${encodeURIComponent('{ uncached }')}`)
    expect(uncacheable.headers.get('cache-control')).toBe('no-store')
    expect(uncacheable.headers.get('vary') ?? '').not.toMatch(/accept/i)
  })

  it('a POST is answered in full (If-None-Match is honoured on GET only), with the same tag', async () => {
    const { server } = await start()
    const first = await get(server, posts)
    const post = await server.query(posts, undefined, { 'if-none-match': first.etag as string })
    expect(post.status).toBe(200)
    expect(post.cache).toBe('HIT')
    expect(post.text).toBe(first.text)
    expect(post.headers.get('etag')).toBe(first.etag)
  })

  it('no tag where the response may not be cached, nor for a batch: such requests are always answered in full', async () => {
    const { server } = await start()
    // Uncacheable: a root scalar without a maxAge.
    const uncacheable = await get(server, '{ uncached }')
    expect(uncacheable.cacheControl).toBe('no-store')
    expect(uncacheable.etag).toBeNull()
    expect((await get(server, '{ uncached }', { 'if-none-match': '*' })).status).toBe(200)
    // A result with errors is not cacheable either.
    const failing = await get(server, '{ posts { id } broken }')
    expect(failing.etag).toBeNull()
    // A batch of two operations: one response for both, no tag.
    const response = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', 'if-none-match': '*' },
      body: JSON.stringify([{ query: posts }, { query: '{ tags { label } }' }]),
    })
    expect(response.status).toBe(200)
    expect(response.headers.get('etag')).toBeNull()
    expect(await response.json()).toHaveLength(2)
  })

  it('`etag: false` sends no tag and answers every GET in full', async () => {
    const { server } = await start({ etag: false })
    await get(server, posts)
    const again = await get(server, posts, { 'if-none-match': '*' })
    expect(again.status).toBe(200)
    expect(again.cache).toBe('HIT')
    expect(again.etag).toBeNull()
  })

  it('a Request object handled again gets the tag of its new result, not the one computed the first time', async () => {
    // Server-side code may hand Yoga the same (GET) Request more than once (a prefetch, a probe).
    const store = new BlogStore()
    const plugin = useStrata<Ctx>({ tenant: false, tiers: [memoryTier()] })
    plugins.push(plugin)
    const yoga = createYoga({ schema: blogSchema(store), plugins: [plugin as never], logging: false })
    const url = `http://localhost/graphql?query=${encodeURIComponent(posts)}`
    const accept = 'application/graphql-response+json'
    const first = await yoga.fetch(url, { headers: { accept } })
    const etag = first.headers.get('etag') as string
    const request = new Request(url, { headers: { accept, 'if-none-match': etag } })
    expect((await yoga.fetch(request)).status).toBe(304)

    const post = store.posts.get('1')
    if (post) post.title = 'Changed'
    await plugin.strata.invalidateTypes(['Post'])
    const again = await yoga.fetch(request)
    expect(again.status).toBe(200)
    expect(await again.text()).toContain('Changed')
    expect(again.headers.get('etag')).not.toBe(etag)
  })

  it('no 304 and no tag when the result Yoga sends is not the one Strata served (replaced, failed, batched)', async () => {
    // A plugin that refuses the request after execution (access revoked), one that fails after it,
    // and a batch of one operation (its response is an array): none of them sends the cached body.
    const refuse: Plugin = {
      onExecutionResult({ request, setResult }) {
        if (request.headers.get('x-revoked')) setResult({ errors: [new GraphQLError('Forbidden')] })
      },
    }
    const fail: Plugin = {
      onExecute: () => ({
        onExecuteDone() {
          throw new Error('late failure')
        },
      }),
    }
    // A plugin that only adds extensions (a trace id) copies the result: the tag still holds (weak).
    const trace: Plugin = {
      onExecutionResult({ result, setResult }) {
        if (!Array.isArray(result)) setResult({ ...result, extensions: { trace: 'abc' } } as never)
      },
    }
    const { server } = await start({}, new BlogStore(), [refuse])
    const first = await get(server, posts)
    const etag = first.etag as string
    const traced = await start({}, new BlogStore(), [trace])
    await get(traced.server, posts)
    const tracedHit = await get(traced.server, posts, { 'if-none-match': etag })
    expect(tracedHit.cache).toBe('HIT')
    expect(tracedHit.status).toBe(304)

    const revoked = await get(server, posts, { 'if-none-match': etag, 'x-revoked': '1' })
    expect(revoked.status).toBe(200)
    expect(revoked.text).toContain('Forbidden')
    expect(revoked.etag).toBeNull()
    // Nor may an HTTP cache keep the error for the posts' maxAge.
    expect(revoked.cacheControl).toBe('no-store')
    expect((await get(server, posts, { 'x-revoked': '1' })).etag).toBeNull()

    const failing = await start({}, new BlogStore(), [fail])
    const failed = await get(failing.server, posts, { 'if-none-match': etag })
    expect(failed.status).not.toBe(304)
    expect(failed.text).toContain('errors')
    expect(failed.etag).toBeNull()
    expect(failed.cacheControl).toBe('no-store')

    const batch = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify([{ query: posts }]),
    })
    expect(await batch.json()).toHaveLength(1)
    expect(batch.headers.get('etag')).toBeNull()
  })

  it('in a batch, a result another plugin replaced is sent no-store too; results as served keep their maxAge', async () => {
    const refuse: Plugin = {
      // Called for each operation of a batch: refuses the posts only.
      onExecutionResult({ request, result, setResult }) {
        const data = (result as { data?: Record<string, unknown> }).data
        if (request.headers.get('x-revoked') && data?.posts)
          setResult({ errors: [new GraphQLError('Forbidden')] })
      },
    }
    const { server } = await start({}, new BlogStore(), [refuse])
    const batch = async (operations: string[], headers: Record<string, string> = {}) => {
      const response = await fetch(server.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json', ...headers },
        body: JSON.stringify(operations.map((query) => ({ query }))),
      })
      return { text: await response.text(), cacheControl: response.headers.get('cache-control') }
    }
    const tags = '{ tags { label } }'
    await batch([posts, tags])
    const revoked = await batch([posts, tags], { 'x-revoked': '1' })
    expect(revoked.text).toContain('Forbidden')
    expect(revoked.cacheControl, 'an HTTP cache must not keep the error for the maxAge').toBe('no-store')
    expect((await batch([posts, tags])).cacheControl).toMatch(/^max-age=\d+, public$/)
    // A batch of one is sent as served, like a batch of two.
    expect((await batch([posts])).cacheControl).toMatch(/^max-age=\d+, public$/)
  })

  it('the tag names the representation: another media type has another tag, and a stream is never answered 304', async () => {
    const { server } = await start()
    const first = await get(server, posts)
    const etag = first.etag as string
    // application/json is another representation of the result (another content-type): another tag.
    const json = await get(server, posts, { accept: 'application/json' })
    expect(json.etag).toMatch(/^W\//)
    expect(json.etag).not.toBe(etag)
    expect((await get(server, posts, { accept: 'application/json', 'if-none-match': etag })).status).toBe(200)
    expect(
      (await get(server, posts, { accept: 'application/json', 'if-none-match': json.etag as string })).status,
    ).toBe(304)
    // Server-sent events and multipart: framed otherwise (and Yoga sends `cache-control: no-cache` with
    // a stream); the JSON tag must not validate them, and they carry none.
    for (const accept of ['text/event-stream', 'multipart/mixed']) {
      const stream = await get(server, posts, { accept, 'if-none-match': etag })
      expect(stream.status).toBe(200)
      expect(stream.text).toContain('Post 1')
      expect(stream.etag).toBeNull()
    }
  })
})
