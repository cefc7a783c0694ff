import type { DocumentNode, GraphQLSchema } from 'graphql'
import type { Logger } from 'pino'
import type { ChangeSource } from './changes/source.js'
import { StrataOptionError } from './errors.js'
import type { CacheHint } from './policy/policy.js'
import { type BreakerOptions, breakerDefaults } from './tiers/breaker.js'
import type { CacheBus, CacheTier } from './tiers/tier.js'

/**
 * The context type hooks see unless you name yours (`useStrata<MyContext>(...)`):
 * Yoga's context, which carries the Fetch `request`.
 */
export interface StrataContext {
  request: Request
  [key: string]: unknown
}

/** What identity and policy hooks receive about the current request. */
export interface RequestInfo<TContext> {
  /** The GraphQL context of the request (in Yoga: includes `request`). */
  readonly context: TContext
  readonly document: DocumentNode
  readonly operationName: string | null
  readonly variables: Readonly<Record<string, unknown>>
}

/** Options of `useStrata`. Every field is validated when the plugin is created. */
export interface StrataOptions<TContext = StrataContext> {
  /**
   * The tenant of a request, or `false` for a single-tenant app. **Required.**
   * With tenancy on, a request whose tenant is `null`/`undefined` bypasses the cache
   * entirely (never a shared entry); it is counted and logged. An empty string is a
   * tenant like any other.
   * @example ({ context }) => context.request.headers.get('x-tenant-id')
   */
  tenant: ((info: RequestInfo<TContext>) => string | number | null | undefined) | false
  /**
   * The session of a request: keys results whose scope is PRIVATE. Without a session,
   * PRIVATE results are neither read from nor written to the cache.
   * @default () => undefined
   * @example ({ context }) => context.user?.id
   */
  session?: (info: RequestInfo<TContext>) => string | number | null | undefined
  /**
   * Cache tiers, fastest first.
   * @default [memoryTier()]
   */
  tiers?: readonly CacheTier[]
  /**
   * Database changes that invalidate the cache, e.g. `postgresChanges({ pool })` from
   * `graphql-strata/postgres`, fed by triggers installed with `strata.watch(...)`.
   * @default none
   */
  changes?: ChangeSource
  /**
   * Carries invalidations to other instances' local tiers. Default: the bus of the first shared
   * tier that has one (Redis pub/sub, else PostgreSQL NOTIFY) when local tiers are used; `false`
   * for a single instance. While the bus is down, local tiers are flushed and not used.
   */
  bus?: CacheBus | false
  /**
   * Timeouts and circuit breaker of shared tiers (see `breakerDefaults`).
   * @default { timeoutMs: 100, invalidateTimeoutMs: 1000, failureThreshold: 5, cooldownMs: 500, maxCooldownMs: 30000, maxPendingTags: 10000 }
   */
  breaker?: Partial<BreakerOptions>
  /**
   * maxAge (seconds) for root fields and composite-returning fields without a hint.
   * @default 0
   */
  defaultMaxAge?: number
  /**
   * Cache hints by schema coordinate, for code-first schemas or to override the SDL.
   * @example { 'Query.posts': { maxAge: 60 }, User: { scope: 'PRIVATE' } }
   * @default {}
   */
  hints?: Readonly<Record<string, CacheHint>>
  /**
   * Key fields per object type; objects with all key fields present become entities.
   * @default {} (every type uses `defaultKeyFields`)
   */
  keyFields?: Readonly<Record<string, readonly string[]>>
  /**
   * Key fields for types not named in `keyFields`; a type lacking them has no entities.
   * @default ['id']
   */
  defaultKeyFields?: readonly string[]
  /**
   * Types a mutation field invalidates, by coordinate: the config form of `@invalidates`.
   * @example { 'Mutation.deletePost': ['Post'] }
   * @default {}
   */
  invalidates?: Readonly<Record<string, readonly string[]>>
  /**
   * Invalidate the entities found in mutation results (their entity and collection tags).
   * @default true
   */
  invalidateOnMutation?: boolean
  /**
   * Per-request switch: `false` bypasses the cache for this request (no read, no write).
   * @default () => true
   */
  enabled?: (info: RequestInfo<TContext>) => boolean
  /**
   * Store results that carry errors (partial data). Off by default: errors are often transient.
   * @default false
   */
  cacheErrors?: boolean
  /**
   * Results whose serialized body exceeds this many bytes are not stored.
   * @default 1048576 (1 MiB)
   */
  maxEntryBytes?: number
  /**
   * Extra data mixed into the key (e.g. locale). Any JSON value; key order does not matter.
   * @default undefined
   */
  extraKeyData?: (info: RequestInfo<TContext>) => unknown
  /**
   * Schema version in the key. Default: SHA-256 of the schema printed with directives,
   * recomputed whenever the schema changes.
   */
  schemaVersion?: string | ((schema: GraphQLSchema) => string)
  /**
   * Namespace of every key: letters, digits, `_` and `-`.
   * @default 'strata'
   */
  keyPrefix?: string
  /**
   * Response header that tells HIT, MISS or BYPASS (Yoga only); `false` to omit it.
   * @default 'x-strata-cache'
   */
  header?: string | false
  /**
   * Send `cache-control` on query responses (Yoga only): `max-age=N, private|public` when
   * cacheable, `no-store` otherwise. `public` only with tenancy off and scope PUBLIC.
   * @default true
   */
  cacheControlHeader?: boolean
  /**
   * Add `extensions.strata` (hit, tier, ttl, age) to responses. For debugging only.
   * @default false
   */
  debug?: boolean
  /**
   * Execute concurrent identical misses once per process.
   * @default true
   */
  singleFlight?: boolean
  /**
   * A pino logger. The library never writes to the console.
   * @default a silent logger
   */
  logger?: Logger
}

