import { type DocumentNode, type ExecutionArgs, visit } from 'graphql'
import { analyzeResult } from '../entities/analyze.js'
import { fieldsFor } from '../entities/collect.js'
import { collectionTag, tagsForTypeChange, typeTag } from '../entities/tags.js'
import type { StrataEngine } from './engine.js'
import { collectScope, type DonePayload, type ExecutePayload, isExecutionResult } from './execution.js'
import type { OperationFacts, SchemaState } from './schema-state.js'

/**
 * Lets a mutation run on the rewritten document, then invalidates what it changed
 * before its response is sent: each entity in its result (`Type:id` and `Type`), each
 * keyless type in it (`Type` and `Type:*`), and the types its fields declare.
 */
export function watchMutation(
  engine: StrataEngine,
  payload: ExecutePayload,
  facts: OperationFacts,
  state: SchemaState,
) {
  const mutationType = state.hints.schema.getMutationType()
  if (!mutationType) return undefined
  let ran = false
  const { executeFn } = payload
  const document = facts.incremental ? inline(facts.rewritten) : facts.rewritten
  payload.setExecuteFn((args: ExecutionArgs) => {
    ran = true
    return executeFn({ ...args, document })
  })
  return {
    async onExecuteDone({ args, result, setResult }: DonePayload) {
      if (!ran || !isExecutionResult(result)) return
      const scope = collectScope(state, facts, args)
      const group = facts.rootGroup()
      if (result.data === undefined) return // a request error: nothing ran
      const analysis = analyzeResult(result.data, mutationType, group, state.hints, scope)
      setResult({ ...result, data: analysis.data })
      const tags = new Set<string>()
      if (engine.settings.invalidateOnMutation) {
        for (const [tag, typeName] of analysis.entities) {
          tags.add(tag)
          tags.add(collectionTag(typeName))
        }
        for (const typeName of analysis.keylessTypes) {
          tags.add(collectionTag(typeName))
          tags.add(typeTag(typeName))
        }
      }
      // Declared invalidations fire for root fields whose resolver ran and returned: a failed (e.g.
      // unauthorized) mutation must not let its caller purge the cache, but an error below a root
      // field comes after its change was made, even when it nulls the field or all of `data`.
      const failed = new Set<unknown>()
      const erredBelow = new Set<unknown>()
      for (const error of result.errors ?? []) {
        const path = error.path ?? []
        ;(path.length === 1 ? failed : erredBelow).add(path[0])
      }
      for (const [responseKey, { fieldName }] of fieldsFor(group, mutationType, scope).fields) {
        if (failed.has(responseKey)) continue
        // With `data` null, only fields an error came from ran (mutation fields run one by one, and
        // execution stops at the error that nulled it).
        if (!(result.data ? responseKey in result.data : erredBelow.has(responseKey))) continue
        for (const typeName of state.hints.invalidatedTypes(fieldName) ?? []) {
          for (const tag of tagsForTypeChange(typeName)) tags.add(tag)
        }
      }
      await engine.invalidateTags([...tags])
    },
  }
}

const inlined = new WeakMap<DocumentNode, DocumentNode>()

/**
 * The document without `@defer` and `@stream`: a mutation answers in one result, whose entities are
 * invalidated before it is sent. Delivering it in parts would send the first part before the
 * invalidation could be done, and the later parts without the rewrite's fields stripped. The
 * incremental delivery proposal lets a server deliver deferred and streamed data inline.
 */
function inline(document: DocumentNode): DocumentNode {
  let result = inlined.get(document)
  if (!result) {
    result = visit(document, {
      Directive: (node) => (node.name.value === 'defer' || node.name.value === 'stream' ? null : undefined),
    })
    inlined.set(document, result)
  }
  return result
}
