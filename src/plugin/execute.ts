import type { ExecutionArgs, ExecutionResult, GraphQLObjectType } from 'graphql'
import { analyzeResult } from '../entities/analyze.js'
import { fieldsFor } from '../entities/collect.js'
import { collectionTag, tagsForTypeChange } from '../entities/tags.js'
import { bump, type SkipReason } from '../observability/stats.js'
import { cacheablePolicy } from '../policy/policy.js'
import { isPromise } from '../tiers/tier.js'
import { withBody } from './cached-result.js'
import { collectScope, type ExecutePayload, type StrataEngine } from './engine.js'
import type { OperationFacts, SchemaState } from './schema-state.js'

/** What `onExecuteDone` receives, narrowed to what Strata uses. */
interface DonePayload {
  args: ExecutionArgs
  result: unknown
  setResult: (result: ExecutionResult) => void
}

/** A query that missed every tier, with its identity. */
export interface Miss {
  readonly facts: OperationFacts
  readonly state: SchemaState
  readonly key: string
  readonly tenant: string | null
  readonly session: string | null
}

/**
 * Executes a miss: runs the rewritten document (leading a single flight), then strips
 * what the rewrite added, computes policy and tags, and stores the serialized body
 * unless a rule forbids it. The flight always lands, whatever happens.
 */
export function executeMiss(engine: StrataEngine, payload: ExecutePayload, miss: Miss) {
  const { settings, stats, clock } = engine
  stats.misses++
  const flight = settings.singleFlight ? engine.flights.lead(miss.key) : undefined
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
      const result = executeFn({ ...args, document: miss.facts.rewritten })
      if (isPromise(result)) result.catch(() => finish(undefined))
      return result
    } catch (error) {
      finish(undefined)
      throw error
    }
  })
  return {
    onExecuteDone({ args, result, setResult }: DonePayload) {
      try {
        if (isExecutionResult(result)) finish(store(engine, miss, start, args, result, setResult))
      } finally {
        finish(undefined)
      }
    },
  }
}

/** Analyses and stores one executed result; returns the body waiters may share. */
function store(
  engine: StrataEngine,
  { facts, state, key, tenant, session }: Miss,
  start: number,
  args: ExecutionArgs,
  result: ExecutionResult,
  setResult: (result: ExecutionResult) => void,
): string | undefined {
  const { settings, stats } = engine
  const rootType = state.hints.schema.getQueryType() as GraphQLObjectType
  const scope = collectScope(state, facts, args)
  const analysis = analyzeResult(result.data, rootType, facts.rootGroup(), state.hints, scope)
  const stripped: ExecutionResult = { data: analysis.data }
  if (result.errors) stripped.errors = result.errors
  if (result.extensions) stripped.extensions = result.extensions
  const policy = cacheablePolicy(analysis.policy)
  const hasErrors = (result.errors?.length ?? 0) > 0
  const body = JSON.stringify(
    hasErrors ? { errors: stripped.errors, data: stripped.data } : { data: stripped.data },
  )
  const size = Buffer.byteLength(body)

  let skip: SkipReason | undefined
  if (!analysis.complete) skip = 'not-analysable'
  else if (hasErrors && !settings.cacheErrors) skip = 'errors'
  else if (!policy) skip = 'uncacheable'
  else if (policy.scope === 'PRIVATE' && session === null) skip = 'private-no-session'
  else if (engine.clock.isStale(start, analysis.tags)) skip = 'invalidated-during-execution'
  else if (size > settings.maxEntryBytes) skip = 'too-large'

  engine.http.record(args.contextValue, { status: 'MISS', httpPolicy: hasErrors ? null : policy })
  if (skip !== undefined || !policy) {
    if (skip) bump(stats.skippedStores, skip)
  } else {
    const now = Date.now()
    engine.cache.set(key, {
      body,
      size,
      tags: [...analysis.tags],
      tenant,
      operationName: facts.operation.name?.value ?? null,
      scope: policy.scope,
      createdAt: now,
      expiresAt: now + policy.maxAge * 1000,
    })
    stats.stores++
  }
  if (settings.debug) {
    stripped.extensions = { ...stripped.extensions, strata: { hit: false, ttl: policy?.maxAge ?? 0 } }
  }
  setResult(stripped.errors || stripped.extensions ? stripped : withBody(stripped, body))
  return analysis.complete && !hasErrors ? body : undefined
}

/**
 * Lets a mutation run on the rewritten document, then invalidates what it changed
 * (entities in its result, types its fields declare) before its response is sent.
 */
export function watchMutation(
  engine: StrataEngine,
  payload: ExecutePayload,
  facts: OperationFacts,
  state: SchemaState,
) {
  const mutationType = state.hints.schema.getMutationType()
  if (!mutationType) return undefined
  const { executeFn } = payload
  payload.setExecuteFn((args: ExecutionArgs) => executeFn({ ...args, document: facts.rewritten }))
  return {
    async onExecuteDone({ args, result, setResult }: DonePayload) {
      if (!isExecutionResult(result)) return
      const scope = collectScope(state, facts, args)
      const group = facts.rootGroup()
      const analysis = analyzeResult(result.data, mutationType, group, state.hints, scope)
      setResult({ ...result, data: analysis.data })
      const tags = new Set<string>()
      if (engine.settings.invalidateOnMutation) {
        for (const [tag, typeName] of analysis.entities) {
          tags.add(tag)
          tags.add(collectionTag(typeName))
        }
      }
      // Declared invalidations fire only for root fields that resolved without error: a
      // failed (e.g. unauthorized) mutation must not let its caller purge the cache.
      const failed = new Set(result.errors?.map((error) => error.path?.[0]))
      for (const [responseKey, { fieldName }] of fieldsFor(group, mutationType, scope).fields) {
        if (!result.data || !(responseKey in result.data) || failed.has(responseKey)) continue
        for (const typeName of state.hints.invalidatedTypes(fieldName) ?? []) {
          for (const tag of tagsForTypeChange(typeName)) tags.add(tag)
        }
      }
      await engine.invalidateTags([...tags])
    },
  }
}

function isExecutionResult(value: unknown): value is ExecutionResult {
  return typeof value === 'object' && value !== null && !(Symbol.asyncIterator in value)
}
