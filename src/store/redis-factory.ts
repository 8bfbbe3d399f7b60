/** @module store/redis-factory — placeholder until the Redis store lands (issue "Redis store"). */
import type { Config } from '../config.js';
import type { Store } from './interface.js';

export async function createRedisStore(config: Config): Promise<Store> {
  throw new Error(`TALLY_STORE=${config.store} is not available in this build yet`);
}
