/**
 * @module store/lua/set-counter-3 — overwrites one counter, indexes it and publishes the value.
 *
 * KEYS[1]  STRING the counter
 * KEYS[2]  ZSET   counter names (score 0)
 * KEYS[3]  STRING shard version
 * ARGV[1]  value, decimal
 * ARGV[2]  counter name
 * ARGV[3]  pub/sub channel
 * ARGV[4]  message header: "<origin> <shard>"
 *
 * Returns the new shard version.
 * A missing version starts from Redis TIME in µs, so versions keep growing even after Redis
 * lost its data (a restart without persistence, FLUSHALL): watchers compare them.
 */
export const SET_COUNTER_LUA = `
local function bump(key)
  if redis.call('EXISTS', key) == 0 then
    local t = redis.call('TIME')
    redis.call('SET', key, string.format('%d', tonumber(t[1]) * 1000000 + tonumber(t[2])))
  end
  return redis.call('INCR', key)
end
local version = bump(KEYS[3])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4] .. ' ' .. string.format('%d', version) .. '\\n' .. ARGV[2] .. ' ' .. ARGV[1])
return version
`;
