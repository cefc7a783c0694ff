/**
 * The entries of `value` that are not `undefined`: spread over defaults, an option written
 * `pollMs: env.POLL ? Number(env.POLL) : undefined` keeps its default, as its type promises.
 */
export function definedOnly<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T
}
