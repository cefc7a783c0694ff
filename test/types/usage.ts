// Compile-time check (run by `npm run typecheck`): useStrata slots into Yoga and plain Envelop.

import { envelop, useEngine } from '@envelop/core'
import * as GraphQLJS from 'graphql'
import { createSchema, createYoga } from 'graphql-yoga'
import { useStrata } from '../../src/index.js'

const schema = createSchema({ typeDefs: 'type Query { a: Int }' })
createYoga({ schema, plugins: [useStrata({ tenant: ({ context }) => context.request.headers.get('x') })] })
createYoga<{ tenantId: string }>({ schema: schema as never, plugins: [useStrata({ tenant: false })] })
envelop({ plugins: [useEngine(GraphQLJS), useStrata({ tenant: false })] })
