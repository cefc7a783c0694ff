import type { Logger } from 'pino'

/** One operation to execute at startup (and after a flush) to fill the cache. */
export interface WarmOperation {
  query: string
  variables?: Record<string, unknown>
  operationName?: string
  /** Request headers, e.g. the tenant header your `tenant` function reads. */
  headers?: Record<string, string>
}

/** Options of `warm`. */
export interface WarmOptions {
  operations: readonly WarmOperation[]
  /**
   * Warm again after every flush (admin field or `clear()`).
   * @default false
   */
  afterFlush?: boolean
}

/** The part of the Yoga server (as `onYogaInit` hands it over) that warming needs. */
export interface YogaLike {
  handle(request: Request, serverContext: Record<string, unknown>): unknown
  readonly graphqlEndpoint: string
}

/** Executes the warm-up operations through Yoga, one after another. Failures are logged, never thrown. */
export async function warm(
  yoga: YogaLike,
  operations: readonly WarmOperation[],
  logger: Logger,
): Promise<number> {
  let warmed = 0
  for (const [index, operation] of operations.entries()) {
    try {
      const request = new Request(`http://localhost${yoga.graphqlEndpoint}`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/graphql-response+json',
          ...operation.headers,
        },
        body: JSON.stringify({
          query: operation.query,
          variables: operation.variables,
          operationName: operation.operationName,
        }),
      })
      const response = (await yoga.handle(request, {})) as Response
      const body = (await response.json()) as { errors?: unknown[] }
      if (response.status !== 200 || body.errors)
        throw new Error(`status ${response.status}, ${body.errors?.length ?? 0} errors`)
      warmed++
    } catch (error) {
      logger.warn(
        { err: error, operation: operation.operationName ?? index },
        'strata: warm-up operation failed',
      )
    }
  }
  logger.info({ warmed, of: operations.length }, 'strata: cache warmed')
  return warmed
}
