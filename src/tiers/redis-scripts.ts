import { createHash } from 'node:crypto'

/** A Lua script with its SHA-1, run with EVALSHA (falling back to EVAL once per connection). */
export interface Script {
  readonly lua: string
  readonly sha: string
}

function script(lua: string): Script {
  return { lua, sha: createHash('sha1').update(lua).digest('hex') }
}

/**
 * Stores an entry and indexes it under its tags, atomically. Refuses (returns 0) when the
 * shard was flushed, or one of the tags invalidated, at or after ARGV[4] (the execution's
 * start minus the clock-skew tolerance). Tag indexes are sorted sets scored by each member's
 * expiry: expired members are pruned on every write and the index key expires with its
 * longest-lived member, so nothing grows without bound.
 *
 * KEYS: entry, n tag indexes, n tag stamps, shard flush stamp, shard flush stamp of the entry's tenant
 * ARGV: value, expiresAt (ms), now (ms), notBefore (ms, 0 = no check), n
 */
export const SET_SCRIPT = script(`
local n = tonumber(ARGV[5])
local notBefore = tonumber(ARGV[4])
if notBefore > 0 then
  for k = 2 + 2 * n, 3 + 2 * n do
    local flushed = redis.call('GET', KEYS[k])
    if flushed and tonumber(flushed) >= notBefore then return 0 end
  end
  for i = 1, n do
    local stamp = redis.call('GET', KEYS[1 + n + i])
    if stamp and tonumber(stamp) >= notBefore then return 0 end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
for i = 1, n do
  local index = KEYS[1 + i]
  redis.call('ZADD', index, ARGV[2], KEYS[1])
  redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. ARGV[3])
  redis.call('PEXPIREAT', index, ARGV[2], 'NX')
  redis.call('PEXPIREAT', index, ARGV[2], 'GT')
end
return 1
`)

/**
 * Removes every entry indexed under the given tags in one shard, drops the indexes, and
 * stamps the tags so that writes from executions that began earlier are refused.
 * One round trip whatever the number of members.
 *
 * KEYS: n tag indexes, n tag stamps
 * ARGV: n, stamp (ms), stamp lifetime (ms)
 */
export const INVALIDATE_SCRIPT = script(`
local n = tonumber(ARGV[1])
local removed = 0
for i = 1, n do
  local members = redis.call('ZRANGE', KEYS[i], 0, -1)
  for j = 1, #members, 500 do
    removed = removed + redis.call('UNLINK', unpack(members, j, math.min(j + 499, #members)))
  end
  redis.call('UNLINK', KEYS[i])
  redis.call('SET', KEYS[n + i], ARGV[2], 'PX', ARGV[3])
end
return removed
`)

/**
 * Stamps a shard as flushed: writes from executions that began earlier are refused.
 * KEYS: shard flush stamp. ARGV: stamp (ms), lifetime (ms)
 */
export const FLUSH_SCRIPT = script(`redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1`)
