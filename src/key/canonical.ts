/**
 * Canonical JSON: object keys sorted (so key order never matters), `undefined`
 * members dropped, arrays kept in order. Equal values give equal strings.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (value === undefined || typeof value === 'function' || typeof value === 'symbol') return 'null'
    if (typeof value === 'bigint') return JSON.stringify(value.toString())
    if (typeof value === 'number' && !Number.isFinite(value)) return 'null'
    return JSON.stringify(value)
  }
  if (Array.isArray(value)) {
    let out = '['
    for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + canonicalJson(value[i])
    return `${out}]`
  }
  if (value instanceof Map) {
    const entries = [...value].map(([k, v]) => `[${canonicalJson(k)},${canonicalJson(v)}]`).sort()
    return `{"$map":[${entries.join(',')}]}`
  }
  if (value instanceof Set) return `{"$set":[${[...value].map(canonicalJson).sort().join(',')}]}`
  const toJSON = (value as { toJSON?: unknown }).toJSON
  if (typeof toJSON === 'function') return canonicalJson(toJSON.call(value))
  const record = value as Record<string, unknown>
  const keys = Object.keys(record).sort()
  let out = '{'
  let first = true
  for (const key of keys) {
    const member = record[key]
    if (member === undefined || typeof member === 'function' || typeof member === 'symbol') continue
    out += `${first ? '' : ','}${JSON.stringify(key)}:${canonicalJson(member)}`
    first = false
  }
  return `${out}}`
}
