import { getDirective } from '@graphql-tools/utils'
import {
  type GraphQLCompositeType,
  type GraphQLField,
  type GraphQLLeafType,
  type GraphQLNamedType,
  type GraphQLObjectType,
  type GraphQLSchema,
  getNamedType,
  isCompositeType,
  isInterfaceType,
  isObjectType,
} from 'graphql'
import { StrataSchemaError } from '../errors.js'
import { argumentLeaf } from './arguments.js'
import { cacheTagsOf, checkInterfaceTags, parseTagFormat, type TagFormat } from './cache-tags.js'
import { type CacheHint, type FieldBase, fieldBase, type PolicyState, settle } from './policy.js'

/**
 * Everything Strata derives from one schema, computed once per schema
 * (in `onSchemaChange`): cache hints, key fields and mutation invalidation targets.
 */
export interface SchemaHints {
  readonly schema: GraphQLSchema
  /** The policy a resolved field contributes; memoised per parent type, field and rootness. */
  fieldPolicy(parent: GraphQLObjectType, fieldName: string, isRoot: boolean): Readonly<PolicyState>
  /** The same before `defaultMaxAge`, as a resolver's dynamic hint starts from it. */
  fieldBase(parent: GraphQLObjectType, fieldName: string, isRoot: boolean): FieldBase
  /** A composite type's hint (directive and config merged), as Apollo's `cacheHintFromType`. */
  typeHint(type: GraphQLCompositeType): CacheHint | undefined
  readonly defaultMaxAge: number
  /** Key fields of an object type, or `undefined` when its objects are not entities. */
  keyFields(typeName: string): readonly string[] | undefined
  /** What a mutation field declares it invalidates (`@invalidates`), if anything. */
  mutationTarget(fieldName: string): MutationTarget | undefined
  /** Concrete object types a named composite type may resolve to. */
  possibleTypeNames(type: GraphQLCompositeType): readonly string[]
  /** The cache tags (`@cacheTag`) a field of an object type adds to the entries it appears in. */
  fieldTags(parent: GraphQLObjectType, fieldName: string): readonly TagFormat[]
}

export interface SchemaHintOptions {
  defaultMaxAge: number
  /** Config hints by schema coordinate (`Type` or `Type.field`); override directives. */
  hints: Readonly<Record<string, CacheHint>>
  keyFields: Readonly<Record<string, readonly string[]>>
  defaultKeyFields: readonly string[]
  invalidates: Readonly<Record<string, readonly string[] | MutationInvalidation>>
  /** Config form of `@cacheTag`, by field coordinate; replaces the field's directives. */
  cacheTags: Readonly<Record<string, readonly string[]>>
}

/** What a mutation field invalidates when it succeeds: the arguments of `@invalidates`. */
export interface MutationInvalidation {
  /** Everything that depends on these types (tags `Type` and `Type:*`). */
  types?: readonly string[]
  /** The one object of this type the field's arguments name (tags `Type:key` and `Type`). */
  entity?: string
  /**
   * Where the entity's key values are among the field's arguments, one path per key field, in
   * the key fields' order (`id`, `input.id`); a list argument names several entities.
   * Default: the arguments named like the key fields.
   */
  keyArgs?: readonly string[]
  /**
   * Cache tags (see `@cacheTag`) rendered from the field's arguments: `["post-stats"]`,
   * `["product-{args.id}"]`.
   */
  cacheTags?: readonly string[]
}

/** A mutation field's declared invalidation, checked against the schema. */
export interface MutationTarget {
  readonly types: readonly string[]
  readonly cacheTags: readonly TagFormat[]
  readonly entity?: {
    readonly typeName: string
    /**
     * Per key field, the argument path to its value, and the value's type: a key is compared as
     * results show it (serialized), so an argument's value is serialized by it.
     */
    readonly paths: readonly {
      readonly steps: readonly string[]
      readonly leaf: GraphQLLeafType
      /** The argument is a list of key values (each names an entity), not one value. */
      readonly list: boolean
    }[]
  }
}

type DirectiveCarrier = Parameters<typeof getDirective>[1]

function readHint(schema: GraphQLSchema, node: DirectiveCarrier): CacheHint | undefined {
  const found = getDirective(schema, node, 'cacheControl')?.[0]
  if (!found) return undefined
  return normalizeHint(found as CacheHint)
}

/** As Apollo: `inheritMaxAge: true` drops any maxAge given beside it. */
function normalizeHint(raw: CacheHint): CacheHint {
  const hint: CacheHint = {}
  if (raw.inheritMaxAge === true) hint.inheritMaxAge = true
  else if (typeof raw.maxAge === 'number') hint.maxAge = raw.maxAge
  if (raw.scope === 'PUBLIC' || raw.scope === 'PRIVATE') hint.scope = raw.scope
  return hint
}

