import { createHash } from 'node:crypto'
import { definedOnly } from '../defined-only.js'
import { StrataOptionError } from '../errors.js'
import { encodeTenant, keyTenant } from '../key/key.js'
import { decodeEntry, encodeEntry } from './codec.js'
import { matchesQuery, summarize } from './memory.js'
import { RedisBus } from './redis-bus.js'
import { FLUSH_SCRIPT, INVALIDATE_SCRIPT, type Script, SET_SCRIPT } from './redis-scripts.js'
import type { CacheEntry, CacheTier, EntryPage, EntrySummary, TierStats } from './tier.js'

/** The subset of an ioredis `Redis` or `Cluster` client that the tier uses. */
export interface RedisClientLike {
  get(key: string): Promise<string | null>
  unlink(...keys: string[]): Promise<number>
  scan(
    cursor: string,
    match: 'MATCH',
    pattern: string,
    count: 'COUNT',
    n: number,
  ): Promise<[string, string[]]>
  evalsha(sha: string, numKeys: number, ...args: (string | number)[]): Promise<unknown>
  eval(script: string, numKeys: number, ...args: (string | number)[]): Promise<unknown>
  publish(channel: string, message: string): Promise<number>
  duplicate(): RedisClientLike
  subscribe(...channels: string[]): Promise<unknown>
  on(event: string, listener: (...args: unknown[]) => void): unknown
  quit(): Promise<unknown>
  /** The bus pings its listening connection with it, to notice one that silently stopped answering. */
  ping?(): Promise<unknown>
  /** ioredis: drops the connection; with `true`, reconnects. */
  disconnect?(reconnect?: boolean): void
  /** ioredis `Cluster` only: the nodes to SCAN. */
  nodes?(role: 'master'): RedisClientLike[]
}

/**
 * How much of the keyspace one `list` call may go through before it answers with what it found: a
 * partial page, possibly empty, and the cursor to go on from (callers page until there is none).
 * SCAN calls (COUNT 500 each: about 10,000 keys examined, a few milliseconds of Redis time) and
 * entries read (one GET each); the batch that reaches a bound is finished. Unbounded, a sparse match
 * walked the whole keyspace in one call, past the purge's 5 s timeout on a large one.
 */
export const listBudget = { scans: 20, reads: 1000 } as const

/** Options of {@link redisTier}. */
export interface RedisTierOptions {
  /** An ioredis `Redis` or `Cluster` client. The tier never closes it. */
  client: RedisClientLike
  /**
   * Namespace of every key (`{<namespace>:<shard>}...`), letters, digits, `_` and `-`.
   * @default 'strata'
   */
  namespace?: string
  /**
   * Hash-tag shards; entries spread over them (and over cluster nodes). An invalidation runs
   * one script per shard, sent together.
   * @default 16
   */
  shards?: number
  /** @default 'redis' */
  name?: string
  /**
   * How long an invalidation stamp refuses writes from executions that began before it.
   * Must exceed your longest query execution.
   * @default 60000
   */
  stampTtlMs?: number
  /**
   * Clock skew tolerated between hosts: a write is refused if one of its tags was invalidated
   * less than this long before its execution began.
   * @default 1000
   */
  skewToleranceMs?: number
}

export const redisTierDefaults = {
  namespace: 'strata',
  shards: 16,
  name: 'redis',
  stampTtlMs: 60_000,
  skewToleranceMs: 1000,
} as const

