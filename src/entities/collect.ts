import {
  type DirectiveNode,
  type FieldNode,
  type FragmentDefinitionNode,
  type GraphQLObjectType,
  type GraphQLSchema,
  isAbstractType,
  Kind,
  type OperationDefinitionNode,
  type SelectionSetNode,
  type ValueNode,
  valueFromASTUntyped,
} from 'graphql'
import type { TagFormat } from '../policy/cache-tags.js'
import type { PolicyState } from '../policy/policy.js'
import { keyAlias } from './rewrite.js'

/** Several field nodes merged under one response key, with their sub-selections. */
export interface FieldGroup {
  readonly selectionSets: readonly SelectionSetNode[]
  /** Collected sub-fields per runtime object type, filled lazily. */
  readonly byType: Map<string, CollectedFields>
}

/** The fields a group selects on one object type. */
export interface CollectedFields {
  /** By response key, in no particular order. */
  readonly fields: ReadonlyMap<string, CollectedField>
  /**
   * Response keys holding the type's key fields; `undefined` for a type without key fields,
   * `null` when the selection lacks one (the rewrite should have added it).
   */
  readonly keyResponseKeys: readonly string[] | null | undefined
}

export interface CollectedField {
  readonly fieldName: string
  /** The first of the field's nodes (its arguments). */
  readonly node: FieldNode
  /** Sub-selections, when the field returns a composite type. */
  readonly group: FieldGroup | undefined
  /** Filled by the result walk on first use, then reused by every later result. */
  facts?: FieldFacts
}

/** What a collected field contributes to a result's policy and tags (fixed per parent type). */
export interface FieldFacts {
  /** The field's policy contribution; `undefined` for introspection, which contributes none. */
  readonly policy: Readonly<PolicyState> | undefined
  readonly composite: boolean
  /** The named return type when it is an object type (no `__typename` needed to know it). */
  readonly objectType: GraphQLObjectType | undefined
  readonly list: boolean
  /** Collection tags added when the field is a list, or null, or empty. */
  readonly collectionTags: readonly string[]
  /** Cache tags (`@cacheTag`) added wherever the field appears. */
  readonly cacheTags: readonly TagFormat[]
}

/** Per-operation context for field collection. */
export interface CollectScope {
  readonly schema: GraphQLSchema
  readonly fragments: ReadonlyMap<string, FragmentDefinitionNode>
  /** Variables, only consulted for `@skip(if: $var)` / `@include(if: $var)`. */
  readonly variables: Readonly<Record<string, unknown>>
  readonly operation: OperationDefinitionNode
  /** Key fields of an object type (see the `keyFields` option). */
  keyFields(typeName: string): readonly string[] | undefined
  /** Prefix of the response keys the rewrite added to this document. */
  readonly aliasPrefix: string
}

export function newGroup(selectionSets: readonly SelectionSetNode[]): FieldGroup {
  return { selectionSets, byType: new Map() }
}

/** The fields `group` selects on an object of `type`, by response key (memoised in the group). */
export function fieldsFor(group: FieldGroup, type: GraphQLObjectType, scope: CollectScope): CollectedFields {
  let collectedFields = group.byType.get(type.name)
  if (collectedFields) return collectedFields
  const nodes = new Map<string, FieldNode[]>()
  const visited = new Set<string>()
  for (const set of group.selectionSets) collectInto(set, type, scope, nodes, visited)
  const fields = new Map<string, CollectedField>()
  const plain = new Set<string>()
  for (const [responseKey, fieldNodes] of nodes) {
    const subSets: SelectionSetNode[] = []
    for (const node of fieldNodes) if (node.selectionSet) subSets.push(node.selectionSet)
    const first = fieldNodes[0] as FieldNode
    fields.set(responseKey, {
      fieldName: first.name.value,
      node: first,
      group: subSets.length > 0 ? newGroup(subSets) : undefined,
    })
    if (!first.alias && !first.arguments?.length) plain.add(first.name.value)
  }
  collectedFields = {
    fields,
    keyResponseKeys: keyResponseKeys(scope.keyFields(type.name), fields, plain, scope.aliasPrefix),
  }
  group.byType.set(type.name, collectedFields)
  return collectedFields
}

/** Where each key field's value is found: the rewrite's alias, or the client's own plain selection. */
function keyResponseKeys(
  keyFields: readonly string[] | undefined,
  fields: ReadonlyMap<string, CollectedField>,
  plain: ReadonlySet<string>,
  prefix: string,
): readonly string[] | null | undefined {
  if (!keyFields) return undefined
  const keys: string[] = []
  for (let i = 0; i < keyFields.length; i++) {
    const name = keyFields[i] as string
    const alias = keyAlias(prefix, i)
    if (fields.has(alias)) keys.push(alias)
    else if (plain.has(name)) keys.push(name)
    else return null
  }
  return keys
}

function collectInto(
  set: SelectionSetNode,
  type: GraphQLObjectType,
  scope: CollectScope,
  out: Map<string, FieldNode[]>,
  visited: Set<string>,
): void {
  for (const selection of set.selections) {
    if (!included(selection.directives, scope)) continue
    switch (selection.kind) {
      case Kind.FIELD: {
        const key = selection.alias?.value ?? selection.name.value
        const list = out.get(key)
        if (list) list.push(selection)
        else out.set(key, [selection])
        break
      }
      case Kind.INLINE_FRAGMENT: {
        const condition = selection.typeCondition?.name.value
        if (condition === undefined || applies(condition, type, scope.schema)) {
          collectInto(selection.selectionSet, type, scope, out, visited)
        }
        break
      }
      case Kind.FRAGMENT_SPREAD: {
        const name = selection.name.value
        const fragment = scope.fragments.get(name)
        if (!fragment || visited.has(name)) break
        visited.add(name)
        if (applies(fragment.typeCondition.name.value, type, scope.schema)) {
          collectInto(fragment.selectionSet, type, scope, out, visited)
        }
        break
      }
    }
  }
}

function applies(condition: string, type: GraphQLObjectType, schema: GraphQLSchema): boolean {
  if (condition === type.name) return true
  const conditionType = schema.getType(condition)
  return conditionType !== undefined && isAbstractType(conditionType) && schema.isSubType(conditionType, type)
}

function included(directives: readonly DirectiveNode[] | undefined, scope: CollectScope): boolean {
  if (!directives || directives.length === 0) return true
  for (const directive of directives) {
    const name = directive.name.value
    if (name !== 'skip' && name !== 'include') continue
    const arg = directive.arguments?.find((a) => a.name.value === 'if')
    if (!arg) continue
    const value = evaluate(arg.value, scope) === true
    if (name === 'skip' ? value : !value) return false
  }
  return true
}

function evaluate(node: ValueNode, scope: CollectScope): unknown {
  if (node.kind !== Kind.VARIABLE) return valueFromASTUntyped(node)
  const name = node.name.value
  if (Object.hasOwn(scope.variables, name)) return scope.variables[name]
  const definition = scope.operation.variableDefinitions?.find((d) => d.variable.name.value === name)
  return definition?.defaultValue ? valueFromASTUntyped(definition.defaultValue) : undefined
}
