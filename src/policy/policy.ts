/** `@cacheControl` scope. PRIVATE results are keyed by session and never shared. */
export type CacheScope = 'PUBLIC' | 'PRIVATE'

/** A cache hint, as given by `@cacheControl` or by the `hints` option. */
export interface CacheHint {
  /** Seconds the result may be served from cache. */
  maxAge?: number
  scope?: CacheScope
  /** Take the parent field's maxAge instead of the default. Ignored on root fields. */
  inheritMaxAge?: boolean
}

/** The policy a field or a whole response carries. `maxAge` undefined means "no opinion". */
export interface PolicyState {
  maxAge: number | undefined
  scope: CacheScope | undefined
}

/** Apollo's `restrict`: the smaller maxAge wins; PRIVATE is sticky. */
export function restrict(target: PolicyState, hint: Readonly<PolicyState> | CacheHint): void {
  if (hint.maxAge !== undefined && (target.maxAge === undefined || hint.maxAge < target.maxAge)) {
    target.maxAge = hint.maxAge
  }
  if (hint.scope !== undefined && target.scope !== 'PRIVATE') target.scope = hint.scope
}

/** Apollo's `replace`: every property the hint defines overwrites the target's. */
export function replace(target: PolicyState, hint: Readonly<PolicyState> | CacheHint): void {
  if (hint.maxAge !== undefined) target.maxAge = hint.maxAge
  if (hint.scope !== undefined) target.scope = hint.scope
}

/** The policy to store under, or `null` when the response must not be cached. */
export function cacheablePolicy(state: PolicyState): { maxAge: number; scope: CacheScope } | null {
  if (state.maxAge === undefined || state.maxAge <= 0) return null
  return { maxAge: state.maxAge, scope: state.scope ?? 'PUBLIC' }
}

/** A field's hint before `defaultMaxAge` (Apollo's rules 1 and 2), and whether rule 3 applies to it. */
export interface FieldBase {
  readonly policy: Readonly<PolicyState>
  /** With no maxAge once the field resolved, `defaultMaxAge` applies. */
  readonly defaultApplies: boolean
}

/**
 * The policy one resolved field contributes to the response, following Apollo
 * Server's rules exactly:
 * 1. the declared return type's hint (for composite types) applies first;
 * 2. the field's own hint overrides it property by property, except that a field's
 *    `inheritMaxAge` only takes effect when no maxAge is set yet (then only its scope applies);
 * 3. with no maxAge, `defaultMaxAge` applies to root fields, and to fields returning a
 *    composite type unless they inherit their maxAge.
 * A resolver's dynamic hint changes the field's policy between rules 2 and 3.
 */
export function fieldContribution(
  typeHint: CacheHint | undefined,
  fieldHint: CacheHint | undefined,
  returnsComposite: boolean,
  isRoot: boolean,
  defaultMaxAge: number,
): PolicyState {
  return settle(fieldBase(typeHint, fieldHint, returnsComposite, isRoot), defaultMaxAge)
}

/** Rules 1 and 2 of {@link fieldContribution}. */
export function fieldBase(
  typeHint: CacheHint | undefined,
  fieldHint: CacheHint | undefined,
  returnsComposite: boolean,
  isRoot: boolean,
): FieldBase {
  const policy: PolicyState = { maxAge: undefined, scope: undefined }
  let inherit = false
  if (returnsComposite && typeHint) {
    replace(policy, typeHint)
    inherit = typeHint.inheritMaxAge === true
  }
  if (fieldHint?.inheritMaxAge && policy.maxAge === undefined) {
    inherit = true
    if (fieldHint.scope !== undefined) policy.scope = fieldHint.scope
  } else if (fieldHint) {
    replace(policy, fieldHint)
  }
  return { policy, defaultApplies: (returnsComposite && !inherit) || isRoot }
}

/** Rule 3 of {@link fieldContribution}: the field's final policy. */
export function settle(field: FieldBase, defaultMaxAge: number): PolicyState {
  const policy: PolicyState = { maxAge: field.policy.maxAge, scope: field.policy.scope }
  if (policy.maxAge === undefined && field.defaultApplies) restrict(policy, { maxAge: defaultMaxAge })
  return policy
}