/** A config hint overrides the SDL's property by property; its maxAge and inheritMaxAge replace each other. */
function merge(base: CacheHint | undefined, override: CacheHint | undefined): CacheHint | undefined {
  if (!override) return base
  if (!base) return normalizeHint(override)
  const merged: CacheHint = { ...base, ...override }
  if (override.maxAge !== undefined && override.inheritMaxAge === undefined) delete merged.inheritMaxAge
  if (override.inheritMaxAge === true) delete merged.maxAge
  return normalizeHint(merged)
}

export function buildSchemaHints(schema: GraphQLSchema, options: SchemaHintOptions): SchemaHints {
  validateCoordinates(schema, options)
  const typeHints = new Map<string, CacheHint | undefined>()
  const typeHint = (type: GraphQLNamedType): CacheHint | undefined => {
    if (!typeHints.has(type.name)) {
      typeHints.set(type.name, merge(readHint(schema, type), options.hints[type.name]))
    }
    return typeHints.get(type.name)
  }

  const bases = new Map<string, FieldBase>()
  const baseOf = (parent: GraphQLObjectType, fieldName: string, isRoot: boolean): FieldBase => {
    const memoKey = `${isRoot ? '!' : ''}${parent.name}.${fieldName}`
    let base = bases.get(memoKey)
    if (base === undefined) {
      const field = parent.getFields()[fieldName] as GraphQLField<unknown, unknown> | undefined
      const named = field ? getNamedType(field.type) : undefined
      const composite = named !== undefined && isCompositeType(named)
      const fieldHint = field
        ? merge(readHint(schema, field), options.hints[`${parent.name}.${fieldName}`])
        : undefined
      base = fieldBase(composite ? typeHint(named) : undefined, fieldHint, composite, isRoot)
      bases.set(memoKey, base)
    }
    return base
  }
  const policies = new Map<string, PolicyState>()
  const fieldPolicy = (parent: GraphQLObjectType, fieldName: string, isRoot: boolean): PolicyState => {
    const memoKey = `${isRoot ? '!' : ''}${parent.name}.${fieldName}`
    let policy = policies.get(memoKey)
    if (policy === undefined) {
      policy = settle(baseOf(parent, fieldName, isRoot), options.defaultMaxAge)
      policies.set(memoKey, policy)
    }
    return policy
  }

  const keyFieldsByType = new Map<string, readonly string[] | undefined>()
  for (const type of Object.values(schema.getTypeMap())) {
    if (!isObjectType(type) || type.name.startsWith('__')) continue
    const wanted = options.keyFields[type.name] ?? options.defaultKeyFields
    const fields = type.getFields()
    keyFieldsByType.set(type.name, wanted.every((name) => fields[name]) ? wanted : undefined)
  }

  const mutationTargets = new Map<string, MutationTarget>()
  const mutationType = schema.getMutationType()
  for (const field of Object.values(mutationType?.getFields() ?? {})) {
    const coordinate = `${mutationType?.name}.${field.name}`
    const configured = options.invalidates[coordinate]
    const declared = Array.isArray(configured)
      ? { types: configured as readonly string[] }
      : ((configured as MutationInvalidation | undefined) ??
        (getDirective(schema, field, 'invalidates')?.[0] as MutationInvalidation | undefined))
    if (declared) {
      mutationTargets.set(
        field.name,
        mutationTarget(schema, field, coordinate, declared, (name) => keyFieldsByType.get(name)),
      )
    }
  }

  const fieldTags = new Map<string, readonly TagFormat[]>()
  const tagsOf = (parent: GraphQLObjectType, fieldName: string): readonly TagFormat[] => {
    const coordinate = `${parent.name}.${fieldName}`
    let formats = fieldTags.get(coordinate)
    if (formats === undefined) {
      formats = cacheTagsOf(schema, parent, fieldName, options.cacheTags)
      fieldTags.set(coordinate, formats)
    }
    return formats
  }
  // Every format is checked at schema load, not when a result first shows its field.
  for (const type of Object.values(schema.getTypeMap())) {
    if (type.name.startsWith('__')) continue
    if (isInterfaceType(type)) checkInterfaceTags(schema, type, options.cacheTags)
    else if (isObjectType(type))
      for (const fieldName of Object.keys(type.getFields())) tagsOf(type, fieldName)
  }

  const possible = new Map<string, readonly string[]>()
  return {
    schema,
    fieldPolicy,
    fieldBase: baseOf,
    typeHint,
    defaultMaxAge: options.defaultMaxAge,
    keyFields: (typeName) => keyFieldsByType.get(typeName),
    mutationTarget: (fieldName) => mutationTargets.get(fieldName),
    fieldTags: tagsOf,
    possibleTypeNames(type) {
      let names = possible.get(type.name)
      if (!names) {
        names = isObjectType(type) ? [type.name] : schema.getPossibleTypes(type).map((t) => t.name)
        possible.set(type.name, names)
      }
      return names
    },
  }
}

