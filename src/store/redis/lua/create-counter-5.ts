/**
 * @module store/redis/lua/create-counter-5 — creates one counter with its settings unless it
 * exists (a value or settings); indexes it and publishes the value.
 *
 * KEYS[1]  STRING the counter
 * KEYS[2]  ZSET   counter names (score 0)
 * KEYS[3]  STRING shard version
 * KEYS[4]  STRING the counter's settings (JSON)
 * KEYS[5]  ZSET   counter name → time of its last write (ms), when ARGV[6] is 1
 * ARGV[1]  value, decimal
 * ARGV[2]  counter name
 * ARGV[3]  pub/sub channel
 * ARGV[4]  message header: "<origin> <shard>"
 * ARGV[5]  settings (JSON)
 * ARGV[6]  1: record the write time in KEYS[5] (counters expire); else 0
 *
 * Returns {created 0|1, shard version}; nothing changes when the counter exists.
 * The version moves by `bump_version` (bump-version.ts).
 */
import { BUMP_VERSION_LUA } from './bump-version.js';
import { NOW_MS_LUA } from './now-ms.js';

export const CREATE_COUNTER_LUA = `${BUMP_VERSION_LUA}${NOW_MS_LUA}
if redis.call('EXISTS', KEYS[1], KEYS[4]) > 0 then
  return {0, tonumber(redis.call('GET', KEYS[3]) or '0') or 0}
end
local version = bump_version(KEYS[3])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[4], ARGV[5])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
if ARGV[6] == '1' then redis.call('ZADD', KEYS[5], now_ms(), ARGV[2]) end
redis.call('PUBLISH', ARGV[3], ARGV[4] .. ' ' .. string.format('%d', version) .. '\\n' .. ARGV[2] .. ' ' .. ARGV[1])
return {1, version}
`;
