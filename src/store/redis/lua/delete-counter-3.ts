/**
 * @module store/redis/lua/delete-counter-3 — removes one counter and its index entry; publishes 0.
 *
 * KEYS[1]  STRING the counter
 * KEYS[2]  ZSET   counter names (score 0)
 * KEYS[3]  STRING shard version
 * ARGV[1]  counter name
 * ARGV[2]  pub/sub channel
 * ARGV[3]  message header: "<origin> <shard>"
 *
 * Returns {existed 0|1, shard version}; the version only moves when something was deleted.
 * The version moves by `bump_version` (bump-version.ts).
 */
import { BUMP_VERSION_LUA } from './bump-version.js';

export const DELETE_COUNTER_LUA = `${BUMP_VERSION_LUA}
local existed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if existed == 0 then
  return {0, tonumber(redis.call('GET', KEYS[3]) or '0') or 0}
end
local version = bump_version(KEYS[3])
redis.call('PUBLISH', ARGV[2], ARGV[3] .. ' ' .. string.format('%d', version) .. '\\n' .. ARGV[1] .. ' 0')
return {1, version}
`;
