// Idle expiry (TALLY_EXPIRE_IDLE) end to end, on SQLite and on a real Redis (its own
// redis-server, last writes tracked): a counter nobody wrote for the idle time is deleted, value
// and settings, and its name is free again; a counter written meanwhile is kept. Both through
// CounterService.expireIdle and through the sweeper (startExpiry) on a short period.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Tally } from '../../src/app.js';
import { startExpiry } from '../../src/counters/expiry.js';
import type { Logger } from '../../src/obs/logger.js';
import type { Store } from '../../src/store/interface.js';
import { openRedisStore } from '../../src/store/redis/factory.js';
import { SqliteStore } from '../../src/store/sqlite/index.js';
import { ADMIN_TOKEN, testApp } from '../helpers/app.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { tempDir } from '../helpers/tmp.js';

/** TALLY_EXPIRE_IDLE=1s, in ms. */
const IDLE_MS = 1000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const dir = tempDir('tally-expiry');
let n = 0;
let redis: RedisServer | undefined;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.close();
  dir.remove();
});

let tally: Tally | undefined;
afterEach(async () => {
  await tally?.close();
  tally = undefined;
});

/** The stores the app opens when TALLY_EXPIRE_IDLE is set (src/store/index.ts, factory.ts). */
const backends: Array<[string, () => Promise<Store>]> = [
  [
    'sqlite',
    async () => new SqliteStore({ path: join(dir.path, `t${n++}.db`), indexLastWrite: true }),
  ],
  [
    'redis',
    () =>
      openRedisStore({
        url: (redis as RedisServer).url,
        keyPrefix: `x-${randomUUID().slice(0, 8)}:`,
        trackLastWrite: true,
      }),
  ],
];

