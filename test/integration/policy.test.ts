import {
  GraphQLError,
  GraphQLList,
  GraphQLObjectType,
  type GraphQLResolveInfo,
  GraphQLSchema,
  GraphQLString,
} from 'graphql'
import { createSchema, createYoga } from 'graphql-yoga'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import {
  type CacheScope,
  cacheControlFromInfo,
  type StrataOptions,
  StrataSchemaError,
  strataDirectivesSdl,
  useStrata,
} from '../../src/index.js'
import { startServer, type TestServer } from '../support/server.js'

/**
 * The `@cacheControl` policy rules, one test per rule, checked against Apollo Server's
 * algorithm (packages/server/src/plugin/cacheControl) through a real Yoga server over HTTP.
 * The policy is observed on the `cache-control` header of a MISS (`max-age=N, public|private`
 * or `no-store`) and on whether an identical second request is a HIT.
 */

type Ctx = { request: Request }

const servers: TestServer[] = []
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()))
})

const USER = { 'x-user': 'alice' }
const session = ({ context }: { context: Ctx }) => context.request.headers.get('x-user')

/** Root data: a Query field resolves to `root[field]` (called with the args if it is a function). */
type Root = Record<string, unknown>

function sdlSchema(typeDefs: string, root: Root) {
  const query = Object.fromEntries(
    Object.entries(root).map(([name, value]) => [
      name,
      (_: unknown, args: Record<string, unknown>) =>
        typeof value === 'function' ? (value as (a: Record<string, unknown>) => unknown)(args) : value,
    ]),
  )
  return createSchema({ typeDefs: [strataDirectivesSdl, typeDefs], resolvers: { Query: query } })
}

async function serve(schema: GraphQLSchema, options: Partial<StrataOptions<Ctx>> = {}) {
  const plugin = useStrata<Ctx>({ tenant: false, session, ...options } as StrataOptions<Ctx>)
  const server = await startServer({ schema, plugins: [plugin as never] })
  servers.push(server)
  return { server, strata: plugin.strata }
}

/** The `cache-control` header of a fresh (MISS) response to `query`. */
async function policyOf(server: TestServer, query: string, headers: Record<string, string> = {}) {
  const res = await server.query(query, {}, headers)
  expect(res.status, query).toBe(200)
  expect(res.json.errors, query).toBeUndefined()
  expect(res.cache, query).toBe('MISS')
  return res.headers.get('cache-control')
}

/** Asserts the second identical request is a HIT (stored) or a MISS again (not stored). */
async function expectStored(server: TestServer, query: string, stored: boolean, headers = {}) {
  await server.query(query, {}, headers)
  expect((await server.query(query, {}, headers)).cache, query).toBe(stored ? 'HIT' : 'MISS')
}

// The example schema of Apollo's caching docs.
const docsTypeDefs = /* GraphQL */ `
  type Query {
    book: Book
    cachedBook: Book @cacheControl(maxAge: 60)
    reader: Reader @cacheControl(maxAge: 40)
    plain: String
  }
  type Book {
    title: String
    cachedTitle: String @cacheControl(maxAge: 30)
    related: Book
  }
  type Reader {
    book: Book @cacheControl(inheritMaxAge: true)
    bookBoth: Book @cacheControl(inheritMaxAge: true, maxAge: 5)
    typedBook: TypedBook @cacheControl(inheritMaxAge: true)
    typedBoth: TypedBook @cacheControl(inheritMaxAge: true, maxAge: 5)
    bothType: BothType
  }
  type BothType @cacheControl(inheritMaxAge: true, maxAge: 5) {
    title: String
  }
  type TypedBook @cacheControl(maxAge: 20) {
    title: String
  }
`
const book = { title: 'T', cachedTitle: 'C', related: { title: 'R' } }
const docsRoot: Root = {
  book,
  cachedBook: book,
  reader: {
    book,
    bookBoth: book,
    typedBook: { title: 'TT' },
    typedBoth: { title: 'TT' },
    bothType: { title: 'B' },
  },
  plain: 'p',
}

