import { type ExecutionArgs, type ExecutionResult, GraphQLError, type GraphQLObjectType } from 'graphql'
import { analyzeResult } from '../entities/analyze.js'
import { inlineIncremental } from '../entities/rewrite.js'
import { bump, type SkipReason } from '../observability/stats.js'
import type { RequestInfo } from '../options.js'
import { type HintRecorder, recordHints, stopRecording } from '../policy/dynamic.js'
import { type CacheScope, cacheablePolicy } from '../policy/policy.js'
import { type CacheEntry, isPromise } from '../tiers/tier.js'
import { withBody } from './cached-result.js'
import type { StrataEngine } from './engine.js'
import {
  collectScope,
  type DonePayload,
  type ExecutePayload,
  isExecutionResult,
  keepAlive,
} from './execution.js'
import type { Outcome } from './http.js'
import type { OperationFacts, SchemaState } from './schema-state.js'
import type { Flight } from './single-flight.js'

/** A query that missed every tier, with its identity. */
export interface Miss {
  readonly facts: OperationFacts
  readonly state: SchemaState
  readonly key: string
  readonly tenant: string | null
  readonly session: string | null
  /** Operation name for stats and metrics. */
  readonly operation: string
  /** What the `enabled`, `refresh` and `shouldStore` options are told about the request. */
  readonly info: RequestInfo<unknown>
  /** The client's document uses `@defer`/`@stream`, inlined (`incremental: 'inline'`) wherever it runs. */
  readonly inlined: boolean
}

/**
 * How long after its execution settles a run waits for `onExecuteDone` before it gives
 * up storing and lets waiters execute on their own (a plugin before Strata threw).
 */
const DONE_GRACE_MS = 1000

/**
 * Executes a miss: runs the rewritten document (leading a single flight), then strips
 * what the rewrite added, computes policy and tags, and stores the serialized body
 * unless a rule forbids it.
 */
export function executeMiss(engine: StrataEngine, payload: ExecutePayload, miss: Miss) {
  engine.recordMiss(miss.operation)
  const run = new MissRun(engine, miss)
  const { executeFn } = payload
  payload.setExecuteFn((args: ExecutionArgs) => run.execute(executeFn, args))
  return { onExecuteDone: (done: DonePayload) => run.done(done) }
}

/**
 * One miss's execution. The flight and the invalidation clock start only when execution
 * really starts (a later plugin may stop or fail the request before), and the run always
 * ends: in `onExecuteDone`, when execution throws, or after a grace period.
 */
class MissRun {
  #flight: Flight | undefined
  /** The rewritten document was executed (its result, whenever it comes, must be stripped). */
  #ran = false
  #start = 0
  #startedAt = 0
  #state: 'idle' | 'running' | 'ended' = 'idle'
  /** The rewritten document's result had errors in fields only the rewrite asked for. */
  #foreign = false
  #timer: ReturnType<typeof setTimeout> | undefined
  /** Hints the rewritten document's resolvers set (`info.cacheControl`). */
  #hints: HintRecorder | undefined

  constructor(
    readonly engine: StrataEngine,
    readonly miss: Miss,
  ) {}

