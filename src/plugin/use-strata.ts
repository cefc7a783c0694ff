import type { Plugin } from '@envelop/core'
import type { GraphQLSchema } from 'graphql'
import pino, { type Logger } from 'pino'
import { adminResolvers } from '../admin/admin.js'
import { withAdminField } from '../admin/schema.js'
import type { ChangeSourceStatus } from '../changes/source.js'
import { definedOnly } from '../defined-only.js'
import { inlineIncremental } from '../entities/rewrite.js'
import { tagsForEntityChange, tagsForTypeChange } from '../entities/tags.js'
import { deriveKey, isWellFormedTenant } from '../key/key.js'
import { createMetrics } from '../observability/metrics.js'
import type { StrataStats } from '../observability/stats.js'
import { endLookup, loggedTracer } from '../observability/tracing.js'
import { type RequestInfo, type StrataContext, type StrataOptions, strataDefaults } from '../options.js'
import { cacheTag } from '../policy/cache-tags.js'
import { instrumentResolvers } from '../policy/dynamic.js'
import { breakerDefaults } from '../tiers/breaker.js'
import { memoryTier } from '../tiers/memory.js'
import { type CacheBus, type CacheEntry, type CacheTier, isPromise } from '../tiers/tier.js'
import { TieredCache, type TieredHit } from '../tiers/tiered.js'
import { validateOptions } from '../validate-options.js'
import { type EngineSettings, StrataEngine } from './engine.js'
import type { AnyContext } from './execution.js'
import { HttpReporter, type ResponsePayload, type ResultProcessPayload } from './http.js'
import { executeMiss } from './miss.js'
import { watchMutation } from './mutation.js'
import { revalidate } from './revalidate.js'
import { SchemaState } from './schema-state.js'
import { serveCoalesced, serveHit } from './serve.js'
import { warm, type YogaLike } from './warm.js'

/** Why a request's tenant keeps it out of the cache. */
interface TenantBypass {
  readonly reason: 'no-tenant' | 'ill-formed-tenant'
}
const NO_TENANT: TenantBypass = { reason: 'no-tenant' }
const ILL_FORMED_TENANT: TenantBypass = { reason: 'ill-formed-tenant' }

/** Programmatic control over a Strata instance. */
export interface StrataHandle {
  /** Invalidates entries carrying any of `tags` in every tier; resolves removed counts per tier. */
  invalidateTags(tags: readonly string[]): Promise<Record<string, number>>
  /**
   * Invalidates entities (and the collections of their type): e.g. `('Post', ['1', '2'])`. An entity
   * with a composite key is its key values in `keyFields` order, `('Line', [['7', 1]])`, or the
   * same joined with ':' (`'7:1'`).
   */
  invalidateEntities(typeName: string, ids: readonly unknown[]): Promise<Record<string, number>>
  /** Invalidates everything that depends on the given types. */
  invalidateTypes(typeNames: readonly string[]): Promise<Record<string, number>>
  /**
   * Invalidates the entries carrying any of these cache tags (`@cacheTag`), as rendered: `'post-stats'`,
   * `'product-42'`; `'product-*'` for every rendering of `product-{args.id}`.
   */
  invalidateCacheTags(tags: readonly string[]): Promise<Record<string, number>>
  /** Removes every entry of `tenant`, or every entry when omitted. */
  clear(tenant?: string | null): Promise<Record<string, number>>
  /** A snapshot of the counters. */
  stats(): StrataStats
  readonly cache: TieredCache
  /** Closes the tiers, the bus and the change source (timers, connections; never your clients). */
  close(): Promise<void>
  /**
   * Resolves once the invalidation bus and the change source have started and warming ran: listening,
   * or (logged) still retrying an unreachable service, in which case local tiers stay unused until
   * it answers (`cache.localTrusted`). Await it before serving traffic.
   */
  ready(): Promise<void>
  /** The database change source's state, if one is configured. */
  changes(): ChangeSourceStatus | undefined
}

