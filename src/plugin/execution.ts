import type { Plugin } from '@envelop/core'
import type { ExecutionArgs, ExecutionResult } from 'graphql'
import type { CollectScope } from '../entities/collect.js'
import type { OperationFacts, SchemaState } from './schema-state.js'

// biome-ignore lint/complexity/noBannedTypes: `{}` is Envelop's own default plugin context
export type AnyContext = {}
/** What Envelop passes to `onExecute`. */
export type ExecutePayload = Parameters<NonNullable<Plugin<AnyContext>['onExecute']>>[0]

/** What `onExecuteDone` receives, narrowed to what Strata uses. */
export interface DonePayload {
  args: ExecutionArgs
  result: unknown
  setResult: (result: ExecutionResult) => void
}

/** A single execution result (not an incremental-delivery stream). */
export function isExecutionResult(value: unknown): value is ExecutionResult {
  return typeof value === 'object' && value !== null && !(Symbol.asyncIterator in value)
}

export function collectScope(state: SchemaState, facts: OperationFacts, args: ExecutionArgs): CollectScope {
  return {
    schema: state.hints.schema,
    fragments: facts.fragments,
    variables: (args.variableValues ?? {}) as Record<string, unknown>,
    operation: facts.rewrittenOperation,
    keyFields: state.hints.keyFields,
    aliasPrefix: facts.aliasPrefix,
  }
}

/**
 * Hands background work to the server's `waitUntil` (Yoga's context has it, from its server adapter):
 * a serverless runtime then keeps running it after the response, and `yoga.dispose()` waits for it.
 */
export function keepAlive(context: unknown, work: Promise<unknown>): void {
  const waitUntil = (context as { waitUntil?: unknown } | null | undefined)?.waitUntil
  if (typeof waitUntil !== 'function') return
  try {
    ;(waitUntil as (promise: Promise<void>) => void).call(
      context,
      work.then(
        () => undefined,
        () => undefined,
      ),
    )
  } catch {
    // A runtime that no longer accepts work (the response is long gone): nothing to keep alive for.
  }
}
