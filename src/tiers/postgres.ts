import { createHash } from 'node:crypto'
import { definedOnly } from '../defined-only.js'
import { errorMessage, StrataOptionError } from '../errors.js'
import { decodeEntry, encodeEntry } from './codec.js'
import { PostgresBus } from './postgres-bus.js'
import { sqlScript } from './sql-script.js'
import type { CacheTier, EntryPage, TierStats } from './tier.js'

/**
 * What the PostgreSQL tier runs its queries on: a `pg.Pool` or PGlite. (A single `pg.Client` runs
 * the queries, but the bus that keeps memory tiers coherent needs a connection of its own.)
 */
export interface Queryable {
  query(text: string, params?: unknown[]): Promise<{ rows: Record<string, unknown>[] }>
  /** PGlite runs multi-statement scripts with `exec`. */
  exec?(sql: string): Promise<unknown>
}

/** Longest tag stored as given, in UTF-8 bytes: PostgreSQL's index entries hold about 2.7 kB at most. */
const MAX_TAG_BYTES = 1024

/**
 * A tag as the tier stores it. PostgreSQL text cannot hold NUL, and its indexes (the entries' GIN
 * index, the invalidations' primary key) cannot hold a value of more than about 2.7 kB; a tag rendered
 * from an argument (`@cacheTag`, `@invalidates`) or an id may be either, and a write or invalidation
 * naming one would fail (an invalidation that fails is replayed until it succeeds: the circuit would
 * never close). NUL becomes U+FFFD, and a long tag its beginning and its SHA-256, on every path, so a
 * tag still meets itself; at worst it meets another that differs only there, which widens an
 * invalidation.
 */
function storedTag(tag: string): string {
  const text = tag.includes('\u0000') ? tag.replaceAll('\u0000', '\uFFFD') : tag
  if (text.length * 3 <= MAX_TAG_BYTES || Buffer.byteLength(text) <= MAX_TAG_BYTES) return text
  return `${text.slice(0, 100)}…${createHash('sha256').update(text).digest('hex')}`
}

/** Options of {@link postgresTier}. */
export interface PostgresTierOptions {
  /** A `pg.Pool` on the primary (never a replica), or any {@link Queryable} such as PGlite. */
  pool: Queryable
  /**
   * Schema holding Strata's objects; lowercase letters, digits and `_`.
   * @default 'strata'
   */
  schema?: string
  /**
   * Run `sql/install.sql` (idempotent) before first use.
   * @default true
   */
  autoInstall?: boolean
  /** @default 'postgres' */
  name?: string
  /**
   * How often expired rows are deleted, in batches, on an unref'd timer (0: never).
   * @default 60000
   */
  purgeIntervalMs?: number
  /** @default 1000 */
  purgeBatch?: number
  /**
   * How long an invalidation refuses writes from executions that began before it.
   * @default 60000
   */
  stampTtlMs?: number
  /**
   * Clock skew tolerated between hosts (see the Redis tier).
   * @default 1000
   */
  skewToleranceMs?: number
}

export const postgresTierDefaults = {
  schema: 'strata',
  autoInstall: true,
  name: 'postgres',
  purgeIntervalMs: 60_000,
  purgeBatch: 1000,
  stampTtlMs: 60_000,
  skewToleranceMs: 1000,
} as const

/** The install script, for `schema`; run it yourself when `autoInstall` is off. */
export function postgresInstallSql(schema = 'strata'): string {
  return sqlScript('install.sql', schema)
}

/**
 * A PostgreSQL tier on an UNLOGGED table: tags in a GIN-indexed array, invalidation with
 * `tags && $1`, writes and invalidations ordered by the database so a stale write never lands.
 */