/** The plugin `useStrata` returns: an Envelop plugin (with Yoga hooks) plus its handle. */
export type StrataPlugin = Required<Pick<Plugin<AnyContext>, 'onSchemaChange' | 'onExecute'>> & {
  onResultProcess(payload: ResultProcessPayload): void
  onResponse(payload: ResponsePayload): void
  /** Yoga hands the server over (used for warming). */
  onYogaInit(payload: { yoga: YogaLike }): void
  readonly strata: StrataHandle
}

/**
 * Creates the Strata response-cache plugin for Envelop and GraphQL Yoga.
 *
 * @example
 * ```ts
 * createYoga({ schema, plugins: [useStrata({ tenant: ({ context }) => context.request.headers.get('x-tenant-id') })] })
 * ```
 */
export function useStrata<TContext = StrataContext>(options: StrataOptions<TContext>): StrataPlugin {
  validateOptions(options)
  const logger: Logger = (options.logger ?? pino({ level: 'silent' })).child({ component: 'strata' })
  const settings = { ...strataDefaults, ...definedOnly(options) }
  const tenantOf = options.tenant
  const tiers = options.tiers ?? [memoryTier()]
  const bus = options.bus === false ? undefined : (options.bus ?? defaultBus(tiers))
  const engine = new StrataEngine(
    new TieredCache(tiers, logger, options.breaker),
    new HttpReporter({
      header: settings.header,
      cacheControl: settings.cacheControlHeader,
      allowPublic: tenantOf === false,
      etag: settings.etag,
    }),
    {
      ...settings,
      // The engine hands it what it was given for this request: a `RequestInfo<TContext>`.
      shouldStore: options.shouldStore as EngineSettings['shouldStore'],
      singleFlight: options.singleFlight !== false,
      flightWaitMs:
        (typeof options.singleFlight === 'object' ? options.singleFlight.maxWaitMs : undefined) ??
        strataDefaults.singleFlightMaxWaitMs,
      busTimeoutMs: options.breaker?.invalidateTimeoutMs ?? breakerDefaults.invalidateTimeoutMs,
    },
    logger,
    bus,
  )
  if (options.metrics) engine.observer = createMetrics(options.metrics, engine.cache, options.changes)
  engine.tracer = options.tracer && loggedTracer(options.tracer, logger)
  const started = Promise.all([
    engine.startBus(),
    options.changes ? engine.startChanges(options.changes) : undefined,
  ])
  const adminField = options.admin ? (options.admin.fieldName ?? '_strata') : undefined
  const admin = options.admin ? adminResolvers(engine, options.admin, options.changes) : undefined
  const extended = new WeakSet<GraphQLSchema>()

  // Warming runs through Yoga once it exists and the invalidation sources are up.
  let yoga: YogaLike | undefined
  let warmed: Promise<unknown> = Promise.resolve()
  const runWarm = () => {
    if (!options.warm || !yoga) return Promise.resolve()
    const server = yoga
    warmed = started.then(() => warm(server, options.warm?.operations ?? [], logger))
    return warmed
  }
  if (options.warm?.afterFlush) engine.afterClear = () => void runWarm()
  const schemas = new WeakMap<GraphQLSchema, SchemaState>()
  let warnedNoTenant = false
  const wrongHintFields = new Set<string>() // bounded by the schema's fields
  const wrongHint = (field: string, problem: string) => {
    if (wrongHintFields.has(field)) return
    wrongHintFields.add(field)
    logger.warn({ field }, `strata: ${field} set a wrong cache hint: ${problem} (logged once per field)`)
  }
  let warnedIllFormed = false

  const schemaState = (schema: GraphQLSchema): SchemaState => {
    let state = schemas.get(schema)
    if (!state) {
      // The admin field is never stored, wherever a document reaches it: a field returning Query
      // (`root: Query!`) can select it below the root, where the bypass for admin operations does
      // not look, and an admin's listing must not be served to whoever sends the same document.
      const queryType = schema.getQueryType()
      const adminCoordinate =
        adminField && queryType?.getFields()[adminField] ? `${queryType.name}.${adminField}` : undefined
      const hintOptions = {
        defaultMaxAge: settings.defaultMaxAge,
        hints: adminCoordinate
          ? { ...options.hints, [adminCoordinate]: { maxAge: 0 } }
          : (options.hints ?? {}),
        keyFields: options.keyFields ?? {},
        defaultKeyFields: settings.defaultKeyFields,
        invalidates: options.invalidates ?? {},
        cacheTags: options.cacheTags ?? {},
      }
      state = new SchemaState(schema, hintOptions, options.schemaVersion, adminField)
      if (settings.dynamicHints) instrumentResolvers(schema, state.hints, wrongHint)
      schemas.set(schema, state)
      logger.debug({ schemaVersion: state.version }, 'strata: schema loaded')
    }
    return state
  }

  /**
   * The request's tenant: a string, `null` with tenancy off, or why the request bypasses the cache:
   * no tenant, or one that is not well-formed Unicode (it would share entries with another).
   */
  const tenantFor = (info: RequestInfo<TContext>): string | null | TenantBypass => {
    if (tenantOf === false) return null
    const value = tenantOf(info)
    if (value === null || value === undefined) {
      if (!warnedNoTenant) {
        warnedNoTenant = true
        logger.warn(
          'strata: request without a tenant while tenancy is on; bypassing the cache (logged once, counted in stats().bypasses["no-tenant"])',
        )
      }
      return NO_TENANT
    }
    const tenant = String(value)
    if (isWellFormedTenant(tenant)) return tenant
    if (!warnedIllFormed) {
      warnedIllFormed = true
      logger.warn(
        'strata: tenant is not well-formed Unicode (a lone surrogate); bypassing the cache (logged once, counted in stats().bypasses["ill-formed-tenant"])',
      )
    }
    return ILL_FORMED_TENANT
  }

  const onExecute: NonNullable<Plugin<AnyContext>['onExecute']> = (payload) => {
    const { args } = payload
    const context = args.contextValue
    const state = schemaState(args.schema)
    let facts = state.operation(args.document, args.operationName)
    if (!facts) return engine.bypass(context, 'no-operation', '(none)')
    const operation = args.operationName ?? facts.operation.name?.value ?? '(anonymous)'
    if (facts.admin) return engine.bypass(context, 'admin', operation)
    const kind = facts.operation.operation
    if (kind === 'mutation') {
      engine.bypass(context, 'mutation', operation)
      return watchMutation(engine, payload, facts, state)
    }
    if (kind === 'subscription') return engine.bypass(context, 'subscription', operation)
    const inlined = facts.incremental
    if (inlined) {
      if (settings.incremental !== 'inline') return engine.bypass(context, 'incremental', operation)
      // Executed, stored and served as the same document without @defer and @stream (same text, same key).
      facts = state.operation(inlineIncremental(args.document), args.operationName)
      if (!facts) return engine.bypass(context, 'no-operation', operation)
    }

    const variables = (args.variableValues ?? {}) as Record<string, unknown>
    const info: RequestInfo<TContext> = {
      context: context as TContext,
      document: args.document,
      operationName: args.operationName ?? null,
      variables,
    }
    if (options.enabled && !options.enabled(info)) return engine.bypass(context, 'disabled', operation)
    const tenant = tenantFor(info)
    if (typeof tenant === 'object' && tenant !== null) return engine.bypass(context, tenant.reason, operation)
    let session: string | null = null
    if (facts.mayBePrivate) {
      const value = options.session?.(info)
      if (value === null || value === undefined)
        return engine.bypass(context, 'private-no-session', operation)
      session = String(value)
    }
    const key = deriveKey({
      prefix: settings.keyPrefix,
      tenant,
      source: facts.source,
      operationName: args.operationName,
      variables,
      session,
      schemaVersion: state.version,
      extra: options.extraKeyData?.(info),
    })
    const miss = { facts, state, key, tenant, session, operation, info, inlined }
    // A forced refresh leads a new flight: requests arriving after it share its fresh result.
    if (options.refresh?.(info)) return executeMiss(engine, payload, miss)

    const span = engine.tracer?.startSpan('strata.lookup', {
      attributes: { 'graphql.operation.name': operation },
    })
    const afterLookup = (hit: TieredHit | undefined) => {
      if (hit) {
        const stale = serveHit(engine, hit, context, payload.setResultAndStopExecution, operation)
        if (span) endLookup(span, stale ? 'STALE' : 'HIT', hit.tier)
        if (stale) revalidate(engine, payload.executeFn, args, miss, hit.entry)
        return
      }
      if (span) endLookup(span, 'MISS', undefined)
      const inFlight = engine.settings.singleFlight
        ? engine.flights.join(key, engine.settings.flightWaitMs)
        : undefined
      if (!inFlight) return executeMiss(engine, payload, miss)
      return inFlight.then((entry) => {
        if (entry === undefined) return executeMiss(engine, payload, miss)
        return serveCoalesced(engine, entry, context, payload.setResultAndStopExecution)
      })
    }
    // Local tiers answer synchronously, so nothing can be invalidated during their lookup.
    if (!engine.cache.hasShared) {
      const local = engine.cache.get(key)
      return isPromise(local) ? local.then(afterLookup) : afterLookup(local)
    }
    // A shared tier answers asynchronously: an entry it read before an invalidation that
    // completed meanwhile must be neither served nor promoted.
    const sequence = engine.clock.begin()
    const fresh = (entry: CacheEntry) => !engine.clock.isStale(sequence, entry.tags, entry.tenant)
    const lookup = engine.cache.get(key, fresh, Date.now())
    if (!isPromise(lookup)) {
      engine.clock.end(sequence)
      return afterLookup(lookup)
    }
    return lookup.then((hit) => {
      engine.clock.end(sequence)
      return afterLookup(hit)
    })
  }

  return {
    onSchemaChange: ({ schema, replaceSchema }) => {
      if (admin && adminField && !extended.has(schema) && !schema.getQueryType()?.getFields()[adminField]) {
        const withAdmin = withAdminField(schema, adminField, admin.query, admin.mutation)
        extended.add(withAdmin)
        schemaState(withAdmin)
        replaceSchema(withAdmin)
        return
      }
      schemaState(schema)
    },
    onYogaInit: ({ yoga: server }: { yoga: YogaLike }) => {
      yoga = server
      void runWarm()
    },
    onExecute,
    onResultProcess: (payload) => engine.http.onResultProcess(payload),
    onResponse: (payload) => engine.http.onResponse(payload),
    strata: {
      invalidateTags: (tags) => engine.invalidateTags(tags),
      invalidateEntities: (typeName, ids) =>
        engine.invalidateTags(
          ids.flatMap((id) => tagsForEntityChange(typeName, Array.isArray(id) ? id : [id])),
        ),
      invalidateTypes: (typeNames) => engine.invalidateTags(typeNames.flatMap(tagsForTypeChange)),
      invalidateCacheTags: (tags) => engine.invalidateTags(tags.map(cacheTag)),
      clear: async (tenant) => {
        if (typeof tenant === 'string' && !isWellFormedTenant(tenant))
          throw new TypeError(`strata.clear: tenant ${JSON.stringify(tenant)} is not well-formed Unicode`)
        return engine.clear(tenant)
      },
      stats: () => structuredClone(engine.stats),
      cache: engine.cache,
      changes: () => options.changes?.status(),
      ready: async () => {
        await started
        await warmed
      },
      close: async () => {
        await options.changes?.close()
        await bus?.close()
        await engine.cache.close()
      },
    },
  }
}

/**
 * The bus over the first shared tier that offers one (Redis pub/sub, PostgreSQL NOTIFY), when
 * there are local tiers to keep coherent; none otherwise.
 */
function defaultBus(tiers: readonly CacheTier[]): CacheBus | undefined {
  if (!tiers.some((tier) => !tier.shared)) return undefined
  return tiers.find((tier) => tier.createBus)?.createBus?.()
}
