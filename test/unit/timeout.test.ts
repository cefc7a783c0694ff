import { describe, expect, it } from 'vitest'
import { connectWithin } from '../../src/timeout.js'
import { sleep } from '../support/wait.js'

/** A connect the test settles by hand. */
function pending<C>() {
  let resolve = (_: C) => {}
  let reject = (_: Error) => {}
  const promise = new Promise<C>((yes, no) => {
    resolve = yes
    reject = no
  })
  return { promise, resolve, reject }
}

describe('connectWithin', () => {
  it('hands over a connection that arrives in time, and discards nothing', async () => {
    const connect = pending<string>()
    const discarded: string[] = []
    const got = connectWithin(connect.promise, 1000, (late) => discarded.push(late))
    connect.resolve('client')
    expect(await got).toBe('client')
    await sleep(5)
    expect(discarded).toEqual([])
  })

  it('rejects at the deadline, then discards the connection when it arrives', async () => {
    const connect = pending<string>()
    const discarded: string[] = []
    const got = connectWithin(connect.promise, 20, (late) => discarded.push(late))
    await expect(got).rejects.toThrow('could not connect within 20 ms')
    expect(discarded).toEqual([])
    connect.resolve('late client')
    await sleep(5)
    expect(discarded).toEqual(['late client'])
  })

  it('a connect failing after the deadline is not reported again, and a failing discard is contained', async () => {
    const failing = pending<string>()
    await expect(connectWithin(failing.promise, 10, () => {})).rejects.toThrow('within 10 ms')
    failing.reject(new Error('refused')) // an unhandled rejection would fail the run
    const throwing = pending<string>()
    let discards = 0
    await expect(
      connectWithin(throwing.promise, 10, () => {
        discards++
        throw new Error('already released')
      }),
    ).rejects.toThrow('within 10 ms')
    throwing.resolve('late client')
    await sleep(5)
    expect(discards).toBe(1)
  })

  it('reports a connect that fails in time as it is', async () => {
    const connect = pending<string>()
    const got = connectWithin(connect.promise, 1000, () => {})
    connect.reject(new Error('ECONNREFUSED'))
    await expect(got).rejects.toThrow('ECONNREFUSED')
  })
})
