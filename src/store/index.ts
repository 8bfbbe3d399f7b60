/** @module store — builds the store named in config. */
import type { Config } from '../config.js';
import type { Store } from './interface.js';
import { MemoryStore } from './memory/index.js';
import { SqliteStore } from './sqlite/index.js';

export type {
  Batch,
  BatchResult,
  ChangeListener,
  CounterValue,
  InstanceClaim,
  ListOptions,
  ListPage,
  Store,
} from './interface.js';
export { MemoryStore, SqliteStore };

/** Opens the configured store. Redis and PostgreSQL stores are loaded only when asked for. */
export async function createStore(config: Config): Promise<Store> {
  switch (config.store) {
    case 'memory':
      return new MemoryStore();
    case 'sqlite':
      return new SqliteStore({
        path: config.sqlitePath,
        indexLastWrite: config.expireIdle !== undefined,
      });
    case 'redis':
    case 'redis-cluster': {
      const { createRedisStore } = await import('./redis/factory.js');
      return createRedisStore(config);
    }
    case 'postgres': {
      const { createPostgresStore } = await import('./postgres/index.js');
      return createPostgresStore(config);
    }
  }
}
