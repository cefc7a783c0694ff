import { GraphQLError } from 'graphql'
import { createSchema, createYoga, type Plugin } from 'graphql-yoga'
import { afterEach, describe, expect, it } from 'vitest'
import { type StrataOptions, strataDirectivesSdl, useStrata } from '../../src/index.js'
import { startServer, type TestServer } from '../support/server.js'

// Strata answers exactly as the server would without it: same status, same bytes, on a miss and on
// a hit, whatever the request or the plugins around it do.

const servers: TestServer[] = []
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()))
})

const typeDefs = /* GraphQL */ `
  ${strataDirectivesSdl}
  type Item @cacheControl(maxAge: 60) { id: ID! name: String! }
  type Guarded @cacheControl(maxAge: 60) { id: ID! name: String! }
  type Query {
    item(id: ID!): Item
    items: [Item!]!
    forbidden: Item
    missing: Item
  }
  type Mutation { touch(id: ID!): Guarded! }
`

function schema() {
  return createSchema({
    typeDefs,
    resolvers: {
      Query: {
        item: (_: unknown, { id }: { id: string }) => ({ id, name: `Item ${id}` }),
        items: () => [{ id: '1', name: 'Item 1' }],
        forbidden: () => {
          throw new GraphQLError('Forbidden', { extensions: { code: 'FORBIDDEN', http: { status: 403 } } })
        },
        missing: () => {
          throw new GraphQLError('Not found', { extensions: { code: 'NOT_FOUND' } })
        },
      },
      Guarded: {
        // A key field the client need not select, guarded (only some callers may read it).
        id: () => {
          throw new GraphQLError('not allowed to read id')
        },
      },
      Mutation: { touch: (_: unknown, { id }: { id: string }) => ({ id, name: 'touched' }) },
    },
  })
}

async function start(options: Partial<StrataOptions> = {}, before: Plugin[] = []) {
  const plugin = useStrata({ tenant: false, ...options } as StrataOptions)
  const server = await startServer({ schema: schema(), plugins: [...before, plugin as Plugin] })
  servers.push(server)
  return { server, strata: plugin.strata }
}

/** What the same schema answers without Strata. */
async function uncached(query: string, variables?: Record<string, unknown>) {
  const yoga = createYoga({ schema: schema(), logging: false, maskedErrors: false })
  const response = await yoga.fetch('http://localhost/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json' },
    body: JSON.stringify({ query, variables }),
  })
  return { status: response.status, text: await response.text() }
}

describe('responses as without Strata', () => {
  it('a request error (variables that do not coerce) gets no data entry', async () => {
    const { server, strata } = await start()
    const query = 'query($id: ID!) { item(id: $id) { name } }'
    const expected = await uncached(query, {})
    expect(expected.text).not.toContain('"data"')
    const response = await server.query(query, {})
    expect({ status: response.status, text: response.text }).toEqual(expected)
    expect(strata.stats().stores).toBe(0)
  })

  it('a mutation with a request error gets no data entry either', async () => {
    const { server } = await start()
    const query = 'mutation($id: ID!) { touch(id: $id) { name } }'
    const expected = await uncached(query, {})
    const response = await server.query(query, {})
    expect({ status: response.status, text: response.text }).toEqual(expected)
  })

  it('with cacheErrors, an error that sets the HTTP status is not stored (a hit could not answer it the same)', async () => {
    const { server, strata } = await start({ cacheErrors: true })
    const query = '{ forbidden { id } items { id } }'
    const expected = await uncached(query)
    for (let i = 0; i < 2; i++) {
      const response = await server.query(query)
      expect(response.cache).toBe('MISS')
      expect({ status: response.status, text: response.text }).toEqual(expected)
    }
    expect(strata.stats().skippedStores).toMatchObject({ errors: 2 })
    // An error without one is stored, and its hit is the miss's bytes.
    const other = '{ missing { id } items { id } }'
    const miss = await server.query(other)
    const hit = await server.query(other)
    expect(hit.cache).toBe('HIT')
    expect({ status: hit.status, text: hit.text }).toEqual({ status: miss.status, text: miss.text })
    expect(miss.text).toBe((await uncached(other)).text)
  })

  it('a plugin before Strata that holds up onExecuteDone past the grace period: stripped, not stored', async () => {
    const slow: Plugin = {
      onExecute: () => ({
        onExecuteDone: () => new Promise<void>((resolve) => setTimeout(resolve, 1200)),
      }),
    }
    const { server, strata } = await start({}, [slow])
    const response = await server.query('{ items { name } }')
    expect(response.text).toBe('{"data":{"items":[{"name":"Item 1"}]}}')
    expect(response.headers.get('cache-control')).toBe('no-store')
    expect(strata.stats().skippedStores).toMatchObject({ 'given-up': 1 })
    expect(strata.stats().stores).toBe(0)
  })
})
