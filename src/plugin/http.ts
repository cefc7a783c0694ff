import { createHash } from 'node:crypto'
import type { CacheScope } from '../policy/policy.js'

/** What the cache did for one operation of a request. */
export interface Outcome {
  status: 'HIT' | 'MISS' | 'BYPASS'
  /** Seconds the response may be cached by HTTP caches, and by whom; `null`: must not be. */
  httpPolicy: { maxAge: number; scope: CacheScope } | null
  /** The JSON the response carries (its data and errors), when the response may be cached. */
  body?: string
  /** The stored entry the body came from: a memory tier serves the same object, whose tag is kept. */
  entry?: object
  /** The result handed to execution: a tag is sent only if Yoga sends this result (or a copy of it). */
  result?: object
}

/** Minimal shape of the Yoga `onResponse` payload we use (no runtime dependency on Yoga). */
export interface ResponsePayload {
  request: Request
  response: Response
}

/** Minimal shape of the Yoga `onResultProcess` payload we use. */
export interface ResultProcessPayload {
  request: Request
  result: unknown
  resultProcessor?: unknown
  setResultProcessor(
    processor: (result: unknown, fetchAPI: { Response: typeof Response }) => Response,
    acceptedMediaType: string,
  ): void
}

/** One reporter's settings: which headers it writes. */
export interface HttpReporterSettings {
  /** The HIT / MISS / BYPASS header's name, or `false`. */
  header: string | false
  cacheControl: boolean
  /** `cache-control: public` may be sent (tenancy is off). */
  allowPublic: boolean
  /** Send `etag` and answer a matching `if-none-match` on a GET with 304. */
  etag: boolean
}

/**
 * Collects each request's outcomes (a batched request has several) and writes the
 * `x-strata-cache` and `cache-control` headers on the response.
 */
export class HttpReporter {
  readonly #outcomes = new WeakMap<object, Outcome[]>()
  /** The entity tag of each request's response, and of each entry served, once computed. */
  readonly #etags = new WeakMap<object, string>()
  readonly #header: string | false
  readonly #cacheControl: boolean
  readonly #allowPublic: boolean
  readonly #etag: boolean

  constructor(settings: HttpReporterSettings) {
    this.#header = settings.header
    this.#cacheControl = settings.cacheControl
    this.#allowPublic = settings.allowPublic
    this.#etag = settings.etag
  }

  /** Records an outcome for the request the context belongs to (no-op outside Yoga). */
  record(context: unknown, outcome: Outcome): void {
    const request = (context as { request?: unknown } | null)?.request
    if (typeof request !== 'object' || request === null) return
    const list = this.#outcomes.get(request)
    if (list) list.push(outcome)
    else this.#outcomes.set(request, [outcome])
  }

  /**
   * A GET whose `if-none-match` names the response's entity tag is answered `304 Not Modified`
   * (RFC 9110 §13.1.2: the client's copy is current); the other methods are answered in full.
   */
  onResultProcess({ request, result, resultProcessor, setResultProcessor }: ResultProcessPayload): void {
    if (!this.#etag) return
    const outcomes = this.#outcomes.get(request)
    // Another plugin replaced the result (an error instead), execution failed after Strata served it,
    // or a batch's array is sent: the cached body is not what goes out, so it has no tag.
    const only = outcomes?.length === 1 ? outcomes[0] : undefined
    if (only && !isServed(result, only.result)) only.body = undefined
    if (request.method !== 'GET' || resultProcessor === undefined) return
    const condition = request.headers.get('if-none-match')
    if (condition === null) return
    const etag = this.#etagOf(request)
    if (etag === undefined || !matches(condition, etag)) return
    setResultProcessor((_, fetchAPI) => new fetchAPI.Response(null, { status: 304 }), 'application/json')
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
    if (this.#etag && (response.status === 200 || response.status === 304) && !response.headers.has('etag')) {
      const etag = this.#etagOf(request, outcomes)
      if (etag !== undefined) response.headers.set('etag', etag)
    }
    // The tag belongs to this response: the same Request object handled again gets its new result's.
    this.#etags.delete(request)
  }

  /**
   * A weak entity tag over the data and errors of a single cacheable result: equal tags mean equal
   * results, whichever instance or tier served them (weak: other plugins may add per-request
   * `extensions`). None for a batch, or for a response that may not be cached.
   */
  #etagOf(request: object, outcomes = this.#outcomes.get(request)): string | undefined {
    const known = this.#etags.get(request)
    if (known !== undefined) return known
    const only = outcomes?.length === 1 ? outcomes[0] : undefined
    if (only?.body === undefined || !only.httpPolicy || only.httpPolicy.maxAge <= 0) return undefined
    let etag = only.entry && this.#etags.get(only.entry)
    if (etag === undefined) {
      etag = `W/"${createHash('sha1').update(only.body).digest('base64url')}"`
      if (only.entry) this.#etags.set(only.entry, etag)
    }
    this.#etags.set(request, etag)
    return etag
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

/**
 * Whether the result Yoga is about to send is the one Strata served: the same object, or a copy with
 * the same data and errors (a plugin that adds `extensions` copies the result).
 */
function isServed(processed: unknown, served: object | undefined): boolean {
  if (served === undefined || typeof processed !== 'object' || processed === null) return false
  if (processed === served) return true
  if (Array.isArray(processed)) return false
  const copy = processed as { data?: unknown; errors?: unknown }
  const original = served as { data?: unknown; errors?: unknown }
  return copy.data === original.data && copy.errors === original.errors
}

/** `if-none-match` by weak comparison: `*`, or a listed tag with the same opaque part. */
function matches(condition: string, etag: string): boolean {
  if (condition.trim() === '*') return true
  const opaque = etag.slice(2)
  return condition.split(',').some((tag) => {
    const trimmed = tag.trim()
    return (trimmed.startsWith('W/') ? trimmed.slice(2) : trimmed) === opaque
  })
}

function isGraphQLResponse(response: Response): boolean {
  const type = response.headers.get('content-type') ?? ''
  return type.includes('json') || type.includes('multipart/mixed') || type.includes('text/event-stream')
}
