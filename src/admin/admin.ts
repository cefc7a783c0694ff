import { GraphQLError } from 'graphql'
import type { ChangeSource } from '../changes/source.js'
import { tagsForEntityChange, tagsForTypeChange } from '../entities/tags.js'
import { isWellFormedTenant, keyTenant } from '../key/key.js'
import type { StrataEngine } from '../plugin/engine.js'
import { cacheTag } from '../policy/cache-tags.js'
import { ask, type PurgeFilter, purgeListing } from '../tiers/purge.js'
import type { EntryQuery, EntrySummary } from '../tiers/tier.js'

/** What an admin may do: everything (`'all'`), or one tenant's entries only. */
export type AdminAccess = 'all' | { readonly tenant: string }

/** Options of the admin field. */
export interface AdminOptions<TContext> {
  /**
   * Who may use the admin field, and with what scope: `'all'` for a super admin, `{ tenant }` for
   * a tenant admin, anything falsy to refuse (a `FORBIDDEN` error, no data).
   * @example ({ context }) => context.user?.role === 'admin' ? 'all' : null
   */
  authorize(info: {
    context: TContext
  }): AdminAccess | null | undefined | false | Promise<AdminAccess | null | undefined | false>
  /**
   * Root field name on Query and Mutation.
   * @default '_strata'
   */
  fieldName?: string
}

const forbidden = () =>
  new GraphQLError('Forbidden', { extensions: { code: 'FORBIDDEN', http: { status: 403 } } })

type Counts = Record<string, number>
/** What a purge removed from each tier, and the shared tiers it reaches only once they are back. */
const purgeResult = (engine: StrataEngine, removed: Counts) => ({
  removed: Object.entries(removed).map(([name, count]) => ({ name, count })),
  total: Object.values(removed).reduce((a, b) => a + b, 0),
  deferred: Object.entries(engine.cache.health())
    .filter(([, circuit]) => circuit.state === 'open')
    .map(([name]) => name),
})
const counts = (record: Partial<Record<string, number>>) =>
  Object.entries(record).map(([name, count]) => ({ name, count: count ?? 0 }))

/** The resolvers of the admin field: each authorizes, then returns the admin root object. */
export function adminResolvers<TContext>(
  engine: StrataEngine,
  options: AdminOptions<TContext>,
  changes: ChangeSource | undefined,
) {
  const authorize = async (context: unknown): Promise<AdminAccess> => {
    const access = await options.authorize({ context: context as TContext })
    // A tenant that is not well-formed Unicode would name another one in keys: refused like no access.
    if (
      access !== 'all' &&
      !(
        access &&
        typeof access === 'object' &&
        typeof access.tenant === 'string' &&
        isWellFormedTenant(access.tenant)
      )
    )
      throw forbidden()
    return access
  }
  return {
    query: async (_root: unknown, _args: unknown, context: unknown) =>
      new AdminQuery(engine, await authorize(context), changes),
    mutation: async (_root: unknown, _args: unknown, context: unknown) =>
      new AdminMutation(engine, await authorize(context)),
  }
}

/** The tenant an admin may act on (`undefined`: every tenant), refusing another tenant. */
function scopedTenant(access: AdminAccess, requested: string | null | undefined): string | null | undefined {
  if (typeof requested === 'string' && !isWellFormedTenant(requested))
    throw new GraphQLError('tenant is not well-formed Unicode (it holds a lone surrogate)', {
      extensions: { code: 'BAD_USER_INPUT' },
    })
  // An explicit null is no tenant asked for, as when omitted: everything (with tenancy off, every
  // entry is under the null tenant anyway).
  if (access === 'all') return requested ?? undefined
  if (requested !== undefined && requested !== null && requested !== access.tenant) throw forbidden()
  return access.tenant
}

class AdminQuery {
  constructor(
    readonly engine: StrataEngine,
    readonly access: AdminAccess,
    readonly changes: ChangeSource | undefined,
  ) {}

  async stats() {
    if (this.access !== 'all') throw forbidden()
    const { stats, cache } = this.engine
    const tiers = await Promise.all(
      cache.tiers.map(async (tier) => {
        const tierStats = await ask(() => tier.stats()).catch(() => undefined)
        return {
          tier: tier.name,
          hits: stats.hitsByTier[tier.name] ?? 0,
          entries: tierStats?.entries ?? null,
          bytes: tierStats?.bytes ?? null,
          evictions: tierStats?.evictions ?? 0,
          expirations: tierStats?.expirations ?? 0,
        }
      }),
    )
    const lookups = stats.hits + stats.misses
    return {
      hits: stats.hits,
      staleHits: stats.staleHits,
      refreshes: stats.refreshes,
      failedRefreshes: stats.failedRefreshes,
      misses: stats.misses,
      hitRate: lookups === 0 ? 0 : stats.hits / lookups,
      bypasses: counts(stats.bypasses),
      stores: stats.stores,
      skippedStores: counts(stats.skippedStores),
      evictions: tiers.reduce((sum, t) => sum + t.evictions, 0),
      invalidations: stats.invalidations,
      tiers,
      operations: Object.entries(stats.byOperation).map(([operationName, c]) => ({ operationName, ...c })),
    }
  }