/** A Redis (or Redis Cluster) tier: atomic entry + tag index, sharded by hash tag. */
export function redisTier(options: RedisTierOptions): CacheTier & { readonly shards: number } {
  const settings = validate(options)
  const { client, namespace, shards } = settings
  const slot = (shard: number) => `{${namespace}:${shard}}`
  const shardOf = (key: string) =>
    Number.parseInt(createHash('md5').update(key).digest('hex').slice(0, 8), 16) % shards
  const entryKey = (key: string) => `${slot(shardOf(key))}e:${key}`
  const allShards = Array.from({ length: shards }, (_, i) => i)
  let corrupt = 0

  const run = async (s: Script, keys: string[], args: (string | number)[]): Promise<unknown> => {
    try {
      return await client.evalsha(s.sha, keys.length, ...keys, ...args)
    } catch (error) {
      if (!String((error as Error)?.message).includes('NOSCRIPT')) throw error
      return client.eval(s.lua, keys.length, ...keys, ...args)
    }
  }

  /** Keys matching `pattern` on every node, page by page. */
  async function* scan(pattern: string, from?: string): AsyncGenerator<{ keys: string[]; cursor: string }> {
    const nodes = client.nodes ? client.nodes('master') : [client]
    let [nodeIndex, cursor] = from ? (from.split(':') as [string, string]) : ['0', '0']
    for (let n = Number(nodeIndex); n < nodes.length; n++) {
      const node = nodes[n] as RedisClientLike
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 500)
        cursor = next
        yield { keys, cursor: next === '0' ? `${n + 1}:0` : `${n}:${next}` }
      } while (cursor !== '0')
      cursor = '0'
    }
  }

  /** UNLINK keys, grouped by hash tag so a cluster never sees a cross-slot command. */
  const unlinkAll = async (keys: readonly string[]): Promise<number> => {
    const bySlot = new Map<string, string[]>()
    for (const key of keys) {
      const tag = key.slice(0, key.indexOf('}') + 1)
      const group = bySlot.get(tag)
      if (group) group.push(key)
      else bySlot.set(tag, [key])
    }
    const counts = await Promise.all([...bySlot.values()].map((group) => client.unlink(...group)))
    return counts.reduce((a, b) => a + b, 0)
  }

  /** Whether a stored entry key belongs to `tenant` (the `*:g:*` pattern also matches a tenant named g). */
  const ownedBy = (stored: string, tenant: string | null) =>
    keyTenant(stored.slice(stored.indexOf('}e:') + 3)) === tenant

  /** Entry keys of one tenant (`null`: tenancy-off entries), or of every tenant; filter with `ownedBy`. */
  const entryPattern = (tenant: string | null | undefined): string => {
    if (tenant === undefined) return `{${namespace}:*}e:*`
    return tenant === null ? `{${namespace}:*}e:*:g:*` : `{${namespace}:*}e:*:t:${encodeTenant(tenant)}:*`
  }

  /** Stamps the shards' flush stamp of `tenant` (or of everything): older writes are refused. */
  const fence = async (tenant?: string | null): Promise<void> => {
    const stamp = Date.now()
    // A tenant's stamp refuses that tenant's writes only: other tenants' writes stay welcome.
    const flushKey = (shard: number) =>
      `${slot(shard)}f${tenant === undefined ? '' : `:${tenantMark(tenant)}`}`
    await Promise.all(
      allShards.map((shard) => run(FLUSH_SCRIPT, [flushKey(shard)], [stamp, settings.stampTtlMs])),
    )
  }

  return {
    name: settings.name,
    shared: true,
    shards,
    async get(key) {
      const stored = entryKey(key)
      const value = await client.get(stored)
      if (value === null) return undefined
      const entry = decodeEntry(key, value)
      if (!entry) {
        corrupt++
        await client.unlink(stored)
        return undefined
      }
      return entry.expiresAt > Date.now() ? entry : undefined
    },
    async set(key, entry, setOptions) {
      const now = Date.now()
      if (entry.expiresAt <= now) return
      const shard = shardOf(key)
      const tags = [...new Set(entry.tags)]
      const keys = [
        `${slot(shard)}e:${key}`,
        ...tags.map((tag) => `${slot(shard)}x:${tag}`),
        ...tags.map((tag) => `${slot(shard)}i:${tag}`),
        `${slot(shard)}f`,
        `${slot(shard)}f:${tenantMark(entry.tenant)}`,
      ]
      const notBefore =
        setOptions?.startedAt === undefined ? 0 : setOptions.startedAt - settings.skewToleranceMs
      await run(SET_SCRIPT, keys, [
        encodeEntry(key, entry),
        entry.expiresAt,
        now,
        Math.max(0, notBefore),
        tags.length,
      ])
    },
    async delete(key) {
      return (await client.unlink(entryKey(key))) > 0
    },
    async invalidate(tags) {
      const unique = [...new Set(tags)]
      if (unique.length === 0) return 0
      const stamp = Date.now()
      const counts = await Promise.all(
        allShards.map((shard) =>
          run(
            INVALIDATE_SCRIPT,
            [
              ...unique.map((tag) => `${slot(shard)}x:${tag}`),
              ...unique.map((tag) => `${slot(shard)}i:${tag}`),
            ],
            [unique.length, stamp, settings.stampTtlMs],
          ),
        ),
      )
      return counts.reduce<number>((sum, n) => sum + Number(n), 0)
    },
    fence,
    async clear(tenant) {
      // First refuse writes from executions that began before the clear, then remove.
      await fence(tenant)
      let removed = 0
      // Entries only. Tag indexes and stamps stay: an entry stored while the scan runs (by an
      // execution that began after the fence) must keep its index, and an invalidation made meanwhile
      // its stamp. What indexes still list of the removed entries expires with them.
      for await (const { keys } of scan(entryPattern(tenant))) {
        const doomed = tenant === undefined ? keys : keys.filter((key) => ownedBy(key, tenant))
        if (doomed.length === 0) continue
        removed += await unlinkAll(doomed)
      }
      return removed
    },
    async list(query) {
      const entries: EntrySummary[] = []
      let cursor: string | undefined
      let scans = 0
      let reads = 0
      for await (const page of scan(entryPattern(query.tenant), query.cursor)) {
        scans++
        // One page's reads go out together (one round trip's wait, not one per key).
        const owned = page.keys.filter(
          (stored) => query.tenant === undefined || ownedBy(stored, query.tenant),
        )
        const values = await Promise.all(owned.map((stored) => client.get(stored)))
        reads += owned.length
        owned.forEach((stored, i) => {
          const key = stored.slice(stored.indexOf('}e:') + 3)
          const value = values[i]
          const entry: CacheEntry | undefined = value == null ? undefined : decodeEntry(key, value)
          if (entry && matchesQuery(key, entry, query)) entries.push(summarize(key, entry))
        })
        cursor = page.cursor
        if (entries.length >= query.limit || scans >= listBudget.scans || reads >= listBudget.reads) break
      }
      const done =
        cursor === undefined || cursor === `${(client.nodes ? client.nodes('master') : [client]).length}:0`
      return { entries, cursor: done ? undefined : cursor } satisfies EntryPage
    },
    async stats(): Promise<TierStats> {
      let entries = 0
      for await (const { keys } of scan(`{${namespace}:*}e:*`)) entries += keys.length
      return { entries, bytes: null, evictions: 0, expirations: 0, corrupt }
    },
    createBus: () => new RedisBus(client, `${namespace}:bus`),
  }
}

