import { extendSchema, type GraphQLFieldResolver, type GraphQLSchema, parse } from 'graphql'

/** SDL of the admin field's types; `name` is the root field (default `_strata`). */
function adminSdl(name: string, hasMutation: boolean): string {
  return /* GraphQL */ `
    extend type Query { ${name}: StrataAdminQuery }
    ${hasMutation ? 'extend type Mutation' : 'type Mutation'} { ${name}: StrataAdminMutation }
    ${hasMutation ? '' : 'extend schema { mutation: Mutation }'}

    "Inspect the response cache. Requires an admin credential."
    type StrataAdminQuery {
      "Counters since start (super admins only)."
      stats: StrataStats!
      "Cached entries, filtered and paginated; a tenant admin sees its own tenant only."
      entries(tenant: String, operationName: String, tag: String, tier: String, first: Int = 50, after: String): StrataEntryPage!
      "One entry by key, with a preview of its body."
      entry(key: String!): StrataEntry
      "Tiers, circuits and the database change listener (super admins only)."
      health: StrataHealth!
    }

    "Purge the response cache. Each purge returns how many entries each tier removed."
    type StrataAdminMutation {
      invalidateTypes(types: [String!]!): StrataPurge!
      invalidateEntities(type: String!, ids: [ID!]!): StrataPurge!
      invalidateTags(tags: [String!]!): StrataPurge!
      "Entries carrying any of these cache tags (@cacheTag), as rendered: post-stats, product-42, product-* for all."
      invalidateCacheTags(tags: [String!]!): StrataPurge!
      invalidateOperation(operationName: String!): StrataPurge!
      "Everything, or one tenant's entries. A tenant admin flushes its own tenant only."
      flush(tenant: String): StrataPurge!
    }

    type StrataCount { name: String! count: Float! }
    type StrataTierStats { tier: String! hits: Float! entries: Float bytes: Float evictions: Float! expirations: Float! }
    type StrataOperationStats { operationName: String! hits: Float! misses: Float! bypasses: Float! }
    type StrataStats {
      hits: Float!
      "Hits (counted in hits too) served stale while refreshed (staleWhileRevalidate)."
      staleHits: Float!
      "Background refreshes of stale entries started, and those that threw."
      refreshes: Float!
      failedRefreshes: Float!
      misses: Float!
      hitRate: Float!
      bypasses: [StrataCount!]!
      stores: Float!
      skippedStores: [StrataCount!]!
      evictions: Float!
      invalidations: Float!
      tiers: [StrataTierStats!]!
      operations: [StrataOperationStats!]!
    }
    type StrataEntry {
      key: String!
      tenant: String
      operationName: String
      tags: [String!]!
      size: Int!
      "Seconds it is fresh for (0: stale). Where a tier does not tell (PostgreSQL's listing), until it is no longer served."
      ttlSeconds: Int!
      "Seconds until it is no longer served at all: ttlSeconds plus what remains of its stale grace."
      servedForSeconds: Int!
      "The tiers holding it."
      tiers: [String!]!
      "The first 500 characters of the cached body (entry() only)."
      bodyPreview: String
    }
    type StrataEntryPage { nodes: [StrataEntry!]! "Pass as after: for the next page; null on the last." cursor: String }
    type StrataTierHealth { tier: String! shared: Boolean! circuit: String! failures: Float! timeouts: Float! pendingInvalidations: String! }
    type StrataChangesHealth {
      state: String!
      appliedThrough: Float!
      seen: Float!
      pending: Int!
      lagMs: Float
      reconnects: Int!
      flushes: Int!
      lastError: String
    }
    type StrataHealth { localTiersInUse: Boolean! tiers: [StrataTierHealth!]! changes: StrataChangesHealth }
    type StrataPurge {
      removed: [StrataCount!]!
      total: Float!
      "Shared tiers that are unavailable (circuit open): the purge reaches them when they are back, before they serve again."
      deferred: [String!]!
    }
  `
}

/**
 * The schema with the admin field on Query and Mutation, resolved by `query` and `mutation`
 * (each returns an object whose fields the default resolver reads or calls).
 */
export function withAdminField(
  schema: GraphQLSchema,
  name: string,
  query: GraphQLFieldResolver<unknown, unknown>,
  mutation: GraphQLFieldResolver<unknown, unknown>,
): GraphQLSchema {
  const extended = extendSchema(
    schema,
    parse(adminSdl(name, schema.getMutationType() !== null && schema.getMutationType() !== undefined)),
  )
  const queryField = extended.getQueryType()?.getFields()[name]
  const mutationField = extended.getMutationType()?.getFields()[name]
  if (!queryField || !mutationField) throw new Error(`graphql-strata: could not add the admin field ${name}`)
  queryField.resolve = query
  mutationField.resolve = mutation
  return extended
}
