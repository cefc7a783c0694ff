import {
  type ExecutionArgs,
  type FieldNode,
  type GraphQLField,
  type GraphQLObjectType,
  getArgumentValues,
  getVariableValues,
} from 'graphql'
import { analyzeResult } from '../entities/analyze.js'
import { fieldsFor } from '../entities/collect.js'
import { inlineIncremental } from '../entities/rewrite.js'
import { collectionTag, tagsForEntityChange, tagsForTypeChange, typeTag } from '../entities/tags.js'
import { argumentValue } from '../policy/arguments.js'
import { renderTags } from '../policy/cache-tags.js'
import type { MutationTarget } from '../policy/schema-hints.js'
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
  const document = facts.incremental ? inlineIncremental(facts.rewritten) : facts.rewritten
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
      // Arguments are read as the execution coerced them: `args` holds the variables as the request
      // sent them (no defaults applied, enums and custom scalars not parsed), computed once if needed.
      let variables: Record<string, unknown> | undefined
      const coerced = () => (variables ??= coerceVariables(state, facts, args))
      for (const [responseKey, { fieldName, node }] of fieldsFor(group, mutationType, scope).fields) {
        if (failed.has(responseKey)) continue
        // With `data` null, only fields an error came from ran (mutation fields run one by one, and
        // execution stops at the error that nulled it).
        if (!(result.data ? responseKey in result.data : erredBelow.has(responseKey))) continue
        const target = state.hints.mutationTarget(fieldName)
        if (target)
          for (const tag of safeDeclaredTags(engine, target, mutationType, node, coerced)) tags.add(tag)
      }
      await engine.invalidateTags([...tags])
    },
  }
}

/**
 * The tags a field's `@invalidates` names: its types', its cache tags (rendered from its arguments),
 * and its entity's, keyed by the field's arguments as coerced for this execution. An entity whose
 * key an argument leaves out (null, or not given) cannot be told apart from the others: its whole
 * type is invalidated instead (and a cache tag's format, its wildcard).
 */
function declaredTags(
  target: MutationTarget,
  mutationType: GraphQLObjectType,
  node: FieldNode,
  variables: () => Record<string, unknown>,
): string[] {
  const tags = target.types.flatMap(tagsForTypeChange)
  const { entity, cacheTags } = target
  const field = mutationType.getFields()[node.name.value] as GraphQLField<unknown, unknown>
  const needsValues = entity !== undefined || cacheTags.some((format) => format.fixed === undefined)
  const values = needsValues ? getArgumentValues(field, node, variables()) : {}
  if (cacheTags.length > 0) {
    const rendered = new Set<string>()
    renderTags(cacheTags, values, false, rendered)
    tags.push(...rendered)
  }
  if (!entity) return tags
  const typeWide = () => [...tags, ...tagsForTypeChange(entity.typeName)]
  const keys: unknown[] = []
  for (const { steps, leaf, list } of entity.paths) {
    const value = argumentValue(values, steps)
    if (value === null || value === undefined) return typeWide()
    if (!list) {
      keys.push(leaf.serialize(value))
      continue
    }
    // A list argument (the key has one field): each value names an entity. Whether a value is a
    // list is the schema's to say: a custom scalar's own value may be an array, and names one entity.
    for (const one of value as readonly unknown[]) {
      if (one === null || one === undefined) return typeWide()
      tags.push(...tagsForEntityChange(entity.typeName, [leaf.serialize(one)]))
    }
    return tags
  }
  return [...tags, ...tagsForEntityChange(entity.typeName, keys)]
}

/**
 * {@link declaredTags}, or, if reading an argument throws (a custom scalar's `serialize` that fails
 * on its own parsed value), every tag of the declared types and the entity's type, and each cache tag
 * format's wildcard: the field ran, so what it changed must be invalidated, and its response must not
 * turn into an error.
 */
function safeDeclaredTags(
  engine: StrataEngine,
  target: MutationTarget,
  mutationType: GraphQLObjectType,
  node: FieldNode,
  variables: () => Record<string, unknown>,
): string[] {
  try {
    return declaredTags(target, mutationType, node, variables)
  } catch (error) {
    engine.logger.warn(
      { field: node.name.value, err: error },
      'strata: could not read an argument @invalidates names; its whole type (or cache tag format) is invalidated',
    )
    const types = target.entity ? [...target.types, target.entity.typeName] : target.types
    const cacheTags = target.cacheTags.map((format) => format.fixed ?? (format.wildcard as string))
    return [...types.flatMap(tagsForTypeChange), ...cacheTags]
  }
}

/** The operation's variables as execution coerced them (it succeeded, so they coerce without error). */
function coerceVariables(
  state: SchemaState,
  facts: OperationFacts,
  args: ExecutionArgs,
): Record<string, unknown> {
  const result = getVariableValues(
    state.hints.schema,
    facts.rewrittenOperation.variableDefinitions ?? [],
    (args.variableValues ?? {}) as Record<string, unknown>,
  )
  return result.coerced ?? {}
}
