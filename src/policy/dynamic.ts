import {
  type GraphQLCompositeType,
  type GraphQLFieldResolver,
  type GraphQLResolveInfo,
  type GraphQLSchema,
  isObjectType,
  type OperationDefinitionNode,
} from 'graphql'
import {
  type CacheHint,
  type CacheScope,
  cacheablePolicy,
  type FieldBase,
  type PolicyState,
  replace,
  restrict,
} from './policy.js'
import type { SchemaHints } from './schema-hints.js'

/** A field's cache policy as a resolver sees and changes it: Apollo Server's `CachePolicy`. */
export interface CachePolicy {
  maxAge?: number
  scope?: CacheScope
  /** Every property the hint defines overwrites this policy's. */
  replace(hint: CacheHint): void
  /** The smaller maxAge wins; PRIVATE is sticky. */
  restrict(hint: CacheHint): void
  /** The policy, if it allows caching at all. */
  policyIfCacheable(): { maxAge: number; scope: CacheScope } | null
}

/**
 * What resolvers find in `info.cacheControl` (as in Apollo Server, so code written against
 * `@apollo/cache-control-types` works unchanged).
 */
export interface ResolveInfoCacheControl {
  /** This field's policy before `defaultMaxAge`: its type's and its own hints, and dynamic changes. */
  readonly cacheHint: CachePolicy
  /** Replaces the properties `hint` defines (`cacheHint.replace`). */
  setCacheHint(hint: CacheHint): void
  /** A composite type's static hint (`{}` for none). */
  cacheHintFromType(type: GraphQLCompositeType): CacheHint
}

/** `info.cacheControl`, or a clear error where Strata's resolver instrumentation is off. */
export function cacheControlFromInfo(info: GraphQLResolveInfo): ResolveInfoCacheControl {
  const control = (info as { cacheControl?: ResolveInfoCacheControl }).cacheControl
  if (!control) {
    throw new Error(
      `info.cacheControl is missing on ${info.parentType.name}.${info.fieldName}: Strata gives it to fields with their own resolver (not the default resolver), in schemas served with useStrata and dynamicHints on`,
    )
  }
  return control
}

/** A field whose resolver touched its hint, and where rule 3 of `fieldContribution` applies. */
export interface DynamicField {
  readonly policy: Readonly<PolicyState>
  readonly defaultApplies: boolean
}

/** The hints one execution's resolvers set, by response path (`posts.0.author`). */
export class HintRecorder {
  readonly fields = new Map<string, DynamicField>()
  /**
   * Another recorded execution of the same document with the same context ran meanwhile, and a
   * resolver touched a hint: which execution it belongs to is unknown, so neither stores.
   */
  ambiguous = false

  constructor(
    readonly operation: OperationDefinitionNode,
    /** What it is filed under: the context, or the operation where the context is not an object. */
    readonly owner: object,
  ) {}
}

/** Executions being recorded, by context (by operation where the context is not an object). */
const recording = new WeakMap<object, HintRecorder[]>()
/** Static hints and where to report a wrong hint, for the schemas Strata instrumented. */
const instrumented = new WeakMap<GraphQLSchema, { hints: SchemaHints; wrongHint: WrongHint }>()

/** Told about a hint a resolver set that is not a valid one (once per field is enough). */
export type WrongHint = (coordinate: string, problem: string) => void

const isObject = (value: unknown): value is object =>
  (typeof value === 'object' && value !== null) || typeof value === 'function'

/** Starts recording the hints of an execution of `operation` (a miss's rewritten document). */
export function recordHints(context: unknown, operation: OperationDefinitionNode): HintRecorder {
  const recorder = new HintRecorder(operation, isObject(context) ? context : operation)
  const list = recording.get(recorder.owner)
  if (list) list.push(recorder)
  else recording.set(recorder.owner, [recorder])
  return recorder
}

/** Stops recording; what it recorded stays readable. */
export function stopRecording(recorder: HintRecorder): void {
  const list = recording.get(recorder.owner)
  if (!list) return
  const index = list.indexOf(recorder)
  if (index >= 0) list.splice(index, 1)
  if (list.length === 0) recording.delete(recorder.owner)
}

/** The recorder a resolver's hint belongs to, if its execution is recorded and can be told apart. */
function recorderFor(context: unknown, operation: OperationDefinitionNode): HintRecorder | undefined {
  const list = recording.get(isObject(context) ? context : operation)
  if (!list) return undefined
  let found: HintRecorder | undefined
  for (const recorder of list) {
    if (recorder.operation !== operation) continue
    if (found) {
      for (const same of list) if (same.operation === operation) same.ambiguous = true
      return undefined
    }
    found = recorder
  }
  return found
}

const WRAPPED = Symbol.for('graphql-strata.cacheControl')