function validateCoordinates(schema: GraphQLSchema, options: SchemaHintOptions): void {
  for (const coordinate of Object.keys(options.hints)) {
    const [typeName, fieldName] = coordinate.split('.')
    const type = typeName === undefined ? undefined : schema.getType(typeName)
    if (!type || (fieldName === undefined ? !isCompositeType(type) : !isObjectType(type))) {
      throw new StrataSchemaError(
        `option \`hints\` names "${coordinate}", but the schema has no ${fieldName === undefined ? 'object, interface or union' : 'object'} type "${typeName}"`,
      )
    }
    if (fieldName !== undefined && isObjectType(type) && !type.getFields()[fieldName]) {
      throw new StrataSchemaError(
        `option \`hints\` names "${coordinate}", but ${typeName} has no field "${fieldName}"`,
      )
    }
  }
  for (const [typeName, fields] of Object.entries(options.keyFields)) {
    const type = schema.getType(typeName)
    if (!isObjectType(type)) {
      throw new StrataSchemaError(
        `option \`keyFields\` names "${typeName}", which is not an object type in the schema`,
      )
    }
    for (const name of fields) {
      if (!type.getFields()[name]) {
        throw new StrataSchemaError(
          `option \`keyFields.${typeName}\` names field "${name}", which ${typeName} does not have`,
        )
      }
    }
  }
  for (const coordinate of Object.keys(options.cacheTags)) {
    const [typeName, fieldName = ''] = coordinate.split('.')
    const type = typeName === undefined ? undefined : schema.getType(typeName)
    if (!(isObjectType(type) || isInterfaceType(type)) || !type.getFields()[fieldName]) {
      throw new StrataSchemaError(
        `option \`cacheTags\` names "${coordinate}", which is not a field of an object or interface type of the schema`,
      )
    }
  }
  const mutationType = schema.getMutationType()
  for (const coordinate of Object.keys(options.invalidates)) {
    const [typeName, fieldName] = coordinate.split('.')
    if (
      !mutationType ||
      typeName !== mutationType.name ||
      !fieldName ||
      !mutationType.getFields()[fieldName]
    ) {
      throw new StrataSchemaError(
        `option \`invalidates\` names "${coordinate}", which is not a mutation field of the schema`,
      )
    }
  }
}

/** Checks a field's `@invalidates` against the schema; the error names the field and what is wrong. */
function mutationTarget(
  schema: GraphQLSchema,
  field: GraphQLField<unknown, unknown>,
  coordinate: string,
  declared: MutationInvalidation,
  keyFields: (typeName: string) => readonly string[] | undefined,
): MutationTarget {
  const fail: (problem: string) => never = (problem) => {
    throw new StrataSchemaError(`@invalidates on ${coordinate} ${problem}`)
  }
  const types = declared.types ?? []
  for (const typeName of types) {
    if (!schema.getType(typeName)) fail(`names type "${typeName}", which the schema does not define`)
  }
  const cacheTags = (declared.cacheTags ?? []).map((format) =>
    parseTagFormat(format, field, `@invalidates on ${coordinate}`),
  )
  if (declared.entity === undefined || declared.entity === null) {
    if (declared.keyArgs !== undefined && declared.keyArgs !== null)
      fail('gives keyArgs, but keyArgs needs an `entity`')
    if (types.length === 0 && cacheTags.length === 0)
      fail('names nothing: give it `types`, `cacheTags`, or an `entity` its arguments name')
    return { types, cacheTags }
  }
  const typeName = declared.entity
  const type = schema.getType(typeName)
  if (!isObjectType(type)) fail(`names entity "${typeName}", which is not an object type of the schema`)
  const keys = keyFields(typeName)
  if (!keys) return fail(`names entity "${typeName}", whose objects have no key fields (see \`keyFields\`)`)
  const keyArgs = declared.keyArgs ?? keys
  if (keyArgs.length !== keys.length) {
    fail(`gives ${keyArgs.length} keyArgs for ${typeName}, whose key has ${keys.length} fields`)
  }
  const paths = keyArgs.map((path) => {
    const steps = path.split('.')
    const found = argumentLeaf(field, steps, keyArgs.length === 1)
    if (typeof found === 'string')
      return fail(`cannot take ${typeName}'s key from argument "${path}": ${found}`)
    return { steps, ...found }
  })
  return { types, cacheTags, entity: { typeName, paths } }
}
