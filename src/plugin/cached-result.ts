import type { ExecutionResult } from 'graphql'

/** An execution result that Yoga serializes with `stringify` instead of JSON.stringify. */
export type SerializableResult = ExecutionResult & { stringify?: (result: ExecutionResult) => string }

const STATE = Symbol('graphql-strata.cachedBody')

/** What a result built by {@link resultFromBody} keeps, out of sight (a non-enumerable symbol). */
class BodyState {
  parsed: ExecutionResult | undefined
  changed = false
  constructor(
    readonly result: object,
    readonly body: string,
  ) {}
  load(): ExecutionResult {
    this.parsed ??= JSON.parse(this.body) as ExecutionResult
    return this.parsed
  }
}

type WithState = SerializableResult & { [STATE]?: BodyState }

/** The body as it is, unless `target` is a copy, was changed or gained extensions. */
function stringifyCached(target: ExecutionResult): string {
  const state = (target as WithState)[STATE]
  return state !== undefined && state.result === target && !state.changed && target.extensions === undefined
    ? state.body
    : JSON.stringify(target)
}

/** Shared by every cached result: `stringify` lives here, so it is neither enumerated nor spread. */
const CACHED_RESULT_PROTO = Object.create(Object.prototype, {
  stringify: { value: stringifyCached, enumerable: false },
}) as object

/** Replaces an accessor with a plain value, and marks the result as no longer its body. */
function replace(result: WithState, name: 'data' | 'errors', value: unknown): void {
  const state = result[STATE]
  if (state) state.changed = true
  Object.defineProperty(result, name, { value, enumerable: true, writable: true, configurable: true })
}

/**
 * A result whose serialized form is already known. Yoga calls `stringify` and sends
 * `body` as is (no re-serialization, byte-identical to the stored entry). Anyone
 * else reading `data` gets it parsed lazily; if the result is changed (another plugin
 * adds extensions or replaces data), it is serialized normally. Built from one object
 * literal with a shared prototype: this runs on every hit.
 */
export function resultFromBody(body: string): SerializableResult {
  // A stored body with errors is `{"errors":…,"data":…}`, graphql-js' order, which Yoga keeps when
  // it copies the result to sanitize its errors and serializes the copy.
  const result: WithState = body.startsWith('{"errors":')
    ? ({
        __proto__: CACHED_RESULT_PROTO,
        get errors() {
          return (this as WithState)[STATE]?.load().errors
        },
        set errors(value) {
          replace(this as WithState, 'errors', value)
        },
        get data() {
          return (this as WithState)[STATE]?.load().data
        },
        set data(value) {
          replace(this as WithState, 'data', value)
        },
      } as WithState)
    : ({
        __proto__: CACHED_RESULT_PROTO,
        get data() {
          return (this as WithState)[STATE]?.load().data
        },
        set data(value) {
          replace(this as WithState, 'data', value)
        },
      } as WithState)
  Object.defineProperty(result, STATE, { value: new BodyState(result, body) })
  return result
}

/** Attaches a known serialization to a freshly executed (stripped) result. */
export function withBody(result: ExecutionResult, body: string): SerializableResult {
  Object.defineProperty(result, STATE, { value: new BodyState(result, body), configurable: true })
  Object.defineProperty(result, 'stringify', { value: stringifyCached, configurable: true })
  return result
}
