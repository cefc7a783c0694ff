import type { DocumentNode, ExecutionResult, GraphQLSchema } from 'graphql'
import type { Logger } from 'pino'
import type { AdminOptions } from './admin/admin.js'
import type { ChangeSource } from './changes/source.js'
import type { MetricsOptions } from './observability/metrics.js'
import type { StrataTracer } from './observability/tracing.js'
import type { WarmOptions } from './plugin/warm.js'
import type { CacheHint } from './policy/policy.js'
import type { MutationInvalidation } from './policy/schema-hints.js'
import type { BreakerOptions } from './tiers/breaker.js'
import type { CacheBus, CacheTier } from './tiers/tier.js'

/**
 * The context type hooks see unless you name yours (`useStrata<MyContext>(...)`):
 * Yoga's context, which carries the Fetch `request`.
 */
export interface StrataContext {
  request: Request
  [key: string]: unknown
}

/** What identity and policy hooks receive about the current request. */
export interface RequestInfo<TContext> {
  /** The GraphQL context of the request (in Yoga: includes `request`). */
  readonly context: TContext
  readonly document: DocumentNode
  readonly operationName: string | null
  readonly variables: Readonly<Record<string, unknown>>
}

/** Options of `useStrata`. Every field is validated when the plugin is created. */
export interface StrataOptions<TContext = StrataContext> {
  /**
   * The tenant of a request, or `false` for a single-tenant app. **Required.**
   * With tenancy on, a request whose tenant is `null`/`undefined` bypasses the cache
   * entirely (never a shared entry); it is counted and logged. An empty string is a
   * tenant like any other.
   * @example ({ context }) => context.request.headers.get('x-tenant-id')
   */
  tenant: ((info: RequestInfo<TContext>) => string | number | null | undefined) | false
  /**
   * The session of a request: keys results whose scope is PRIVATE. Without a session,
   * PRIVATE results are neither read from nor written to the cache.
   * @default () => undefined
   * @example ({ context }) => context.user?.id
   */
  session?: (info: RequestInfo<TContext>) => string | number | null | undefined
  /**
   * Cache tiers, fastest first.
   * @default [memoryTier()]
   */
  tiers?: readonly CacheTier[]
  /**
   * Adds the admin field (`_strata` on Query and Mutation) to inspect and purge the cache.
   * Absent: no admin field.
   * @example { authorize: ({ context }) => (context.user?.role === 'admin' ? 'all' : null) }
   */
  admin?: AdminOptions<TContext>
  /**
   * Prometheus metrics (prom-client, an optional peer dependency): pass your registry.
   * @example { registry: new Registry() }
   */
  metrics?: MetricsOptions
  /**
   * Operations executed at startup (through Yoga) to fill the cache; `ready()` waits for them.
   * Failures are logged, never fatal.
   */
  warm?: WarmOptions
  /**
   * Database changes that invalidate the cache, e.g. `postgresChanges({ pool })` from
   * `graphql-strata/postgres`, fed by triggers installed with `strata.watch(...)`.
   * @default none
   */
  changes?: ChangeSource
  /**
   * Carries invalidations to other instances' local tiers. Default: the bus of the first shared
   * tier that has one (Redis pub/sub, else PostgreSQL NOTIFY) when local tiers are used; `false`
   * for a single instance. While the bus is down, local tiers are flushed and not used.
   */
  bus?: CacheBus | false
  /**
   * Timeouts and circuit breaker of shared tiers (see `breakerDefaults`).
   * @default { timeoutMs: 100, invalidateTimeoutMs: 1000, clearTimeoutMs: 30000, failureThreshold: 5, cooldownMs: 500, maxCooldownMs: 30000, maxPendingTags: 10000 }
   */
  breaker?: Partial<BreakerOptions>
  /**
   * maxAge (seconds) for root fields and composite-returning fields without a hint.
   * @default 0
   */
  defaultMaxAge?: number
  /**
   * Seconds an entry is kept past its maxAge, during which a request is answered at once with the
   * stale entry (`x-strata-cache: STALE`, `cache-control: no-store`) while one background execution
   * per key and instance refreshes it. A refresh that fails (it throws, or its result is not stored)
   * leaves the stale entry to be served until its grace ends: stale-if-error. Only age makes an entry
   * stale: an invalidated entry is removed, never served. The refresh runs the operation with the
   * context of the request that found the entry stale, after that request was answered.
   * @default 0 (an entry past its maxAge is a miss)
   * @example 60
   */
  staleWhileRevalidate?: number
  /**
   * Cache hints by schema coordinate, for code-first schemas or to override the SDL.
   * @example { 'Query.posts': { maxAge: 60 }, User: { scope: 'PRIVATE' } }
   * @default {}
   */
  hints?: Readonly<Record<string, CacheHint>>
  /**
   * Key fields per object type; objects with all key fields present become entities.
   * @default {} (every type uses `defaultKeyFields`)
   */
  keyFields?: Readonly<Record<string, readonly string[]>>
  /**
   * Key fields for types not named in `keyFields`; a type lacking them has no entities.
   * @default ['id']
   */
  defaultKeyFields?: readonly string[]
  /**
   * What a mutation field invalidates, by coordinate: the config form of `@invalidates`, either
   * the types it changes or a {@link MutationInvalidation}. Replaces the field's directive.
   * @example { 'Mutation.deletePost': ['Post'] }
   * @example { 'Mutation.archivePost': { entity: 'Post', keyArgs: ['input.id'] } }
   * @default {}
   */
  invalidates?: Readonly<Record<string, readonly string[] | MutationInvalidation>>
  /**
   * Cache tags by field coordinate (of an object or interface type): the config form of `@cacheTag`,
   * replacing the directives at that coordinate (an interface's are inherited by its implementations).
   * An entry in which the field appears carries the tags; `invalidateCacheTags`, the admin field and
   * `@invalidates(cacheTags:)` invalidate them. `{args.name}` is replaced by the argument's value.
   * @example { 'Query.postCount': ['post-stats'], 'Query.product': ['product-{args.id}'] }
   * @default {}
   */
  cacheTags?: Readonly<Record<string, readonly string[]>>
  /**
   * Invalidate the entities found in mutation results (their entity and collection tags).
   * @default true
   */
  invalidateOnMutation?: boolean
  /**
   * Per-request switch: `false` bypasses the cache for this request (no read, no write).
   * @default () => true
   */
  enabled?: (info: RequestInfo<TContext>) => boolean
  /**
   * Per-request forced refresh: `true` skips the lookup and executes; the result is then stored as
   * on any miss, replacing the entry, and concurrent identical requests share it. Gate it (an
   * editor's preview, a trusted client's header): every refreshing request executes.
   * @default () => false
   */
  refresh?: (info: RequestInfo<TContext>) => boolean
  /**
   * Last say on storing a result that every rule allows: anything but `true` (a `false`, a forgotten
   * `return`) keeps it out of the cache
   * (`skippedStores.declined`) and sends it `cache-control: no-store`. It sees the result as the
   * client gets it. One that throws declines (logged); the request is answered either way.
   * @example ({ result }) => !result.data?.search?.partial
   * @default () => true
   */
  shouldStore?: (info: RequestInfo<TContext> & { readonly result: ExecutionResult }) => boolean
  /**
   * Queries using `@defer` or `@stream`: `'bypass'` leaves them to execute and stream as they do
   * without Strata; `'inline'` executes them in one result (the incremental delivery proposal lets a
   * server deliver deferred data inline), which is stored and served whole: a miss no longer streams,
   * and a hit answers everything at once.
   * @default 'bypass'
   */
  incremental?: 'bypass' | 'inline'
  /**
   * Store results that carry errors (partial data). Off by default: errors are often transient.
   * @default false
   */
  cacheErrors?: boolean
  /**
   * Give resolvers `info.cacheControl` (Apollo Server's dynamic hints: `setCacheHint`, `cacheHint`,
   * `cacheHintFromType`). Resolvers are wrapped in place, once per schema; `false` leaves the schema
   * untouched.
   * @default true
   */
  dynamicHints?: boolean
  /**
   * Results whose serialized body exceeds this many bytes are not stored.
   * @default 1048576 (1 MiB)
   */
  maxEntryBytes?: number
  /**
   * Extra data mixed into the key (e.g. locale). Any JSON value; key order does not matter.
   * @default undefined
   */
  extraKeyData?: (info: RequestInfo<TContext>) => unknown
  /**
   * Schema version in the key. Default: SHA-256 of the schema printed with directives,
   * recomputed whenever the schema changes.
   */
  schemaVersion?: string | ((schema: GraphQLSchema) => string)
  /**
   * Namespace of every key: letters, digits, `_` and `-`.
   * @default 'strata'
   */
  keyPrefix?: string
  /**
   * Response header that tells HIT, MISS or BYPASS (Yoga only); `false` to omit it.
   * @default 'x-strata-cache'
   */
  header?: string | false
  /**
   * Send `cache-control` on query responses (Yoga only): `max-age=N, private|public` when
   * cacheable, `no-store` otherwise. `public` only with tenancy off and scope PUBLIC.
   * @default true
   */
  cacheControlHeader?: boolean
  /**
   * Send a weak `etag` with every cacheable single-result response (Yoga only), and answer a GET
   * whose `if-none-match` names it with `304 Not Modified`. The tag is a hash of the result's data
   * and errors (and of the JSON media type it is sent as; streams get none), so it changes whenever
   * the result does, not when the entry is merely re-stored.
   * @default true
   */
  etag?: boolean
  /**
   * Add `extensions.strata` (hit, tier, ttl, age) to responses. For debugging only.
   * @default false
   */
  debug?: boolean
  /**
   * Execute concurrent identical misses once per process. A request waits for the identical
   * execution in flight at most `maxWaitMs`, then executes on its own (a hung execution must not hold
   * every identical request with it); a stale entry's refresh is retried after as long.
   * @default true ({ maxWaitMs: 30000 })
   */
  singleFlight?: boolean | { maxWaitMs?: number }
  /**
   * An OpenTelemetry tracer (`trace.getTracer('graphql-strata')`): spans `strata.lookup` (attributes
   * `strata.cache.status`, `strata.cache.tier`), `strata.refresh`, `strata.invalidate` and
   * `strata.clear`. Strata does not depend on `@opentelemetry/api`; it calls what you pass.
   * @default none
   */
  tracer?: StrataTracer
  /**
   * A pino logger. The library never writes to the console.
   * @default a silent logger
   */
  logger?: Logger
}

export const strataDefaults = {
  defaultMaxAge: 0,
  staleWhileRevalidate: 0,
  defaultKeyFields: ['id'] as readonly string[],
  invalidateOnMutation: true,
  cacheErrors: false,
  incremental: 'bypass',
  dynamicHints: true,
  maxEntryBytes: 2 ** 20,
  keyPrefix: 'strata',
  header: 'x-strata-cache',
  cacheControlHeader: true,
  etag: true,
  debug: false,
  singleFlight: true,
  /** How long a request waits for an identical execution in flight (`singleFlight.maxWaitMs`). */
  singleFlightMaxWaitMs: 30_000,
} as const
