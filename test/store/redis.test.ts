import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll } from 'vitest';
import { openRedisStore } from '../../src/store/redis/factory.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { runStoreConformance } from './conformance.js';

let redis: RedisServer;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(() => redis?.close());

// Last writes recorded (TALLY_EXPIRE_IDLE set): describe reports them and idle counters expire.
runStoreConformance('redis', {
  create: () =>
    openRedisStore({
      url: redis.url,
      keyPrefix: `t-${randomUUID().slice(0, 8)}:`,
      trackLastWrite: true,
    }),
});

// The default (counters never expire): no last writes recorded, nothing expires.
runStoreConformance('redis, last writes not recorded', {
  create: () => openRedisStore({ url: redis.url, keyPrefix: `u-${randomUUID().slice(0, 8)}:` }),
  expiry: false,
});
