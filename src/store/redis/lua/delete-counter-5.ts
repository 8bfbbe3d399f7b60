/**
 * @module store/redis/lua/delete-counter-5 — removes one counter, its settings and its index
 * entries; publishes 0. With a cutoff, only a counter last written before it (expiry).
 *
 * KEYS[1]  STRING the counter
 * KEYS[2]  ZSET   counter names (score 0)
 * KEYS[3]  STRING shard version
 * KEYS[4]  STRING the counter's settings (JSON, written by create-counter-5)
 * KEYS[5]  ZSET   counter name → time of its last write (ms)
 * ARGV[1]  counter name
 * ARGV[2]  pub/sub channel
 * ARGV[3]  message header: "<origin> <shard>"
 * ARGV[4]  cutoff in ms: delete only if the last write recorded in KEYS[5] is older; '' = always
 *
 * Returns {existed 0|1, shard version}; the version only moves when something was deleted.
 * The version moves by `bump_version` (bump-version.ts).
 */
import { BUMP_VERSION_LUA } from './bump-version.js';

export const DELETE_COUNTER_LUA = `${BUMP_VERSION_LUA}
if ARGV[4] ~= '' then
  local at = redis.call('ZSCORE', KEYS[5], ARGV[1])
  if not at or tonumber(at) >= tonumber(ARGV[4]) then
    return {0, tonumber(redis.call('GET', KEYS[3]) or '0') or 0}
  end
end
local existed = redis.call('DEL', KEYS[1], KEYS[4])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
if existed == 0 then
  return {0, tonumber(redis.call('GET', KEYS[3]) or '0') or 0}
end
local version = bump_version(KEYS[3])
redis.call('PUBLISH', ARGV[2], ARGV[3] .. ' ' .. string.format('%d', version) .. '\\n' .. ARGV[1] .. ' 0')
return {1, version}
`;