export const strataDefaults = {
  defaultMaxAge: 0,
  defaultKeyFields: ['id'] as readonly string[],
  invalidateOnMutation: true,
  cacheErrors: false,
  maxEntryBytes: 2 ** 20,
  keyPrefix: 'strata',
  header: 'x-strata-cache',
  cacheControlHeader: true,
  debug: false,
  singleFlight: true,
} as const

const NAME = /^[_A-Za-z][_0-9A-Za-z]*$/
const COORDINATE = /^[_A-Za-z][_0-9A-Za-z]*(\.[_A-Za-z][_0-9A-Za-z]*)?$/

function fail(option: string, problem: string): never {
  throw new StrataOptionError(option, problem)
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (Array.isArray(value)) return 'an array'
  return value === null ? 'null' : typeof value === 'object' ? 'an object' : String(value)
}

function checkFunction(options: object, name: string, required = false): void {
  const value = (options as Record<string, unknown>)[name]
  if (value === undefined && !required) return
  if (typeof value !== 'function') fail(name, `must be a function, got ${describe(value)}`)
}

function checkBoolean(options: object, name: string): void {
  const value = (options as Record<string, unknown>)[name]
  if (value !== undefined && typeof value !== 'boolean')
    fail(name, `must be true or false, got ${describe(value)}`)
}

function checkRecord(value: unknown, name: string): asserts value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    fail(name, `must be an object, got ${describe(value)}`)
}

function checkNames(value: unknown, name: string, allowEmpty: boolean): void {
  if (!Array.isArray(value) || (!allowEmpty && value.length === 0))
    fail(name, `must be a non-empty array of field names, got ${describe(value)}`)
  for (const item of value)
    if (typeof item !== 'string' || !NAME.test(item))
      fail(name, `contains ${describe(item)}, which is not a GraphQL name`)
}

function checkHint(hint: unknown, name: string): void {
  checkRecord(hint, name)
  for (const [property, value] of Object.entries(hint)) {
    if (property === 'maxAge') {
      if (!Number.isSafeInteger(value) || (value as number) < 0)
        fail(`${name}.maxAge`, `must be a whole number of seconds >= 0, got ${describe(value)}`)
    } else if (property === 'scope') {
      if (value !== 'PUBLIC' && value !== 'PRIVATE')
        fail(`${name}.scope`, `must be 'PUBLIC' or 'PRIVATE', got ${describe(value)}`)
    } else if (property === 'inheritMaxAge') {
      if (typeof value !== 'boolean')
        fail(`${name}.inheritMaxAge`, `must be true or false, got ${describe(value)}`)
    } else {
      fail(name, `has unknown property "${property}"; allowed: maxAge, scope, inheritMaxAge`)
    }
  }
}

const KNOWN = new Set([
  'tenant',
  'session',
  'tiers',
  'defaultMaxAge',
  'hints',
  'keyFields',
  'defaultKeyFields',
  'invalidates',
  'invalidateOnMutation',
  'enabled',
  'cacheErrors',
  'maxEntryBytes',
  'extraKeyData',
  'schemaVersion',
  'keyPrefix',
  'header',
  'cacheControlHeader',
  'debug',
  'singleFlight',
  'logger',
  'breaker',
  'bus',
  'changes',
])

