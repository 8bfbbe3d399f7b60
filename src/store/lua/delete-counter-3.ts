/**
 * @module store/lua/delete-counter-3 — removes one counter and its index entry; publishes 0.
 *
 * KEYS[1]  STRING the counter
 * KEYS[2]  ZSET   counter names (score 0)
 * KEYS[3]  STRING shard version
 * ARGV[1]  counter name
 * ARGV[2]  pub/sub channel
 * ARGV[3]  message header: "<origin> <shard>"
 *
 * Returns {existed 0|1, shard version}; the version only moves when something was deleted.
 * A missing version starts from Redis TIME in µs, so versions keep growing even after Redis
 * lost its data (a restart without persistence, FLUSHALL): watchers compare them.
 */
export const DELETE_COUNTER_LUA = `
local function bump(key)
  if redis.call('EXISTS', key) == 0 then
    local t = redis.call('TIME')
    redis.call('SET', key, string.format('%d', tonumber(t[1]) * 1000000 + tonumber(t[2])))
  end
  return redis.call('INCR', key)
end
local existed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if existed == 0 then
  return {0, tonumber(redis.call('GET', KEYS[3]) or '0') or 0}
end
local version = bump(KEYS[3])
redis.call('PUBLISH', ARGV[2], ARGV[3] .. ' ' .. string.format('%d', version) .. '\\n' .. ARGV[1] .. ' 0')
return {1, version}
`;
