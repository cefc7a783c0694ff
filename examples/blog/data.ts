import type { Db } from './db.js'

export interface AuthorRow {
  id: number
  name: string
  email: string
}
export interface PostRow {
  id: number
  authorId: number
  title: string
  body: string
}
export interface CommentRow {
  id: number
  postId: number
  body: string
}

const POST = 'id, author_id as "authorId", title, body'

/** A numeric row id from a GraphQL `ID`, or `null` when it cannot name a row. */
export function rowId(id: string | number | null | undefined): number | null {
  const text = String(id ?? '')
  return /^\d{1,9}$/.test(text) ? Number(text) : null
}

/**
 * Batches the calls made in one tick into one `load` (a tiny DataLoader): resolving
 * `author` and `comments` for a list of posts costs one query each, not one per post.
 */
function batched<V>(
  load: (ids: number[]) => Promise<Map<number, V>>,
): (id: number) => Promise<V | undefined> {
  let batch: { ids: Set<number>; result: Promise<Map<number, V>> } | undefined
  return (id) => {
    if (!batch) {
      const ids = new Set<number>()
      const result = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
        batch = undefined
        return load([...ids])
      })
      batch = { ids, result }
    }
    batch.ids.add(id)
    return batch.result.then((rows) => rows.get(id))
  }
}

/** Every read and write of one request, confined to one tenant. */
export function tenantData(db: Db, tenant: string) {
  const authorsById = batched(async (ids) => {
    const rows = await db.query<AuthorRow>(
      'select id, name, email from blog_example.authors where tenant_id = $1 and id = any($2::int[])',
      [tenant, ids],
    )
    return new Map(rows.map((row) => [row.id, row]))
  })
  const commentsByPost = batched(async (postIds) => {
    const rows = await db.query<CommentRow>(
      `select id, post_id as "postId", body from blog_example.comments
       where tenant_id = $1 and post_id = any($2::int[]) order by id`,
      [tenant, postIds],
    )
    const byPost = new Map<number, CommentRow[]>()
    for (const row of rows) byPost.set(row.postId, [...(byPost.get(row.postId) ?? []), row])
    return byPost
  })

  return {
    tenant,
    author: (id: number) => authorsById(id).then((row) => row ?? null),
    comments: (postId: number) => commentsByPost(postId).then((rows) => rows ?? []),
    posts: (first: number) =>
      db.query<PostRow>(
        `select ${POST} from blog_example.posts where tenant_id = $1 order by id desc limit $2`,
        [tenant, first],
      ),
    post: async (id: number) => {
      const rows = await db.query<PostRow>(
        `select ${POST} from blog_example.posts where tenant_id = $1 and id = $2`,
        [tenant, id],
      )
      return rows[0] ?? null
    },
    createPost: async (title: string, body: string, authorId: number) => {
      const rows = await db.query<PostRow>(
        `insert into blog_example.posts (tenant_id, author_id, title, body)
         select tenant_id, id, $3, $4 from blog_example.authors where tenant_id = $1 and id = $2
         returning ${POST}`,
        [tenant, authorId, title, body],
      )
      return rows[0] ?? null
    },
    updatePost: async (id: number, title: string) => {
      const rows = await db.query<PostRow>(
        `update blog_example.posts set title = $3 where tenant_id = $1 and id = $2 returning ${POST}`,
        [tenant, id, title],
      )
      return rows[0] ?? null
    },
    deletePost: async (id: number) => {
      const rows = await db.query<{ id: number }>(
        'delete from blog_example.posts where tenant_id = $1 and id = $2 returning id',
        [tenant, id],
      )
      return rows.length > 0
    },
    addComment: async (postId: number, body: string) => {
      const rows = await db.query<CommentRow>(
        `insert into blog_example.comments (tenant_id, post_id, body)
         select tenant_id, id, $3 from blog_example.posts where tenant_id = $1 and id = $2
         returning id, post_id as "postId", body`,
        [tenant, postId, body],
      )
      return rows[0] ?? null
    },
  }
}

export type TenantData = ReturnType<typeof tenantData>
