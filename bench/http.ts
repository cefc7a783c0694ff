// npm run bench [-- --seconds 5 --rounds 3 --connections 10 --record]
// HTTP load with autocannon against the blog example's list query, all scenarios in one run,
// interleaved round by round so that drift on a shared machine hits every scenario alike.
import { type ChildProcess, spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import os from 'node:os'
import { parseArgs } from 'node:util'
import autocannon from 'autocannon'

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '10' },
    record: { type: 'boolean', default: false },
  },
})
const seconds = Number(args.seconds)
const rounds = Number(args.rounds)
const connections = Number(args.connections)

const QUERY = '{ posts(first: 10) { id title body author { id name } comments { id body } } }'
const body = JSON.stringify({ query: QUERY })
const headers = { 'content-type': 'application/json', 'x-tenant-id': 'acme' }

interface Target {
  url: string
  child: ChildProcess
}

function startTarget(mode: 'uncached' | 'strata' | 'redis-only' | 'postgres-only'): Promise<Target> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/server.ts'], {
    env: { ...process.env, MODE: mode, NODE_ENV: 'production' },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  return new Promise((resolve, reject) => {
    let out = ''
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      const match = /READY (\S+)/.exec(out)
      if (match?.[1]) resolve({ url: match[1], child })
    })
    child.once('exit', (code) => reject(new Error(`${mode} server exited with ${code}`)))
  })
}

interface Scenario {
  name: string
  target: Target
  /** A fresh nonce per request turns every request into a miss. */
  nonce: boolean
  bypass?: boolean
}

let nonce = 0
async function load(
  scenario: Scenario,
  duration: number,
): Promise<{ rps: number; p99: number; bad: number }> {
  const result = await autocannon({
    url: scenario.target.url,
    method: 'POST',
    connections,
    duration,
    headers,
    body,
    requests: scenario.nonce
      ? [
          {
            setupRequest: (request: autocannon.Request) => {
              request.headers = {
                ...headers,
                'x-bench-nonce': String(nonce++),
                ...(scenario.bypass ? { 'x-bench-bypass': '1' } : {}),
              }
              return request
            },
          },
        ]
      : undefined,
  })
  return {
    rps: result.requests.average,
    p99: result.latency.p99,
    bad: result.non2xx + result.errors + result.timeouts,
  }
}

async function expectStatus(target: Target, extra: Record<string, string>, expected: string): Promise<void> {
  const response = await fetch(target.url, { method: 'POST', headers: { ...headers, ...extra }, body })
  const status = response.headers.get('x-strata-cache')
  if (status !== expected) throw new Error(`expected x-strata-cache ${expected}, got ${status}`)
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0

const uncached = await startTarget('uncached')
const strata = await startTarget('strata')
const redisOnly = await startTarget('redis-only')
const postgresOnly = await startTarget('postgres-only')
try {
  const scenarios: Scenario[] = [
    // The uncached server ignores the nonce; sending it keeps the client's work identical to the miss run.
    { name: 'uncached', target: uncached, nonce: true },
    { name: 'strata hit', target: strata, nonce: false },
    { name: 'strata miss', target: strata, nonce: true },
    { name: 'strata bypass', target: strata, nonce: true, bypass: true },
    { name: 'L2 hit (Redis only)', target: redisOnly, nonce: false },
    { name: 'L3 hit (PostgreSQL only)', target: postgresOnly, nonce: false },
  ]
  await expectStatus(strata, {}, 'MISS')
  await expectStatus(strata, {}, 'HIT')
  await expectStatus(strata, { 'x-bench-nonce': 'check' }, 'MISS')
  for (const shared of [redisOnly, postgresOnly]) {
    await expectStatus(shared, {}, 'MISS')
    // The write to a shared tier does not delay the response, and a write within the tier's skew
    // tolerance of the startup clear is refused: wait, then warm it for real.
    await new Promise((r) => setTimeout(r, 1500))
    await fetch(shared.url, { method: 'POST', headers, body })
    await new Promise((r) => setTimeout(r, 100))
    await expectStatus(shared, {}, 'HIT')
  }
  for (const scenario of scenarios) await load(scenario, 2)
  const samples = new Map<string, { rps: number[]; p99: number[]; bad: number }>()
  for (let round = 1; round <= rounds; round++) {
    for (const scenario of scenarios) {
      const r = await load(scenario, seconds)
      const s = samples.get(scenario.name) ?? { rps: [], p99: [], bad: 0 }
      s.rps.push(r.rps)
      s.p99.push(r.p99)
      s.bad += r.bad
      samples.set(scenario.name, s)
      process.stderr.write(`round ${round} ${scenario.name}: ${r.rps.toFixed(0)} req/s\n`)
    }
  }
  const base = median(samples.get('uncached')?.rps ?? [])
  const lines = [
    `| scenario | median req/s | ratio to uncached | median p99 latency (ms) | non-2xx/errors |`,
    `| --- | ---: | ---: | ---: | ---: |`,
  ]
  for (const [name, s] of samples) {
    const rps = median(s.rps)
    lines.push(`| ${name} | ${rps.toFixed(0)} | ${(rps / base).toFixed(2)}× | ${median(s.p99)} | ${s.bad} |`)
  }
  const machine = `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`
  const report = [
    `Command: \`npm run bench -- --seconds ${seconds} --rounds ${rounds} --connections ${connections}\``,
    `Machine: ${machine}`,
    `Query: \`${QUERY}\` (tenant acme, embedded PGlite)`,
    '',
    ...lines,
  ].join('\n')
  process.stdout.write(`${report}\n`)
  if (args.record) writeFileSync('bench/last-run.md', `${report}\n`)
  const bad = [...samples.values()].reduce((n, s) => n + s.bad, 0)
  if (bad > 0) throw new Error(`${bad} requests failed during the benchmark`)
} finally {
  for (const target of [uncached, strata, redisOnly, postgresOnly]) target.child.kill('SIGTERM')
}
