import { createHash } from 'node:crypto'
import { printSchemaWithDirectives } from '@graphql-tools/utils'
import type { GraphQLSchema } from 'graphql'

/** Bumped when the stored entry format changes, so old entries are never read. */
export const ENTRY_FORMAT = 1

/** SHA-256 (base64url, 16 chars) of the schema printed with its directives. */
export function defaultSchemaVersion(schema: GraphQLSchema): string {
  return createHash('sha256')
    .update(`${ENTRY_FORMAT}\n${printSchemaWithDirectives(schema)}`)
    .digest('base64url')
    .slice(0, 16)
}
