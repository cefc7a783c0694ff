import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { GraphQLSchema } from 'graphql'
import { createYoga, type Plugin } from 'graphql-yoga'

export interface GraphQLResponse {
  status: number
  headers: Headers
  text: string
  json: {
    data?: Record<string, unknown> | null
    errors?: { message: string; extensions?: Record<string, unknown> }[]
    extensions?: Record<string, unknown>
  }
  cache: string | null
}

export interface TestServer {
  url: string
  query(
    query: string,
    variables?: Record<string, unknown>,
    headers?: Record<string, string>,
  ): Promise<GraphQLResponse>
  close(): Promise<void>
}

/**
 * Starts a server with Strata's `plugin` and queues closing it on `closers` (run in reverse): the
 * server first, then the plugin, then `resources`, in reverse of the order given.
 */
export async function startStrataServer(
  schema: GraphQLSchema,
  plugin: Plugin & { strata: { close(): Promise<unknown> } },
  closers: (() => Promise<unknown>)[],
  ...resources: (() => Promise<unknown>)[]
): Promise<TestServer> {
  const server = await startServer({ schema, plugins: [plugin] })
  closers.push(
    ...resources,
    () => plugin.strata.close(),
    () => server.close(),
  )
  return server
}

/** Starts a real Yoga server over HTTP on an ephemeral loopback port. */
export async function startServer(options: {
  schema: GraphQLSchema
  plugins: Plugin[]
  maskedErrors?: boolean
  batching?: boolean
}): Promise<TestServer> {
  const yoga = createYoga({ logging: false, maskedErrors: false, ...options })
  const server: Server = createServer(yoga)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const url = `http://127.0.0.1:${port}/graphql`
  return {
    url,
    async query(query, variables, headers = {}) {
      const response = await fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/graphql-response+json',
          ...headers,
        },
        body: JSON.stringify({ query, variables }),
      })
      const text = await response.text()
      return {
        status: response.status,
        headers: response.headers,
        text,
        json: JSON.parse(text),
        cache: response.headers.get('x-strata-cache'),
      }
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections()
        server.close((error) => (error ? reject(error) : resolve()))
      }),
  }
}
