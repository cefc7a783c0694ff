import { buildSchema, parse, print } from 'graphql'
import { describe, expect, it } from 'vitest'
import { analyzeDocument } from '../../src/entities/rewrite.js'
import { defaultSchemaVersion, strataDirectivesSdl } from '../../src/index.js'
import { buildSchemaHints } from '../../src/policy/schema-hints.js'

const sdl = `${strataDirectivesSdl}
  directive @defer(label: String, if: Boolean) on FRAGMENT_SPREAD | INLINE_FRAGMENT
  interface Node { id: ID! }
  type Post implements Node { id: ID! title: String! secret: String @cacheControl(scope: PRIVATE) }
  type Tag { label: String! }
  union Item = Post | Tag
  type Query { post: Post node: Node items: [Item!]! tags: [Tag!]! }
`
const schema = buildSchema(sdl)
const hints = buildSchemaHints(schema, {
  defaultMaxAge: 0,
  hints: {},
  keyFields: {},
  defaultKeyFields: ['id'],
  invalidates: {},
  cacheTags: {},
})
const facts = (query: string) => analyzeDocument(parse(query), hints)
const printed = (query: string) => print(facts(query).rewritten).replace(/\s+/g, ' ')

describe('document rewrite', () => {
  it('adds nothing when the client already selects the key fields of object types', () => {
    const document = parse('{ post { id title } tags { label } }')
    expect(analyzeDocument(document, hints).rewritten).toBe(document)
  })
  it('adds an aliased key field where the client does not select it plainly', () => {
    expect(printed('{ post { title } }')).toContain('post { title __strata_k0: id }')
    expect(printed('{ post { id: title } }')).toContain('__strata_k0: id')
  })
  it('adds __typename and per-type key fields at abstract positions', () => {
    const out = printed('{ items { ... on Tag { label } } node { id } }')
    expect(out).toContain(
      'items { ... on Tag { label } __strata_t: __typename ... on Post { __strata_k0: id } }',
    )
    expect(out).toContain('node { id __strata_t: __typename }')
  })
  it('reports incremental delivery, variable-dependent directives and possible PRIVATE scope', () => {
    expect(facts('{ post { ... @defer { title } } }').incremental).toBe(true)
    expect(facts('{ post { title } }').incremental).toBe(false)
    expect(facts('query($a: Boolean!) { post { title @include(if: $a) } }').variableDirectives).toBe(true)
    expect(facts('{ post { title @include(if: true) } }').variableDirectives).toBe(false)
    expect(facts('{ post { secret } }').mayBePrivate).toBe(true)
    expect(facts('{ node { ... on Post { secret } } }').mayBePrivate).toBe(true)
    expect(facts('{ post { title } }').mayBePrivate).toBe(false)
  })
})

describe('default schema version', () => {
  it('changes when a type, a field or a directive changes, and only then', () => {
    const base = defaultSchemaVersion(schema)
    expect(defaultSchemaVersion(buildSchema(sdl))).toBe(base)
    expect(defaultSchemaVersion(buildSchema(sdl.replace('title: String!', 'title: String')))).not.toBe(base)
    expect(
      defaultSchemaVersion(
        buildSchema(sdl.replace('@cacheControl(scope: PRIVATE)', '@cacheControl(scope: PUBLIC)')),
      ),
    ).not.toBe(base)
  })
})
