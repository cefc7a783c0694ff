import { execFileSync } from 'node:child_process'
import { Socket } from 'node:net'

/**
 * Resolves the PostgreSQL and Redis that service tests use, in this order:
 * 1. environment variables (`DATABASE_URL`, `REDIS_URL`);
 * 2. testcontainers, only where a Docker engine answers;
 * 3. the local defaults (127.0.0.1:5432, 127.0.0.1:6379).
 * Fails with a message naming what to start when none answers. Never skips.
 */
export interface ServiceUrls {
  postgres: string
  redis: string
}

const LOCAL = { postgres: 'postgres://postgres@127.0.0.1:5432/postgres', redis: 'redis://127.0.0.1:6379' }

function dockerAnswers(): boolean {
  try {
    execFileSync('docker', ['info', '--format', '{{.ServerVersion}}'], { stdio: 'pipe', timeout: 3000 })
    return true
  } catch {
    return false
  }
}

function reachable(url: string, defaultPort: number): Promise<boolean> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve) => {
    const socket = new Socket()
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(1500, () => done(false))
    socket.once('error', () => done(false))
    socket.connect(Number(port || defaultPort), hostname.replace(/^\[|\]$/g, ''), () => done(true))
  })
}

let cached: Promise<ServiceUrls> | undefined
const stops: (() => Promise<unknown>)[] = []

async function fromContainers(): Promise<Partial<ServiceUrls>> {
  const { GenericContainer, Wait } = await import('testcontainers')
  const pg = await new GenericContainer('postgres:15-alpine')
    .withEnvironment({ POSTGRES_HOST_AUTH_METHOD: 'trust' })
    .withExposedPorts(5432)
    .withWaitStrategy(Wait.forLogMessage(/ready to accept connections/, 2))
    .start()
  const redis = await new GenericContainer('redis:7-alpine').withExposedPorts(6379).start()
  stops.push(
    () => pg.stop(),
    () => redis.stop(),
  )
  return {
    postgres: `postgres://postgres@${pg.getHost()}:${pg.getMappedPort(5432)}/postgres`,
    redis: `redis://${redis.getHost()}:${redis.getMappedPort(6379)}`,
  }
}

async function resolve(): Promise<ServiceUrls> {
  const fromEnv: Partial<ServiceUrls> = { postgres: process.env.DATABASE_URL, redis: process.env.REDIS_URL }
  const containers = (!fromEnv.postgres || !fromEnv.redis) && dockerAnswers() ? await fromContainers() : {}
  const urls: ServiceUrls = {
    postgres: fromEnv.postgres ?? containers.postgres ?? LOCAL.postgres,
    redis: fromEnv.redis ?? containers.redis ?? LOCAL.redis,
  }
  const problems: string[] = []
  if (!(await reachable(urls.postgres, 5432))) {
    problems.push(
      `PostgreSQL is not reachable at ${urls.postgres}: set DATABASE_URL, or start it (bash scripts/services.sh)`,
    )
  }
  if (!(await reachable(urls.redis, 6379))) {
    problems.push(
      `Redis is not reachable at ${urls.redis}: set REDIS_URL, or start it (bash scripts/services.sh)`,
    )
  }
  if (problems.length > 0) throw new Error(`service tests need real services:\n- ${problems.join('\n- ')}`)
  return urls
}

/** The service URLs for this test run (resolved once per worker). */
export function services(): Promise<ServiceUrls> {
  cached ??= resolve()
  return cached
}

/** Stops containers started by `services()` (no-op for env or local services). */
export async function stopServices(): Promise<void> {
  await Promise.all(stops.splice(0).map((stop) => stop()))
}
