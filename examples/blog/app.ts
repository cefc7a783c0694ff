import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { type CacheTier, memoryTier, type StrataHandle, type StrataOptions, useStrata } from 'graphql-strata'
import {
  postgresChanges,
  postgresChangesSql,
  postgresInstallSql,
  postgresTier,
} from 'graphql-strata/postgres'
import { redisTier } from 'graphql-strata/redis'
import { createYoga, type Plugin, type YogaServerInstance } from 'graphql-yoga'
import pino, { type Logger } from 'pino'
import { collectDefaultMetrics, Registry } from 'prom-client'
import { rowId, tenantData } from './data.js'
import { openDb, setupSql } from './db.js'
import { type BlogContext, schema } from './schema.js'

// biome-ignore lint/complexity/noBannedTypes: Yoga's own default server context
type ServerContext = {}

export interface BlogServerOptions {
  /** TCP port; 0 picks a free one. */
  port: number
  /**
   * A PostgreSQL URL: the data lives there, and so does Strata's PostgreSQL tier. Without it the
   * data lives in an in-memory PGlite and Strata uses its memory tier alone.
   */
  databaseUrl?: string | undefined
  /** A Redis URL: adds Strata's Redis tier (and invalidation bus) between memory and PostgreSQL. */
  redisUrl?: string | undefined
  /** Used by the server and by Strata. Default: silent. */
  logger?: Logger | undefined
  /**
   * Capture database changes (triggers + listener).
   * @default true
   */
  changes?: boolean
  /**
   * Bearer token for the admin field (`authorization: Bearer <token>`).
   * @default 'strata-admin-demo' (printed at startup; set STRATA_ADMIN_TOKEN in real use)
   */
  adminToken?: string
  /** Extra Strata options, or `false` to serve without the cache (used by the benchmark). */
  strata?: Partial<StrataOptions> | false
  /** More Yoga plugins, after Strata (the benchmark runs a peer's cache here, with `strata: false`). */
  plugins?: Plugin[]
}

export interface BlogServer {
  /** The GraphQL endpoint, e.g. `http://localhost:4000/graphql`. */
  url: string
  /** Stops accepting requests, then closes the cache and the database. Idempotent. */
  close(): Promise<void>
  strata: StrataHandle
  yoga: YogaServerInstance<ServerContext, BlogContext>
}

/** Opens (and seeds) the database, then serves the blog at `/graphql` with Strata in front. */
export async function startBlogServer(options: BlogServerOptions): Promise<BlogServer> {
  const logger = options.logger ?? pino({ level: 'silent' })
  const db = await openDb(options.databaseUrl, logger)
  try {
    await db.exec(setupSql)
    // Database change capture: triggers record every committed change to these tables in a log
    // that Strata reads, so SQL run outside GraphQL invalidates the cache too.
    await db.exec(`${postgresInstallSql()}\n${postgresChangesSql()}`)
    await db.exec(`
      SELECT strata.watch('blog_example.posts', 'Post', 'id', 'tenant_id');
      SELECT strata.watch('blog_example.authors', 'Author', 'id', 'tenant_id');
      SELECT strata.watch('blog_example.comments', 'Comment', 'id', 'tenant_id');
    `)
  } catch (error) {
    await db.close()
    throw error
  }
  logger.info({ database: db.kind }, 'blog database ready')

  const metrics = new Registry()
  collectDefaultMetrics({ register: metrics })
  const tiers: CacheTier[] = [memoryTier({ maxBytes: 32 * 2 ** 20 })]
  let redis: { quit(): Promise<unknown> } | undefined
  if (options.redisUrl) {
    const { Redis } = await import('ioredis')
    const client = new Redis(options.redisUrl, { maxRetriesPerRequest: 2 })
    client.on('error', (error) => logger.warn({ err: error }, 'redis connection problem'))
    redis = client
    tiers.push(redisTier({ client }))
  }
  if (db.kind === 'postgres') tiers.push(postgresTier({ pool: db.native }))
  logger.info({ tiers: tiers.map((tier) => tier.name) }, 'cache tiers')

  const strata = useStrata({
    // Tenancy on: every entry is keyed by tenant; a request without one is never cached.
    tenant: ({ context }) => context.request.headers.get('x-tenant-id'),
    // PRIVATE results (`me`) are keyed by user; without x-user-id they are not cached.
    session: ({ context }) => context.request.headers.get('x-user-id'),
    tiers,
    ...(options.changes === false ? {} : { changes: postgresChanges({ pool: db.native }) }),
    // The admin field, _strata, for a bearer token: try it from GraphiQL at /graphql.
    admin: {
      authorize: ({ context }) =>
        context.request.headers.get('authorization') === `Bearer ${options.adminToken ?? 'strata-admin-demo'}`
          ? 'all'
          : null,
    },
    metrics: { registry: metrics },
    logger,
    ...(options.strata || {}),
  })

  // The example resets its data to the seed rows at every start, so entries a previous run left
  // in the shared tiers describe data that no longer exists: drop them.
  if (tiers.length > 1) await strata.strata.clear()
  await strata.strata.ready()

  const yoga = createYoga<ServerContext, BlogContext>({
    schema,
    plugins: [...(options.strata === false ? [] : [strata]), ...(options.plugins ?? [])],
    logging: logger,
    context: ({ request }): BlogContext => {
      const tenant = request.headers.get('x-tenant-id')
      return {
        data: tenant === null ? null : tenantData(db, tenant),
        userId: rowId(request.headers.get('x-user-id')),
      }
    },
  })

  // Demo only, embedded database only: POST an SQL statement to /sql to change data outside
  // GraphQL (with a real PostgreSQL, use psql). Never expose such an endpoint in a real server.
  const server = createServer((request, response) => {
    if (request.url === '/metrics') {
      void metrics
        .metrics()
        .then((text) => response.writeHead(200, { 'content-type': metrics.contentType }).end(text))
      return
    }
    if (request.url !== '/sql' || request.method !== 'POST' || db.kind !== 'pglite')
      return yoga(request, response)
    let sql = ''
    request.on('data', (chunk: Buffer) => {
      sql += chunk.toString()
    })
    request.on('end', () => {
      db.exec(sql).then(
        () => response.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}\n'),
        (error: Error) =>
          response
            .writeHead(400, { 'content-type': 'application/json' })
            .end(`${JSON.stringify({ error: error.message })}\n`),
      )
    })
  })
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(options.port, () => {
        server.off('error', reject)
        resolve()
      })
    })
  } catch (error) {
    await Promise.allSettled([strata.strata.close(), redis?.quit(), db.close()])
    throw error
  }
  const { port } = server.address() as AddressInfo
  const url = `http://localhost:${port}/graphql`

  let closing: Promise<void> | undefined
  const close = () => {
    closing ??= (async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
      await strata.strata.close()
      await redis?.quit()
      await db.close()
      logger.info('blog server closed')
    })()
    return closing
  }
  return { url, close, strata: strata.strata, yoga }
}
