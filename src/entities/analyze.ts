import {
  type GraphQLField,
  type GraphQLObjectType,
  type GraphQLOutputType,
  getArgumentValues,
  getNamedType,
  getVariableValues,
  isCompositeType,
  isListType,
  isNonNullType,
  isObjectType,
  SchemaMetaFieldDef,
  TypeMetaFieldDef,
} from 'graphql'
import { renderTags, type TagFormat } from '../policy/cache-tags.js'
import type { DynamicField } from '../policy/dynamic.js'
import type { PolicyState } from '../policy/policy.js'
import { restrict, settle } from '../policy/policy.js'
import type { SchemaHints } from '../policy/schema-hints.js'
import {
  type CollectedField,
  type CollectScope,
  type FieldFacts,
  type FieldGroup,
  fieldsFor,
} from './collect.js'
import { typenameAlias } from './rewrite.js'
import { collectionTag, entityTag, typeTag } from './tags.js'

/** What one walk over an execution result finds. */
export interface Analysis {
  /** The data as the client must see it: every field the rewrite added removed. */
  readonly data: Record<string, unknown> | null
  /** The response's cache policy (Apollo rules, over the fields that resolved). */
  readonly policy: PolicyState
  /** Everything the result depends on: entity, collection and type tags. */
  readonly tags: Set<string>
  /** Entities found in the result: entity tag → type name. */
  readonly entities: Map<string, string>
  /** Object types without key fields found in the result (tagged `Type:*` as a whole). */
  readonly keylessTypes: Set<string>
  /** False when an object lacked the added `__typename` (the rewrite was bypassed): do not store. */
  readonly complete: boolean
}

interface Walk {
  readonly hints: SchemaHints
  readonly scope: CollectScope
  readonly policy: PolicyState
  readonly tags: Set<string>
  readonly entities: Map<string, string>
  readonly keylessTypes: Set<string>
  /** Fields whose resolvers set a dynamic hint, by response path; then the walk tracks paths. */
  readonly dynamic: ReadonlyMap<string, DynamicField> | undefined
  /** The operation's variables as execution coerced them, once a cache tag needs an argument. */
  variables: Record<string, unknown> | undefined
  complete: boolean
}

/**
 * Walks an execution result once: strips what the rewrite added (respecting aliases
 * and nested lists), computes the cache policy and collects tags and entities.
 */
export function analyzeResult(
  data: Record<string, unknown> | null | undefined,
  rootType: GraphQLObjectType,
  rootGroup: FieldGroup,
  hints: SchemaHints,
  scope: CollectScope,
  dynamic?: ReadonlyMap<string, DynamicField>,
): Analysis {
  const walk: Walk = {
    hints,
    scope,
    policy: { maxAge: undefined, scope: undefined },
    tags: new Set(),
    entities: new Map(),
    keylessTypes: new Set(),
    dynamic,
    variables: undefined,
    complete: true,
  }
  const path = dynamic ? '' : undefined
  const stripped = data == null ? null : walkObject(walk, data, rootType, rootGroup, true, path)
  // Every field whose resolver set a hint counts, as in Apollo Server: also one an error nulled
  // afterwards (stored only with cacheErrors), which the walk never reaches.
  for (const field of dynamic?.values() ?? []) restrict(walk.policy, settle(field, hints.defaultMaxAge))
  return {
    data: stripped,
    policy: walk.policy,
    tags: walk.tags,
    entities: walk.entities,
    keylessTypes: walk.keylessTypes,
    complete: walk.complete,
  }
}

function memoiseFacts(
  walk: Walk,
  parent: GraphQLObjectType,
  field: CollectedField,
  isRoot: boolean,
): FieldFacts {
  const facts = computeFacts(walk, parent, field.fieldName, isRoot)
  field.facts = facts
  return facts
}

/** Computes what `fieldName` on `parent` contributes (memoised on the collected field). */
function computeFacts(walk: Walk, parent: GraphQLObjectType, fieldName: string, isRoot: boolean): FieldFacts {
  const field =
    fieldName === '__schema'
      ? SchemaMetaFieldDef
      : fieldName === '__type'
        ? TypeMetaFieldDef
        : parent.getFields()[fieldName]
  const named = field ? getNamedType(field.type) : undefined
  const composite = named !== undefined && isCompositeType(named)
  // Introspection (`__schema`, `__type` and everything below) contributes no hint and no tag.
  const introspection = fieldName.startsWith('__') || parent.name.startsWith('__')
  return {
    policy: introspection ? undefined : walk.hints.fieldPolicy(parent, fieldName, isRoot),
    composite,
    objectType: named !== undefined && isObjectType(named) ? named : undefined,
    list: field !== undefined && hasList(field.type),
    collectionTags: composite && !introspection ? walk.hints.possibleTypeNames(named).map(collectionTag) : [],
    cacheTags: field && !introspection ? walk.hints.fieldTags(parent, fieldName) : [],
  }
}

function hasList(type: GraphQLOutputType): boolean {
  if (isListType(type)) return true
  return isNonNullType(type) && isListType(type.ofType)
}

