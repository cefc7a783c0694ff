import { createSchema } from 'graphql-yoga'
import { strataDirectivesSdl } from '../../src/index.js'

/** Items by id, renamed by a mutation, in a schema that declares `@defer` (Yoga then delivers it incrementally). */
export function deferItemsSchema(items: Map<string, { id: string; name: string }>) {
  return createSchema({
    typeDefs: /* GraphQL */ `
      ${strataDirectivesSdl}
      directive @defer(if: Boolean, label: String) on FRAGMENT_SPREAD | INLINE_FRAGMENT
      type Item @cacheControl(maxAge: 60) { id: ID! name: String! }
      type Query { item(id: ID!): Item }
      type Mutation { rename(id: ID!, name: String!): Item! }
    `,
    resolvers: {
      Query: { item: (_: unknown, { id }: { id: string }) => items.get(id) },
      Mutation: {
        rename: (_: unknown, { id, name }: { id: string; name: string }) => {
          items.set(id, { id, name })
          return items.get(id)
        },
      },
    },
  })
}
