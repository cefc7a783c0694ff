import type { Plugin } from '@envelop/core'
import type { ExecutionArgs, ExecutionResult, GraphQLObjectType, GraphQLSchema } from 'graphql'
import pino, { type Logger } from 'pino'
import { analyzeResult } from '../entities/analyze.js'
import { type CollectScope, fieldsFor } from '../entities/collect.js'
import { collectionTag, tagsForEntityChange, tagsForTypeChange } from '../entities/tags.js'
import { InvalidationClock } from '../invalidation/clock.js'
import { deriveKey } from '../key/key.js'
import {
  type BypassReason,
  bump,
  emptyStats,
  type SkipReason,
  type StrataStats,
} from '../observability/stats.js'
import {
  type RequestInfo,
  type StrataContext,
  type StrataOptions,
  strataDefaults,
  validateOptions,
} from '../options.js'
import { cacheablePolicy } from '../policy/policy.js'
import { memoryTier } from '../tiers/memory.js'
import type { CacheEntry } from '../tiers/tier.js'
import { isPromise } from '../tiers/tier.js'
import { TieredCache, type TieredHit } from '../tiers/tiered.js'
import { resultFromBody, withBody } from './cached-result.js'
import { HttpReporter, type ResponsePayload } from './http.js'
import { type OperationFacts, SchemaState } from './schema-state.js'
import { SingleFlight } from './single-flight.js'

/** Programmatic control over a Strata instance. */
export interface StrataHandle {
  /** Invalidates entries carrying any of `tags` in every tier; resolves removed counts per tier. */
  invalidateTags(tags: readonly string[]): Promise<Record<string, number>>
  /** Invalidates entities (and the collections of their type): e.g. `('Post', ['1', '2'])`. */
  invalidateEntities(typeName: string, ids: readonly unknown[]): Promise<Record<string, number>>
  /** Invalidates everything that depends on the given types. */
  invalidateTypes(typeNames: readonly string[]): Promise<Record<string, number>>
  /** Removes every entry of `tenant`, or every entry when omitted. */
  clear(tenant?: string | null): Promise<Record<string, number>>
  /** A snapshot of the counters. */
  stats(): StrataStats
  readonly cache: TieredCache
  /** Closes the tiers (timers, connections). */
  close(): Promise<void>
}

/** The plugin `useStrata` returns: an Envelop plugin (with Yoga hooks) plus its handle. */
export type StrataPlugin = Plugin<AnyContext> & {
  onResponse(payload: ResponsePayload): void
  readonly strata: StrataHandle
}

// biome-ignore lint/complexity/noBannedTypes: `{}` is Envelop's own default plugin context
type AnyContext = {}

/**
 * Creates the Strata response-cache plugin for Envelop and GraphQL Yoga.
 *
 * @example
 * ```ts
 * createYoga({ schema, plugins: [useStrata({ tenant: ({ context }) => context.tenantId })] })
 * ```
 */
