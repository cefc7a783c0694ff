import { randomUUID } from 'node:crypto'
import type { BusMessage } from './tier.js'

const isStrings = (value: unknown): value is string[] =>
  Array.isArray(value) && value.every((item) => typeof item === 'string')

/** The message, if it has exactly one of the shapes Strata sends; anyone can NOTIFY or PUBLISH. */
function parseMessage(value: unknown): BusMessage | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const message = value as Record<string, unknown>
  if (message.kind === 'invalidate' && isStrings(message.tags))
    return { kind: 'invalidate', tags: message.tags }
  if (message.kind === 'delete' && isStrings(message.keys)) return { kind: 'delete', keys: message.keys }
  if (
    message.kind === 'clear' &&
    (message.tenant === undefined || message.tenant === null || typeof message.tenant === 'string')
  ) {
    return { kind: 'clear', tenant: message.tenant as string | null | undefined }
  }
  return undefined
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
