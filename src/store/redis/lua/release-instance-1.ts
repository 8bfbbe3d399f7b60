/**
 * @module store/redis/lua/release-instance-1 — ends an instance id's lease now if the caller's epoch
 * is still the current one, so the next claim is granted at once.
 *
 * KEYS[1]  HASH   the id's claim (see claim-instance-1)
 * ARGV[1]  epoch the caller holds
 *
 * Returns 1 when released, 0 when another claim holds the id (nothing is written then). The
 * record stays, with its epoch: the next claim gets the epoch after it.
 */
export const RELEASE_INSTANCE_LUA = `
if tonumber(redis.call('HGET', KEYS[1], 'epoch')) ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'expires', '0')
return 1
`;
