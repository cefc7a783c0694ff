import { describe, expect, it } from 'vitest'
import { resultFromBody, type SerializableResult } from '../../src/plugin/cached-result.js'

const body = '{"data":{"post":{"id":"1","title":"é \\u2028 x"}}}'
/** What Yoga does with a result: its own `stringify`, else JSON.stringify. */
const serialize = (result: SerializableResult) => (result.stringify ?? JSON.stringify)(result)

describe('resultFromBody', () => {
  it('serializes to the stored body byte for byte, and parses data only when read', () => {
    const result = resultFromBody(body)
    expect(serialize(result)).toBe(body)
    expect(result.data).toEqual({ post: { id: '1', title: 'é \u2028 x' } })
    expect(result.data).toBe(result.data)
    expect(serialize(result)).toBe(body)
  })

  it('shows only data (and errors when stored) to code that enumerates it', () => {
    expect(Object.keys(resultFromBody(body))).toEqual(['data'])
    const stored = '{"errors":[{"message":"gone"}],"data":{"post":null}}'
    const withErrors = resultFromBody(stored)
    expect(Object.keys(withErrors)).toEqual(['errors', 'data'])
    expect(withErrors.errors).toEqual([{ message: 'gone' }])
    expect({ ...withErrors }).toEqual({ data: { post: null }, errors: [{ message: 'gone' }] })
    // Yoga copies a result with errors to sanitize them and serializes the copy: in the stored order.
    expect(JSON.stringify({ ...withErrors })).toBe(stored)
  })

  it('serializes a copy or a changed result as it now is, never as the stored body', () => {
    const copy = { ...resultFromBody(body), extensions: { traced: true } } as SerializableResult
    expect(JSON.parse(serialize(copy))).toEqual({ ...JSON.parse(body), extensions: { traced: true } })

    const extended = resultFromBody(body)
    extended.extensions = { traced: true }
    expect(JSON.parse(serialize(extended))).toEqual({ ...JSON.parse(body), extensions: { traced: true } })

    const replaced = resultFromBody(body)
    replaced.data = { post: null }
    expect(replaced.data).toEqual({ post: null })
    expect(serialize(replaced)).toBe('{"data":{"post":null}}')

    const masked = resultFromBody('{"errors":[{"message":"secret"}],"data":null}')
    masked.errors = [{ message: 'masked' }] as never
    expect(JSON.parse(serialize(masked))).toEqual({ errors: [{ message: 'masked' }], data: null })
  })

  it('keeps each result to its own body', () => {
    const a = resultFromBody('{"data":{"n":1}}')
    const b = resultFromBody('{"data":{"n":2}}')
    expect([serialize(a), serialize(b)]).toEqual(['{"data":{"n":1}}', '{"data":{"n":2}}'])
    expect(a.stringify?.(b)).toBe('{"data":{"n":2}}')
  })
})
