import type { AddressInfo } from 'node:net'
import { createServer, type Server, Socket } from 'node:net'

/**
 * A TCP proxy a test controls, to fault one client's connection to a real service without
 * disturbing other tests: `hang()` stops forwarding (a service that stopped answering),
 * `cut()` drops every connection and refuses new ones (a service that went away), `heal()`
 * restores normal forwarding.
 */
export interface FaultProxy {
  readonly port: number
  readonly url: string
  hang(): void
  cut(): void
  heal(): void
  close(): Promise<void>
}

export async function startProxy(upstreamUrl: string): Promise<FaultProxy> {
  const upstream = new URL(upstreamUrl)
  const pairs = new Set<[Socket, Socket]>()
  let mode: 'ok' | 'hang' | 'cut' = 'ok'
  const server: Server = createServer((client) => {
    if (mode === 'cut') {
      client.destroy()
      return
    }
    const target = new Socket()
    const pair: [Socket, Socket] = [client, target]
    pairs.add(pair)
    const drop = () => {
      pairs.delete(pair)
      client.destroy()
      target.destroy()
    }
    client.on('error', drop).on('close', drop)
    target.on('error', drop).on('close', drop)
    target.connect(Number(upstream.port), upstream.hostname)
    client.pipe(target)
    target.pipe(client)
    if (mode === 'hang') client.pause()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const url = new URL(upstreamUrl)
  url.hostname = '127.0.0.1'
  url.port = String(port)
  return {
    port,
    url: url.toString(),
    hang: () => {
      // Bytes wait in socket buffers, as with a stalled network or a paused server.
      mode = 'hang'
      for (const [client, target] of pairs) {
        client.pause()
        target.pause()
      }
    },
    cut: () => {
      mode = 'cut'
      for (const [client, target] of pairs) {
        client.destroy()
        target.destroy()
      }
      pairs.clear()
    },
    heal: () => {
      mode = 'ok'
      for (const [client, target] of pairs) {
        client.resume()
        target.resume()
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const [client, target] of pairs) {
          client.destroy()
          target.destroy()
        }
        server.close(() => resolve())
      }),
  }
}
