/**
 * @module store/redis/lua/renew-instance-1 — extends an instance id's lease if the caller's epoch is
 * still the current one.
 *
 * KEYS[1]  HASH   the id's claim (see claim-instance-1)
 * ARGV[1]  epoch the caller holds
 * ARGV[2]  lease in ms, from now
 *
 * Returns 1 when renewed (also when the lease had run out but nobody claimed since), 0 when
 * another claim took the id or it was never claimed; then nothing is written.
 */
import { NOW_MS_LUA } from './now-ms.js';

export const RENEW_INSTANCE_LUA = `${NOW_MS_LUA}
local now = now_ms()
if tonumber(redis.call('HGET', KEYS[1], 'epoch')) ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'expires', string.format('%d', now + tonumber(ARGV[2])))
return 1
`;