export function useStrata<TContext = StrataContext>(options: StrataOptions<TContext>): StrataPlugin {
  validateOptions(options)
  const logger: Logger = (options.logger ?? pino({ level: 'silent' })).child({ component: 'strata' })
  const cache = new TieredCache(options.tiers ?? [memoryTier()], logger)
  const settings = { ...strataDefaults, ...definedOnly(options) }
  const tenantOf = options.tenant
  const http = new HttpReporter(settings.header, settings.cacheControlHeader, tenantOf === false)
  const clock = new InvalidationClock()
  const flights = new SingleFlight()
  const stats = emptyStats()
  const schemas = new WeakMap<GraphQLSchema, SchemaState>()
  let warnedNoTenant = false

  const schemaState = (schema: GraphQLSchema): SchemaState => {
    let state = schemas.get(schema)
    if (!state) {
      state = new SchemaState(
        schema,
        {
          defaultMaxAge: settings.defaultMaxAge,
          hints: options.hints ?? {},
          keyFields: options.keyFields ?? {},
          defaultKeyFields: settings.defaultKeyFields,
          invalidates: options.invalidates ?? {},
        },
        options.schemaVersion,
      )
      schemas.set(schema, state)
      logger.debug({ schemaVersion: state.version }, 'strata: schema loaded')
    }
    return state
  }

  const invalidateTags = async (tags: readonly string[]): Promise<Record<string, number>> => {
    if (tags.length === 0) return {}
    clock.invalidated(tags)
    flights.detachAll()
    stats.invalidations++
    stats.invalidatedTags += tags.length
    const removed = await cache.invalidate(tags)
    logger.debug({ tags: tags.length, removed }, 'strata: invalidated')
    return removed
  }

  const bypass = (context: unknown, reason: BypassReason): void => {
    bump(stats.bypasses, reason)
    http.record(context, { status: 'BYPASS', httpPolicy: null })
  }

  const serveHit = (hit: TieredHit, context: unknown, setResult: (result: ExecutionResult) => void): void => {
    stats.hits++
    bump(stats.hitsByTier, hit.tier)
    const now = Date.now()
    const ttl = Math.max(0, Math.floor((hit.entry.expiresAt - now) / 1000))
    http.record(context, {
      status: 'HIT',
      httpPolicy: ttl > 0 ? { maxAge: ttl, scope: hit.entry.scope } : null,
    })
    const result = resultFromBody(hit.entry.body)
    if (settings.debug) {
      result.extensions = {
        strata: { hit: true, tier: hit.tier, ttl, age: Math.floor((now - hit.entry.createdAt) / 1000) },
      }
    }
    setResult(result)
  }

  /** Runs a miss: executes the rewritten document, then strips, analyses and stores. */
  const executeMiss = (
    payload: Parameters<NonNullable<Plugin<AnyContext>['onExecute']>>[0],
    facts: OperationFacts,
    state: SchemaState,
    key: string,
    tenant: string | null,
    session: string | null,
  ) => {
    stats.misses++
    const flight = settings.singleFlight ? flights.lead(key) : undefined
    const start = clock.begin()
    let finished = false
    const finish = (body: string | undefined): void => {
      if (finished) return
      finished = true
      clock.end(start)
      flight?.land(body)
    }
    const { executeFn } = payload
    payload.setExecuteFn((args: ExecutionArgs) => {
      try {
        const result = executeFn({ ...args, document: facts.rewritten })
        if (isPromise(result)) result.catch(() => finish(undefined))
        return result
      } catch (error) {
        finish(undefined)
        throw error
      }
    })
    return {
      onExecuteDone({
        args,
        result,
        setResult,
      }: {
        args: ExecutionArgs
        result: unknown
        setResult: (r: ExecutionResult) => void
      }) {
        try {
          if (!isExecutionResult(result)) return
          const rootType = state.hints.schema.getQueryType() as GraphQLObjectType
          const analysis = analyzeResult(
            result.data,
            rootType,
            facts.rootGroup(),
            state.hints,
            collectScope(state, facts, args),
          )
          const stripped: ExecutionResult = { data: analysis.data }
          if (result.errors) stripped.errors = result.errors
          if (result.extensions) stripped.extensions = result.extensions
          const policy = cacheablePolicy(analysis.policy)
          const hasErrors = (result.errors?.length ?? 0) > 0
          let skip: SkipReason | undefined
          if (!analysis.complete) skip = 'not-analysable'
          else if (hasErrors && !settings.cacheErrors) skip = 'errors'
          else if (!policy) skip = 'uncacheable'
          else if (policy.scope === 'PRIVATE' && session === null) skip = 'private-no-session'
          else if (clock.isStale(start, analysis.tags)) skip = 'invalidated-during-execution'
          const body = JSON.stringify(
            result.errors ? { errors: stripped.errors, data: stripped.data } : { data: stripped.data },
          )
          const size = Buffer.byteLength(body)
          if (skip === undefined && size > settings.maxEntryBytes) skip = 'too-large'
          http.record(args.contextValue, { status: 'MISS', httpPolicy: hasErrors ? null : policy })
          if (skip !== undefined) {
            bump(stats.skippedStores, skip)
          } else if (policy) {
            const now = Date.now()
            const entry: CacheEntry = {
              body,
              size,
              tags: [...analysis.tags],
              tenant,
              operationName: facts.operation.name?.value ?? null,
              createdAt: now,
              expiresAt: now + policy.maxAge * 1000,
              scope: policy.scope,
            }
            cache.set(key, entry)
            stats.stores++
          }
          if (settings.debug)
            stripped.extensions = { ...stripped.extensions, strata: { hit: false, ttl: policy?.maxAge ?? 0 } }
          setResult(stripped.errors || stripped.extensions ? stripped : withBody(stripped, body))
          finish(analysis.complete && !hasErrors ? body : undefined)
        } finally {
          finish(undefined)
        }
      },
    }
  }

  const onMutation = (
    payload: Parameters<NonNullable<Plugin<AnyContext>['onExecute']>>[0],
    facts: OperationFacts,
    state: SchemaState,
  ) => {
    const mutationType = state.hints.schema.getMutationType()
    if (!mutationType) return undefined
    const { executeFn } = payload
    payload.setExecuteFn((args: ExecutionArgs) => executeFn({ ...args, document: facts.rewritten }))
    return {
      async onExecuteDone({
        args,
        result,
        setResult,
      }: {
        args: ExecutionArgs
        result: unknown
        setResult: (r: ExecutionResult) => void
      }) {
        if (!isExecutionResult(result)) return
        const scope = collectScope(state, facts, args)
        const group = facts.rootGroup()
        const analysis = analyzeResult(result.data, mutationType, group, state.hints, scope)
        setResult({ ...result, data: analysis.data })
        const tags = new Set<string>()
        if (settings.invalidateOnMutation) {
          for (const [tag, typeName] of analysis.entities) {
            tags.add(tag)
            tags.add(collectionTag(typeName))
          }
        }
        // Declared invalidations fire only for root fields that resolved without error: a
        // failed (e.g. unauthorized) mutation must not let its caller purge the cache.
        const failed = new Set(result.errors?.map((error) => error.path?.[0]))
        for (const [responseKey, { fieldName }] of fieldsFor(group, mutationType, scope)) {
          if (!result.data || !(responseKey in result.data) || failed.has(responseKey)) continue
          for (const typeName of state.hints.invalidatedTypes(fieldName) ?? []) {
            for (const tag of tagsForTypeChange(typeName)) tags.add(tag)
          }
        }
        await invalidateTags([...tags])
      },
    }
  }

  const plugin: StrataPlugin = {
    onSchemaChange({ schema }) {
      schemaState(schema)
    },
    onExecute(payload) {
      const { args } = payload
      const context = args.contextValue
      const state = schemaState(args.schema)
      const facts = state.operation(args.document, args.operationName)
      if (!facts) return bypass(context, 'no-operation')
      const kind = facts.operation.operation
      if (kind === 'mutation') {
        bypass(context, 'mutation')
        return onMutation(payload as never, facts, state)
      }
      if (kind === 'subscription') return bypass(context, 'subscription')
      if (facts.incremental) return bypass(context, 'incremental')

      const variables = (args.variableValues ?? {}) as Record<string, unknown>
      const info: RequestInfo<TContext> = {
        context: context as TContext,
        document: args.document,
        operationName: args.operationName ?? null,
        variables,
      }
      if (options.enabled && !options.enabled(info)) return bypass(context, 'disabled')
      let tenant: string | null = null
      if (tenantOf !== false) {
        const value = tenantOf(info)
        if (value === null || value === undefined) {
          if (!warnedNoTenant) {
            warnedNoTenant = true
            logger.warn(
              'strata: request without a tenant while tenancy is on; bypassing the cache (logged once, counted in stats.bypasses["no-tenant"])',
            )
          }
          return bypass(context, 'no-tenant')
        }
        tenant = String(value)
      }
      let session: string | null = null
      if (facts.mayBePrivate) {
        const value = options.session?.(info)
        if (value === null || value === undefined) return bypass(context, 'private-no-session')
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

      const afterLookup = (hit: TieredHit | undefined) => {
        if (hit) return serveHit(hit, context, payload.setResultAndStopExecution)
        const inFlight = settings.singleFlight ? flights.join(key) : undefined
        if (!inFlight) return executeMiss(payload as never, facts, state, key, tenant, session)
        return inFlight.then((body) => {
          if (body === undefined) return executeMiss(payload as never, facts, state, key, tenant, session)
          stats.coalesced++
          http.record(context, { status: 'MISS', httpPolicy: null })
          payload.setResultAndStopExecution(resultFromBody(body))
          return undefined
        })
      }
      const lookup = cache.get(key)
      return isPromise(lookup) ? lookup.then(afterLookup) : afterLookup(lookup)
    },
    onResponse(payload) {
      http.onResponse(payload)
    },
    strata: {
      invalidateTags,
      invalidateEntities: (typeName, ids) =>
        invalidateTags(ids.flatMap((id) => tagsForEntityChange(typeName, [id]))),
      invalidateTypes: (typeNames) => invalidateTags(typeNames.flatMap(tagsForTypeChange)),
      async clear(tenant) {
        clock.flushed()
        flights.detachAll()
        return cache.clear(tenant)
      },
      stats: () => structuredClone(stats),
      cache,
      close: () => cache.close(),
    },
  }
  return plugin
}

function collectScope(state: SchemaState, facts: OperationFacts, args: ExecutionArgs): CollectScope {
  return {
    schema: state.hints.schema,
    fragments: facts.fragments,
    variables: (args.variableValues ?? {}) as Record<string, unknown>,
    operation: facts.rewrittenOperation,
  }
}

function isExecutionResult(value: unknown): value is ExecutionResult {
  return typeof value === 'object' && value !== null && !(Symbol.asyncIterator in value)
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>
}
