import {
  type DocumentNode,
  type FieldNode,
  type GraphQLCompositeType,
  type InlineFragmentNode,
  isAbstractType,
  isCompositeType,
  isObjectType,
  Kind,
  type SelectionNode,
  type SelectionSetNode,
  TypeInfo,
  visit,
  visitWithTypeInfo,
} from 'graphql'
import type { SchemaHints } from '../policy/schema-hints.js'

/**
 * Every response key the rewrite adds starts with the document's alias prefix (`__strata_`
 * unless a client alias already starts with it; then `__strata1_`, ...): `<prefix>t` asks for
 * `__typename`, `<prefix>k0`, `<prefix>k1`, ... for key fields. They are stripped from results.
 */
export const DEFAULT_ALIAS_PREFIX = '__strata_'

export const typenameAlias = (prefix: string): string => `${prefix}t`
export const keyAlias = (prefix: string, index: number): string => `${prefix}k${index}`

/** A prefix no alias of the document starts with. */
function aliasPrefixFor(document: DocumentNode): string {
  const aliases: string[] = []
  visit(document, {
    Field(node) {
      if (node.alias?.value.startsWith('__strata')) aliases.push(node.alias.value)
    },
  })
  let prefix = DEFAULT_ALIAS_PREFIX
  for (let n = 1; aliases.some((alias) => alias.startsWith(prefix)); n++) prefix = `__strata${n}_`
  return prefix
}

/** What one parse of a document tells Strata, memoised per document and schema. */
export interface DocumentFacts {
  /** The document with `__typename` and key fields added to every composite selection. */
  readonly rewritten: DocumentNode
  /** Some field the document can select carries a PRIVATE hint: key by session. */
  readonly mayBePrivate: boolean
  /** Uses `@defer` or `@stream`: never cached. */
  readonly incremental: boolean
  /** `@skip` / `@include` depend on variables: field collection is per request. */
  readonly variableDirectives: boolean
  /** Prefix of every response key the rewrite added. */
  readonly aliasPrefix: string
}

function aliased(alias: string, fieldName: string): FieldNode {
  return {
    kind: Kind.FIELD,
    alias: { kind: Kind.NAME, value: alias },
    name: { kind: Kind.NAME, value: fieldName },
  }
}

/** `<prefix>k<i>: <key field>` for each key field not already selected as is. */
function keySelections(
  keyFields: readonly string[] | undefined,
  plain: ReadonlySet<string>,
  prefix: string,
): FieldNode[] {
  const added: FieldNode[] = []
  keyFields?.forEach((name, i) => {
    if (!plain.has(name)) added.push(aliased(keyAlias(prefix, i), name))
  })
  return added
}

/** Fields selected as is (no alias, arguments or directives): their values can be read directly. */
function plainFieldNames(node: SelectionSetNode): Set<string> {
  const names = new Set<string>()
  for (const selection of node.selections) {
    if (
      selection.kind !== Kind.FIELD ||
      selection.alias ||
      selection.arguments?.length ||
      selection.directives?.length
    ) {
      continue
    }
    names.add(selection.name.value)
  }
  return names
}

/**
 * What the rewrite adds to a selection set: key fields the client does not already
 * select as is, and `__typename` where the type is abstract (on object types the
 * runtime type is known from the schema, so nothing is added for it).
 */
function additionsFor(
  type: GraphQLCompositeType,
  node: SelectionSetNode,
  hints: SchemaHints,
  prefix: string,
): SelectionNode[] {
  const plain = plainFieldNames(node)
  if (isObjectType(type)) return keySelections(hints.keyFields(type.name), plain, prefix)
  const added: SelectionNode[] = [aliased(typenameAlias(prefix), '__typename')]
  for (const typeName of hints.possibleTypeNames(type)) {
    const keys = keySelections(hints.keyFields(typeName), plain, prefix)
    if (keys.length === 0) continue
    const fragment: InlineFragmentNode = {
      kind: Kind.INLINE_FRAGMENT,
      typeCondition: { kind: Kind.NAMED_TYPE, name: { kind: Kind.NAME, value: typeName } },
      selectionSet: { kind: Kind.SELECTION_SET, selections: keys },
    }
    added.push(fragment)
  }
  return added
}

/** Rewrites a (validated) document and reads the facts Strata needs from it. */
export function analyzeDocument(document: DocumentNode, hints: SchemaHints): DocumentFacts {
  const typeInfo = new TypeInfo(hints.schema)
  const aliasPrefix = aliasPrefixFor(document)
  let mayBePrivate = false
  let incremental = false
  let variableDirectives = false

  const rewritten = visit(
    document,
    visitWithTypeInfo(typeInfo, {
      Field(node) {
        if (mayBePrivate || node.name.value.startsWith('__')) return
        const parent = typeInfo.getParentType()
        if (!parent) return
        const candidates = isAbstractType(parent) ? hints.schema.getPossibleTypes(parent) : [parent]
        for (const candidate of candidates) {
          if (!isObjectType(candidate) || !candidate.getFields()[node.name.value]) continue
          if (hints.fieldPolicy(candidate, node.name.value, false).scope === 'PRIVATE') mayBePrivate = true
        }
      },
      Directive(node) {
        const name = node.name.value
        if (name === 'defer' || name === 'stream') incremental = true
        if (
          (name === 'skip' || name === 'include') &&
          node.arguments?.some((a) => a.value.kind === Kind.VARIABLE)
        ) {
          variableDirectives = true
        }
      },
      SelectionSet: {
        leave(node: SelectionSetNode) {
          const type = typeInfo.getParentType()
          if (!type || !isCompositeType(type)) return undefined
          const added = additionsFor(type, node, hints, aliasPrefix)
          return added.length === 0 ? undefined : { ...node, selections: [...node.selections, ...added] }
        },
      },
    }),
  )
  return { rewritten, mayBePrivate, incremental, variableDirectives, aliasPrefix }
}

const inlined = new WeakMap<DocumentNode, DocumentNode>()

/**
 * The document without `@defer` and `@stream` (memoised per document): it answers in one result. A
 * mutation's entities are invalidated before it is sent: delivering it in parts would send the first
 * part before the invalidation could be done, and the later parts without the rewrite's fields
 * stripped. A query inlined (`incremental: 'inline'`) can be stored and served whole. The incremental
 * delivery proposal lets a server deliver deferred and streamed data inline.
 */
export function inlineIncremental(document: DocumentNode): DocumentNode {
  let result = inlined.get(document)
  if (!result) {
    result = visit(document, {
      Directive: (node) => (node.name.value === 'defer' || node.name.value === 'stream' ? null : undefined),
    })
    inlined.set(document, result)
  }
  return result
}
