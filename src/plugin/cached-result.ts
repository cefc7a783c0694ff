import type { ExecutionResult } from 'graphql'

/** An execution result that Yoga serializes with `stringify` instead of JSON.stringify. */
export type SerializableResult = ExecutionResult & { stringify?: (result: ExecutionResult) => string }

/**
 * A result whose serialized form is already known. Yoga calls `stringify` and sends
 * `body` as is (no re-serialization, byte-identical to the stored entry). Anyone
 * else reading `data` gets it parsed lazily; if the result is changed (another plugin
 * adds extensions or replaces data), it is serialized normally.
 */
export function resultFromBody(body: string): SerializableResult {
  let parsed: ExecutionResult | undefined
  const load = (): ExecutionResult => {
    parsed ??= JSON.parse(body) as ExecutionResult
    return parsed
  }
  let changed = false
  const result = {} as SerializableResult
  const define = (name: 'data' | 'errors'): void => {
    Object.defineProperty(result, name, {
      enumerable: true,
      configurable: true,
      get: () => load()[name],
      set(value: unknown) {
        changed = true
        Object.defineProperty(result, name, { value, enumerable: true, writable: true, configurable: true })
      },
    })
  }
  define('data')
  if (body.includes('"errors":')) define('errors')
  Object.defineProperty(result, 'stringify', {
    enumerable: false,
    value: (target: ExecutionResult) =>
      target === result && !changed && result.extensions === undefined ? body : JSON.stringify(target),
  })
  return result
}

/** Attaches a known serialization to a freshly executed (stripped) result. */
export function withBody(result: ExecutionResult, body: string): SerializableResult {
  const out = result as SerializableResult
  Object.defineProperty(out, 'stringify', {
    enumerable: false,
    configurable: true,
    value: (target: ExecutionResult) =>
      target === out && out.extensions === undefined ? body : JSON.stringify(target),
  })
  return out
}
