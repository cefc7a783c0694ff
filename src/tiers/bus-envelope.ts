import { randomUUID } from 'node:crypto'
import type { PurgeFilter } from './purge.js'
import type { BusMessage } from './tier.js'

const isStrings = (value: unknown): value is string[] =>
  Array.isArray(value) && value.every((item) => typeof item === 'string')

/** The message, if it has exactly one of the shapes Strata sends; anyone can NOTIFY or PUBLISH. */
function parseMessage(value: unknown): BusMessage | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const message = value as Record<string, unknown>
  if (message.kind === 'invalidate' && isStrings(message.tags))
    return { kind: 'invalidate', tags: message.tags }
  if (message.kind === 'delete' && isStrings(message.keys)) {
    if (message.where === undefined) return { kind: 'delete', keys: message.keys }
    const where = parseFilter(message.where)
    return where ? { kind: 'delete', keys: message.keys, where } : undefined
  }
  if (message.kind === 'clear' && isTenant(message.tenant)) return { kind: 'clear', tenant: message.tenant }
  return undefined
}

const isTenant = (value: unknown): value is string | null | undefined =>
  value === undefined || value === null || typeof value === 'string'
const isOptionalString = (value: unknown): value is string | undefined =>
  value === undefined || typeof value === 'string'

/** A purge's filter as JSON carries it: an absent tenant means every tenant. */
function parseFilter(value: unknown): PurgeFilter | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const { tenant, tag, operationName } = value as Record<string, unknown>
  if (!isTenant(tenant) || !isOptionalString(tag) || !isOptionalString(operationName)) return undefined
  return {
    tenant,
    ...(tag === undefined ? {} : { tag }),
    ...(operationName === undefined ? {} : { operationName }),
  }
}

/**
 * Wraps bus messages with the sending instance's id, so an instance ignores its own messages,
 * and validates what it receives: a malformed message is dropped, never applied.
 */
export class BusEnvelope {
  readonly origin = randomUUID()

  wrap(message: BusMessage): string {
    return JSON.stringify({ o: this.origin, m: message })
  }

  /** The message another instance sent, or `undefined` (own message, malformed, or not ours). */
  unwrap(raw: string): BusMessage | undefined {
    try {
      const envelope = JSON.parse(raw) as { o?: unknown; m?: unknown }
      return typeof envelope.o === 'string' && envelope.o !== this.origin
        ? parseMessage(envelope.m)
        : undefined
    } catch {
      return undefined
    }
  }
}
