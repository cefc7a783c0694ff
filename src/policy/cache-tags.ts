import { getDirective } from '@graphql-tools/utils'
import type { GraphQLField, GraphQLInterfaceType, GraphQLObjectType, GraphQLSchema } from 'graphql'
import { StrataSchemaError } from '../errors.js'
import { type ArgumentPath, argumentLeaf, argumentValue } from './arguments.js'

/**
 * Cache tags (`@cacheTag`) are stored behind this prefix, which no entity, collection or type tag
 * starts with (GraphQL names cannot), so a cache tag never reaches an entity's entries or the reverse.
 */
const PREFIX = '#'

/** The stored form of the cache tag `text`, as `invalidateCacheTags` names it. */
export function cacheTag(text: string): string {
  return PREFIX + text
}

/**
 * A checked `@cacheTag(format:)`: literal text with placeholders `{args.name}` or `{args.input.field}`
 * read from the arguments of the field it is on (a list argument renders one tag per value).
 */
export interface TagFormat {
  readonly format: string
  readonly parts: readonly (string | ArgumentPath)[]
  /** The stored tag, for a format without placeholders. */
  readonly fixed: string | undefined
  /**
   * For a format with placeholders, the tag every rendering of it also carries (its placeholders
   * written `*`): what an invalidation whose value is missing invalidates.
   */
  readonly wildcard: string | undefined
}

const PLACEHOLDER = /\{([^{}]*)\}/g

/** Checks a format against the field whose arguments fill it; the error says where and what is wrong. */
export function parseTagFormat(
  format: unknown,
  field: GraphQLField<unknown, unknown>,
  where: string,
): TagFormat {
  const fail = (problem: string): never => {
    throw new StrataSchemaError(`${where}: cache tag ${JSON.stringify(format)} ${problem}`)
  }
  if (typeof format !== 'string' || format === '') return fail('must be a non-empty string')
  const parts: (string | ArgumentPath)[] = []
  const literal = (text: string) => {
    if (/[{}]/.test(text)) fail('has a brace that opens or closes no placeholder')
    if (text !== '') parts.push(text)
  }
  let last = 0
  for (const match of format.matchAll(PLACEHOLDER)) {
    literal(format.slice(last, match.index))
    const inner = match[1] ?? ''
    if (!inner.startsWith('args.') || inner.length === 5)
      fail(`has the placeholder {${inner}}; a placeholder names an argument: {args.id}, {args.input.id}`)
    const steps = inner.slice(5).split('.')
    const found = argumentLeaf(field, steps, true)
    if (typeof found === 'string') fail(`cannot read {${inner}}: ${found}`)
    else parts.push({ steps, ...found })
    last = match.index + match[0].length
  }
  literal(format.slice(last))
  const placeholders = parts.some((part) => typeof part !== 'string')
  const skeleton = parts.map((part) => (typeof part === 'string' ? part : '*')).join('')
  return {
    format,
    parts,
    fixed: placeholders ? undefined : cacheTag(format),
    wildcard: placeholders ? cacheTag(skeleton) : undefined,
  }
}

/**
 * Most tags one format renders from one field's arguments. Past it, an entry is not stored (as one
 * whose tag cannot be rendered) and an invalidation invalidates the format's wildcard.
 */
const MAX_RENDERINGS = 10_000

/**
 * Adds to `out` the tags `formats` render from one field's coerced arguments. A stored entry
 * (`forEntry`) carries each format's wildcard as well, and no rendering for a placeholder without a
 * value (null or not given; a list's null values are left out); an invalidation invalidates the
 * wildcard instead: it cannot tell which entries the missing value would have named. Throws if a
 * scalar cannot serialize an argument's value, or an entry's format renders over `MAX_RENDERINGS`.
 */
