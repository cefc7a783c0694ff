/**
 * Tags name what a cached entry depends on.
 *
 * - `Post:42`   an entity: the object of type Post with key 42 appears in the result.
 * - `Post`      a collection: the result holds a list of Posts, or a Post-typed field
 *               that was null or empty, so creating a Post may change it.
 * - `Post:*`    the type: some Post appears in the result (used to purge a whole type).
 *
 * GraphQL type names cannot contain `:`, so the three kinds never collide with each
 * other. An id that is literally `*` shares a tag with its type: that can only make
 * an invalidation broader, never miss one.
 */
export function entityTag(typeName: string, keyValues: readonly unknown[]): string {
  if (keyValues.length === 1) return `${typeName}:${String(keyValues[0])}`
  return `${typeName}:${keyValues.map((v) => String(v)).join(':')}`
}

export function collectionTag(typeName: string): string {
  return typeName
}

export function typeTag(typeName: string): string {
  return `${typeName}:*`
}

/** The tags a change to one entity invalidates: the entity and its collection. */
export function tagsForEntityChange(typeName: string, keyValues: readonly unknown[]): string[] {
  return [entityTag(typeName, keyValues), collectionTag(typeName)]
}

/** The tags that invalidate everything that depends on a type. */
export function tagsForTypeChange(typeName: string): string[] {
  return [collectionTag(typeName), typeTag(typeName)]
}