describe('@cacheControl policy (Apollo Server semantics)', () => {
  it('1. overall maxAge is the minimum over the resolved fields', async () => {
    const schema = sdlSchema(
      /* GraphQL */ `
        type Query {
          a: String @cacheControl(maxAge: 50)
          b: String @cacheControl(maxAge: 20)
          obj: Obj @cacheControl(maxAge: 90)
          items: [Obj] @cacheControl(maxAge: 90)
        }
        type Obj {
          d: String @cacheControl(maxAge: 70)
          e: String @cacheControl(maxAge: 15)
        }
      `,
      {
        a: 'a',
        b: 'b',
        obj: { d: 'd', e: 'e' },
        items: [
          { d: '1', e: '1' },
          { d: '2', e: '2' },
        ],
      },
    )
    const { server } = await serve(schema)
    expect(await policyOf(server, '{ a }')).toBe('max-age=50, public')
    expect(await policyOf(server, '{ a b }')).toBe('max-age=20, public')
    expect(await policyOf(server, '{ b a }')).toBe('max-age=20, public')
    expect(await policyOf(server, '{ a obj { d } }')).toBe('max-age=50, public')
    expect(await policyOf(server, '{ obj { d } }')).toBe('max-age=70, public')
    expect(await policyOf(server, '{ a obj { d e } }')).toBe('max-age=15, public')
    expect(await policyOf(server, '{ items { d } }')).toBe('max-age=70, public')
    expect(await policyOf(server, '{ items { e } }')).toBe('max-age=15, public')
    await expectStored(server, '{ x: a obj { d } }', true)
  })

  it('2. PRIVATE is sticky: one PRIVATE field makes the whole response private, a later PUBLIC does not undo it', async () => {
    const schema = sdlSchema(
      /* GraphQL */ `
        type Query {
          secret: String @cacheControl(maxAge: 40, scope: PRIVATE)
          open: String @cacheControl(maxAge: 60, scope: PUBLIC)
          obj: Obj @cacheControl(maxAge: 60)
        }
        type Obj {
          mine: String @cacheControl(scope: PRIVATE)
          pub: String @cacheControl(scope: PUBLIC)
        }
      `,
      { secret: 's', open: 'o', obj: { mine: 'm', pub: 'p' } },
    )
    const { server } = await serve(schema)
    expect(await policyOf(server, '{ open }', USER)).toBe('max-age=60, public')
    expect(await policyOf(server, '{ secret open }', USER)).toBe('max-age=40, private')
    expect(await policyOf(server, '{ open secret }', USER)).toBe('max-age=40, private')
    // A scalar with only a scope contributes its scope (and no maxAge).
    expect(await policyOf(server, '{ obj { mine pub } }', USER)).toBe('max-age=60, private')
    expect(await policyOf(server, '{ obj { pub mine } }', USER)).toBe('max-age=60, private')
    expect(await policyOf(server, '{ obj { pub } }', USER)).toBe('max-age=60, public')

    // Stored per session: alice hits her own entry, bob does not get it.
    const q = '{ open secret x: secret }'
    expect((await server.query(q, {}, { 'x-user': 'alice' })).cache).toBe('MISS')
    expect((await server.query(q, {}, { 'x-user': 'alice' })).cache).toBe('HIT')
    expect((await server.query(q, {}, { 'x-user': 'bob' })).cache).toBe('MISS')
  })

  it("3. a field hint overrides its return type's hint property by property", async () => {
    const schema = sdlSchema(
      /* GraphQL */ `
        type Query {
          droid: Droid
          privateDroid: Droid @cacheControl(scope: PRIVATE)
          shortDroid: Droid @cacheControl(maxAge: 10)
          longDroid: Droid @cacheControl(maxAge: 100)
          vault: Vault
          openVault: Vault @cacheControl(scope: PUBLIC)
        }
        type Droid @cacheControl(maxAge: 60) {
          name: String
        }
        type Vault @cacheControl(maxAge: 45, scope: PRIVATE) {
          name: String
        }
      `,
      {
        droid: { name: 'R2' },
        privateDroid: { name: 'R2' },
        shortDroid: { name: 'R2' },
        longDroid: { name: 'R2' },
        vault: { name: 'V' },
        openVault: { name: 'V' },
      },
    )
    const { server } = await serve(schema)
    expect(await policyOf(server, '{ droid { name } }')).toBe('max-age=60, public')
    // field scope + type maxAge
    expect(await policyOf(server, '{ privateDroid { name } }', USER)).toBe('max-age=60, private')
    // field maxAge replaces the type's, lower or higher (replace, not restrict)
    expect(await policyOf(server, '{ shortDroid { name } }')).toBe('max-age=10, public')
    expect(await policyOf(server, '{ longDroid { name } }')).toBe('max-age=100, public')
    // type scope PRIVATE, field scope PUBLIC: the field wins, the type's maxAge stays
    expect(await policyOf(server, '{ vault { name } }', USER)).toBe('max-age=45, private')
    expect(await policyOf(server, '{ openVault { name } }')).toBe('max-age=45, public')
    await expectStored(server, '{ openVault { name } }', true)
  })

  it("4. inheritMaxAge on a field takes the parent's maxAge (docs: {reader{book{title}}} → 40)", async () => {
    const { server } = await serve(sdlSchema(docsTypeDefs, docsRoot))
    expect(await policyOf(server, '{ reader { book { title } } }')).toBe('max-age=40, public')
    expect(await policyOf(server, '{ reader { book { cachedTitle } } }')).toBe('max-age=30, public')
    // A composite child of the inheriting field, without a hint, still gets the default 0.
    expect(await policyOf(server, '{ reader { book { related { title } } } }')).toBe('no-store')
    await expectStored(server, '{ reader { book { title } } }', true)
  })

  it('4b. inheritMaxAge drops a maxAge given beside it in the same directive (field or type)', async () => {
    const { server } = await serve(sdlSchema(docsTypeDefs, docsRoot))
    expect(await policyOf(server, '{ reader { bookBoth { title } } }')).toBe('max-age=40, public')
    // on a type
    expect(await policyOf(server, '{ reader { bothType { title } } }')).toBe('max-age=40, public')
    // on a field whose type has a maxAge: the type's 20 stays, the field's 5 is dropped
    expect(await policyOf(server, '{ reader { typedBoth { title } } }')).toBe('max-age=20, public')
  })

  it("4c. inheritMaxAge on a field yields to its return type's maxAge", async () => {
    const { server } = await serve(sdlSchema(docsTypeDefs, docsRoot))
    expect(await policyOf(server, '{ reader { typedBook { title } } }')).toBe('max-age=20, public')
  })

  it('5. inheritMaxAge on a type makes every field returning it inherit (a field maxAge still wins)', async () => {
    const schema = sdlSchema(
      /* GraphQL */ `
        type Query {
          topLevel: TopLevel @cacheControl(maxAge: 500)
        }
        type TopLevel {
          foo: Foo
          foos: [Foo]
          fooWithMaxAge: Foo @cacheControl(maxAge: 7)
        }
        type Foo @cacheControl(inheritMaxAge: true) {
          bar: String
          droid: Droid
        }
        type Droid {
          name: String
        }
      `,
      {
        topLevel: {
          foo: { bar: 'b', droid: { name: 'R2' } },
          foos: [{ bar: 'b' }],
          fooWithMaxAge: { bar: 'b' },
        },
      },
    )
    const { server } = await serve(schema)
    expect(await policyOf(server, '{ topLevel { foo { bar } } }')).toBe('max-age=500, public')
    expect(await policyOf(server, '{ topLevel { foos { bar } } }')).toBe('max-age=500, public')
    expect(await policyOf(server, '{ topLevel { fooWithMaxAge { bar } } }')).toBe('max-age=7, public')
    // Apollo's "topLevel.droid.uncachedField" case: a hintless composite below an inheriting one gets 0.
    expect(await policyOf(server, '{ topLevel { foo { droid { name } } } }')).toBe('no-store')
    await expectStored(server, '{ topLevel { foo { bar } } }', true)
  })

  it('6. inheritMaxAge can be combined with scope (topLevel@500 > foo(inherit, PRIVATE) > bar@5 → 5 PRIVATE)', async () => {
    const schema = sdlSchema(
      /* GraphQL */ `
        type Query {
          topLevel: TopLevel @cacheControl(maxAge: 500)
        }
        type TopLevel {
          foo: Foo @cacheControl(inheritMaxAge: true, scope: PRIVATE)
        }
        type Foo {
          bar: Bar @cacheControl(maxAge: 5)
        }
        type Bar {
          text: String
        }
      `,
      { topLevel: { foo: { bar: { text: 't' } } } },
    )
    const { server } = await serve(schema)
    expect(await policyOf(server, '{ topLevel { foo { bar { text } } } }', USER)).toBe('max-age=5, private')
  })

  it('7. inheritMaxAge is ignored on a root field: it gets defaultMaxAge', async () => {
    const typeDefs = /* GraphQL */ `
      type Query {
        inheriting: Foo @cacheControl(inheritMaxAge: true)
        inheritingScalar: String @cacheControl(inheritMaxAge: true)
        inheritingType: InheritingFoo
        cached: String @cacheControl(maxAge: 60)
      }
      type Foo {
        bar: String @cacheControl(maxAge: 30)
      }
      type InheritingFoo @cacheControl(inheritMaxAge: true) {
        bar: String @cacheControl(maxAge: 30)
      }
    `
    const root: Root = {
      inheriting: { bar: 'b' },
      inheritingScalar: 's',
      inheritingType: { bar: 'b' },
      cached: 'c',
    }
    const { server } = await serve(sdlSchema(typeDefs, root))
    expect(await policyOf(server, '{ cached }')).toBe('max-age=60, public')
    expect(await policyOf(server, '{ inheriting { bar } cached }')).toBe('no-store')
    expect(await policyOf(server, '{ inheritingScalar cached }')).toBe('no-store')
    expect(await policyOf(server, '{ inheritingType { bar } cached }')).toBe('no-store')
    await expectStored(server, '{ inheriting { bar } cached }', false)

    const { server: withDefault } = await serve(sdlSchema(typeDefs, root), { defaultMaxAge: 10 })
    expect(await policyOf(withDefault, '{ inheriting { bar } cached }')).toBe('max-age=10, public')
    expect(await policyOf(withDefault, '{ inheritingScalar cached }')).toBe('max-age=10, public')
    expect(await policyOf(withDefault, '{ inheritingType { bar } cached }')).toBe('max-age=10, public')
  })

  it('8. defaultMaxAge defaults to 0 (docs: {book{cachedTitle}} → no-store, {cachedBook{title}} → 60, {cachedBook{cachedTitle}} → 30)', async () => {
    const { server } = await serve(sdlSchema(docsTypeDefs, docsRoot))
    expect(await policyOf(server, '{ book { cachedTitle } }')).toBe('no-store')
    expect(await policyOf(server, '{ cachedBook { title } }')).toBe('max-age=60, public')
    expect(await policyOf(server, '{ cachedBook { cachedTitle } }')).toBe('max-age=30, public')
    expect(await policyOf(server, '{ plain }')).toBe('no-store')
    expect(await policyOf(server, '{ cachedBook { related { title } } }')).toBe('no-store')
    await expectStored(server, '{ book { cachedTitle } }', false)
    await expectStored(server, '{ cachedBook { cachedTitle } }', true)
  })

  it('8b. the defaultMaxAge option applies to hintless root and composite fields, never to non-root scalars', async () => {
    const { server } = await serve(sdlSchema(docsTypeDefs, docsRoot), { defaultMaxAge: 10 })
    expect(await policyOf(server, '{ plain }')).toBe('max-age=10, public')
    expect(await policyOf(server, '{ book { title } }')).toBe('max-age=10, public')
    expect(await policyOf(server, '{ book { cachedTitle } }')).toBe('max-age=10, public')
    // cachedBook@60 with a hintless scalar child: the scalar contributes nothing (not 10).
    expect(await policyOf(server, '{ cachedBook { title } }')).toBe('max-age=60, public')
    // a hintless composite child gets the default.
    expect(await policyOf(server, '{ cachedBook { related { title } } }')).toBe('max-age=10, public')
    await expectStored(server, '{ plain }', true)
  })

  it('9. maxAge 0 on a type overrides defaultMaxAge', async () => {
    const schema = sdlSchema(
      /* GraphQL */ `
        type Query {
          zero: Zero
          holder: Holder @cacheControl(maxAge: 60)
          cached: String @cacheControl(maxAge: 60)
        }
        type Zero @cacheControl(maxAge: 0) {
          x: String
        }
        type Holder {
          zero: Zero
          other: Other
        }
        type Other {
          x: String
        }
      `,
      { zero: { x: 'x' }, holder: { zero: { x: 'x' }, other: { x: 'x' } }, cached: 'c' },
    )
    const { server } = await serve(schema, { defaultMaxAge: 10 })
    expect(await policyOf(server, '{ cached }')).toBe('max-age=60, public')
    expect(await policyOf(server, '{ holder { other { x } } }')).toBe('max-age=10, public')
    expect(await policyOf(server, '{ zero { x } }')).toBe('no-store')
    expect(await policyOf(server, '{ cached holder { zero { x } } }')).toBe('no-store')
    await expectStored(server, '{ zero { x } }', false)
  })

  describe("10. interface and union fields take the declared return type's hint, not the runtime type's", () => {
    const typeDefs = /* GraphQL */ `
      type Query {
        named: Named
        droid: Droid
        thing: Thing
        things: [Thing] @cacheControl(maxAge: 200)
        plainNamed: PlainNamed
      }
      interface Named @cacheControl(maxAge: 60) {
        name: String @cacheControl(maxAge: 5)
      }
      interface PlainNamed {
        name: String
      }
      union Thing @cacheControl(maxAge: 50) = Droid | Human
      type Droid implements Named & PlainNamed @cacheControl(maxAge: 30) {
        name: String
        cachedField: String @cacheControl(maxAge: 25)
      }
      type Human implements Named & PlainNamed @cacheControl(maxAge: 20) {
        name: String
      }
    `
    const droid = { __typename: 'Droid', name: 'R2', cachedField: 'c' }
    const human = { __typename: 'Human', name: 'Leia' }
    const root: Root = { named: droid, droid, thing: human, things: [droid, human], plainNamed: droid }

    it('interface: Named@60 resolving to Droid@30 gives 60', async () => {
      const { server } = await serve(sdlSchema(typeDefs, root))
      expect(await policyOf(server, '{ droid { name } }')).toBe('max-age=30, public')
      expect(await policyOf(server, '{ named { __typename } }')).toBe('max-age=60, public')
      // A hintless interface gets the default (0), whatever the runtime type's hint.
      expect(await policyOf(server, '{ plainNamed { name } }')).toBe('no-store')
      await expectStored(server, '{ named { __typename } }', true)
    })

    it('union: Thing@50 resolving to Human@20 gives 50; a list field with its own hint overrides it', async () => {
      const { server } = await serve(sdlSchema(typeDefs, root))
      expect(await policyOf(server, '{ thing { ... on Human { name } } }')).toBe('max-age=50, public')
      expect(await policyOf(server, '{ things { __typename } }')).toBe('max-age=200, public')
    })

    it('field hints come from the concrete object type; hints on interface fields are not read', async () => {
      const { server } = await serve(sdlSchema(typeDefs, root))
      // Named.name@5 is not read: Droid.name has no hint, so it contributes nothing.
      expect(await policyOf(server, '{ named { name } }')).toBe('max-age=60, public')
      expect(await policyOf(server, '{ named { ... on Droid { cachedField } } }')).toBe('max-age=25, public')
      expect(await policyOf(server, '{ things { ... on Droid { cachedField } } }')).toBe('max-age=25, public')
    })
  })

  it('11. fields that did not resolve (under a null parent or an empty list) contribute nothing', async () => {
    const schema = sdlSchema(
      /* GraphQL */ `
        type Query {
          post(id: ID!): Post @cacheControl(maxAge: 30)
          posts(empty: Boolean): [Post] @cacheControl(maxAge: 30)
        }
        type Post {
          id: ID
          author: Author
        }
        type Author {
          name: String
          uncachedField: Uncached
        }
        type Uncached {
          x: String
        }
      `,
      {
        post: ({ id }: Record<string, unknown>) =>
          id === '1'
            ? { id: '1', author: { name: 'A', uncachedField: { x: 'x' } } }
            : id === '2'
              ? { id: '2', author: null }
              : null,
        posts: ({ empty }: Record<string, unknown>) => (empty ? [] : [{ id: '1', author: { name: 'A' } }]),
      },
    )
    const { server } = await serve(schema)
    expect(await policyOf(server, '{ post(id: "404") { author { uncachedField { x } } } }')).toBe(
      'max-age=30, public',
    )
    expect(await policyOf(server, '{ posts(empty: true) { author { name } } }')).toBe('max-age=30, public')
    // Sanity: when they do resolve, the hintless composites contribute 0, even resolving to null.
    expect(await policyOf(server, '{ post(id: "1") { author { name } } }')).toBe('no-store')
    expect(await policyOf(server, '{ post(id: "2") { author { name } } }')).toBe('no-store')
    expect(await policyOf(server, '{ posts { author { name } } }')).toBe('no-store')
    await expectStored(server, '{ post(id: "404") { author { uncachedField { x } } } }', true)
  })

  describe('12. __typename and introspection contribute nothing', () => {
    const typeDefs = /* GraphQL */ `
      type Query {
        cached: String @cacheControl(maxAge: 60)
      }
    `
    it('{ __typename } alone is not cacheable, beside a cached field it changes nothing', async () => {
      const { server } = await serve(sdlSchema(typeDefs, { cached: 'c' }))
      expect(await policyOf(server, '{ __typename }')).toBe('no-store')
      expect(await policyOf(server, '{ t: __typename }')).toBe('no-store')
      expect(await policyOf(server, '{ __typename cached }')).toBe('max-age=60, public')
      await expectStored(server, '{ __typename }', false)
      const { server: withDefault } = await serve(sdlSchema(typeDefs, { cached: 'c' }), { defaultMaxAge: 10 })
      expect(await policyOf(withDefault, '{ __typename }')).toBe('no-store')
    })

    it('__schema and __type beside a cached field do not lower its maxAge', async () => {
      const { server } = await serve(sdlSchema(typeDefs, { cached: 'c' }))
      expect(await policyOf(server, '{ cached __schema { queryType { name } } }')).toBe('max-age=60, public')
      expect(await policyOf(server, '{ cached __type(name: "Query") { name } }')).toBe('max-age=60, public')
    })

    it('introspection alone is not cacheable, even with a defaultMaxAge', async () => {
      const { server } = await serve(sdlSchema(typeDefs, { cached: 'c' }), { defaultMaxAge: 10 })
      expect(await policyOf(server, '{ __schema { queryType { name } } }')).toBe('no-store')
      expect(await policyOf(server, '{ __type(name: "Query") { name } }')).toBe('no-store')
      await expectStored(server, '{ __schema { queryType { name } } }', false)
    })
  })

  describe('13. config hints by schema coordinate', () => {
    it('work for a code-first schema without directives', async () => {
      const Book = new GraphQLObjectType({
        name: 'Book',
        fields: { title: { type: GraphQLString }, secret: { type: GraphQLString } },
      })
      const books = [{ title: 'A', secret: 's' }]
      const schema = new GraphQLSchema({
        query: new GraphQLObjectType({
          name: 'Query',
          fields: {
            books: { type: new GraphQLList(Book), resolve: () => books },
            book: { type: Book, resolve: () => books[0] },
            plain: { type: GraphQLString, resolve: () => 'p' },
          },
        }),
      })
      const { server } = await serve(schema, {
        hints: { 'Query.books': { maxAge: 60 }, Book: { maxAge: 45 }, 'Book.secret': { scope: 'PRIVATE' } },
      })
      expect(await policyOf(server, '{ books { title } }')).toBe('max-age=60, public')
      expect(await policyOf(server, '{ book { title } }')).toBe('max-age=45, public')
      expect(await policyOf(server, '{ book { title secret } }', USER)).toBe('max-age=45, private')
      expect(await policyOf(server, '{ plain }')).toBe('no-store')
      await expectStored(server, '{ books { title } }', true)

      // Without the hints the same schema is not cacheable at all.
      const { server: bare } = await serve(schema)
      expect(await policyOf(bare, '{ books { title } }')).toBe('no-store')
    })

    it('override SDL directives (up or down)', async () => {
      const typeDefs = /* GraphQL */ `
        type Query {
          posts: [Post] @cacheControl(maxAge: 30)
          post: Post
        }
        type Post @cacheControl(maxAge: 60) {
          id: ID
        }
      `
      const root: Root = { posts: [{ id: '1' }], post: { id: '1' } }
      const { server: sdlOnly } = await serve(sdlSchema(typeDefs, root))
      expect(await policyOf(sdlOnly, '{ posts { id } }')).toBe('max-age=30, public')
      expect(await policyOf(sdlOnly, '{ post { id } }')).toBe('max-age=60, public')

      const { server } = await serve(sdlSchema(typeDefs, root), {
        hints: { 'Query.posts': { maxAge: 5 }, Post: { maxAge: 100 } },
      })
      expect(await policyOf(server, '{ posts { id } }')).toBe('max-age=5, public')
      expect(await policyOf(server, '{ post { id } }')).toBe('max-age=100, public')
    })

    it('a config inheritMaxAge overrides an SDL maxAge', async () => {
      const { server } = await serve(sdlSchema(docsTypeDefs, docsRoot), {
        hints: { 'Book.cachedTitle': { inheritMaxAge: true }, 'Query.cachedBook': { inheritMaxAge: true } },
      })
      // Book.cachedTitle@30 now inherits: {reader{book{cachedTitle}}} gives Reader's 40.
      expect(await policyOf(server, '{ reader { book { cachedTitle } } }')).toBe('max-age=40, public')
      // cachedBook is a root field: inheriting there means the default (0), not its SDL 60.
      expect(await policyOf(server, '{ cachedBook { title } }')).toBe('no-store')
    })

    it('a config maxAge overrides an SDL inheritMaxAge', async () => {
      // Reader.book is @cacheControl(inheritMaxAge: true) in the SDL. Config hints override
      // directives, and (as Apollo's docs say of dynamic hints) an explicit maxAge wins over inheritance.
      const { server } = await serve(sdlSchema(docsTypeDefs, docsRoot), {
        hints: { 'Reader.book': { maxAge: 10 } },
      })
      expect(await policyOf(server, '{ reader { book { title } } }')).toBe('max-age=10, public')
    })
  })

  describe('14. a config hint naming a missing type or field fails at startup', () => {
    const schema = () => sdlSchema('type Query { cached: String @cacheControl(maxAge: 60) }', { cached: 'c' })
    const cases: [string, RegExp][] = [
      ['Nope', /option `hints` names "Nope", but the schema has no object, interface or union type "Nope"/],
      ['Nope.field', /option `hints` names "Nope.field", but the schema has no object type "Nope"/],
      ['Query.nope', /option `hints` names "Query.nope", but Query has no field "nope"/],
      ['String', /option `hints` names "String", but the schema has no object, interface or union type/],
    ]
    for (const [coordinate, message] of cases) {
      it(`"${coordinate}": createYoga throws a StrataSchemaError naming it`, () => {
        const plugin = useStrata<Ctx>({ tenant: false, hints: { [coordinate]: { maxAge: 1 } } })
        let thrown: unknown
        try {
          createYoga({ schema: schema(), plugins: [plugin as never], logging: false })
        } catch (error) {
          thrown = error
        }
        expect(thrown).toBeInstanceOf(StrataSchemaError)
        expect((thrown as StrataSchemaError).code).toBe('STRATA_SCHEMA_MISMATCH')
        expect((thrown as Error).message).toMatch(message)
      })
    }
  })

  it('15. results with errors are not stored; results with maxAge 0 are not stored', async () => {
    const calls = { broken: 0, zero: 0 }
    const schema = sdlSchema(
      /* GraphQL */ `
        type Query {
          broken: String @cacheControl(maxAge: 60)
          zero: String @cacheControl(maxAge: 0)
          cached: String @cacheControl(maxAge: 60)
        }
      `,
      {
        broken: () => {
          calls.broken++
          throw new Error('boom')
        },
        zero: () => {
          calls.zero++
          return 'z'
        },
        cached: 'c',
      },
    )
    const { server, strata } = await serve(schema)
    for (let i = 0; i < 2; i++) {
      const res = await server.query('{ cached broken }')
      expect(res.json.errors?.[0]?.message).toBe('boom')
      expect(res.json.data).toEqual({ cached: 'c', broken: null })
      expect(res.cache).toBe('MISS')
      expect(res.headers.get('cache-control')).toBe('no-store')
    }
    expect(calls.broken).toBe(2)
    expect(strata.stats().skippedStores.errors).toBe(2)

    expect(await policyOf(server, '{ zero }')).toBe('no-store')
    expect(await policyOf(server, '{ cached zero }')).toBe('no-store')
    await expectStored(server, '{ cached zero }', false)
    expect(calls.zero).toBe(4)
    expect(strata.stats().skippedStores.uncacheable).toBe(4)
  })

  it('16. a type hint given on a type extension is read', async () => {
    const schema = sdlSchema(
      /* GraphQL */ `
        type Query {
          ext: Ext
        }
        type Ext {
          x: String
        }
        extend type Ext @cacheControl(maxAge: 33)
      `,
      { ext: { x: 'x' } },
    )
    const { server } = await serve(schema)
    expect(await policyOf(server, '{ ext { x } }')).toBe('max-age=33, public')
  })
})

