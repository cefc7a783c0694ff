import type { Logger } from 'pino'
import type { ChangeSource } from './changes/source.js'
import { StrataOptionError } from './errors.js'
import { breakerDefaults } from './tiers/breaker.js'
import type { CacheBus, CacheTier } from './tiers/tier.js'

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

/** Cache tag formats: non-empty strings (placeholders are checked against the schema). */
function checkTagFormats(value: unknown, name: string): void {
  if (!Array.isArray(value) || value.length === 0)
    fail(name, `must be a non-empty array of cache tags such as "post-stats", got ${describe(value)}`)
  for (const format of value)
    if (typeof format !== 'string' || format === '')
      fail(name, `contains ${describe(format)}, which is not a non-empty string`)
}

/** A mutation field's invalidation: a list of types, or `{ types?, entity?, keyArgs? }`. */
function checkInvalidation(value: unknown, name: string): void {
  if (Array.isArray(value)) {
    checkNames(value, name, false)
    return
  }
  checkRecord(value, name)
  for (const [property, given] of Object.entries(value)) {
    if (property === 'types') checkNames(given, `${name}.types`, false)
    else if (property === 'entity') {
      if (typeof given !== 'string' || !NAME.test(given))
        fail(`${name}.entity`, `must be the name of an object type, got ${describe(given)}`)
    } else if (property === 'keyArgs') {
      if (!Array.isArray(given) || given.length === 0)
        fail(`${name}.keyArgs`, `must be a non-empty array of argument paths, got ${describe(given)}`)
      for (const path of given)
        if (typeof path !== 'string' || !path.split('.').every((step) => NAME.test(step)))
          fail(
            `${name}.keyArgs`,
            `contains ${describe(path)}, which is not an argument path such as "id" or "input.id"`,
          )
    } else if (property === 'cacheTags') checkTagFormats(given, `${name}.cacheTags`)
    else
      fail(`${name}.${property}`, 'is not an option of an invalidation (types, entity, keyArgs, cacheTags)')
  }
  if (value.types === undefined && value.entity === undefined && value.cacheTags === undefined)
    fail(name, "names nothing: give it `types`, `cacheTags`, or an `entity` the field's arguments name")
  if (value.keyArgs !== undefined && value.entity === undefined) fail(`${name}.keyArgs`, 'needs an `entity`')
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

/** The longest delay `setTimeout` honours. */
const MAX_TIMER_MS = 2 ** 31 - 1

const KNOWN = new Set([
  'tenant',
  'session',
  'tiers',
  'defaultMaxAge',
  'staleWhileRevalidate',
  'hints',
  'keyFields',
  'defaultKeyFields',
  'invalidates',
  'cacheTags',
  'invalidateOnMutation',
  'enabled',
  'refresh',
  'shouldStore',
  'cacheErrors',
  'incremental',
  'dynamicHints',
  'maxEntryBytes',
  'extraKeyData',
  'schemaVersion',
  'keyPrefix',
  'header',
  'cacheControlHeader',
  'etag',
  'debug',
  'singleFlight',
  'logger',
  'breaker',
  'bus',
  'changes',
  'admin',
  'metrics',
  'tracer',
  'warm',
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
  for (const name of ['session', 'enabled', 'refresh', 'shouldStore', 'extraKeyData'])
    checkFunction(options, name)
  for (const name of [
    'invalidateOnMutation',
    'cacheErrors',
    'dynamicHints',
    'cacheControlHeader',
    'etag',
    'debug',
  ])
    checkBoolean(options, name)
  if (
    options.incremental !== undefined &&
    options.incremental !== 'bypass' &&
    options.incremental !== 'inline'
  )
    fail('incremental', `must be 'bypass' or 'inline', got ${describe(options.incremental)}`)
  const flight = options.singleFlight
  if (flight !== undefined && typeof flight !== 'boolean') {
    if (flight === null || typeof flight !== 'object' || Array.isArray(flight))
      fail('singleFlight', `must be true, false or { maxWaitMs }, got ${describe(flight)}`)
    for (const [property, value] of Object.entries(flight)) {
      if (property !== 'maxWaitMs')
        fail(`singleFlight.${property}`, 'is not an option of singleFlight (maxWaitMs)')
      if (value !== undefined && (!Number.isSafeInteger(value) || (value as number) < 1))
        fail('singleFlight.maxWaitMs', `must be a whole number of milliseconds >= 1, got ${describe(value)}`)
      // A longer timer runs after 1 ms (Node, browsers): every wait and refresh would give up at once.
      if ((value as number) > MAX_TIMER_MS)
        fail(
          'singleFlight.maxWaitMs',
          `must be at most ${MAX_TIMER_MS} (about 24.8 days), got ${describe(value)}`,
        )
    }
  }

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
  for (const name of ['defaultMaxAge', 'staleWhileRevalidate'] as const) {
    const value = options[name]
    if (value !== undefined && (!Number.isSafeInteger(value) || (value as number) < 0))
      fail(name, `must be a whole number of seconds >= 0, got ${describe(value)}`)
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
      checkInvalidation(types, `invalidates["${coordinate}"]`)
    }
  }
  if (options.cacheTags !== undefined) {
    checkRecord(options.cacheTags, 'cacheTags')
    for (const [coordinate, formats] of Object.entries(options.cacheTags)) {
      if (!COORDINATE.test(coordinate) || !coordinate.includes('.'))
        fail(`cacheTags["${coordinate}"]`, 'must be a field coordinate such as "Query.postCount"')
      checkTagFormats(formats, `cacheTags["${coordinate}"]`)
    }
  }
  if (
    options.tracer !== undefined &&
    typeof (options.tracer as { startSpan?: unknown } | null)?.startSpan !== 'function'
  )
    fail('tracer', `must be an OpenTelemetry tracer (trace.getTracer(...)), got ${describe(options.tracer)}`)
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
  if (options.admin !== undefined) {
    checkRecord(options.admin, 'admin')
    if (typeof options.admin.authorize !== 'function')
      fail('admin.authorize', "must be a function returning 'all', { tenant }, or nothing to refuse")
    const name = options.admin.fieldName
    if (name !== undefined && (typeof name !== 'string' || !NAME.test(name)))
      fail('admin.fieldName', `must be a GraphQL field name, got ${describe(name)}`)
  }
  if (options.metrics !== undefined) {
    checkRecord(options.metrics, 'metrics')
    const registry = options.metrics.registry as { registerMetric?: unknown } | undefined
    if (typeof registry?.registerMetric !== 'function')
      fail('metrics.registry', 'must be a prom-client Registry')
    const prefix = options.metrics.prefix
    if (prefix !== undefined && (typeof prefix !== 'string' || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(prefix)))
      fail(
        'metrics.prefix',
        `must start a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), got ${describe(prefix)}`,
      )
  }
  if (options.warm !== undefined) {
    checkRecord(options.warm, 'warm')
    const operations = options.warm.operations
    if (!Array.isArray(operations))
      fail(
        'warm.operations',
        `must be an array of { query, variables?, headers? }, got ${describe(operations)}`,
      )
    operations.forEach((operation: unknown, i: number) => {
      if (typeof (operation as { query?: unknown })?.query !== 'string')
        fail(`warm.operations[${i}].query`, 'must be a GraphQL document string')
    })
  }
  if (options.breaker !== undefined) {
    checkRecord(options.breaker, 'breaker')
    for (const [name, value] of Object.entries(options.breaker)) {
      if (value === undefined) continue // the default
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