export function renderTags(
  formats: readonly TagFormat[],
  values: Readonly<Record<string, unknown>>,
  forEntry: boolean,
  out: Set<string>,
): void {
  for (const format of formats) {
    if (format.fixed !== undefined) {
      out.add(format.fixed)
      continue
    }
    const wildcard = format.wildcard as string
    if (forEntry) out.add(wildcard)
    let texts = ['']
    for (const part of format.parts) {
      if (typeof part === 'string') {
        texts = texts.map((text) => text + part)
        continue
      }
      const value = argumentValue(values, part.steps)
      let items = part.list && Array.isArray(value) ? value : [value]
      // An entry is tagged with each value its list holds: a null among them names nothing, and must
      // not cost it the tags of the others (an invalidation naming one of them would not reach it).
      if (forEntry) items = items.filter((item) => item !== null && item !== undefined)
      if (
        value === null ||
        value === undefined ||
        items.some((item) => item === null || item === undefined)
      ) {
        texts = []
        if (!forEntry) out.add(wildcard)
        break
      }
      if (texts.length * items.length > MAX_RENDERINGS) {
        // Lists multiply (`cell-{args.rows}-{args.cols}`): a request of a few kB would render millions.
        if (forEntry)
          throw new RangeError(
            `cache tag ${JSON.stringify(format.format)} renders over ${MAX_RENDERINGS} tags`,
          )
        texts = []
        out.add(wildcard)
        break
      }
      const rendered = items.map((item) => serialized(part.leaf.serialize(item)))
      texts = texts.flatMap((text) => rendered.map((one) => text + one))
    }
    for (const text of texts) out.add(cacheTag(text))
  }
}

function serialized(value: unknown): string {
  if (typeof value === 'string') return value
  // JSON has no bigint (a 64-bit scalar's serialized value): its digits, as the entity tags write it.
  return typeof value === 'bigint' ? value.toString() : JSON.stringify(value)
}

/**
 * A field's cache tags: at its own coordinate and at the same field of each interface its type
 * implements, those the `cacheTags` option gives, or else the `@cacheTag` directives there.
 */
export function cacheTagsOf(
  schema: GraphQLSchema,
  parent: GraphQLObjectType,
  fieldName: string,
  configured: Readonly<Record<string, readonly string[]>>,
): readonly TagFormat[] {
  const field = parent.getFields()[fieldName] as GraphQLField<unknown, unknown>
  const coordinate = `${parent.name}.${fieldName}`
  // Each format with where it was given, so that an error names the SDL that holds it.
  const formats: [format: unknown, where: string][] = []
  // Per coordinate (the field's own, each interface's), the option replaces the directives.
  for (const owner of [parent, ...parent.getInterfaces()]) {
    const ownerField = owner.getFields()[fieldName]
    if (!ownerField) continue
    const ownerCoordinate = `${owner.name}.${fieldName}`
    const inherited = owner === parent ? '' : ` (inherited by ${coordinate})`
    const given = configured[ownerCoordinate]
    if (given) {
      for (const format of given)
        formats.push([format, `option \`cacheTags["${ownerCoordinate}"]\`${inherited}`])
      continue
    }
    for (const args of getDirective(schema, ownerField, 'cacheTag') ?? [])
      formats.push([args.format, `@cacheTag on ${ownerCoordinate}${inherited}`])
  }
  if (formats.length === 0) return NO_TAGS
  const parsed = new Map<string, TagFormat>()
  for (const [format, where] of formats) {
    const tag = parseTagFormat(format, field, where)
    parsed.set(tag.format, tag)
  }
  return [...parsed.values()]
}

/** Checks the cache tag formats of an interface's fields, which no object type may implement. */
export function checkInterfaceTags(
  schema: GraphQLSchema,
  type: GraphQLInterfaceType,
  configured: Readonly<Record<string, readonly string[]>>,
): void {
  for (const field of Object.values(type.getFields())) {
    const coordinate = `${type.name}.${field.name}`
    const given = configured[coordinate]
    const formats = given ?? (getDirective(schema, field, 'cacheTag') ?? []).map((args) => args.format)
    const where = given ? `option \`cacheTags["${coordinate}"]\`` : `@cacheTag on ${coordinate}`
    for (const format of formats) parseTagFormat(format, field as GraphQLField<unknown, unknown>, where)
  }
}

const NO_TAGS: readonly TagFormat[] = []
