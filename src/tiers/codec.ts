import type { CacheScope } from '../policy/policy.js'
import type { CacheEntry } from './tier.js'

/** First line of every serialized entry; a value without it is foreign data. */
const MAGIC = 'strata:1'

interface Meta {
  k: string
  t: string[]
  n: string | null
  o: string | null
  s: CacheScope
  c: number
  e: number
  z: number
  /** Fresh until (epoch ms), for an entry with a stale grace. */
  f?: number
}

/**
 * Serializes an entry for a shared tier: a magic line, one line of JSON metadata (which
 * includes the key it was written under), then the body verbatim.
 */
export function encodeEntry(key: string, entry: CacheEntry): string {
  const meta: Meta = {
    k: key,
    t: [...entry.tags],
    n: entry.tenant,
    o: entry.operationName,
    s: entry.scope,
    c: entry.createdAt,
    e: entry.expiresAt,
    z: entry.size,
  }
  if (entry.freshUntil !== undefined) meta.f = entry.freshUntil
  return `${MAGIC}\n${JSON.stringify(meta)}\n${entry.body}`
}

/**
 * Reads an entry back, or `undefined` when the value is not one this key wrote: wrong
 * magic, unparsable metadata, another key's entry, or a body whose size does not match.
 */
export function decodeEntry(key: string, value: string): CacheEntry | undefined {
  if (!value.startsWith(`${MAGIC}\n`)) return undefined
  const metaEnd = value.indexOf('\n', MAGIC.length + 1)
  if (metaEnd < 0) return undefined
  let meta: Partial<Meta>
  try {
    meta = JSON.parse(value.slice(MAGIC.length + 1, metaEnd)) as Partial<Meta>
  } catch {
    return undefined
  }
  const body = value.slice(metaEnd + 1)
  if (
    meta.k !== key ||
    !Array.isArray(meta.t) ||
    (meta.s !== 'PUBLIC' && meta.s !== 'PRIVATE') ||
    typeof meta.c !== 'number' ||
    typeof meta.e !== 'number' ||
    (meta.f !== undefined && typeof meta.f !== 'number') ||
    meta.z !== Buffer.byteLength(body)
  ) {
    return undefined
  }
  return {
    body,
    size: meta.z,
    tags: meta.t,
    tenant: meta.n ?? null,
    operationName: meta.o ?? null,
    scope: meta.s,
    createdAt: meta.c,
    expiresAt: meta.e,
    freshUntil: meta.f,
  }
}
