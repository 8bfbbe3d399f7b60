// 200 concurrent clients × 50 increments over real HTTP, for both aggregators and both
// consistency levels: every acknowledged increment is in the store after the flush.
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/store/sqlite/index.js';
import { testApp } from '../helpers/app.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('tally-conc');
afterAll(() => dir.remove());

const CLIENTS = 200;
const PER_CLIENT = 50;

describe.each([
  ['accumulate', 'eventual'],
  ['accumulate', 'strong'],
  ['queue', 'eventual'],
  ['queue', 'strong'],
] as const)('%s aggregator, %s increments', (aggregator, consistency) => {
  it(`counts ${CLIENTS} × ${PER_CLIENT} concurrent increments exactly`, async () => {
    const store = new SqliteStore({ path: join(dir.path, `${aggregator}-${consistency}.db`) });
    const t = await testApp({ aggregator, flushIntervalMs: 25 }, store);
    const base = await t.app.listen({ port: 0, host: '127.0.0.1' });
    const expectStatus = consistency === 'strong' ? 200 : 202;
    const statuses = new Map<number, number>();
    const counters = ['c0', 'c1', 'c2', 'c3', 'c4'];
    let acknowledged = 0;
    await Promise.all(
      Array.from({ length: CLIENTS }, async (_, client) => {
        for (let i = 0; i < PER_CLIENT; i++) {
          const name = counters[(client + i) % counters.length];
          const res = await fetch(
            `${base}/api/v1/counters/${name}/increment?consistency=${consistency}`,
            {
              method: 'POST',
            },
          );
          await res.arrayBuffer();
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          if (res.status === expectStatus) acknowledged++;
        }
      }),
    );
    const drain = await t.close();
    expect(drain.drained).toBe(true);
    expect(Object.fromEntries(statuses)).toEqual({ [expectStatus]: CLIENTS * PER_CLIENT });
    const check = new SqliteStore({ path: join(dir.path, `${aggregator}-${consistency}.db`) });
    let total = 0;
    for (const name of counters) total += await check.get(name);
    await check.close();
    expect(total).toBe(acknowledged);
    expect(total).toBe(CLIENTS * PER_CLIENT);
  }, 120_000);
});