  execute(executeFn: ExecutePayload['executeFn'], args: ExecutionArgs) {
    const { engine, miss } = this
    this.#state = 'running'
    this.#ran = true
    this.#flight = engine.settings.singleFlight ? engine.flights.lead(miss.key) : undefined
    this.#start = engine.clock.begin()
    this.#startedAt = Date.now()
    if (this.#hints) stopRecording(this.#hints) // a plugin executes again
    if (engine.settings.dynamicHints) {
      this.#hints = recordHints(args.contextValue, miss.facts.rewrittenOperation)
    }
    try {
      const result = this.#own(executeFn, args, executeFn({ ...args, document: miss.facts.rewritten }))
      if (isPromise(result))
        result.then(
          () => this.#arm(),
          () => this.#end(undefined),
        )
      else this.#arm()
      return result
    } catch (error) {
      this.#end(undefined)
      throw error
    }
  }

  done({ args, result, setResult }: DonePayload): void {
    if (!this.#ran) return // not our execution's result
    if (this.#state !== 'running') {
      // Given up on (a plugin before Strata took longer than the grace period): too late to store
      // or share, but the client must still get its own fields only.
      if (!this.#foreign && isExecutionResult(result)) this.#store(args, result, setResult, false)
      return
    }
    clearTimeout(this.#timer)
    let shared: CacheEntry | undefined
    try {
      if (this.#foreign) {
        bump(this.engine.stats.skippedStores, 'added-field-error')
        this.engine.http.record(args.contextValue, { status: 'MISS', httpPolicy: null })
      } else if (isExecutionResult(result)) shared = this.#store(args, result, setResult, true)
    } finally {
      this.#end(shared)
    }
  }

  /**
   * The rewritten document's result, unless a field the rewrite added (a key field the client did
   * not select) failed: its error is not the client's to see, and with a non-null key it nulled an
   * object the client asked for. Then the client's own document runs instead, and nothing is stored.
   */
  #own(
    executeFn: ExecutePayload['executeFn'],
    args: ExecutionArgs,
    result: ReturnType<ExecutePayload['executeFn']>,
  ): ReturnType<ExecutePayload['executeFn']> {
    if (isPromise(result)) return result.then((settled) => this.#own(executeFn, args, settled))
    if (!isExecutionResult(result) || !failedAddedField(this.miss.facts, result)) return result
    this.#foreign = true
    // Inlined as the rewritten document was: the client gets one result, not a stream.
    return executeFn(this.miss.inlined ? { ...args, document: inlineIncremental(args.document) } : args)
  }

  #arm(): void {
    if (this.#state !== 'running') return
    this.#timer = setTimeout(() => this.#end(undefined), DONE_GRACE_MS)
    this.#timer.unref?.()
  }

  #end(shared: CacheEntry | undefined): void {
    if (this.#state === 'ended') return
    const started = this.#state === 'running'
    this.#state = 'ended'
    clearTimeout(this.#timer)
    if (this.#hints) stopRecording(this.#hints)
    if (started) this.engine.clock.end(this.#start)
    this.#flight?.land(shared)
  }

  /**
   * Analyses the result, hands the client its own fields, and stores it unless a rule forbids it or
   * `mayStore` is false; returns the entry when it was stored (waiters may share it).
   */
  #store(
    args: ExecutionArgs,
    result: ExecutionResult,
    setResult: (result: ExecutionResult) => void,
    mayStore: boolean,
  ) {
    const { engine } = this
    if (result.data === undefined) {
      // A request error (variables that do not coerce): nothing executed, nothing to strip or store,
      // and the response keeps its shape (no `data` entry).
      bump(engine.stats.skippedStores, 'errors')
      engine.http.record(args.contextValue, { status: 'MISS', httpPolicy: null })
      return undefined
    }
    const run: RunFacts = { start: this.#start, startedAt: this.#startedAt, hints: this.#hints, mayStore }
    const { stripped, body, policy, skip, entry, written } = settleResult(
      engine,
      this.miss,
      args,
      result,
      run,
    )
    // The response does not wait for the shared tiers' writes; the server keeps them alive.
    if (written) keepAlive(args.contextValue, written)
    // What the result's policy is not known for certain, or what `shouldStore` declined to cache:
    // no cache-control header either.
    const stale =
      skip === 'given-up' ||
      skip === 'invalidated-during-execution' ||
      skip === 'not-analysable' ||
      skip === 'ambiguous-dynamic-hint' ||
      skip === 'declined'
    const outcome: Outcome = {
      status: 'MISS',
      // A result with errors is sent no-store, unless it was stored (`cacheErrors`): its hits send a maxAge.
      httpPolicy: (stripped.errors?.length && !entry) || stale ? null : policy,
      body,
    }
    engine.http.record(args.contextValue, outcome)
    if (engine.settings.debug) {
      stripped.extensions = { ...stripped.extensions, strata: { hit: false, ttl: policy?.maxAge ?? 0 } }
    }
    const served = stripped.errors || stripped.extensions ? stripped : withBody(stripped, body)
    outcome.result = served
    setResult(served)
    return entry
  }
}

/** Whether a field only the rewrite asked for (a key field the client did not select) failed. */
export function failedAddedField(facts: OperationFacts, result: ExecutionResult): boolean {
  const prefix = facts.aliasPrefix
  return (
    result.errors?.some((error) =>
      error.path?.some((segment) => typeof segment === 'string' && segment.startsWith(prefix)),
    ) ?? false
  )
}

/** How one execution of a miss ran, for deciding whether its result may be stored. */
export interface RunFacts {
  /** The invalidation clock's sequence when execution began. */
  readonly start: number
  /** Epoch milliseconds when execution began. */
  readonly startedAt: number
  /** Hints the rewritten document's resolvers set (`info.cacheControl`). */
  readonly hints: HintRecorder | undefined
  readonly mayStore: boolean
}

/** A miss's result made ready for the client, and what became of storing it. */
export interface Settled {
  /** The client's own fields (what the rewrite added stripped), with the result's `extensions`. */
  readonly stripped: ExecutionResult
  /** The serialized data and errors: the body a hit serves. */
  readonly body: string
  readonly policy: { readonly maxAge: number; readonly scope: CacheScope } | null
  /** Why it was not stored, if it was not. */
  readonly skip: SkipReason | undefined
  /** The entry stored, if it was. */
  readonly entry: CacheEntry | undefined
  /** Settles once the asynchronous tiers' writes have (never rejects); none when all were synchronous. */
  readonly written?: Promise<void> | undefined
}

/**
 * Strips what the rewrite added from an executed result (which has `data`), computes its policy and
 * tags, and stores it unless a rule forbids it: counted in `stores` or `skippedStores`.
 */
export function settleResult(
  engine: StrataEngine,
  miss: Miss,
  args: ExecutionArgs,
  result: ExecutionResult,
  run: RunFacts,
): Settled {
  const { facts, state, key, tenant, session } = miss
  const { settings, stats } = engine
  const rootType = state.hints.schema.getQueryType() as GraphQLObjectType
  const scope = collectScope(state, facts, args)
  const recorder = run.hints
  const dynamic = recorder?.fields.size ? recorder.fields : undefined
  const analysis = analyzeResult(result.data, rootType, facts.rootGroup(), state.hints, scope, dynamic)
  // In graphql-js' order (errors first), so that the bytes are those the server sends without Strata.
  const stripped: ExecutionResult = result.errors
    ? { errors: result.errors, data: analysis.data }
    : { data: analysis.data }
  if (result.extensions) stripped.extensions = result.extensions
  const policy = cacheablePolicy(analysis.policy)
  const errors = result.errors ?? []
  const body = JSON.stringify(errors.length > 0 ? { errors, data: stripped.data } : { data: stripped.data })
  const size = Buffer.byteLength(body)

  let skip: SkipReason | undefined
  if (!run.mayStore) skip = 'given-up'
  else if (!analysis.complete) skip = 'not-analysable'
  else if (recorder?.ambiguous) skip = 'ambiguous-dynamic-hint'
  else if (errors.length > 0 && !(settings.cacheErrors && errors.every(isExpectedError))) skip = 'errors'
  else if (!policy) skip = 'uncacheable'
  else if (policy.scope === 'PRIVATE' && session === null) skip = 'private-no-session'
  else if (engine.clock.isStale(run.start, analysis.tags, tenant)) {
    skip = 'invalidated-during-execution'
  } else if (size > settings.maxEntryBytes) skip = 'too-large'
  else if (settings.shouldStore && !userAllows(engine, miss, stripped)) skip = 'declined'

  if (skip !== undefined || !policy) {
    if (skip !== undefined) bump(stats.skippedStores, skip)
    return { stripped, body, policy, skip, entry: undefined }
  }
  const now = Date.now()
  const freshUntil = now + policy.maxAge * 1000
  const grace = settings.staleWhileRevalidate * 1000
  // One literal (no spread, `freshUntil` always present): tiers see entries of a single hidden class.
  const entry: CacheEntry = {
    body,
    size,
    tags: [...analysis.tags],
    tenant,
    operationName: facts.operation.name?.value ?? null,
    scope: policy.scope,
    createdAt: now,
    expiresAt: freshUntil + grace,
    freshUntil: grace > 0 ? freshUntil : undefined,
  }
  const written = engine.cache.set(key, entry, { startedAt: run.startedAt })
  stats.stores++
  return { stripped, body, policy, skip, entry, written }
}

/** The `shouldStore` option's answer; one that throws declines, logged. */
function userAllows(engine: StrataEngine, miss: Miss, result: ExecutionResult): boolean {
  try {
    return (engine.settings.shouldStore?.({ ...miss.info, result }) ?? true) === true
  } catch (error) {
    engine.logger.warn({ err: error, operation: miss.operation }, 'strata: shouldStore threw; not stored')
    return false
  }
}

/**
 * Errors a resolver raised on purpose (a `GraphQLError`), which Yoga's error masking lets
 * through. Any other error would be masked on a miss but not on a hit, so it is never stored.
 * Nor is one that sets the response's HTTP status (`extensions.http`): Yoga takes the status from
 * it and leaves it out of the body on a miss, which a stored body could not reproduce.
 */
function isExpectedError(error: GraphQLError): boolean {
  if (error.extensions?.http !== undefined) return false
  const original = error.originalError
  return (
    original === undefined ||
    original === null ||
    original instanceof GraphQLError ||
    original.name === 'GraphQLError'
  )
}
