import { createHash } from 'node:crypto'
import type { CacheScope } from '../policy/policy.js'

/** What the cache did for one operation of a request. */
export interface Outcome {
  /** STALE: an entry past its maxAge, served while it is refreshed (`staleWhileRevalidate`). */
  status: 'HIT' | 'STALE' | 'MISS' | 'BYPASS'
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
  /** Replaces the response (`@whatwg-node/server`, which Yoga runs on). */
  setResponse?(response: Response): void
  /** The server's fetch API, whose `Response` the replacement is built with. */
  fetchAPI?: { Response: typeof Response; Headers: typeof Headers }
}

/** Minimal shape of the Yoga `onResultProcess` payload we use. */
export interface ResultProcessPayload {
  request: Request
  result: unknown
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
  /** The hash of each entry served, once computed. */
  readonly #hashes = new WeakMap<object, string>()
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
   * Another plugin replaced the result (an error instead), or execution failed after Strata served it:
   * the cached body is not what goes out, so it has no tag, and it is sent `no-store`; in a batch too,
   * whose other results keep their policy (a batch's array has no tag).
   */
  onResultProcess({ request, result }: ResultProcessPayload): void {
    const outcomes = this.#outcomes.get(request)
    if (!outcomes) return
    const batch = Array.isArray(result)
    for (const outcome of outcomes) {
      if (!outcome.httpPolicy) continue
      if (batch ? !result.some((one) => isServed(one, outcome.result)) : !isServed(result, outcome.result)) {
        // What goes out is not what the policy was computed for (an error a plugin put in its place):
        // neither HTTP caches nor a validator may treat it as the cacheable result.
        outcome.httpPolicy = null
        outcome.body = undefined
      } else if (batch) outcome.body = undefined // the array is not the body: no tag
    }
  }

  /**
   * Writes the headers; a GET whose `if-none-match` names the response's entity tag is answered
   * `304 Not Modified` (RFC 9110 §13.1.2: the client's copy is current) with the headers the 200
   * carries but its content's; the other methods are answered in full. Decided on the response Yoga
   * built, whose status and media type (JSON, or a stream) are known only here.
   */
  onResponse({ request, response, setResponse, fetchAPI }: ResponsePayload): void {
    const outcomes = this.#outcomes.get(request)
    if (!outcomes) {
      if (this.#header && isGraphQLResponse(response)) response.headers.set(this.#header, 'BYPASS')
      return
    }
    this.#outcomes.delete(request)
    if (this.#header) response.headers.set(this.#header, combinedStatus(outcomes))
    if (this.#cacheControl && !response.headers.has('cache-control')) {
      const value = this.#cacheControlValue(outcomes)
      response.headers.set('cache-control', value)
      // Yoga answers one URL as JSON, GraphQL response JSON, server-sent events or multipart, by the
      // request's Accept: an HTTP cache allowed to store the answer must key it by Accept too.
      if (value !== 'no-store') varyOn(response.headers, 'accept')
    }
    if (!this.#etag || response.status !== 200 || response.headers.has('etag')) return
    const etag = this.#etagOf(outcomes, response.headers.get('content-type'))
    if (etag === undefined) return
    response.headers.set('etag', etag)
    const condition = request.method === 'GET' ? request.headers.get('if-none-match') : null
    if (condition !== null && setResponse && matches(condition, etag)) {
      setResponse(notModified(response, fetchAPI ?? { Response, Headers }))
    }
  }

  /**
   * A weak entity tag over the data and errors of a single cacheable result and the JSON media type
   * it is sent as: equal tags mean equal results, whichever instance or tier served them (weak: other
   * plugins may add per-request `extensions`). None for a batch, a response that may not be cached,
   * or a stream (server-sent events, multipart): another representation, which is never revalidated.
   */
  #etagOf(outcomes: readonly Outcome[], contentType: string | null): string | undefined {
    const type = contentType?.split(';')[0]?.trim().toLowerCase()
    const suffix =
      type === 'application/graphql-response+json' ? '' : type === 'application/json' ? '.j' : undefined
    const only = outcomes.length === 1 ? outcomes[0] : undefined
    if (suffix === undefined || only?.body === undefined || !only.httpPolicy || only.httpPolicy.maxAge <= 0) {
      return undefined
    }
    let hash = only.entry && this.#hashes.get(only.entry)
    if (hash === undefined) {
      hash = createHash('sha1').update(only.body).digest('base64url')
      if (only.entry) this.#hashes.set(only.entry, hash)
    }
    return `W/"${hash}${suffix}"`
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

/** A batch's status: MISS if any operation missed, else BYPASS if any bypassed, else STALE if any was. */
function combinedStatus(outcomes: readonly Outcome[]): Outcome['status'] {
  let status: Outcome['status'] = 'HIT'
  for (const outcome of outcomes) {
    if (outcome.status === 'MISS') return 'MISS'
    if (outcome.status === 'BYPASS') status = 'BYPASS'
    else if (outcome.status === 'STALE' && status === 'HIT') status = 'STALE'
  }
  return status
}

/**
 * Whether the result Yoga is about to send is the one Strata served: the same object, or a copy with
 * the same data and errors (a plugin that adds `extensions` copies the result; error masking, on in
 * Yoga by default, copies a result with errors and its errors array, keeping each error it lets through).
 */
function isServed(processed: unknown, served: object | undefined): boolean {
  if (served === undefined || typeof processed !== 'object' || processed === null) return false
  if (processed === served) return true
  if (Array.isArray(processed)) return false
  const copy = processed as { data?: unknown; errors?: unknown }
  const original = served as { data?: unknown; errors?: unknown }
  return copy.data === original.data && sameErrors(copy.errors, original.errors)
}

/** The same errors: the same array, or arrays of the same error objects in the same order. */
function sameErrors(sent: unknown, served: unknown): boolean {
  if (sent === served) return true
  if (!Array.isArray(sent) || !Array.isArray(served) || sent.length !== served.length) return false
  return sent.every((error, i) => error === served[i])
}

/** Adds `name` to the response's `vary` (which CORS may already have set), once. */
function varyOn(headers: Headers, name: string): void {
  const vary = headers.get('vary')
  if (vary === null) headers.set('vary', name)
  else if (!vary.split(',').some((one) => ['*', name].includes(one.trim().toLowerCase()))) {
    headers.set('vary', `${vary}, ${name}`)
  }
}

/** The 304 for a 200: its headers (cache-control, etag, vary, ...) without those of its content. */
function notModified(
  response: Response,
  fetchAPI: { Response: typeof Response; Headers: typeof Headers },
): Response {
  const headers = new fetchAPI.Headers(response.headers)
  for (const name of ['content-type', 'content-length', 'content-encoding']) headers.delete(name)
  return new fetchAPI.Response(null, { status: 304, headers })
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
