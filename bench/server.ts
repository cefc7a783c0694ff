// Benchmark target: the blog example on embedded PGlite, with or without Strata.
// MODE=uncached | strata. With Strata, `x-bench-nonce` feeds extraKeyData, so a load
// that sends a fresh nonce per request exercises the full miss path (execute + store),
// and `x-bench-bypass` switches the cache off per request (the plugin's bare hook cost).
import { startBlogServer } from '../examples/blog/app.js'

const mode = process.env.MODE ?? 'strata'
const server = await startBlogServer({
  port: 0,
  strata:
    mode === 'uncached'
      ? false
      : {
          extraKeyData: ({ context }) => context.request.headers.get('x-bench-nonce'),
          enabled: ({ context }) => !context.request.headers.has('x-bench-bypass'),
        },
})
process.stdout.write(`READY ${server.url}\n`)
process.on('SIGTERM', () => {
  void server.close().then(() => process.exit(0))
})
