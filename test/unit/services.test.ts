import { afterEach, describe, expect, it } from 'vitest'
import { serviceUrl } from '../support/services.js'

const saved = process.env.DATABASE_URL
afterEach(() => {
  if (saved === undefined) delete process.env.DATABASE_URL
  else process.env.DATABASE_URL = saved
})

describe('test service resolution', () => {
  it('fails loudly, naming the variable to set, when the service does not answer', async () => {
    process.env.DATABASE_URL = 'postgres://postgres@127.0.0.1:1/none'
    await expect(serviceUrl('postgres')).rejects.toThrow(
      /PostgreSQL is not reachable at .*:1\/none.*set DATABASE_URL/,
    )
  })
})
