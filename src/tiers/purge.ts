import { withTimeout } from '../timeout.js'
import type { CacheTier, EntryQuery, MaybePromise } from './tier.js'

/** Which entries a listing purge removes: those of a tag or an operation, in one tenant or all. */
export interface PurgeFilter {
  /** One tenant's entries (`null`: tenancy-off entries), or every tenant's when `undefined`. */
  readonly tenant: string | null | undefined
  readonly tag?: string
  readonly operationName?: string
}

/** Each tier call of a purge gives up after this long: a hung tier must not hang the purge. */
const TIER_TIMEOUT_MS = 5000

/** Keys listed per page, and deleted between two yields to the event loop. */
const PAGE = 500

/**
 * Lets timers and I/O run. A tier that answers synchronously (memory) never yields by itself, and a
 * purge of many entries would otherwise hold the event loop from its first page to its last delete.
 */
const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve))

/** A tier call that rejects when the tier throws, fails or does not answer in time. */
export const ask = <T>(call: () => MaybePromise<T>): Promise<T> =>
  withTimeout(Promise.resolve().then(call), TIER_TIMEOUT_MS)

/**
 * Deletes from one tier the entries its listing finds (for purges no tag index answers), and
 * resolves the keys it deleted. The tier is fenced first: a write from an execution that began
 * before the purge is then either listed and deleted, or refused.
 */
export async function purgeListing(tier: CacheTier, filter: PurgeFilter): Promise<string[]> {
  if (tier.fence) await ask(() => tier.fence?.(filter.tenant))
  const keys: string[] = []
  let cursor: string | undefined
  do {
    if (cursor) await yieldToEventLoop()
    const query: EntryQuery = {
      limit: PAGE,
      ...(filter.tenant === undefined ? {} : { tenant: filter.tenant }),
      ...(filter.tag ? { tag: filter.tag } : {}),
      ...(filter.operationName ? { operationName: filter.operationName } : {}),
      ...(cursor ? { cursor } : {}),
    }
    const page = await ask(() => tier.list(query))
    keys.push(...page.entries.map((entry) => entry.key))
    cursor = page.cursor
  } while (cursor)
  const removed: string[] = []
  for (const [i, key] of keys.entries()) {
    if (i > 0 && i % PAGE === 0) await yieldToEventLoop()
    if (await ask(() => tier.delete(key))) removed.push(key)
  }
  return removed
}