  async entries(args: {
    tenant?: string | null
    operationName?: string | null
    tag?: string | null
    tier?: string | null
    first?: number
    after?: string | null
  }) {
    const tenant = scopedTenant(this.access, args.tenant)
    const tiers = this.engine.cache.tiers
    const tier = args.tier ? tiers.find((t) => t.name === args.tier) : tiers[0]
    if (!tier)
      throw new GraphQLError(`No tier named ${args.tier}; tiers: ${tiers.map((t) => t.name).join(', ')}`)
    const query: EntryQuery = {
      limit: Math.min(Math.max(args.first ?? 50, 1), 500),
      ...(tenant === undefined ? {} : { tenant }),
      ...(args.operationName ? { operationName: args.operationName } : {}),
      ...(args.tag ? { tag: args.tag } : {}),
      ...(args.after ? { cursor: args.after } : {}),
    }
    const page = await ask(() => tier.list(query))
    return { nodes: page.entries.map((entry) => this.#node(entry)), cursor: page.cursor ?? null }
  }

  async entry(args: { key: string }) {
    if (this.access !== 'all' && keyTenant(args.key) !== this.access.tenant) return null
    for (const tier of this.engine.cache.tiers) {
      const entry = await ask(() => tier.get(args.key)).catch(() => undefined)
      if (entry) return { ...this.#node({ key: args.key, ...entry }), bodyPreview: entry.body.slice(0, 500) }
    }
    return null
  }

  health() {
    if (this.access !== 'all') throw forbidden()
    const { cache } = this.engine
    const circuits = cache.health()
    const status = this.changes?.status()
    return {
      localTiersInUse: cache.localTrusted,
      tiers: cache.tiers.map((tier) => {
        const circuit = circuits[tier.name]
        return {
          tier: tier.name,
          shared: tier.shared,
          circuit: circuit?.state ?? 'local',
          failures: circuit?.failures ?? 0,
          timeouts: circuit?.timeouts ?? 0,
          pendingInvalidations: String(circuit?.pendingTags ?? 0),
        }
      }),
      changes: status ? { ...status, lagMs: status.sinceLastRead } : null,
    }
  }

  #node(entry: EntrySummary) {
    const tiers = this.engine.cache.tiers
    return {
      ...entry,
      ttlSeconds: secondsUntil(entry.freshUntil ?? entry.expiresAt),
      servedForSeconds: secondsUntil(entry.expiresAt),
      tiers: async () => {
        const held = await Promise.all(
          tiers.map((tier) => ask(() => tier.get(entry.key)).catch(() => undefined)),
        )
        return tiers.filter((_, i) => held[i] !== undefined).map((tier) => tier.name)
      },
      bodyPreview: null,
    }
  }
}

class AdminMutation {
  constructor(
    readonly engine: StrataEngine,
    readonly access: AdminAccess,
  ) {}

  invalidateTypes(args: { types: string[] }) {
    return this.#tags(args.types.flatMap(tagsForTypeChange))
  }

  invalidateEntities(args: { type: string; ids: string[] }) {
    return this.#tags(args.ids.flatMap((id) => tagsForEntityChange(args.type, [id])))
  }

  invalidateTags(args: { tags: string[] }) {
    return this.#tags(args.tags)
  }

  invalidateCacheTags(args: { tags: string[] }) {
    return this.#tags(args.tags.map(cacheTag))
  }

  async invalidateOperation(args: { operationName: string }) {
    return purgeResult(
      this.engine,
      await this.#purgeWhere({
        operationName: args.operationName,
        tenant: scopedTenant(this.access, undefined),
      }),
    )
  }

  async flush(args: { tenant?: string | null }) {
    const tenant = scopedTenant(this.access, args.tenant)
    return purgeResult(this.engine, await this.engine.clear(tenant === undefined ? undefined : tenant))
  }

  async #tags(tags: string[]) {
    if (this.access === 'all') return purgeResult(this.engine, await this.engine.invalidateTags(tags))
    const removed: Counts = {}
    for (const tag of new Set(tags)) {
      const counts = await this.#purgeWhere({ tag, tenant: this.access.tenant })
      for (const [tier, n] of Object.entries(counts)) removed[tier] = (removed[tier] ?? 0) + n
    }
    return purgeResult(this.engine, removed)
  }

  /**
   * Deletes, tier by tier, the entries a listing finds (for purges no tag index can answer). Running
   * executions the purge could concern, here and on the shared tiers, are fenced first: their results
   * are not stored. Other instances then purge their local tiers the same way. A shared tier that
   * fails or is unavailable is purged when it is back, before it is read again (by the tag, in every
   * tenant, or with no tag entirely).
   */
  async #purgeWhere(filter: PurgeFilter): Promise<Counts> {
    const { engine } = this
    engine.fenceLocal(filter.tenant)
    const tags = filter.tag ? [filter.tag] : undefined
    const { removed, keys } = await engine.cache.purgeListed((tier) => purgeListing(tier, filter), tags)
    await engine.publishPurged(keys, filter)
    return removed
  }
}

/** Whole seconds from now until `at` (epoch milliseconds), 0 when past. */
function secondsUntil(at: number): number {
  return Math.max(0, Math.floor((at - Date.now()) / 1000))
}