describe('dynamic hints: resolvers change their field policy through info.cacheControl (as in Apollo Server)', () => {
  const typeDefs = /* GraphQL */ `
    type Query {
      quote(ttl: Int, scope: String, restrictTo: Int, delayMs: Int): Quote @cacheControl(maxAge: 60)
      feed(shortItem: ID): [Item!]! @cacheControl(maxAge: 60)
      late: String
      hintInfo: String @cacheControl(maxAge: 15)
      wrong: String @cacheControl(maxAge: 60)
      me: String @cacheControl(maxAge: 60, scope: PRIVATE)
      search(shortItem: ID): [[Result]] @cacheControl(maxAge: 60)
      fragile: Fragile @cacheControl(maxAge: 60)
    }
    type Quote @cacheControl(maxAge: 30) {
      text: String
    }
    union Result = Quote | Item
    type Fragile {
      title: String!
    }
    type Item {
      id: ID!
      n: Int
    }
  `
  type QuoteArgs = { ttl?: number; scope?: CacheScope; restrictTo?: number; delayMs?: number }
  const calls = { quote: 0, late: 0 }
  const schema = () =>
    createSchema({
      typeDefs: [strataDirectivesSdl, typeDefs],
      resolvers: {
        Query: {
          quote: async (_: unknown, args: QuoteArgs, _ctx: unknown, info: GraphQLResolveInfo) => {
            calls.quote++
            if (args.delayMs) await new Promise((resolve) => setTimeout(resolve, args.delayMs))
            const control = cacheControlFromInfo(info)
            if (args.ttl !== undefined || args.scope !== undefined) {
              control.setCacheHint({ maxAge: args.ttl ?? undefined, scope: args.scope ?? undefined })
            }
            if (args.restrictTo !== undefined) control.cacheHint.restrict({ maxAge: args.restrictTo })
            return { text: 'q' }
          },
          feed: (_: unknown, args: { shortItem?: string }) =>
            ['1', '2', '3'].map((id) => ({ id, short: id === args.shortItem })),
          late: (_: unknown, _args: unknown, _ctx: unknown, info: GraphQLResolveInfo) => {
            calls.late++
            cacheControlFromInfo(info).setCacheHint({ maxAge: 20 })
            return 'late'
          },
          hintInfo: (_: unknown, _args: unknown, _ctx: unknown, info: GraphQLResolveInfo) => {
            const control = cacheControlFromInfo(info)
            const quote = info.schema.getType('Quote') as GraphQLObjectType
            return JSON.stringify({
              maxAge: control.cacheHint.maxAge,
              scope: control.cacheHint.scope ?? null,
              quote: control.cacheHintFromType(quote),
              item: control.cacheHintFromType(info.schema.getType('Item') as GraphQLObjectType),
            })
          },
          wrong: (_: unknown, _args: unknown, _ctx: unknown, info: GraphQLResolveInfo) => {
            cacheControlFromInfo(info).setCacheHint({ maxAge: -1 })
            return 'never'
          },
          me: () => 'me',
          search: (_: unknown, args: { shortItem?: string }) => [
            [{ id: '1', short: args.shortItem === '1' }, { text: 'q' }],
            [null, { id: '2', short: args.shortItem === '2' }],
          ],
          fragile: () => ({}),
        },
        Result: { __resolveType: (o: object) => ('text' in o ? 'Quote' : 'Item') },
        Fragile: {
          title: (_: unknown, _args: unknown, _ctx: unknown, info: GraphQLResolveInfo) => {
            cacheControlFromInfo(info).setCacheHint({ maxAge: 5 })
            throw new GraphQLError('gone')
          },
        },
        Item: {
          n: (item: { short: boolean }, _args: unknown, _ctx: unknown, info: GraphQLResolveInfo) => {
            if (item.short) cacheControlFromInfo(info).setCacheHint({ maxAge: 7 })
            return 1
          },
        },
      },
    })

  it('setCacheHint replaces the field maxAge, lower or higher than its static hint, and on a field without one', async () => {
    const { server } = await serve(schema())
    expect(await policyOf(server, '{ quote { text } }')).toBe('max-age=60, public')
    expect(await policyOf(server, '{ quote(ttl: 5) { text } }')).toBe('max-age=5, public')
    expect(await policyOf(server, '{ quote(ttl: 90) { text } }')).toBe('max-age=90, public')
    // A root field without a hint gets defaultMaxAge (0: not cached) unless its resolver sets one.
    expect(await policyOf(server, '{ late }')).toBe('max-age=20, public')
    const before = calls.late
    await expectStored(server, '{ late }', true)
    expect(calls.late, 'the second request was served from cache').toBe(before)
  })

  it('cacheHint.restrict only lowers the maxAge', async () => {
    const { server } = await serve(schema())
    expect(await policyOf(server, '{ quote(restrictTo: 100) { text } }')).toBe('max-age=60, public')
    expect(await policyOf(server, '{ quote(restrictTo: 10) { text } }')).toBe('max-age=10, public')
  })

  it('a hint set for one item of a list applies to the whole response', async () => {
    const { server } = await serve(schema())
    expect(await policyOf(server, '{ feed { id n } }')).toBe('max-age=60, public')
    expect(await policyOf(server, '{ feed(shortItem: "2") { id n } }')).toBe('max-age=7, public')
    expect(await policyOf(server, '{ feed(shortItem: "2") { id short: n } }'), 'under an alias').toBe(
      'max-age=7, public',
    )
  })

  it('a dynamic PRIVATE is stored per session where the document is keyed by session, and not stored otherwise', async () => {
    const { server, strata } = await serve(schema())
    const alone = '{ quote(scope: "PRIVATE") { text } }'
    expect(await policyOf(server, alone, USER)).toBe('max-age=60, private')
    await expectStored(server, alone, false, USER)
    expect(strata.stats().skippedStores['private-no-session']).toBe(3)

    const keyed = '{ me quote(scope: "PRIVATE") { text } }'
    expect(await policyOf(server, keyed, USER)).toBe('max-age=60, private')
    expect((await server.query(keyed, {}, USER)).cache).toBe('HIT')
    expect((await server.query(keyed, {}, { 'x-user': 'bob' })).cache, 'another session').toBe('MISS')
  })

  it('cacheHint starts from the static hints, and cacheHintFromType reads a type hint', async () => {
    const { server } = await serve(schema())
    const res = await server.query('{ hintInfo }')
    expect(JSON.parse(res.json.data?.hintInfo as string)).toEqual({
      maxAge: 15,
      scope: null,
      quote: { maxAge: 30 },
      item: {},
    })
  })

  it('a wrong hint never fails the resolver: the response is served, not stored, and the field named in a warning', async () => {
    const lines: string[] = []
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) })
    const { server, strata } = await serve(schema(), { logger })
    for (let i = 0; i < 2; i++) {
      const res = await server.query('{ wrong }')
      expect(res.json).toEqual({ data: { wrong: 'never' } })
      expect(res.cache).toBe('MISS')
      expect(res.headers.get('cache-control')).toBe('no-store')
    }
    expect(strata.stats().skippedStores.uncacheable).toBe(2)
    const warned = lines.map((line) => JSON.parse(line) as { msg: string; field: string })
    expect(warned, 'once per field').toEqual([
      expect.objectContaining({
        field: 'Query.wrong',
        msg: 'strata: Query.wrong set a wrong cache hint: cache hint maxAge must be a number of seconds >= 0, got -1; not cached (logged once per field)',
      }),
    ])
  })

  it('hints are found through unions, fragments, aliases and nested lists, and set the stored lifetime', async () => {
    const { server } = await serve(schema(), { debug: true })
    const query = (short: string) => /* GraphQL */ `
      { s: search(shortItem: "${short}") { ...R } }
      fragment R on Result { ... on Item { id m: n } ... on Quote { text } }
    `
    expect(await policyOf(server, query('none'))).toBe('max-age=60, public')
    const res = await server.query(query('2'))
    expect(res.headers.get('cache-control')).toBe('max-age=7, public')
    expect(res.json.extensions?.strata).toEqual({ hit: false, ttl: 7 })
  })

  it('with cacheErrors, a hint set by a resolver that then failed still counts (as in Apollo Server)', async () => {
    const { server } = await serve(schema(), { cacheErrors: true, debug: true })
    const res = await server.query('{ fragile { title } }')
    expect(res.json.errors?.[0]?.message).toBe('gone')
    expect(res.json.data).toEqual({ fragile: null })
    expect(res.json.extensions?.strata, 'stored for the hint, not for the static 60 s').toEqual({
      hit: false,
      ttl: 5,
    })
  })

  it('concurrent misses of one document keep their own hints', async () => {
    const { server } = await serve(schema())
    const query = 'query Q($ttl: Int) { quote(ttl: $ttl, delayMs: 50) { text } }'
    const before = calls.quote
    const responses = await Promise.all([5, 50, 7].map((ttl) => server.query(query, { ttl })))
    expect(calls.quote - before, 'the executions overlapped').toBe(3)
    expect(responses.map((res) => res.headers.get('cache-control'))).toEqual([
      'max-age=5, public',
      'max-age=50, public',
      'max-age=7, public',
    ])
  })

  it('dynamicHints: false leaves the resolvers as they are; cacheControlFromInfo says what is missing', async () => {
    const plain = schema()
    const resolve = (plain.getType('Query') as GraphQLObjectType).getFields().late?.resolve
    const { server } = await serve(plain, { dynamicHints: false })
    const res = await server.query('{ late }')
    expect(res.json.errors?.[0]?.message).toMatch(/^info\.cacheControl is missing on Query\.late: /)
    expect((plain.getType('Query') as GraphQLObjectType).getFields().late?.resolve).toBe(resolve)
  })
})
