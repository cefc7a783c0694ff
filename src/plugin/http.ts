import type { CacheScope } from '../policy/policy.js'

/** What the cache did for one operation of a request. */
export interface Outcome {
  status: 'HIT' | 'MISS' | 'BYPASS'
  /** Seconds the response may be cached by HTTP caches, and by whom; `null`: must not be. */
  httpPolicy: { maxAge: number; scope: CacheScope } | null
}

/** Minimal shape of the Yoga `onResponse` payload we use (no runtime dependency on Yoga). */
export interface ResponsePayload {
  request: Request
  response: Response
}

/**
 * Collects each request's outcomes (a batched request has several) and writes the
 * `x-strata-cache` and `cache-control` headers on the response.
 */
export class HttpReporter {
  readonly #outcomes = new WeakMap<object, Outcome[]>()
  readonly #header: string | false
  readonly #cacheControl: boolean
  readonly #allowPublic: boolean

  constructor(header: string | false, cacheControl: boolean, allowPublic: boolean) {
    this.#header = header
    this.#cacheControl = cacheControl
    this.#allowPublic = allowPublic
  }

  /** Records an outcome for the request the context belongs to (no-op outside Yoga). */
  record(context: unknown, outcome: Outcome): void {
    const request = (context as { request?: unknown } | null)?.request
    if (typeof request !== 'object' || request === null) return
    const list = this.#outcomes.get(request)
    if (list) list.push(outcome)
    else this.#outcomes.set(request, [outcome])
  }

  onResponse({ request, response }: ResponsePayload): void {
    const outcomes = this.#outcomes.get(request)
    if (!outcomes) {
      if (this.#header && isGraphQLResponse(response)) response.headers.set(this.#header, 'BYPASS')
      return
    }
    this.#outcomes.delete(request)
    if (this.#header) response.headers.set(this.#header, combinedStatus(outcomes))
    if (this.#cacheControl && !response.headers.has('cache-control')) {
      response.headers.set('cache-control', this.#cacheControlValue(outcomes))
    }
  }

  #cacheControlValue(outcomes: readonly Outcome[]): string {
    let maxAge = Number.POSITIVE_INFINITY
    let scope: CacheScope = 'PUBLIC'
    for (const { httpPolicy } of outcomes) {
      if (!httpPolicy || httpPolicy.maxAge <= 0) return 'no-store'
      maxAge = Math.min(maxAge, httpPolicy.maxAge)
      if (httpPolicy.scope === 'PRIVATE') scope = 'PRIVATE'
    }
    const who = scope === 'PUBLIC' && this.#allowPublic ? 'public' : 'private'
    return `max-age=${maxAge}, ${who}`
  }
}

function combinedStatus(outcomes: readonly Outcome[]): Outcome['status'] {
  let status: Outcome['status'] = 'HIT'
  for (const outcome of outcomes) {
    if (outcome.status === 'MISS') return 'MISS'
    if (outcome.status === 'BYPASS') status = 'BYPASS'
  }
  return status
}

function isGraphQLResponse(response: Response): boolean {
  const type = response.headers.get('content-type') ?? ''
  return type.includes('json') || type.includes('multipart/mixed') || type.includes('text/event-stream')
}
