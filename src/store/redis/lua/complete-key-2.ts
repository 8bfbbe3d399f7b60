/**
 * @module store/redis/lua/complete-key-2 — saves the answer of a claimed idempotency key.
 *
 * KEYS[1]  HASH   the key's record (see claim-key-2)
 * KEYS[2]  ZSET   the shard's live records (see claim-key-2)
 * ARGV[1]  the answer to replay, as a string
 * ARGV[2]  how long to keep it, in ms
 *
 * Returns 1, or 0 when the claim had already expired (nothing is saved then: a later retry is
 * processed afresh, as after a lost lease).
 */
import { NOW_MS_LUA } from './now-ms.js';

export const COMPLETE_KEY_LUA = `${NOW_MS_LUA}
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'result', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], now_ms() + tonumber(ARGV[2]), KEYS[1])
return 1
`;
