// npm run bench:overhead
// Strata's own per-request cost, without HTTP or a database: Yoga's in-process fetch against
// in-memory resolvers (10 posts with authors), uncached vs Strata miss vs Strata hit, interleaved.
import { createYoga } from 'graphql-yoga'
import { memoryTier, useStrata } from '../src/index.js'
import { BlogStore, blogSchema } from '../test/support/blog.js'

// One schema each: Strata wraps the resolvers of its schema in place (dynamic hints), and the
// uncached baseline must run unwrapped ones.
const plain = createYoga({ schema: blogSchema(new BlogStore(10)), logging: false })
const strata = useStrata({
  tenant: false,
  tiers: [memoryTier({ maxBytes: 32 * 2 ** 20 })],
  extraKeyData: ({ context }) => context.request.headers.get('x-nonce'),
})
const cached = createYoga({ schema: blogSchema(new BlogStore(10)), logging: false, plugins: [strata] })
const body = JSON.stringify({ query: '{ posts { id title body author { id name } } }' })

let nonce = 0
async function perRequest(yoga: typeof plain, count: number, fresh: boolean): Promise<number> {
  const started = process.hrtime.bigint()
  for (let i = 0; i < count; i++) {
    const headers = { 'content-type': 'application/json', 'x-nonce': fresh ? String(nonce++) : 'same' }
    const response = await yoga.fetch('http://localhost/graphql', { method: 'POST', headers, body })
    await response.text()
  }
  return Number(process.hrtime.bigint() - started) / count / 1000
}

const rows: number[][] = []
for (let round = 0; round < 6; round++) {
  rows.push([
    await perRequest(plain, 3000, true),
    await perRequest(cached, 3000, true),
    await perRequest(cached, 3000, false),
  ])
}
const median = (i: number) => rows.map((r) => r[i] ?? 0).sort((a, b) => a - b)[rows.length >> 1] ?? 0
const [uncached, miss, hit] = [median(0), median(1), median(2)]
console.log(`Command: npm run bench:overhead (NODE_ENV=${process.env.NODE_ENV}, Node ${process.version})`)
console.log('| path | µs per request (median of 6 rounds × 3000) | vs uncached |')
console.log('| --- | ---: | ---: |')
console.log(`| uncached | ${uncached.toFixed(1)} | 1.00× |`)
console.log(
  `| strata miss (execute + analyse + store) | ${miss.toFixed(1)} | +${(miss - uncached).toFixed(1)} µs |`,
)
console.log(`| strata hit | ${hit.toFixed(1)} | ${(uncached / hit).toFixed(2)}× faster |`)
