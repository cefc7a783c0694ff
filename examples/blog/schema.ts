import { GraphQLError } from 'graphql'
import { strataDirectivesSdl } from 'graphql-strata'
import { createSchema } from 'graphql-yoga'
import { type PostRow, rowId, type TenantData } from './data.js'

/** Built per request by `app.ts` from the `x-tenant-id` and `x-user-id` headers. */
export interface BlogContext {
  /** `null` when the request has no `x-tenant-id` header. */
  data: TenantData | null
  /** The caller's author id (`x-user-id`), or `null`. */
  userId: number | null
}

export const typeDefs = /* GraphQL */ `
  ${strataDirectivesSdl}

  type Author @cacheControl(maxAge: 300) {
    id: ID!
    name: String!
  }

  type Comment @cacheControl(maxAge: 60) {
    id: ID!
    body: String!
  }

  type Post @cacheControl(maxAge: 60) {
    id: ID!
    title: String!
    body: String!
    author: Author!
    comments: [Comment!]!
  }

  "The caller (header x-user-id: an author id of the tenant). Cached per user, never shared."
  type User @cacheControl(maxAge: 60, scope: PRIVATE) {
    id: ID!
    name: String!
    email: String!
  }

  type Query {
    "Newest first; at most 100."
    posts(first: Int = 10): [Post!]! @cacheControl(maxAge: 30)
    post(id: ID!): Post @cacheControl(maxAge: 60)
    me: User @cacheControl(maxAge: 60, scope: PRIVATE)
  }

  type Mutation {
    createPost(title: String!, body: String!, authorId: ID!): Post!
    updatePost(id: ID!, title: String!): Post
    "Returns no Post to find in the result, so it names the type to invalidate."
    deletePost(id: ID!): Boolean! @invalidates(types: ["Post"])
    addComment(postId: ID!, body: String!): Comment
  }
`

function tenantData(context: BlogContext): TenantData {
  if (context.data) return context.data
  throw new GraphQLError('Send an x-tenant-id header (e.g. acme or globex).', {
    extensions: { code: 'TENANT_REQUIRED' },
  })
}

type Args<T> = T & Record<string, unknown>

export const schema = createSchema<BlogContext>({
  typeDefs,
  resolvers: {
    Query: {
      posts: (_: unknown, { first }: Args<{ first: number | null }>, context: BlogContext) => {
        const data = tenantData(context)
        if (first !== null && first < 0) throw new GraphQLError('first must be >= 0')
        return data.posts(Math.min(first ?? 10, 100))
      },
      post: (_: unknown, { id }: Args<{ id: string }>, context: BlogContext) => {
        const data = tenantData(context)
        const postId = rowId(id)
        return postId === null ? null : data.post(postId)
      },
      me: (_: unknown, __: unknown, context: BlogContext) => {
        const data = tenantData(context)
        return context.userId === null ? null : data.author(context.userId)
      },
    },
    Post: {
      author: (post: PostRow, _: unknown, context: BlogContext) => tenantData(context).author(post.authorId),
      comments: (post: PostRow, _: unknown, context: BlogContext) => tenantData(context).comments(post.id),
    },
    Mutation: {
      createPost: async (
        _: unknown,
        args: Args<{ title: string; body: string; authorId: string }>,
        context: BlogContext,
      ) => {
        const data = tenantData(context)
        const authorId = rowId(args.authorId)
        const post = authorId === null ? null : await data.createPost(args.title, args.body, authorId)
        if (!post) throw new GraphQLError(`No author ${args.authorId} in tenant ${data.tenant}`)
        return post
      },
      updatePost: (_: unknown, { id, title }: Args<{ id: string; title: string }>, context: BlogContext) => {
        const data = tenantData(context)
        const postId = rowId(id)
        return postId === null ? null : data.updatePost(postId, title)
      },
      deletePost: (_: unknown, { id }: Args<{ id: string }>, context: BlogContext) => {
        const data = tenantData(context)
        const postId = rowId(id)
        return postId === null ? false : data.deletePost(postId)
      },
      addComment: (
        _: unknown,
        { postId, body }: Args<{ postId: string; body: string }>,
        context: BlogContext,
      ) => {
        const data = tenantData(context)
        const id = rowId(postId)
        return id === null ? null : data.addComment(id, body)
      },
    },
  },
})
