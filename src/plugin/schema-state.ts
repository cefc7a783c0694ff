import {
  type DocumentNode,
  type FragmentDefinitionNode,
  type GraphQLSchema,
  getOperationAST,
  Kind,
  type OperationDefinitionNode,
  print,
  type SelectionSetNode,
} from 'graphql'
import { type FieldGroup, newGroup } from '../entities/collect.js'
import { analyzeDocument, type DocumentFacts } from '../entities/rewrite.js'
import { defaultSchemaVersion } from '../key/schema-version.js'
import { buildSchemaHints, type SchemaHintOptions, type SchemaHints } from '../policy/schema-hints.js'

/** One operation of a document, with everything memoised about it. */
export interface OperationFacts extends DocumentFacts {
  readonly operation: OperationDefinitionNode
  /** The rewritten operation (what executes), and its fragments. */
  readonly rewrittenOperation: OperationDefinitionNode
  readonly fragments: ReadonlyMap<string, FragmentDefinitionNode>
  /** Document text as the key sees it. */
  readonly source: string
  /** Selects the admin field: never cached, never counted. */
  readonly admin: boolean
  /** Field collection for the result walk; memoised unless `@skip`/`@include` use variables. */
  rootGroup(): FieldGroup
}

/** Everything derived from one schema: hints, version and per-document facts. */
export class SchemaState {
  readonly hints: SchemaHints
  readonly version: string
  readonly #documents = new WeakMap<DocumentNode, Map<string, OperationFacts>>()

  constructor(
    schema: GraphQLSchema,
    options: SchemaHintOptions,
    version: string | ((schema: GraphQLSchema) => string) | undefined,
    readonly adminField: string | undefined,
  ) {
    this.hints = buildSchemaHints(schema, options)
    this.version = typeof version === 'string' ? version : (version ?? defaultSchemaVersion)(schema)
  }

  /** Facts about the operation `operationName` selects in `document`, or `null` if none. */
  operation(document: DocumentNode, operationName: string | null | undefined): OperationFacts | null {
    let byName = this.#documents.get(document)
    if (!byName) {
      byName = new Map()
      this.#documents.set(document, byName)
    }
    const name = operationName ?? ''
    let facts: OperationFacts | null | undefined = byName.get(name)
    if (facts === undefined) {
      facts = this.#build(document, operationName)
      // Unknown operation names are not memoised: a client could otherwise grow the map at will.
      if (facts) byName.set(name, facts)
    }
    return facts ?? null
  }

  #build(document: DocumentNode, operationName: string | null | undefined): OperationFacts | null {
    const operation = getOperationAST(document, operationName)
    if (!operation) return null
    const documentFacts = analyzeDocument(document, this.hints)
    const index = document.definitions.indexOf(operation)
    const rewrittenOperation = documentFacts.rewritten.definitions[index] as OperationDefinitionNode
    const fragments = new Map<string, FragmentDefinitionNode>()
    for (const definition of documentFacts.rewritten.definitions) {
      if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition)
    }
    let shared: FieldGroup | undefined
    return {
      ...documentFacts,
      operation,
      rewrittenOperation,
      fragments,
      source: document.loc?.source.body ?? print(document),
      admin:
        this.adminField !== undefined && selectsRootField(operation.selectionSet, fragments, this.adminField),
      rootGroup: () => {
        if (documentFacts.variableDirectives) return newGroup([rewrittenOperation.selectionSet])
        shared ??= newGroup([rewrittenOperation.selectionSet])
        return shared
      },
    }
  }
}

/** Whether a root selection set selects `name` (through fragments too, whatever their directives). */
function selectsRootField(
  set: SelectionSetNode,
  fragments: ReadonlyMap<string, FragmentDefinitionNode>,
  name: string,
  seen = new Set<string>(),
): boolean {
  for (const selection of set.selections) {
    if (selection.kind === Kind.FIELD) {
      if (selection.name.value === name) return true
    } else if (selection.kind === Kind.INLINE_FRAGMENT) {
      if (selectsRootField(selection.selectionSet, fragments, name, seen)) return true
    } else if (!seen.has(selection.name.value)) {
      seen.add(selection.name.value)
      const fragment = fragments.get(selection.name.value)
      if (fragment && selectsRootField(fragment.selectionSet, fragments, name, seen)) return true
    }
  }
  return false
}
