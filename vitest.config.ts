import { createRequire } from 'node:module'
import { defineConfig } from 'vitest/config'

const require = createRequire(import.meta.url)

export default defineConfig({
  resolve: {
    // graphql 16 ships both index.js (CJS, what Node resolves for graphql-yoga) and
    // index.mjs (what Vite prefers): pin one so there is a single graphql realm.
    alias: [
      { find: /^graphql$/, replacement: require.resolve('graphql') },
      { find: /^graphql-strata$/, replacement: new URL('./src/index.ts', import.meta.url).pathname },
      { find: /^graphql-strata\/redis$/, replacement: new URL('./src/redis.ts', import.meta.url).pathname },
      {
        find: /^graphql-strata\/postgres$/,
        replacement: new URL('./src/postgres.ts', import.meta.url).pathname,
      },
    ],
  },
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // The JSON report lets .ci/run print a plain "N passed, N failed" closing line.
    reporters: ['default', 'json'],
    outputFile: { json: 'test-results/vitest.json' },
    execArgv: ['--expose-gc'],
  },
})
