import { describe, expect, it } from 'vitest'
import { canonicalJson, deriveKey, encodeTenant, type KeyParts, tenantKeyPrefix } from '../../src/index.js'
import { isWellFormedTenant, keyTenant } from '../../src/key/key.js'

const base: KeyParts = {
  prefix: 'strata',
  tenant: 'acme',
  source: '{ posts { id } }',
  operationName: null,
  variables: { a: 1, b: [1, 2] },
  session: null,
  schemaVersion: 'v1',
  extra: undefined,
}

describe('canonicalJson', () => {
  it('ignores object key order at every depth', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: null } })).toBe(
      canonicalJson({ a: { c: null, d: [1, { x: 1, y: 2 }] }, b: 1 }),
    )
  })
  it('keeps array order and distinguishes types', () => {
    expect(canonicalJson([1, 2])).not.toBe(canonicalJson([2, 1]))
    expect(canonicalJson({ a: '1' })).not.toBe(canonicalJson({ a: 1 }))
    expect(canonicalJson({ a: null })).not.toBe(canonicalJson({}))
  })
  it('distinguishes Maps and Sets by content, ignoring insertion order', () => {
    expect(canonicalJson(new Map([['a', 1]]))).not.toBe(canonicalJson(new Map([['a', 2]])))
    expect(
      canonicalJson(
        new Map([
          ['a', 1],
          ['b', 2],
        ]),
      ),
    ).toBe(
      canonicalJson(
        new Map([
          ['b', 2],
          ['a', 1],
        ]),
      ),
    )
    expect(canonicalJson(new Set(['x', 'y']))).toBe(canonicalJson(new Set(['y', 'x'])))
    expect(canonicalJson(new Set(['x']))).not.toBe(canonicalJson(new Set(['y'])))
  })
  it('drops undefined members like JSON does', () => {
    expect(canonicalJson({ a: undefined, b: 1 })).toBe('{"b":1}')
  })
})

describe('deriveKey', () => {
  it('is stable and independent of variable key order', () => {
    expect(deriveKey(base)).toBe(deriveKey({ ...base, variables: { b: [1, 2], a: 1 } }))
    expect(deriveKey(base)).toMatch(/^strata:t:acme:[A-Za-z0-9_-]{43}$/)
  })
  it('gives the key earlier releases gave (entries in shared tiers outlive a deploy)', () => {
    const parts: KeyParts = {
      prefix: 'strata',
      tenant: 'acme',
      source: '{ post(id: $id) { id title } }',
      operationName: 'Post',
      variables: { id: '1', b: [1, 2] },
      session: 'user-7',
      schemaVersion: 'v42',
      extra: { locale: 'fr' },
    }
    expect(deriveKey(parts)).toBe('strata:t:acme:sqza0JJO2FtyBsoNWcpYRPp9MOlSm0XG6Ld4FKGq8O8')
  })
  it('changes with every part of the identity', () => {
    const variants: Partial<KeyParts>[] = [
      { tenant: 'globex' },
      { tenant: null },
      { source: '{ posts { title } }' },
      { operationName: 'A' },
      { variables: { a: 2, b: [1, 2] } },
      { session: 'u1' },
      { schemaVersion: 'v2' },
      { extra: { locale: 'fr' } },
      { prefix: 'other' },
    ]
    const keys = new Set([deriveKey(base), ...variants.map((v) => deriveKey({ ...base, ...v }))])
    expect(keys.size).toBe(variants.length + 1)
  })
  it('frames parts so that moving text between them changes the key', () => {
    expect(deriveKey({ ...base, source: 'ab', operationName: 'c' })).not.toBe(
      deriveKey({ ...base, source: 'a', operationName: 'bc' }),
    )
    expect(deriveKey({ ...base, session: '' })).not.toBe(deriveKey({ ...base, session: null }))
  })
})

describe('tenant encoding', () => {
  const hostile = [
    '',
    ':',
    'a:b',
    '*',
    '?',
    '[a]',
    '{x}',
    'a b',
    '%41',
    'A',
    'ünï',
    '租户',
    '😀',
    '\ufffd',
    'a\nb',
    'strata:t:x',
  ]
  it('never produces structural or glob characters', () => {
    for (const tenant of hostile) expect(encodeTenant(tenant), tenant).toMatch(/^[A-Za-z0-9_%-]*$/)
  })
  it('is injective over hostile values', () => {
    expect(new Set(hostile.map(encodeTenant)).size).toBe(hostile.length)
  })
  it('keeps simple tenants readable and round-trips through keyTenant', () => {
    expect(encodeTenant('acme-42_x')).toBe('acme-42_x')
    for (const tenant of hostile) expect(keyTenant(deriveKey({ ...base, tenant }))).toBe(tenant)
    expect(keyTenant(deriveKey({ ...base, tenant: null }))).toBeNull()
  })
  it('no tenant prefix is a prefix of another tenant key', () => {
    const prefixes = hostile.map((t) => tenantKeyPrefix('strata', t))
    for (const tenant of hostile) {
      const key = deriveKey({ ...base, tenant })
      const owners = prefixes.filter((p) => key.startsWith(p))
      expect(owners, tenant).toEqual([tenantKeyPrefix('strata', tenant)])
    }
  })
  it('refuses a tenant holding a lone surrogate, which UTF-8 would turn into another tenant (U+FFFD)', () => {
    for (const tenant of ['\ud800', 'a\udc00', '\ude00😀']) {
      expect(isWellFormedTenant(tenant), tenant).toBe(false)
      expect(() => encodeTenant(tenant)).toThrow(/not well-formed Unicode/)
    }
    expect(hostile.every(isWellFormedTenant)).toBe(true)
  })
})