/** The suffix of a tenant's flush stamp (`~` for tenancy-off entries: an encoded tenant never contains it). */
function tenantMark(tenant: string | null): string {
  return tenant === null ? '~' : `t${encodeTenant(tenant)}`
}

function validate(options: RedisTierOptions) {
  const client = options?.client as Partial<RedisClientLike> | undefined
  for (const method of ['get', 'unlink', 'scan', 'evalsha', 'eval', 'publish', 'duplicate'] as const) {
    if (typeof client?.[method] !== 'function') {
      throw new StrataOptionError(
        'redisTier.client',
        `must be an ioredis Redis or Cluster client (it has no ${method}())`,
      )
    }
  }
  const settings = { ...redisTierDefaults, ...definedOnly(options) }
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(settings.namespace)) {
    throw new StrataOptionError(
      'redisTier.namespace',
      `must be 1-64 letters, digits, '_' or '-', got ${JSON.stringify(settings.namespace)}`,
    )
  }
  if (!Number.isSafeInteger(settings.shards) || settings.shards < 1 || settings.shards > 1024) {
    throw new StrataOptionError(
      'redisTier.shards',
      `must be a whole number from 1 to 1024, got ${String(settings.shards)}`,
    )
  }
  for (const name of ['stampTtlMs', 'skewToleranceMs'] as const) {
    if (!Number.isSafeInteger(settings[name]) || settings[name] < 0) {
      throw new StrataOptionError(
        `redisTier.${name}`,
        `must be a whole number of milliseconds >= 0, got ${String(settings[name])}`,
      )
    }
  }
  return settings
}
