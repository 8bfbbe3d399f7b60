/**
 * @module store/redis/lua/claim-key-2 — claims an idempotency key unless a live claim exists,
 * and refuses a new one while its shard already holds its share of the cap.
 *
 * KEYS[1]  HASH   the key's record: `fp` (request fingerprint), `result` (saved answer, once
 *                 done); expires with its lease, then with the answer's time to live
 * KEYS[2]  ZSET   the shard's live records (member: KEYS[1]), scored by when each expires (ms,
 *                 Redis's clock); it is how live records are counted without SCAN
 * ARGV[1]  fingerprint of this request
 * ARGV[2]  lease in ms
 * ARGV[3]  most live records the shard may hold
 *
 * Returns {1} when claimed now, {2} when refused for the cap (nothing written), else
 * {0, fingerprint[, result]} of the existing claim (no result while the first request is still
 * running). Expiry is Redis's: an expired record is gone, and leaves the index here.
 */
import { NOW_MS_LUA } from './now-ms.js';

export const CLAIM_KEY_LUA = `${NOW_MS_LUA}
local found = redis.call('HMGET', KEYS[1], 'fp', 'result')
if found[1] then
  return {0, found[1], found[2]}
end
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZSCORE', KEYS[2], KEYS[1]) == false
    and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then
  return {2}
end
redis.call('HSET', KEYS[1], 'fp', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), KEYS[1])
return {1}
`;
