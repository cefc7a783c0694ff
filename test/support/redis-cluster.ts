import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** A throwaway 3-node Redis Cluster on loopback ports, started from `redis-server`. */
export interface LocalCluster {
  readonly ports: readonly number[]
  stop(): Promise<void>
}

/** A free port whose cluster bus port (+10000) is free too. */
async function freePort(): Promise<number> {
  for (;;) {
    const port = 20000 + Math.floor(Math.random() * 20000)
    if ((await isFree(port)) && (await isFree(port + 10000))) return port
  }
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

export async function startLocalCluster(): Promise<LocalCluster> {
  try {
    await run('redis-server', ['--version'])
  } catch {
    throw new Error('the Redis Cluster test needs redis-server on PATH (Debian package redis-server)')
  }
  const dir = mkdtempSync(join(tmpdir(), 'strata-cluster-'))
  const ports = [await freePort(), await freePort(), await freePort()]
  const processes: ChildProcess[] = ports.map((port) =>
    spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        `nodes-${port}.conf`,
        '--cluster-node-timeout',
        '2000',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
      ],
      { stdio: 'ignore' },
    ),
  )
  const stop = async () => {
    for (const child of processes) child.kill('SIGKILL')
    await new Promise((r) => setTimeout(r, 50))
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    for (const port of ports) await waitFor(async () => (await cli(port, 'PING')) === 'PONG')
    await run('redis-cli', [
      '--cluster',
      'create',
      ...ports.map((p) => `127.0.0.1:${p}`),
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ])
    for (const port of ports)
      await waitFor(async () => (await cli(port, 'CLUSTER', 'INFO')).includes('cluster_state:ok'))
  } catch (error) {
    await stop()
    throw error
  }
  return { ports, stop }
}

async function cli(port: number, ...args: string[]): Promise<string> {
  try {
    return (await run('redis-cli', ['-p', String(port), ...args])).stdout.trim()
  } catch {
    return ''
  }
}

async function waitFor(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error('local Redis Cluster did not become ready in 10 s')
}
