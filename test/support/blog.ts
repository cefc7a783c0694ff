import { GraphQLError } from 'graphql'
import { createSchema } from 'graphql-yoga'
import { strataDirectivesSdl } from '../../src/index.js'

export interface Post {
  id: string
  title: string
  body: string
  authorId: string
  published: boolean
}

/** An in-memory blog with resolver call counters, for integration tests. */
export class BlogStore {
  posts = new Map<string, Post>()
  authors = new Map([
    ['a1', { id: 'a1', name: 'Ada', email: 'ada@example.com' }],
    ['a2', { id: 'a2', name: 'Grace', email: 'grace@example.com' }],
  ])
  calls = { posts: 0, post: 0, me: 0, slowPost: 0 }
  tags = [{ label: 'a' }, { label: 'b' }]
  nextId = 1
  /** When set, `slowPost` waits for it before reading (to interleave a mutation). */
  gate: Promise<void> | undefined
  onSlowPostStart: (() => void) | undefined

  constructor(count = 3) {
    for (let i = 0; i < count; i++) this.add(`Post ${i + 1}`, i % 2 === 0 ? 'a1' : 'a2')
  }

  /** Makes `slowPost` wait until `release()`; `started` resolves once a slowPost read has begun. */
  hold(): { started: Promise<void>; release: () => void } {
    let release!: () => void
    this.gate = new Promise<void>((resolve) => {
      release = resolve
    })
    const started = new Promise<void>((resolve) => {
      this.onSlowPostStart = resolve
    })
    return { started, release }
  }

  add(title: string, authorId = 'a1'): Post {
    const id = String(this.nextId++)
    const post = { id, title, body: `Body of ${title}`, authorId, published: true }
    this.posts.set(id, post)
    return post
  }
}

export const blogTypeDefs = /* GraphQL */ `
  ${strataDirectivesSdl}

  interface Node @cacheControl(maxAge: 60) {
    id: ID!
  }

  type Author implements Node @cacheControl(maxAge: 120) {
    id: ID!
    name: String!
    email: String! @cacheControl(scope: PRIVATE)
    posts: [Post!]!
  }

  type Post implements Node @cacheControl(maxAge: 60) {
    id: ID!
    title: String!
    body: String!
    author: Author!
    published: Boolean!
  }

  type Tag {
    label: String!
  }

  union SearchResult = Post | Author

  type Me {
    id: ID!
    name: String!
  }

  type Query {
    posts(first: Int): [Post!]! @cacheControl(maxAge: 30)
    publishedPosts: [Post!]! @cacheControl(maxAge: 30)
    post(id: ID!): Post
    slowPost(id: ID!): Post
    node(id: ID!): Node
    search(text: String!): [SearchResult!]! @cacheControl(maxAge: 30)
    me: Me @cacheControl(maxAge: 30, scope: PRIVATE)
    tags: [Tag!]! @cacheControl(maxAge: 30)
    firstTag: Tag @cacheControl(maxAge: 30)
    uncached: String
    viewer: String
    broken: Post @cacheControl(maxAge: 30)
    notFound: Post @cacheControl(maxAge: 30)
    big(size: Int!): String @cacheControl(maxAge: 30)
  }

  type Deletion {
    deleted: Boolean!
    note: String
    strictNote: String!
  }

  type Mutation {
    createPost(title: String!, authorId: ID): Post!
    updatePost(id: ID!, title: String!): Post
    unpublishPost(id: ID!): Post
    deletePost(id: ID!): Boolean! @invalidates(types: ["Post"])
    "Deletes a post; the Deletion's notes fail (a nested error after the change was made)."
    purgePost(id: ID!): Deletion @invalidates(types: ["Post"])
    purgePostStrict(id: ID!): Deletion! @invalidates(types: ["Post"])
    touchNothing: Boolean!
    addTag(label: String!): Tag!
  }
`

export function blogSchema(store: BlogStore) {
  return createSchema({
    typeDefs: blogTypeDefs,
    resolvers: {
      Node: { __resolveType: (o: object) => ('title' in o ? 'Post' : 'Author') },
      SearchResult: { __resolveType: (o: object) => ('title' in o ? 'Post' : 'Author') },
      Query: {
        posts: (_: unknown, { first }: { first?: number }) => {
          store.calls.posts++
          const all = [...store.posts.values()]
          return first === undefined ? all : all.slice(0, first)
        },
        publishedPosts: () => [...store.posts.values()].filter((p) => p.published),
        post: (_: unknown, { id }: { id: string }) => {
          store.calls.post++
          return store.posts.get(id) ?? null
        },
        slowPost: async (_: unknown, { id }: { id: string }) => {
          store.calls.slowPost++
          const snapshot = store.posts.get(id) ? { ...store.posts.get(id)! } : null
          store.onSlowPostStart?.()
          await store.gate
          return snapshot
        },
        node: (_: unknown, { id }: { id: string }) => store.posts.get(id) ?? store.authors.get(id) ?? null,
        search: (_: unknown, { text }: { text: string }) => [
          ...[...store.posts.values()].filter((p) => p.title.includes(text)),
          ...[...store.authors.values()].filter((a) => a.name.includes(text)),
        ],
        me: (_: unknown, __: unknown, ctx: { request: Request }) => {
          store.calls.me++
          const user = ctx.request.headers.get('x-user-id')
          return user ? { id: user, name: `User ${user}` } : null
        },
        tags: () => store.tags,
        firstTag: () => store.tags[0] ?? null,
        uncached: () => 'fresh',
        viewer: async (_: unknown, __: unknown, ctx: { request: Request }) => {
          await new Promise((r) => setTimeout(r, 30))
          return `secret of ${ctx.request.headers.get('x-user-id')}`
        },
        broken: () => {
          throw new Error('boom')
        },
        notFound: () => {
          throw new GraphQLError('no such post', { extensions: { code: 'NOT_FOUND' } })
        },
        big: (_: unknown, { size }: { size: number }) => 'x'.repeat(size),
      },
      Post: { author: (p: Post) => store.authors.get(p.authorId) },
      Author: { posts: (a: { id: string }) => [...store.posts.values()].filter((p) => p.authorId === a.id) },
      Deletion: {
        note: () => {
          throw new Error('note failed')
        },
        strictNote: () => {
          throw new Error('note failed')
        },
      },
      Mutation: {
        createPost: (_: unknown, { title, authorId }: { title: string; authorId?: string }) =>
          store.add(title, authorId),
        updatePost: (_: unknown, { id, title }: { id: string; title: string }) => {
          const post = store.posts.get(id)
          if (!post) return null
          post.title = title
          return post
        },
        unpublishPost: (_: unknown, { id }: { id: string }) => {
          const post = store.posts.get(id)
          if (post) post.published = false
          return post ?? null
        },
        deletePost: (_: unknown, { id }: { id: string }, ctx: { request: Request }) => {
          if (ctx.request.headers.get('x-forbidden')) throw new Error('forbidden')
          return store.posts.delete(id)
        },
        purgePost: (_: unknown, { id }: { id: string }) => ({ deleted: store.posts.delete(id) }),
        purgePostStrict: (_: unknown, { id }: { id: string }) => ({ deleted: store.posts.delete(id) }),
        touchNothing: () => true,
        addTag: (_: unknown, { label }: { label: string }) => {
          const tag = { label }
          store.tags.unshift(tag)
          return tag
        },
      },
    },
  })
}
