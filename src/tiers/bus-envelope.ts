import { randomUUID } from 'node:crypto'
import type { BusMessage } from './tier.js'

/**
 * Wraps bus messages with the sending instance's id, so an instance ignores its own
 * messages and anything that is not a Strata message.
 */
export class BusEnvelope {
  readonly origin = randomUUID()

  wrap(message: BusMessage): string {
    return JSON.stringify({ o: this.origin, m: message })
  }

  /** The message another instance sent, or `undefined` (own message, or not ours). */
  unwrap(raw: string): BusMessage | undefined {
    try {
      const envelope = JSON.parse(raw) as { o?: unknown; m?: BusMessage }
      return envelope.o !== this.origin && envelope.m ? envelope.m : undefined
    } catch {
      return undefined
    }
  }
}
