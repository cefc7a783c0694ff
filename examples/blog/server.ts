// The blog example's command line: `npm run example`, or `npx tsx examples/blog/server.ts`.
// Env: PORT (default 4000), DATABASE_URL (default: in-memory PGlite), REDIS_URL (optional), LOG_LEVEL (default info).
import pino from 'pino'
import { startBlogServer } from './app.js'

// Synchronous, so that the lines logged just before process.exit() come out in order.
const logger = pino({ level: process.env.LOG_LEVEL ?? 'info' }, pino.destination({ dest: 1, sync: true }))
const port = Number(process.env.PORT || 4000)
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  logger.fatal({ port: process.env.PORT }, 'PORT must be a TCP port number')
  process.exit(1)
}

let app: Awaited<ReturnType<typeof startBlogServer>>
try {
  app = await startBlogServer({
    port,
    databaseUrl: process.env.DATABASE_URL || undefined,
    redisUrl: process.env.REDIS_URL || undefined,
    adminToken: process.env.STRATA_ADMIN_TOKEN || undefined,
    logger,
  })
} catch (error) {
  logger.fatal({ err: error }, 'blog example failed to start')
  process.exit(1)
}

const body = JSON.stringify({ query: '{ posts(first: 5) { id title author { name } } }' })
process.stdout.write(`
Blog example with graphql-strata at ${app.url}  (tenants: acme, globex; users: 1, 2 in acme, 3 in globex)

Admin field (GraphiQL at the URL above, header authorization: Bearer ${process.env.STRATA_ADMIN_TOKEN || 'strata-admin-demo'}):
  { _strata { stats { hits misses hitRate } entries { nodes { key operationName tiers ttlSeconds } } } }
Prometheus metrics: ${app.url.replace('/graphql', '/metrics')}

Run this twice: the first answer is a MISS, the second a HIT.

  curl -si -H 'x-tenant-id: acme' -H 'content-type: application/json' \\
    --data '${body}' \\
    ${app.url} | grep -i x-strata-cache
${
  process.env.DATABASE_URL
    ? ''
    : `
Change data outside GraphQL (demo endpoint, embedded database only); the next read is a MISS:

  curl -s ${app.url.replace('/graphql', '/sql')} --data "UPDATE blog_example.posts SET title = 'Edited in SQL' WHERE id = 1"
`
}
`)

let stopping = false
const stop = (signal: NodeJS.Signals) => {
  if (stopping) return
  stopping = true
  logger.info({ signal }, 'shutting down')
  app.close().then(
    () => process.exit(0),
    (error: unknown) => {
      logger.error({ err: error }, 'shutdown failed')
      process.exit(1)
    },
  )
}
process.once('SIGINT', stop)
process.once('SIGTERM', stop)
