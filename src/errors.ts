/** Stable error codes thrown by Strata. */
export type StrataErrorCode = 'STRATA_INVALID_OPTION' | 'STRATA_SCHEMA_MISMATCH'

/** Base class of every error Strata throws. `code` is stable across releases. */
export class StrataError extends Error {
  readonly code: StrataErrorCode

  constructor(code: StrataErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'StrataError'
    this.code = code
  }
}

/** An option passed to `useStrata` or to a tier is invalid. Thrown at construction. */
export class StrataOptionError extends StrataError {
  /** Dotted path of the offending option, e.g. `tiers[0].maxBytes`. */
  readonly option: string

  constructor(option: string, problem: string, options?: { cause?: unknown }) {
    super('STRATA_INVALID_OPTION', `graphql-strata: option \`${option}\` ${problem}`, options)
    this.name = 'StrataOptionError'
    this.option = option
  }
}

/** Configuration does not match the schema (e.g. a hint for a field that does not exist). */
export class StrataSchemaError extends StrataError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('STRATA_SCHEMA_MISMATCH', `graphql-strata: ${message}`, options)
    this.name = 'StrataSchemaError'
  }
}

/** What an error says, for a log line or a reason: its message, or the thrown value as text. */
export function errorMessage(error: unknown): string {
  return String((error as Error | null | undefined)?.message ?? error)
}
