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

runStoreConformance('redis', {
  create: () => openRedisStore({ url: redis.url, keyPrefix: `t-${randomUUID().slice(0, 8)}:` }),
});
