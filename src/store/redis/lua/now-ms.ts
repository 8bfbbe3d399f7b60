/**
 * @module store/redis/lua/now-ms — a Lua fragment, not a script: `now_ms()`, Redis's clock in ms.
 *
 * Leases are compared on Redis's clock, never a client's: the processes sharing a lease may run
 * on machines whose clocks disagree. Scripts using it write only after calling TIME, which
 * Redis 5+ allows (scripts replicate their effects, not themselves).
 */
export const NOW_MS_LUA = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`;