describe.each(backends)('idle expiry on %s', (_label, openStore) => {
  async function make(): Promise<Tally> {
    tally = await testApp(
      { publicWrites: 'hits', adminToken: ADMIN_TOKEN, createRateLimit: 'off', expireIdle: '1s' },
      await openStore(),
    );
    return tally;
  }

  function call(
    t: Tally,
    method: 'GET' | 'POST' | 'PUT',
    url: string,
    opts: { body?: unknown; key?: string } = {},
  ) {
    return t.app.inject({
      method,
      url,
      ...(opts.body === undefined ? {} : { payload: opts.body as object }),
      headers: opts.key === undefined ? {} : { authorization: `Bearer ${opts.key}` },
    });
  }

  /** A keyless +1, answered once the store holds it (so its last write is recorded). */
  async function hit(t: Tally, url: string): Promise<void> {
    const r = await call(t, 'POST', `${url}/increment?consistency=strong`);
    expect(r.statusCode, r.body).toBe(200);
  }

  async function create(t: Tally, ns: string, key: string, value: number): Promise<string> {
    const r = await call(t, 'POST', `/api/v1/namespaces/${ns}/counters/${key}`, {
      body: { value },
    });
    expect(r.statusCode, r.body).toBe(201);
    return r.json().admin_key as string;
  }

  it('deletes a counter idle for TALLY_EXPIRE_IDLE and keeps one written since', async () => {
    const t = await make();
    const oldKey = await create(t, 'blog', 'idle', 5);
    await create(t, 'blog', 'busy', 1);
    await hit(t, '/api/v1/counters/idle-flat');
    await hit(t, '/api/v1/counters/busy-flat');
    await sleep(IDLE_MS + 150);
    await hit(t, '/api/v1/namespaces/blog/counters/busy');
    await hit(t, '/api/v1/counters/busy-flat');
    await create(t, 'blog', 'new', 0);

    // info tells when a counter expires: its last write plus the idle time.
    const busy = (await call(t, 'GET', '/api/v1/namespaces/blog/counters/busy/info')).json();
    expect(busy.updated).toBeGreaterThanOrEqual(busy.created + IDLE_MS);
    expect(busy.expires).toBe(busy.updated + IDLE_MS);

    const expired = await t.counters.expireIdle(IDLE_MS, 500);
    expect([...expired].sort()).toEqual(['blog/idle', 'idle-flat']);

    // Gone, value and settings; this instance's estimate follows (an eventual read says 0).
    for (const url of ['/api/v1/namespaces/blog/counters/idle', '/api/v1/counters/idle-flat']) {
      expect((await call(t, 'GET', `${url}/info`)).statusCode).toBe(404);
      expect((await call(t, 'GET', url)).json().value).toBe(0);
    }
    expect(await t.store.describe('blog/idle')).toBeUndefined();
    const list = (await call(t, 'GET', '/api/v1/counters')).json();
    expect(list.items).toEqual([
      { name: 'blog/busy', value: 2 },
      { name: 'blog/new', value: 0 },
      { name: 'busy-flat', value: 2 },
    ]);
    // The kept ones keep their settings and values.
    expect(
      (await call(t, 'GET', '/api/v1/namespaces/blog/counters/busy/info')).json(),
    ).toMatchObject({
      value: 2,
      has_key: true,
    });
    // Deleted once: the next sweep finds nothing.
    expect(await t.counters.expireIdle(IDLE_MS, 500)).toEqual([]);

    // The name is free again, and the old admin key covers nothing of the new counter.
    const newKey = await create(t, 'blog', 'idle', 0);
    expect(newKey).not.toBe(oldKey);
    const stale = await call(t, 'POST', '/api/v1/namespaces/blog/counters/idle/increment', {
      body: { by: 5 },
      key: oldKey,
    });
    expect(stale.statusCode).toBe(403);
    expect(
      (await call(t, 'GET', '/api/v1/namespaces/blog/counters/idle?consistency=strong')).json()
        .value,
    ).toBe(0);
  });

  it('sweeps on its own (startExpiry), keeping counters that are still written', async () => {
    const t = await make();
    const logger = { info: vi.fn(), warn: vi.fn() };
    await hit(t, '/api/v1/counters/sweep-idle');
    await hit(t, '/api/v1/counters/sweep-busy');
    const stop = startExpiry(t.counters, 300, logger as unknown as Logger, 50);
    try {
      const deadline = Date.now() + 3000;
      while ((await t.store.describe('sweep-idle')) !== undefined) {
        if (Date.now() > deadline) throw new Error('sweep-idle was not expired in 3 s');
        await hit(t, '/api/v1/counters/sweep-busy');
        await sleep(50);
      }
    } finally {
      stop();
    }
    expect(await t.store.get('sweep-idle')).toBe(0);
    expect(await t.store.get('sweep-busy')).toBeGreaterThanOrEqual(2);
    expect(logger.warn).not.toHaveBeenCalled();
    expect(logger.info).toHaveBeenCalledWith(
      { event: 'counters_expired', count: 1 },
      'idle counters deleted',
    );
  });
});

it('records last writes on Redis while expiry is off, so turning it on later expires nothing in use', async () => {
  const { createRedisStore } = await import('../../src/store/redis/factory.js');
  const { loadConfig } = await import('../../src/config.js');
  const prefix = `exp-off-${randomUUID().slice(0, 8)}:`;
  // As `tally serve` opens it without TALLY_EXPIRE_IDLE.
  const store = await createRedisStore(
    loadConfig(
      {},
      { store: 'redis', redisUrl: (redis as RedisServer).url, redisKeyPrefix: prefix },
    ),
  );
  try {
    await store.applyBatch({ instanceId: 'w@1', seq: 1, deltas: new Map([['busy', 1]]) });
    const info = await store.describe('busy');
    expect(info?.touchedAt).toBeTypeOf('number');
    expect(Math.abs((info?.touchedAt ?? 0) - Date.now())).toBeLessThan(5000);
    // Expiry turned on later: a counter written a moment ago is not idle.
    expect(await store.expireIdle(Date.now() - 60_000, 100)).toEqual([]);
  } finally {
    await store.close();
  }
});
