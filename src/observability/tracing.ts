import type { Logger } from 'pino'

/**
 * The part of an OpenTelemetry `Tracer` Strata uses, so that `@opentelemetry/api` is not a
 * dependency: pass `trace.getTracer('graphql-strata')`. Spans start in the active context, so they
 * nest under the request's span when your instrumentation propagates context.
 */
export interface StrataTracer {
  startSpan(name: string, options?: { attributes?: Record<string, string | number | boolean> }): StrataSpan
}

/** The part of an OpenTelemetry `Span` Strata uses. */
export interface StrataSpan {
  setAttribute(key: string, value: string | number | boolean): unknown
  /** `code` 2 is OpenTelemetry's `SpanStatusCode.ERROR`. */
  setStatus(status: { code: number; message?: string }): unknown
  recordException(exception: Error): unknown
  end(): void
}

/** `SpanStatusCode.ERROR`. */
const ERROR = 2

/** Marks a span failed with `error`. */
export function spanFailed(span: StrataSpan, error: unknown): void {
  const exception = error instanceof Error ? error : new Error(String(error))
  span.recordException(exception)
  span.setStatus({ code: ERROR, message: exception.message })
}

/**
 * Runs `work` in a span named `name` (none without a tracer): it records what `work` throws, and
 * ends when `work` settles. `work` may set attributes on the span it is given.
 */
export async function traced<T>(
  tracer: StrataTracer | undefined,
  name: string,
  attributes: Record<string, string | number | boolean>,
  work: (span: StrataSpan | undefined) => Promise<T>,
): Promise<T> {
  const span = tracer?.startSpan(name, { attributes })
  try {
    return await work(span)
  } catch (error) {
    if (span) spanFailed(span, error)
    throw error
  } finally {
    span?.end()
  }
}

/** A span that records nothing: what a tracer that threw on `startSpan` gets Strata instead. */
const NO_SPAN: StrataSpan = {
  setAttribute: () => undefined,
  setStatus: () => undefined,
  recordException: () => undefined,
  end: () => undefined,
}

/**
 * `tracer` made harmless: whatever it or its spans throw is passed to `failed` (for a log) instead
 * of failing the request, invalidation, clear or refresh it traces.
 */
export function guardedTracer(tracer: StrataTracer, failed: (error: unknown) => void): StrataTracer {
  const guard =
    <A extends unknown[]>(call: (...args: A) => unknown) =>
    (...args: A): undefined => {
      try {
        call(...args)
      } catch (error) {
        failed(error)
      }
      return undefined
    }
  return {
    startSpan(name, options) {
      let span: StrataSpan
      try {
        span = tracer.startSpan(name, options)
      } catch (error) {
        failed(error)
        return NO_SPAN
      }
      return {
        setAttribute: guard((key: string, value: string | number | boolean) => span.setAttribute(key, value)),
        setStatus: guard((status: { code: number; message?: string }) => span.setStatus(status)),
        recordException: guard((exception: Error) => span.recordException(exception)),
        end: guard(() => span.end()),
      }
    },
  }
}

/** `tracer` guarded (see {@link guardedTracer}), its first failure logged as a warning. */
export function loggedTracer(tracer: StrataTracer, logger: Logger): StrataTracer {
  let warned = false
  return guardedTracer(tracer, (error) => {
    if (warned) return
    warned = true
    logger.warn({ err: error }, 'strata: the tracer threw; spans may be missing (logged once)')
  })
}

/** Ends a lookup's span with what it found. */
export function endLookup(
  span: StrataSpan,
  status: 'HIT' | 'STALE' | 'MISS',
  tier: string | undefined,
): void {
  span.setAttribute('strata.cache.status', status)
  if (tier !== undefined) span.setAttribute('strata.cache.tier', tier)
  span.end()
}
