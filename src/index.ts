export type { AdminAccess, AdminOptions } from './admin/admin.js'
export type { ChangeSink, ChangeSource, ChangeSourceStatus } from './changes/source.js'
export { collectionTag, entityTag, tagsForEntityChange, tagsForTypeChange, typeTag } from './entities/tags.js'
export { StrataError, type StrataErrorCode, StrataOptionError, StrataSchemaError } from './errors.js'
export { canonicalJson } from './key/canonical.js'
export { deriveKey, encodeTenant, type KeyParts, tenantKeyPrefix } from './key/key.js'
export { defaultSchemaVersion } from './key/schema-version.js'
export type { MetricsOptions, MetricsRegistry } from './observability/metrics.js'
export type { BypassReason, OperationCounts, SkipReason, StrataStats } from './observability/stats.js'
export type { StrataSpan, StrataTracer } from './observability/tracing.js'
export { type RequestInfo, type StrataContext, type StrataOptions, strataDefaults } from './options.js'
export { type StrataHandle, type StrataPlugin, useStrata } from './plugin/use-strata.js'
export type { WarmOperation, WarmOptions } from './plugin/warm.js'
export {
  cacheControlDirectiveSdl,
  cacheTagDirectiveSdl,
  invalidatesDirectiveSdl,
  strataDirectivesSdl,
} from './policy/directives.js'
export {
  type CachePolicy,
  cacheControlFromInfo,
  type ResolveInfoCacheControl,
} from './policy/dynamic.js'
export type { CacheHint, CacheScope } from './policy/policy.js'
export type { MutationInvalidation } from './policy/schema-hints.js'
export { type BreakerOptions, type BreakerStats, breakerDefaults } from './tiers/breaker.js'
export { type MemoryTier, type MemoryTierOptions, memoryTier, memoryTierDefaults } from './tiers/memory.js'
export type {
  BusHandlers,
  BusMessage,
  CacheBus,
  CacheEntry,
  CacheTier,
  EntryPage,
  EntryQuery,
  EntrySummary,
  MaybePromise,
  SetOptions,
  TierStats,
} from './tiers/tier.js'
export { TieredCache, type TieredHit } from './tiers/tiered.js'
