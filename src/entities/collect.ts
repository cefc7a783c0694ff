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

/** Several field nodes merged under one response key, with their sub-selections. */
export interface FieldGroup {
  readonly selectionSets: readonly SelectionSetNode[]
  /** Collected sub-fields per runtime object type, filled lazily. */
  readonly byType: Map<string, ReadonlyMap<string, CollectedField>>
}

export interface CollectedField {
  readonly fieldName: string
  /** Sub-selections, when the field returns a composite type. */
  readonly group: FieldGroup | undefined
}

/** Per-operation context for field collection. */
export interface CollectScope {
  readonly schema: GraphQLSchema
  readonly fragments: ReadonlyMap<string, FragmentDefinitionNode>
  /** Variables, only consulted for `@skip(if: $var)` / `@include(if: $var)`. */
  readonly variables: Readonly<Record<string, unknown>>
  readonly operation: OperationDefinitionNode
}

export function newGroup(selectionSets: readonly SelectionSetNode[]): FieldGroup {
  return { selectionSets, byType: new Map() }
}

/** The fields `group` selects on an object of `type`, by response key (memoised in the group). */
export function fieldsFor(
  group: FieldGroup,
  type: GraphQLObjectType,
  scope: CollectScope,
): ReadonlyMap<string, CollectedField> {
  let fields = group.byType.get(type.name)
  if (fields) return fields
  const nodes = new Map<string, FieldNode[]>()
  const visited = new Set<string>()
  for (const set of group.selectionSets) collectInto(set, type, scope, nodes, visited)
  const collected = new Map<string, CollectedField>()
  for (const [responseKey, fieldNodes] of nodes) {
    const subSets: SelectionSetNode[] = []
    for (const node of fieldNodes) if (node.selectionSet) subSets.push(node.selectionSet)
    collected.set(responseKey, {
      fieldName: (fieldNodes[0] as FieldNode).name.value,
      group: subSets.length > 0 ? newGroup(subSets) : undefined,
    })
  }
  fields = collected
  group.byType.set(type.name, fields)
  return fields
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
