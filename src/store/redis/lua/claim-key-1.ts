/**
 * @module store/redis/lua/claim-key-1 — claims an idempotency key unless a live claim exists.
 *
 * KEYS[1]  HASH   the key's record: `fp` (request fingerprint), `result` (saved answer, once
 *                 done); expires with its lease, then with the answer's time to live
 * ARGV[1]  fingerprint of this request
 * ARGV[2]  lease in ms
 *
 * Returns {1} when claimed now, else {0, fingerprint[, result]} of the existing claim (no result
 * while the first request is still running). Expiry is Redis's: an expired record is gone.
 */
export const CLAIM_KEY_LUA = `
local found = redis.call('HMGET', KEYS[1], 'fp', 'result')
if found[1] then
  return {0, found[1], found[2]}
end
redis.call('HSET', KEYS[1], 'fp', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1}
`;
