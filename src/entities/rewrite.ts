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

/** Response key under which the rewrite asks for `__typename`. */
export const TYPENAME_ALIAS = '__strata_t'
/** Response key prefix for added key fields: `__strata_k0`, `__strata_k1`, ... */
export const KEY_ALIAS_PREFIX = '__strata_k'
/** Every response key the rewrite adds starts with this; they are stripped from results. */
export const ADDED_PREFIX = '__strata_'

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
}

function aliased(alias: string, fieldName: string): FieldNode {
  return {
    kind: Kind.FIELD,
    alias: { kind: Kind.NAME, value: alias },
    name: { kind: Kind.NAME, value: fieldName },
  }
}

const typenameField = aliased(TYPENAME_ALIAS, '__typename')

function keySelections(keyFields: readonly string[]): FieldNode[] {
  return keyFields.map((name, i) => aliased(`${KEY_ALIAS_PREFIX}${i}`, name))
}

function additionsFor(type: GraphQLCompositeType, hints: SchemaHints): SelectionNode[] {
  const added: SelectionNode[] = [typenameField]
  if (isObjectType(type)) {
    const keys = hints.keyFields(type.name)
    if (keys) added.push(...keySelections(keys))
    return added
  }
  for (const typeName of hints.possibleTypeNames(type)) {
    const keys = hints.keyFields(typeName)
    if (!keys) continue
    const fragment: InlineFragmentNode = {
      kind: Kind.INLINE_FRAGMENT,
      typeCondition: { kind: Kind.NAMED_TYPE, name: { kind: Kind.NAME, value: typeName } },
      selectionSet: { kind: Kind.SELECTION_SET, selections: keySelections(keys) },
    }
    added.push(fragment)
  }
  return added
}

/** Rewrites a (validated) document and reads the facts Strata needs from it. */
export function analyzeDocument(document: DocumentNode, hints: SchemaHints): DocumentFacts {
  const typeInfo = new TypeInfo(hints.schema)
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
          return { ...node, selections: [...node.selections, ...additionsFor(type, hints)] }
        },
      },
    }),
  )
  return { rewritten, mayBePrivate, incremental, variableDirectives }
}
