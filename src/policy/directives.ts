/**
 * SDL for the directives Strata reads. Add it to your type definitions:
 *
 * @example
 * ```ts
 * createSchema({ typeDefs: [strataDirectivesSdl, typeDefs], resolvers })
 * ```
 */
export const cacheControlDirectiveSdl = /* GraphQL */ `
enum CacheControlScope {
  PUBLIC
  PRIVATE
}

directive @cacheControl(
  maxAge: Int
  scope: CacheControlScope
  inheritMaxAge: Boolean
) on FIELD_DEFINITION | OBJECT | INTERFACE | UNION
`

/**
 * `@invalidates` on a mutation field: when the field resolves without error, what it names is
 * invalidated, even if the mutation's result carries no entity (e.g. `deletePost(id: ID!): Boolean`).
 * `types: ["Post"]`: every cached result that depends on a Post. `entity: "Post"`: the one Post
 * its arguments name (by default the arguments named like Post's key fields; `keyArgs: ["input.id"]`
 * says where they are), and lists of Posts. A field that fails invalidates nothing, so an
 * unauthorized caller cannot purge the cache.
 */
export const invalidatesDirectiveSdl = /* GraphQL */ `
directive @invalidates(types: [String!], entity: String, keyArgs: [String!], cacheTags: [String!]) on FIELD_DEFINITION
`

/**
 * `@cacheTag(format:)` on a field (of an object type, or of an interface its implementations
 * inherit it from): every cached result in which the field appears carries the tag, which
 * `invalidateCacheTags`, the admin field and `@invalidates(cacheTags:)` invalidate. `{args.id}` or
 * `{args.input.id}` is replaced by the field's argument (a list argument gives one tag per value).
 */
export const cacheTagDirectiveSdl = /* GraphQL */ `
directive @cacheTag(format: String!) repeatable on FIELD_DEFINITION
`

/** Strata's directives, ready to prepend to your SDL. */
export const strataDirectivesSdl = cacheControlDirectiveSdl + invalidatesDirectiveSdl + cacheTagDirectiveSdl
