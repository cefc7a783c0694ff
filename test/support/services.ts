import { execFileSync } from 'node:child_process'
import { Socket } from 'node:net'

/**
 * Resolves the PostgreSQL and Redis that service tests use, in this order:
 * 1. environment variables (`DATABASE_URL`, `REDIS_URL`);
 * 2. testcontainers, only where a Docker engine answers;
 * 3. the local defaults (127.0.0.1:5432, 127.0.0.1:6379).
 * Fails with a message naming what to start when none answers. Never skips.
 */
type Service = 'postgres' | 'redis'

const spec = {
  postgres: {
    env: 'DATABASE_URL',
    local: 'postgres://postgres@127.0.0.1:5432/postgres',
    port: 5432,
    name: 'PostgreSQL',
  },
  redis: { env: 'REDIS_URL', local: 'redis://127.0.0.1:6379', port: 6379, name: 'Redis' },
} as const

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

const stops: (() => Promise<unknown>)[] = []

async function fromContainer(service: Service): Promise<string> {
  const { GenericContainer, Wait } = await import('testcontainers')
  if (service === 'postgres') {
    const pg = await new GenericContainer('postgres:15-alpine')
      .withEnvironment({ POSTGRES_HOST_AUTH_METHOD: 'trust' })
      .withExposedPorts(5432)
      .withWaitStrategy(Wait.forLogMessage(/ready to accept connections/, 2))
      .start()
    stops.push(() => pg.stop())
    return `postgres://postgres@${pg.getHost()}:${pg.getMappedPort(5432)}/postgres`
  }
  const redis = await new GenericContainer('redis:7-alpine').withExposedPorts(6379).start()
  stops.push(() => redis.stop())
  return `redis://${redis.getHost()}:${redis.getMappedPort(6379)}`
}

async function resolveService(service: Service): Promise<string> {
  const { env, local, port, name } = spec[service]
  const url = process.env[env] ?? (dockerAnswers() ? await fromContainer(service) : local)
  if (!(await reachable(url, port))) {
    throw new Error(
      `${name} is not reachable at ${url}. Service tests never skip: set ${env}, or start it with \`bash scripts/services.sh\`.`,
    )
  }
  return url
}

const resolved = new Map<Service, Promise<string>>()

/** The URL of a real service for this test run (resolved once per worker). */
export function serviceUrl(service: Service): Promise<string> {
  let url = resolved.get(service)
  if (!url) {
    url = resolveService(service)
    resolved.set(service, url)
  }
  return url
}

/** Stops containers started by `serviceUrl()` (no-op for env or local services). */
export async function stopServices(): Promise<void> {
  await Promise.all(stops.splice(0).map((stop) => stop()))
}
