import { execute, type GraphQLResolveInfo, getOperationAST, parse } from 'graphql'
import { createSchema } from 'graphql-yoga'
import { describe, expect, it } from 'vitest'
import { strataDirectivesSdl } from '../../src/index.js'
import {
  cacheControlFromInfo,
  instrumentResolvers,
  recordHints,
  stopRecording,
} from '../../src/policy/dynamic.js'
import { buildSchemaHints } from '../../src/policy/schema-hints.js'

// Which execution a resolver's hint belongs to, when executions share a context or have none.
const schema = createSchema({
  typeDefs: [strataDirectivesSdl, 'type Query { a(ttl: Int!): Int @cacheControl(maxAge: 60) }'],
  resolvers: {
    Query: {
      a: (_: unknown, args: { ttl: number }, _ctx: unknown, info: GraphQLResolveInfo) => {
        cacheControlFromInfo(info).setCacheHint({ maxAge: args.ttl })
        return 1
      },
    },
  },
})
instrumentResolvers(
  schema,
  buildSchemaHints(schema, {
    defaultMaxAge: 0,
    hints: {},
    keyFields: {},
    defaultKeyFields: ['id'],
    invalidates: {},
    cacheTags: {},
  }),
  () => {},
)
const document = parse('query Q($ttl: Int!) { a(ttl: $ttl) }')
const operation = getOperationAST(document, 'Q')
if (!operation) throw new Error('no operation')
const run = (contextValue: unknown, ttl: number) =>
  execute({ schema, document, contextValue, variableValues: { ttl } })

describe('dynamic hint recording', () => {
  it('executions with their own contexts record their own hints', async () => {
    const [one, two] = [{}, {}]
    const first = recordHints(one, operation)
    const second = recordHints(two, operation)
    await Promise.all([run(one, 5), run(two, 9)])
    stopRecording(first)
    stopRecording(second)
    expect(first.fields.get('a')?.policy.maxAge).toBe(5)
    expect(second.fields.get('a')?.policy.maxAge).toBe(9)
    expect([first.ambiguous, second.ambiguous]).toEqual([false, false])
  })

  it('two recorded executions of one document sharing a context: a hint marks both ambiguous', async () => {
    const shared = {}
    const first = recordHints(shared, operation)
    const second = recordHints(shared, operation)
    await run(shared, 5)
    stopRecording(first)
    stopRecording(second)
    expect([first.ambiguous, second.ambiguous]).toEqual([true, true])
    expect(first.fields.size + second.fields.size, 'attributed to neither').toBe(0)
  })

  it('an execution without an object context is recorded by its operation', async () => {
    const recorder = recordHints(undefined, operation)
    await run(undefined, 3)
    stopRecording(recorder)
    expect(recorder.fields.get('a')?.policy.maxAge).toBe(3)
  })

  it('after stopRecording, hints go nowhere', async () => {
    const context = {}
    const recorder = recordHints(context, operation)
    stopRecording(recorder)
    await run(context, 4)
    expect(recorder.fields.size).toBe(0)
  })
})
