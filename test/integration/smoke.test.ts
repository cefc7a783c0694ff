import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { useStrata } from '../../src/index.js'
import { BlogStore, blogSchema } from '../support/blog.js'
import { startServer, type TestServer } from '../support/server.js'

describe('smoke', () => {
  const store = new BlogStore()
  let server: TestServer
  beforeAll(async () => {
    server = await startServer({ schema: blogSchema(store), plugins: [useStrata({ tenant: false })] })
  })
  afterAll(() => server.close())

  it('MISS then HIT with identical bodies', async () => {
    const q = '{ posts { id title author { name } } }'
    const a = await server.query(q)
    const b = await server.query(q)
    expect(a.cache).toBe('MISS')
    expect(b.cache).toBe('HIT')
    expect(b.text).toBe(a.text)
    console.log(a.text, a.headers.get('cache-control'))
  })
})