/** Throws a `StrataOptionError` naming the first invalid option. */
export function validateOptions(options: unknown): void {
  checkRecord(options, 'options')
  for (const name of Object.keys(options)) {
    if (!KNOWN.has(name)) fail(name, `is not an option of useStrata; known options: ${[...KNOWN].join(', ')}`)
  }
  if (options.tenant === undefined) {
    fail(
      'tenant',
      'is required: pass a function returning the tenant of a request, or `false` for a single-tenant app',
    )
  }
  if (options.tenant !== false) checkFunction(options, 'tenant', true)
  for (const name of ['session', 'enabled', 'extraKeyData']) checkFunction(options, name)
  for (const name of ['invalidateOnMutation', 'cacheErrors', 'cacheControlHeader', 'debug', 'singleFlight'])
    checkBoolean(options, name)

  if (options.tiers !== undefined) {
    if (!Array.isArray(options.tiers) || options.tiers.length === 0)
      fail('tiers', `must be a non-empty array of tiers, got ${describe(options.tiers)}`)
    const names = new Set<string>()
    options.tiers.forEach((tier: unknown, i: number) => {
      const t = tier as Partial<CacheTier> | null
      for (const method of ['get', 'set', 'delete', 'invalidate', 'clear', 'stats'] as const) {
        if (typeof t?.[method] !== 'function')
          fail(`tiers[${i}]`, `is not a cache tier: it has no ${method}() method`)
      }
      if (typeof t?.name !== 'string' || t.name === '') fail(`tiers[${i}].name`, 'must be a non-empty string')
      if (names.has(t.name))
        fail(`tiers[${i}].name`, `"${t.name}" is used by two tiers; give each tier its own name`)
      names.add(t.name)
    })
  }
  if (
    options.defaultMaxAge !== undefined &&
    (!Number.isSafeInteger(options.defaultMaxAge) || (options.defaultMaxAge as number) < 0)
  ) {
    fail('defaultMaxAge', `must be a whole number of seconds >= 0, got ${describe(options.defaultMaxAge)}`)
  }
  if (
    options.maxEntryBytes !== undefined &&
    (!Number.isSafeInteger(options.maxEntryBytes) || (options.maxEntryBytes as number) < 1)
  ) {
    fail('maxEntryBytes', `must be a whole number of bytes >= 1, got ${describe(options.maxEntryBytes)}`)
  }
  if (options.hints !== undefined) {
    checkRecord(options.hints, 'hints')
    for (const [coordinate, hint] of Object.entries(options.hints)) {
      if (!COORDINATE.test(coordinate))
        fail(`hints["${coordinate}"]`, 'is not a schema coordinate; use "Type" or "Type.field"')
      checkHint(hint, `hints["${coordinate}"]`)
    }
  }
  if (options.keyFields !== undefined) {
    checkRecord(options.keyFields, 'keyFields')
    for (const [typeName, fields] of Object.entries(options.keyFields)) {
      if (!NAME.test(typeName)) fail(`keyFields["${typeName}"]`, 'is not a GraphQL type name')
      checkNames(fields, `keyFields.${typeName}`, false)
    }
  }
  if (options.defaultKeyFields !== undefined) checkNames(options.defaultKeyFields, 'defaultKeyFields', true)
  if (options.invalidates !== undefined) {
    checkRecord(options.invalidates, 'invalidates')
    for (const [coordinate, types] of Object.entries(options.invalidates)) {
      if (!COORDINATE.test(coordinate) || !coordinate.includes('.'))
        fail(
          `invalidates["${coordinate}"]`,
          'must be a mutation field coordinate such as "Mutation.deletePost"',
        )
      checkNames(types, `invalidates["${coordinate}"]`, false)
    }
  }
  const version = options.schemaVersion
  if (
    version !== undefined &&
    typeof version !== 'function' &&
    (typeof version !== 'string' || version === '')
  ) {
    fail('schemaVersion', `must be a non-empty string or a function of the schema, got ${describe(version)}`)
  }
  if (
    options.keyPrefix !== undefined &&
    (typeof options.keyPrefix !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(options.keyPrefix))
  ) {
    fail('keyPrefix', `must be 1-64 letters, digits, '_' or '-', got ${describe(options.keyPrefix)}`)
  }
  const header = options.header
  if (
    header !== undefined &&
    header !== false &&
    (typeof header !== 'string' || !/^[A-Za-z0-9-]+$/.test(header))
  ) {
    fail('header', `must be a header name (letters, digits, '-') or false, got ${describe(header)}`)
  }
  if (options.bus !== undefined && options.bus !== false) {
    const bus = options.bus as Partial<CacheBus> | null
    if (typeof bus?.start !== 'function' || typeof bus.publish !== 'function')
      fail('bus', 'must be a cache bus (start, publish, close) or false')
  }
  if (options.changes !== undefined) {
    const changes = options.changes as Partial<ChangeSource> | null
    if (typeof changes?.start !== 'function' || typeof changes.status !== 'function') {
      fail(
        'changes',
        'must be a change source such as postgresChanges({ pool }) from graphql-strata/postgres',
      )
    }
  }
  if (options.breaker !== undefined) {
    checkRecord(options.breaker, 'breaker')
    for (const [name, value] of Object.entries(options.breaker)) {
      if (!(name in breakerDefaults))
        fail(`breaker.${name}`, `is not a breaker option; known: ${Object.keys(breakerDefaults).join(', ')}`)
      if (!Number.isSafeInteger(value) || (value as number) < 1)
        fail(`breaker.${name}`, `must be a whole number >= 1, got ${describe(value)}`)
    }
  }
  const logger = options.logger as Partial<Logger> | undefined
  if (logger !== undefined && (typeof logger?.warn !== 'function' || typeof logger.child !== 'function')) {
    fail('logger', 'must be a pino logger (it needs warn() and child())')
  }
}
