// Compile-time check (run by `npm run typecheck`): useStrata slots into Yoga and plain Envelop.

import { envelop, type Plugin, useEngine } from '@envelop/core'
import * as GraphQLJS from 'graphql'
import { createSchema, createYoga, type Plugin as YogaPlugin } from 'graphql-yoga'
import { useStrata } from '../../src/index.js'

const schema = createSchema({ typeDefs: 'type Query { a: Int }' })
createYoga({ schema, plugins: [useStrata({ tenant: ({ context }) => context.request.headers.get('x') })] })
createYoga<{ tenantId: string }>({ schema: schema as never, plugins: [useStrata({ tenant: false })] })
envelop({ plugins: [useEngine(GraphQLJS), useStrata({ tenant: false })] })

// A Strata plugin fits wherever Yoga or Envelop plugin lists are typed explicitly.
const yogaPlugins: YogaPlugin[] = [useStrata({ tenant: false })]
const envelopPlugins: Plugin[] = [useStrata({ tenant: false })]
void yogaPlugins
void envelopPlugins