function walkObject(
  walk: Walk,
  value: Record<string, unknown>,
  type: GraphQLObjectType,
  group: FieldGroup,
  isRoot: boolean,
  path: string | undefined,
): Record<string, unknown> {
  const { fields, keyResponseKeys } = fieldsFor(group, type, walk.scope)
  const out: Record<string, unknown> = {}
  for (const responseKey in value) {
    if (responseKey.startsWith(walk.scope.aliasPrefix)) continue
    const fieldValue = value[responseKey]
    const field = fields.get(responseKey)
    if (!field || field.fieldName === '__typename') {
      out[responseKey] = fieldValue
      continue
    }
    const facts = field.facts ?? memoiseFacts(walk, type, field, isRoot)
    // Paths are tracked only when a resolver set a hint: the common walk builds no strings.
    const fieldPath = path === undefined ? undefined : path === '' ? responseKey : `${path}.${responseKey}`
    // A field whose resolver set a hint counts with that hint instead (after the walk).
    const hinted = fieldPath !== undefined && walk.dynamic?.has(fieldPath) === true
    if (facts.policy && !hinted) restrict(walk.policy, facts.policy)
    if (facts.cacheTags.length > 0) addCacheTags(walk, type, field, facts.cacheTags)
    if (!facts.composite) {
      out[responseKey] = fieldValue
      continue
    }
    if (facts.list || fieldValue == null || (Array.isArray(fieldValue) && fieldValue.length === 0)) {
      for (const tag of facts.collectionTags) walk.tags.add(tag)
    }
    out[responseKey] = fieldValue == null ? fieldValue : walkValue(walk, fieldValue, field, facts, fieldPath)
  }
  if (isRoot || type.name.startsWith('__')) return out
  if (keyResponseKeys) {
    addEntity(walk, type.name, value, keyResponseKeys)
  } else if (keyResponseKeys === null) {
    walk.complete = false
  } else if (!walk.keylessTypes.has(type.name)) {
    walk.keylessTypes.add(type.name)
    walk.tags.add(typeTag(type.name))
  }
  return out
}

/**
 * Adds the cache tags of one occurrence of a field, rendered from its arguments. One that cannot be
 * rendered (a scalar fails to serialize an argument) leaves the result unstored: an invalidation
 * naming the tag would not reach it.
 */
function addCacheTags(
  walk: Walk,
  parent: GraphQLObjectType,
  field: CollectedField,
  formats: readonly TagFormat[],
): void {
  try {
    const definition = parent.getFields()[field.fieldName] as GraphQLField<unknown, unknown>
    let values: Record<string, unknown> = {}
    if (formats.some((format) => format.fixed === undefined)) {
      const variables = walk.variables ?? coerced(walk.scope)
      walk.variables = variables
      values = getArgumentValues(definition, field.node, variables)
    }
    renderTags(formats, values, true, walk.tags)
  } catch {
    walk.complete = false
  }
}

/** The operation's variables as execution coerced them (defaults applied, enums and scalars parsed). */
function coerced(scope: CollectScope): Record<string, unknown> {
  const { coerced: values } = getVariableValues(
    scope.schema,
    scope.operation.variableDefinitions ?? [],
    scope.variables as Record<string, unknown>,
  )
  return values ?? {}
}

function addEntity(
  walk: Walk,
  typeName: string,
  value: Record<string, unknown>,
  keyResponseKeys: readonly string[],
): void {
  const keyValues = keyResponseKeys.map((key) => value[key])
  if (keyValues.includes(undefined)) {
    walk.complete = false // the key field the rewrite asked for is missing: not our document's result
    return
  }
  if (keyValues.includes(null)) {
    // No entity tag names it, so every change to an entity of its type (each also invalidates the
    // type's collection tag) invalidates it, as for a list of them.
    walk.tags.add(collectionTag(typeName))
    walk.tags.add(typeTag(typeName))
    return
  }
  const tag = entityTag(typeName, keyValues)
  walk.tags.add(tag)
  walk.tags.add(typeTag(typeName))
  walk.entities.set(tag, typeName)
}

function walkValue(
  walk: Walk,
  value: unknown,
  field: CollectedField,
  facts: FieldFacts,
  path: string | undefined,
): unknown {
  if (Array.isArray(value)) {
    const out = new Array<unknown>(value.length)
    for (let i = 0; i < value.length; i++) {
      const item = value[i]
      out[i] =
        item == null ? item : walkValue(walk, item, field, facts, path === undefined ? path : `${path}.${i}`)
    }
    return out
  }
  const object = value as Record<string, unknown>
  const runtimeType = facts.objectType ?? runtimeTypeOf(walk, object)
  if (!field.group || !runtimeType) {
    walk.complete = false
    return value
  }
  return walkObject(walk, object, runtimeType, field.group, false, path)
}

/** The concrete type of an object at an abstract position, from the `__typename` the rewrite added. */
function runtimeTypeOf(walk: Walk, object: Record<string, unknown>): GraphQLObjectType | undefined {
  const typeName = object[typenameAlias(walk.scope.aliasPrefix)]
  const type = typeof typeName === 'string' ? walk.hints.schema.getType(typeName) : undefined
  return type && isObjectType(type) ? type : undefined
}
