/**
 * @module store/redis/lua/set-counter-4 — overwrites one counter, indexes it and publishes the value.
 *
 * KEYS[1]  STRING the counter
 * KEYS[2]  ZSET   counter names (score 0)
 * KEYS[3]  STRING shard version
 * KEYS[4]  ZSET   counter name → time of its last write (ms), when ARGV[5] is 1
 * ARGV[1]  value, decimal
 * ARGV[2]  counter name
 * ARGV[3]  pub/sub channel
 * ARGV[4]  message header: "<origin> <shard>"
 * ARGV[5]  1: record the write time in KEYS[4] (counters expire); else 0
 *
 * Returns the new shard version.
 * The version moves by `bump_version` (bump-version.ts).
 */
import { BUMP_VERSION_LUA } from './bump-version.js';
import { NOW_MS_LUA } from './now-ms.js';

export const SET_COUNTER_LUA = `${BUMP_VERSION_LUA}${NOW_MS_LUA}
local version = bump_version(KEYS[3])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
if ARGV[5] == '1' then redis.call('ZADD', KEYS[4], now_ms(), ARGV[2]) end
redis.call('PUBLISH', ARGV[3], ARGV[4] .. ' ' .. string.format('%d', version) .. '\\n' .. ARGV[2] .. ' ' .. ARGV[1])
return version
`;
