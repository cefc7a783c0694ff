/**
 * Rejects with `timeoutError()` when `promise` has not settled within `ms` (the timer is unref'd,
 * so it never keeps the process alive): a silently dead connection never answers.
 */
export function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  timeoutError: () => Error = () => new Error(`no answer within ${ms} ms`),
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(timeoutError()), ms)
    timer.unref?.()
    promise.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (error: unknown) => {
        clearTimeout(timer)
        reject(error)
      },
    )
  })
}

/**
 * Takes a connection from `connecting` (a `pool.connect()`) within `ms`, or rejects. A connection
 * that arrives after the deadline is handed to `discard`: nobody waits for it any more, and kept
 * it would hold one of the pool's slots for good (a database that accepts TCP but does not answer
 * yet leaks one per attempt, until the application's own queries find the pool exhausted).
 */
export function connectWithin<C>(connecting: Promise<C>, ms: number, discard: (late: C) => void): Promise<C> {
  let late = false
  connecting.then(
    (connection) => {
      if (!late) return
      try {
        discard(connection)
      } catch {
        // the pool already dropped it
      }
    },
    () => {}, // reported by withTimeout, or by nobody once late
  )
  return withTimeout(connecting, ms, () => {
    late = true
    return new Error(`could not connect within ${ms} ms`)
  })
}