export function postgresTier(options: PostgresTierOptions): CacheTier {
  const settings = validate(options)
  const { pool, schema } = settings
  let installed: Promise<void> | undefined
  let corrupt = 0
  let timer: ReturnType<typeof setInterval> | undefined

  const ready = (): Promise<void> => {
    if (!settings.autoInstall) return Promise.resolve()
    installed ??= install().catch((error: unknown) => {
      installed = undefined // retried on the next call
      throw error
    })
    return installed
  }
  // A failure (e.g. a lock wait past the script's lock_timeout) rejects the call that needed the
  // install, which the tiered cache treats as a failure of the tier (skipped, never a failed request),
  // and is retried by the next call.
  const install = async () => {
    const sql = postgresInstallSql(schema)
    try {
      await (pool.exec ? pool.exec(sql) : pool.query(sql))
    } catch (error) {
      const failed = new Error(
        `${settings.name}: install script failed (retried on the next call): ${errorMessage(error)}`,
        {
          cause: error,
        },
      )
      // PostgreSQL's SQLSTATE stays readable where the failure is logged (SR001: wrong isolation level).
      const code = (error as { code?: unknown } | null)?.code
      throw code === undefined ? failed : Object.assign(failed, { code })
    }
  }
  const q = async (text: string, params: unknown[]) => {
    await ready()
    return (await pool.query(text, params)).rows
  }

  const purge = async () => {
    const now = Date.now()
    for (;;) {
      const rows = await q(
        `WITH doomed AS (SELECT ctid FROM ${schema}.entries WHERE expires_at <= $1 LIMIT $2)
         DELETE FROM ${schema}.entries WHERE ctid IN (SELECT ctid FROM doomed) RETURNING 1`,
        [now, settings.purgeBatch],
      )
      if (rows.length < settings.purgeBatch) break
    }
    await q(`DELETE FROM ${schema}.invalidations WHERE at < $1`, [now - settings.stampTtlMs])
  }
  if (settings.purgeIntervalMs > 0) {
    timer = setInterval(() => void purge().catch(() => undefined), settings.purgeIntervalMs)
    timer.unref?.()
  }

  return {
    name: settings.name,
    shared: true,
    async get(key) {
      const rows = await q(`SELECT value FROM ${schema}.entries WHERE key = $1 AND expires_at > $2`, [
        key,
        Date.now(),
      ])
      const value = rows[0]?.value
      if (typeof value !== 'string') return undefined
      const entry = decodeEntry(key, value)
      if (!entry) {
        corrupt++
        await q(`DELETE FROM ${schema}.entries WHERE key = $1`, [key])
      }
      return entry
    },
    async set(key, entry, setOptions) {
      if (entry.expiresAt <= Date.now()) return
      const notBefore =
        setOptions?.startedAt === undefined ? 0 : Math.max(0, setOptions.startedAt - settings.skewToleranceMs)
      await q(`SELECT ${schema}.put($1, $2, $3, $4, $5, $6, $7, $8, $9)`, [
        key,
        entry.tenant,
        entry.operationName,
        [...new Set(entry.tags.map(storedTag))],
        entry.size,
        entry.createdAt,
        entry.expiresAt,
        encodeEntry(key, entry),
        notBefore,
      ])
    },
    async delete(key) {
      return (await q(`DELETE FROM ${schema}.entries WHERE key = $1 RETURNING 1`, [key])).length > 0
    },
    async invalidate(tags) {
      if (tags.length === 0) return 0
      const rows = await q(`SELECT ${schema}.invalidate($1, $2) AS removed`, [
        [...new Set(tags.map(storedTag))],
        Date.now(),
      ])
      return Number(rows[0]?.removed ?? 0)
    },
    async fence(tenant) {
      await q(`SELECT ${schema}.fence($1, $2, $3)`, [tenant === undefined, tenant ?? null, Date.now()])
    },
    async clear(tenant) {
      const rows = await q(`SELECT ${schema}.clear($1, $2, $3) AS removed`, [
        tenant === undefined,
        tenant ?? null,
        Date.now(),
      ])
      return Number(rows[0]?.removed ?? 0)
    },
    async list(query): Promise<EntryPage> {
      const conditions = ['expires_at > $1', 'key > $2']
      const params: unknown[] = [Date.now(), query.cursor ?? '']
      if (query.tenant !== undefined)
        conditions.push(`tenant IS NOT DISTINCT FROM $${params.push(query.tenant)}`)
      if (query.operationName !== undefined)
        conditions.push(`operation_name = $${params.push(query.operationName)}`)
      if (query.tag !== undefined)
        conditions.push(`tags @> ARRAY[$${params.push(storedTag(query.tag))}]::text[]`)
      const rows = await q(
        `SELECT key, tenant, operation_name, tags, size, created_at, expires_at FROM ${schema}.entries
         WHERE ${conditions.join(' AND ')} ORDER BY key LIMIT $${params.push(query.limit + 1)}`,
        params,
      )
      const page = rows.slice(0, query.limit).map((row) => ({
        key: String(row.key),
        tenant: row.tenant === null ? null : String(row.tenant),
        operationName: row.operation_name === null ? null : String(row.operation_name),
        tags: row.tags as string[],
        size: Number(row.size),
        createdAt: Number(row.created_at),
        expiresAt: Number(row.expires_at),
      }))
      return { entries: page, cursor: rows.length > query.limit ? page.at(-1)?.key : undefined }
    },
    async stats(): Promise<TierStats> {
      const rows = await q(
        `SELECT count(*) AS entries, coalesce(sum(size), 0) AS bytes FROM ${schema}.entries WHERE expires_at > $1`,
        [Date.now()],
      )
      return {
        entries: Number(rows[0]?.entries ?? 0),
        bytes: Number(rows[0]?.bytes ?? 0),
        evictions: 0,
        expirations: 0,
        corrupt,
      }
    },
    createBus: () => new PostgresBus(pool, `${schema}_bus`),
    close() {
      clearInterval(timer)
    },
  }
}

function validate(options: PostgresTierOptions) {
  if (typeof options?.pool?.query !== 'function') {
    throw new StrataOptionError(
      'postgresTier.pool',
      'must be a pg.Pool, or any object with query(text, params) such as PGlite',
    )
  }
  const settings = { ...postgresTierDefaults, ...definedOnly(options) }
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(settings.schema)) {
    throw new StrataOptionError(
      'postgresTier.schema',
      `must be lowercase letters, digits and '_', got ${JSON.stringify(settings.schema)}`,
    )
  }
  for (const name of ['purgeIntervalMs', 'purgeBatch', 'stampTtlMs', 'skewToleranceMs'] as const) {
    const least = name === 'purgeBatch' ? 1 : 0 // a batch of 0 would never finish a purge
    if (!Number.isSafeInteger(settings[name]) || settings[name] < least) {
      throw new StrataOptionError(
        `postgresTier.${name}`,
        `must be a whole number >= ${least}, got ${String(settings[name])}`,
      )
    }
  }
  return settings
}
