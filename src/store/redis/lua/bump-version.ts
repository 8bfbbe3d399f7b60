/**
 * @module store/redis/lua/bump-version — a Lua fragment, not a script: `bump_version(key)`, the
 * one rule every write script uses to move its shard's version.
 *
 * INCR is the script's first write, so an OOM refusal or a clobbered version key fails before
 * anything changed. A missing version starts from Redis TIME in µs instead of 1, so versions keep
 * growing even after Redis lost its data (a restart without persistence, FLUSHALL): watchers
 * compare them and must never see one go back.
 */
export const BUMP_VERSION_LUA = `
local function bump_version(key)
  local version = redis.call('INCR', key)
  if version == 1 then
    local t = redis.call('TIME')
    version = tonumber(t[1]) * 1000000 + tonumber(t[2])
    redis.call('SET', key, string.format('%d', version))
  end
  return version
end
`;
