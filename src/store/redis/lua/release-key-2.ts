/**
 * @module store/redis/lua/release-key-2 — drops a claim whose request failed.
 *
 * KEYS[1]  HASH   the key's record (see claim-key-2)
 * KEYS[2]  ZSET   the shard's live records (see claim-key-2)
 *
 * Returns 1.
 */
export const RELEASE_KEY_LUA = `
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], KEYS[1])
return 1
`;