/**
 * Gives every resolver of `schema` an `info.cacheControl` (once per schema: the resolvers are
 * wrapped in place, as Apollo Server does). Fields without their own resolver are left alone: the
 * default resolver sets no hint.
 */
export function instrumentResolvers(schema: GraphQLSchema, hints: SchemaHints, wrongHint: WrongHint): void {
  instrumented.set(schema, { hints, wrongHint })
  for (const type of Object.values(schema.getTypeMap())) {
    if (!isObjectType(type) || type.name.startsWith('__')) continue
    for (const field of Object.values(type.getFields())) {
      const resolve = field.resolve as
        | (GraphQLFieldResolver<unknown, unknown> & { [WRAPPED]?: true })
        | undefined
      if (!resolve || resolve[WRAPPED]) continue
      const wrapped = function (
        this: unknown,
        source: unknown,
        args: Record<string, unknown>,
        context: unknown,
        info: GraphQLResolveInfo,
      ) {
        ;(info as { cacheControl?: ResolveInfoCacheControl }).cacheControl = new FieldCacheControl(
          info,
          context,
        )
        return resolve.call(this, source, args, context, info)
      }
      Object.defineProperty(wrapped, WRAPPED, { value: true })
      field.resolve = wrapped
    }
  }
}

/** One resolver call's `info.cacheControl`. Its policy is made (and recorded) on first use. */
class FieldCacheControl implements ResolveInfoCacheControl {
  readonly #info: GraphQLResolveInfo
  readonly #context: unknown
  #policy: FieldPolicy | undefined

  constructor(info: GraphQLResolveInfo, context: unknown) {
    this.#info = info
    this.#context = context
  }

  get cacheHint(): CachePolicy {
    return this.#field()
  }

  setCacheHint(hint: CacheHint): void {
    this.#field().replace(hint)
  }

  cacheHintFromType(type: GraphQLCompositeType): CacheHint {
    return instrumented.get(this.#info.schema)?.hints.typeHint(type) ?? {}
  }

  #field(): FieldPolicy {
    if (this.#policy) return this.#policy
    const info = this.#info
    const schema = instrumented.get(info.schema)
    const base: FieldBase = schema?.hints.fieldBase(
      info.parentType,
      info.fieldName,
      info.path.prev === undefined,
    ) ?? {
      policy: { maxAge: undefined, scope: undefined },
      defaultApplies: false,
    }
    const policy = new FieldPolicy(base.policy, (problem) =>
      schema?.wrongHint(`${info.parentType.name}.${info.fieldName}`, problem),
    )
    recorderFor(this.#context, info.operation)?.fields.set(pathKey(info.path), {
      policy,
      defaultApplies: base.defaultApplies,
    })
    this.#policy = policy
    return policy
  }
}

class FieldPolicy implements CachePolicy {
  maxAge: number | undefined
  scope: CacheScope | undefined

  readonly #wrong: (problem: string) => void

  constructor(base: Readonly<PolicyState>, wrong: (problem: string) => void) {
    this.maxAge = base.maxAge
    this.scope = base.scope
    this.#wrong = wrong
  }

  replace(hint: CacheHint): void {
    replace(this, this.#valid(hint))
  }

  restrict(hint: CacheHint): void {
    restrict(this, this.#valid(hint))
  }

  policyIfCacheable(): { maxAge: number; scope: CacheScope } | null {
    return cacheablePolicy(this)
  }

  /**
   * The hint as given, or, where it is wrong, what is safe: a maxAge that is not a number of seconds
   * >= 0 (a null read from a database, say) means 0, never cached; a scope other than PUBLIC or
   * PRIVATE means PRIVATE. A cache hint never fails the resolver: the response is served, and not
   * shared, and the problem is reported.
   */
  #valid(hint: CacheHint): CacheHint {
    if (typeof hint !== 'object' || hint === null) {
      this.#wrong(`a cache hint must be an object like { maxAge: 60 }, got ${String(hint)}; not cached`)
      return { maxAge: 0 }
    }
    const { maxAge, scope } = hint
    const safe: CacheHint = { maxAge, scope }
    if (maxAge !== undefined && !(typeof maxAge === 'number' && Number.isFinite(maxAge) && maxAge >= 0)) {
      this.#wrong(`cache hint maxAge must be a number of seconds >= 0, got ${String(maxAge)}; not cached`)
      safe.maxAge = 0
    }
    if (scope !== undefined && scope !== 'PUBLIC' && scope !== 'PRIVATE') {
      this.#wrong(`cache hint scope must be 'PUBLIC' or 'PRIVATE', got ${String(scope)}; taken as PRIVATE`)
      safe.scope = 'PRIVATE'
    }
    return safe
  }
}

/** `info.path` as the result walk names it: response keys and list indices joined by dots. */
function pathKey(path: GraphQLResolveInfo['path']): string {
  let key = String(path.key)
  for (let prev = path.prev; prev; prev = prev.prev) key = `${prev.key}.${key}`
  return key
}
