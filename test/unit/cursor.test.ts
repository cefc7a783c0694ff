import { describe, expect, it } from 'vitest'
import { type ChangeRow, LogCursor } from '../../src/changes/cursor.js'

const row = (seq: number): ChangeRow => ({ seq, typeName: 'Post', entityKey: String(seq), tenant: null })
const snap = (xmin: number, xmax: number) => ({ xmin: BigInt(xmin), xmax: BigInt(xmax) })

describe('change log cursor', () => {
  it('applies rows in order and advances its checkpoint', () => {
    const cursor = new LogCursor(0)
    expect(cursor.accept([row(1), row(2), row(3)], snap(10, 10)).map((r) => r.seq)).toEqual([1, 2, 3])
    expect(cursor.low).toBe(3)
    expect(cursor.accept([], snap(10, 10))).toEqual([])
  })

  it('keeps a seq that commits late as a hole, applies it when it appears, then moves on', () => {
    const cursor = new LogCursor(0)
    // Seq 2 belongs to a transaction still running (xid 5 < xmax 8).
    cursor.accept([row(1), row(3)], snap(5, 8))
    expect(cursor.holes).toEqual([2])
    expect(cursor.low).toBe(1)
    expect(cursor.accept([row(2), row(4)], snap(8, 9)).map((r) => r.seq)).toEqual([2, 4])
    expect(cursor.low).toBe(4)
  })

  it('gives up on a hole once every transaction that could fill it has finished (a rollback)', () => {
    const cursor = new LogCursor(0)
    cursor.accept([row(1), row(3)], snap(5, 8))
    cursor.accept([], snap(6, 9))
    expect(cursor.holes).toEqual([2]) // xid 6 or 7 may still commit it
    cursor.accept([], snap(8, 9))
    expect(cursor.holes).toEqual([])
    expect(cursor.low).toBe(3)
  })

  it('applies every change of a log row (one per drain), also when the row fills a hole', () => {
    const cursor = new LogCursor(0)
    const change = (seq: number, key: string): ChangeRow => ({
      seq,
      typeName: 'Post',
      entityKey: key,
      tenant: null,
    })
    cursor.accept([change(1, 'a'), change(1, 'b'), change(3, 'c')], snap(5, 8))
    expect(cursor.holes).toEqual([2])
    const fresh = cursor.accept([change(2, 'd'), change(2, 'e'), change(3, 'c'), change(4, 'f')], snap(8, 9))
    expect(fresh.map((r) => r.entityKey)).toEqual(['d', 'e', 'f'])
    expect(cursor.low).toBe(4)
  })

  it('settles no hole after a read cut by a limit: the row filling it may be just past the limit', () => {
    const cursor = new LogCursor(0)
    cursor.accept([row(1), row(3)], snap(5, 8))
    cursor.accept([], snap(8, 9), false) // xid 5-7 finished, but this read stopped early
    expect(cursor.holes).toEqual([2])
    expect(cursor.accept([row(2)], snap(8, 9)).map((r) => r.seq)).toEqual([2])
    expect(cursor.low).toBe(3)
  })

  it('does not apply a row twice when it is read again', () => {
    const cursor = new LogCursor(0)
    cursor.accept([row(1), row(2)], snap(1, 1))
    expect(cursor.accept([row(2)], snap(1, 1))).toEqual([])
  })
})
