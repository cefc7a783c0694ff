import {
  type GraphQLField,
  type GraphQLInputType,
  type GraphQLLeafType,
  getNullableType,
  isInputObjectType,
  isLeafType,
  isListType,
} from 'graphql'

/** Where a value is among a field's arguments: the path to it, and the leaf type that serializes it. */
export interface ArgumentPath {
  readonly steps: readonly string[]
  readonly leaf: GraphQLLeafType
  /** The argument is a list of values (each names its own entity or tag), not one value. */
  readonly list: boolean
}

/**
 * The leaf type `steps` lead to through `field`'s arguments (through input objects), or why there is
 * none. `listAllowed`: whether the value may be a list of leaves.
 */
export function argumentLeaf(
  field: GraphQLField<unknown, unknown>,
  steps: readonly string[],
  listAllowed: boolean,
): { leaf: GraphQLLeafType; list: boolean } | string {
  const [first, ...rest] = steps
  let type: GraphQLInputType | undefined = field.args.find((arg) => arg.name === first)?.type
  if (!type) return `${field.name} has no argument "${first}"`
  for (const step of rest) {
    const named: GraphQLInputType = getNullableType(type)
    if (!isInputObjectType(named)) return `"${step}" is not a field of an input object`
    type = named.getFields()[step]?.type
    if (!type) return `${named.name} has no field "${step}"`
  }
  const value = getNullableType(type)
  const list = isListType(value)
  if (list && !listAllowed) return 'a list names several entities, which a composite key cannot pair up'
  const leaf = isListType(value) ? getNullableType(value.ofType) : value
  return isLeafType(leaf) ? { leaf, list } : 'it is not a scalar or enum value (or a list of them)'
}

/** The value at `steps` in a field's coerced arguments (`undefined` where a step is missing or null). */
export function argumentValue(values: Readonly<Record<string, unknown>>, steps: readonly string[]): unknown {
  return steps.reduce<unknown>(
    (at, step) => (at as Record<string, unknown> | null | undefined)?.[step],
    values,
  )
}
