/**
 * @module store/redis/lua/apply-batch-4 — applies one batch (or one shard's part of it) atomically and
 * at most once per (instanceId, seq), and publishes the new values.
 *
 * KEYS[1]  HASH   instanceId → last applied seq
 * KEYS[2]  ZSET   counter names (score 0)
 * KEYS[3]  STRING shard version, bumped once per applied batch
 * KEYS[4]  ZSET   counter name → time of its last write (ms), when ARGV[6] is 1
 * KEYS[5…] STRING one counter per key, `<counterPrefix><name>`
 * ARGV[1]  instanceId
 * ARGV[2]  seq
 * ARGV[3]  pub/sub channel
 * ARGV[4]  message header: "<origin> <shard>"
 * ARGV[5]  byte length of the counter key prefix (the name is the rest of the key)
 * ARGV[6]  1: record each applied counter's write time in KEYS[4] (counters expire); else 0
 * ARGV[7…] delta of each counter, decimal, same order as KEYS[5…]
 *
 * Returns {duplicate 0|1, version, {value…}, {rejected key index…}}; values are after the batch
 * (current ones if duplicate).
 *
 * Redis does not roll back a script that fails halfway, so the order matters:
 * - the seq lookup reads first (a clobbered seq hash fails before anything changed);
 * - the version bump is the first write, so an OOM refusal or a clobbered version key also fails
 *   before anything changed;
 * - each INCRBY runs under pcall: a counter key holding something Tally did not write (not an
 *   integer, another type) is refused alone, and a result outside ±(2^53-1) is undone at once
 *   with DECRBY (exact: Redis integers are 64-bit);
 * - new names go into the index last; if the index was clobbered, every INCRBY is undone and the
 *   batch fails (counters that end at 0 are removed, as 0 reads the same as missing; the version
 *   bump stays, which watchers tolerate: versions only need to grow).
 * The common case costs 4 commands per batch plus one INCRBY per counter (one more ZADD per
 * batch when counters expire) (docs/benchmarks.md).
 * The version moves by `bump_version` (bump-version.ts).
 */
import { BUMP_VERSION_LUA } from './bump-version.js';
import { NOW_MS_LUA } from './now-ms.js';

export const APPLY_BATCH_LUA = `${BUMP_VERSION_LUA}${NOW_MS_LUA}
local MAX = 9007199254740991
local n = #KEYS - 4
local plen = tonumber(ARGV[5])
local values = {}
local last = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') or 0
local function current(key)
  local v = redis.pcall('GET', key)
  if type(v) ~= 'string' then return 0 end
  return tonumber(v) or 0
end
if tonumber(ARGV[2]) <= last then
  for i = 1, n do values[i] = current(KEYS[i + 4]) end
  return {1, tonumber(redis.call('GET', KEYS[3]) or '0') or 0, values, {}}
end

local version = bump_version(KEYS[3])

local rejected = {}
local applied = {}
local fresh = {}
for i = 1, n do
  local key = KEYS[i + 4]
  local delta = ARGV[i + 6]
  local v = redis.pcall('INCRBY', key, delta)
  if type(v) ~= 'number' then
    rejected[#rejected + 1] = i
    values[i] = current(key)
  elseif v > MAX or v < -MAX then
    values[i] = redis.call('DECRBY', key, delta)
    rejected[#rejected + 1] = i
    -- Back to 0 and not indexed: the key did not exist before, so it must not now.
    if values[i] == 0 and redis.pcall('ZSCORE', KEYS[2], string.sub(key, plen + 1)) == false then
      redis.call('DEL', key)
    end
  else
    values[i] = v
    applied[#applied + 1] = i
    -- The value moved from 0 (or from nothing): the name may be new to the index.
    if v == tonumber(delta) then fresh[#fresh + 1] = i end
  end
end

local members = {}
local function index()
  local r = redis.pcall('ZADD', KEYS[2], unpack(members))
  members = {}
  return type(r) == 'table' and r.err or nil
end
local failed = nil
for _, i in ipairs(fresh) do
  members[#members + 1] = 0
  members[#members + 1] = string.sub(KEYS[i + 4], plen + 1)
  if #members >= 1000 then failed = failed or index() end
end
if #members > 0 then failed = failed or index() end
if failed then
  for _, i in ipairs(applied) do
    if redis.call('DECRBY', KEYS[i + 4], ARGV[i + 6]) == 0 then redis.call('DEL', KEYS[i + 4]) end
  end
  return redis.error_reply(failed)
end

redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[6] == '1' and #applied > 0 then
  local now = now_ms()
  for _, i in ipairs(applied) do
    members[#members + 1] = now
    members[#members + 1] = string.sub(KEYS[i + 4], plen + 1)
    if #members >= 1000 then
      redis.call('ZADD', KEYS[4], unpack(members))
      members = {}
    end
  end
  if #members > 0 then redis.call('ZADD', KEYS[4], unpack(members)) end
end
if #applied > 0 then
  local lines = {}
  for _, i in ipairs(applied) do
    lines[#lines + 1] = string.sub(KEYS[i + 4], plen + 1) .. ' ' .. string.format('%d', values[i])
  end
  redis.call('PUBLISH', ARGV[3], ARGV[4] .. ' ' .. string.format('%d', version) .. '\\n' .. table.concat(lines, '\\n'))
end
return {0, version, values, rejected}
`;
