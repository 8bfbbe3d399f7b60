/**
 * @module store/lua/apply-batch-3 — applies one batch (or one shard's part of it) atomically and
 * at most once per (instanceId, seq), and publishes the new values.
 *
 * KEYS[1]  HASH   instanceId → last applied seq
 * KEYS[2]  ZSET   counter names (score 0)
 * KEYS[3]  STRING shard version, bumped once per applied batch
 * KEYS[4…] STRING one counter per key, `<counterPrefix><name>`
 * ARGV[1]  instanceId
 * ARGV[2]  seq
 * ARGV[3]  pub/sub channel
 * ARGV[4]  message header: "<origin> <shard>"
 * ARGV[5]  byte length of the counter key prefix (the name is the rest of the key)
 * ARGV[6…] delta of each counter, decimal, same order as KEYS[4…]
 *
 * Returns {duplicate 0|1, version, {value…}, {rejected key index…}}; values are after the batch
 * (current ones if duplicate). Every read and check runs before the first write, because Redis
 * does not roll back a script that fails halfway; the first write (the version bump) is also
 * where an OOM refusal lands, before anything changed.
 * A missing version starts from Redis TIME in µs, so versions keep growing even after Redis
 * lost its data (a restart without persistence, FLUSHALL): watchers compare them.
 */
export const APPLY_BATCH_LUA = `
local function bump(key)
  if redis.call('EXISTS', key) == 0 then
    local t = redis.call('TIME')
    redis.call('SET', key, string.format('%d', tonumber(t[1]) * 1000000 + tonumber(t[2])))
  end
  return redis.call('INCR', key)
end
local MAX = 9007199254740991
local function expect(key, kind)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= kind then
    return redis.error_reply('WRONGTYPE Tally key ' .. key .. ' holds a ' .. t .. ', not a ' .. kind)
  end
end
local bad = expect(KEYS[1], 'hash') or expect(KEYS[2], 'zset') or expect(KEYS[3], 'string')
if bad then return bad end

local n = #KEYS - 3
local plen = tonumber(ARGV[5])
local values = {}
local last = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') or 0
if tonumber(ARGV[2]) <= last then
  for i = 1, n do values[i] = tonumber(redis.call('GET', KEYS[i + 3]) or '0') or 0 end
  return {1, tonumber(redis.call('GET', KEYS[3]) or '0') or 0, values, {}}
end

-- Read phase: old values, and which deltas stay within ±(2^53-1). A value that is not an
-- integer string (written by something else) is refused like an overflow rather than failing
-- the whole batch forever.
local olds = {}
local ok = {}
local rejected = {}
for i = 1, n do
  local old = redis.call('GET', KEYS[i + 3])
  olds[i] = old
  if old ~= false and (not string.match(old, '^-?%d+$') or #old > 17) then
    ok[i] = false
  else
    ok[i] = true
  end
end

local version = bump(KEYS[3])
local lines = {}
for i = 1, n do
  local key = KEYS[i + 3]
  local old = olds[i]
  if ok[i] then
    local v = redis.call('INCRBY', key, ARGV[i + 5])
    if v > MAX or v < -MAX then
      -- Exact undo: restore the old string (integer arithmetic in Lua is only 53-bit).
      if old then redis.call('SET', key, old) else redis.call('DEL', key) end
      ok[i] = false
    else
      if not old then redis.call('ZADD', KEYS[2], 0, string.sub(key, plen + 1)) end
      values[i] = v
      lines[#lines + 1] = string.sub(key, plen + 1) .. ' ' .. string.format('%d', v)
    end
  end
  if not ok[i] then
    rejected[#rejected + 1] = i
    values[i] = tonumber(old or '0') or 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if #lines > 0 then
  redis.call('PUBLISH', ARGV[3], ARGV[4] .. ' ' .. string.format('%d', version) .. '\\n' .. table.concat(lines, '\\n'))
end
return {0, version, values, rejected}
`;
