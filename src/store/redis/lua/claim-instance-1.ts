/**
 * @module store/redis/lua/claim-instance-1 — claims an instance id for one process: granted when the
 * id is new, its lease ran out, or the caller names the current epoch (a takeover); the epoch
 * then grows by one.
 *
 * KEYS[1]  HASH   the id's claim: `epoch`, `holder`, `expires` (Redis TIME, ms); it never
 *                 expires itself, so epochs keep growing across releases and lapsed leases
 * ARGV[1]  holder: the claiming process, as the caller describes it
 * ARGV[2]  lease in ms
 * ARGV[3]  takeover epoch, or '' for none
 *
 * Returns {1, epoch} when granted, else {0, epoch, holder, ms left of the live lease}.
 * The record is read before anything is written, so a key of another type fails (WRONGTYPE)
 * having changed nothing; the one HSET then writes all three fields at once.
 */
import { NOW_MS_LUA } from './now-ms.js';

export const CLAIM_INSTANCE_LUA = `${NOW_MS_LUA}
local now = now_ms()
local found = redis.call('HMGET', KEYS[1], 'epoch', 'holder', 'expires')
local epoch = tonumber(found[1]) or 0
local left = (tonumber(found[3]) or 0) - now
if epoch > 0 and left > 0 and epoch ~= tonumber(ARGV[3]) then
  return {0, epoch, found[2] or '', left}
end
epoch = epoch + 1
redis.call('HSET', KEYS[1], 'epoch', string.format('%d', epoch), 'holder', ARGV[1],
  'expires', string.format('%d', now + tonumber(ARGV[2])))
return {1, epoch}
`;
