import type { ExecutionArgs } from 'graphql'
import { bump, type SkipReason } from '../observability/stats.js'
import { spanFailed } from '../observability/tracing.js'
import { recordHints, stopRecording } from '../policy/dynamic.js'
import type { CacheEntry } from '../tiers/tier.js'
import type { StrataEngine } from './engine.js'
import { type ExecutePayload, isExecutionResult, keepAlive } from './execution.js'
import { failedAddedField, type Miss, settleResult } from './miss.js'

/**
 * Refreshes a stale entry in the background (`staleWhileRevalidate`): executes the operation as a
 * miss would, with the arguments of the request that found the entry stale (which was answered with
 * it), and stores the result unless a rule forbids it. At most one refresh per key runs in this
 * instance. A refresh that fails stores nothing, so the stale entry is served until its grace ends.
 * The invalidation clock guards it like any miss: a result whose execution began before an
 * invalidation of its tags is not stored.
 */
export function revalidate(
  engine: StrataEngine,
  executeFn: ExecutePayload['executeFn'],
  args: ExecutionArgs,
  miss: Miss,
  stale: CacheEntry,
): void {
  const { key } = miss
  if (engine.refreshing.has(key)) return
  const token = {}
  engine.refreshing.set(key, token)
  engine.stats.refreshes++
  let settle!: () => void
  const settled = new Promise<void>((resolve) => {
    settle = resolve
  })
  const release = () => {
    clearTimeout(timer)
    if (engine.refreshing.get(key) === token) engine.refreshing.delete(key)
    settle()
  }
  // A refresh that has not settled within the single-flight wait (a hung resolver) no longer stops
  // the next stale hit from refreshing the key, nor the server's shutdown from completing.
  const timer = setTimeout(release, engine.settings.flightWaitMs)
  timer.unref?.()
  // After the stale response is on its way: synchronous resolvers would otherwise delay it.
  setImmediate(() => refresh(engine, executeFn, args, miss, stale, release))
  keepAlive(args.contextValue, settled)
}

/** Why a refresh may store nothing and still leave the stale entry to be served. */
const KEEPS_STALE: ReadonlySet<SkipReason> = new Set(['errors', 'invalidated-during-execution', 'given-up'])

function refresh(
  engine: StrataEngine,
  executeFn: ExecutePayload['executeFn'],
  args: ExecutionArgs,
  miss: Miss,
  stale: CacheEntry,
  done: () => void,
): void {
  const { key, facts } = miss
  const span = engine.tracer?.startSpan('strata.refresh', {
    attributes: { 'graphql.operation.name': miss.operation },
  })
  const start = engine.clock.begin()
  const startedAt = Date.now()
  const hints = engine.settings.dynamicHints
    ? recordHints(args.contextValue, facts.rewrittenOperation)
    : undefined
  const finish = () => {
    if (hints) stopRecording(hints)
    engine.clock.end(start)
    span?.end()
    done()
  }
  const skipped = (reason: SkipReason) => {
    bump(engine.stats.skippedStores, reason)
    span?.setAttribute('strata.skipped', reason)
  }
  const failed = (error: unknown) => {
    if (span) spanFailed(span, error)
    engine.stats.failedRefreshes++
    engine.logger.warn(
      { err: error, operation: miss.operation },
      'strata: refreshing a stale entry failed; it is served stale until its grace ends',
    )
  }
  let execution: ReturnType<ExecutePayload['executeFn']>
  try {
    execution = executeFn({ ...args, document: facts.rewritten })
  } catch (error) {
    failed(error)
    finish()
    return
  }
  Promise.resolve(execution)
    .then((result) => {
      if (!isExecutionResult(result)) return skipped('not-analysable')
      if (result.data === undefined) return skipped('errors')
      if (failedAddedField(facts, result)) return skipped('added-field-error')
      // With cacheErrors a miss stores errors raised on purpose, but they must not replace data: a
      // failing backend leaves the stale entry served (stale-if-error). An entry of errors may be replaced.
      if (result.errors?.length && !stale.body.startsWith('{"errors":')) return skipped('errors')
      const settled = settleResult(engine, miss, args, result, { start, startedAt, hints, mayStore: true })
      if (settled.skip) span?.setAttribute('strata.skipped', settled.skip)
      // The result may not be stored at all now (it became uncacheable, PRIVATE, too large...): the
      // stale entry must not stand in for it for the rest of its grace. Errors keep it (stale-if-error);
      // an invalidation already removed it.
      if (settled.skip && !KEEPS_STALE.has(settled.skip))
        return engine.cache.delete(key).then(() => undefined)
      // Until the new entry is in the shared tiers, their lookups still find the stale one: a second
      // refresh would only repeat this one.
      return settled.written
    })
    .catch(failed)
    .finally(finish)
}
