// Admission is one synchronous step inside the aggregator: requests that arrive in one event-loop
// turn cannot all pass a room or headroom check before any of them is accepted. Each case was
// reproduced against the old check → await log → accept split; real HTTP, the log on, SQLite.
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Tally } from '../../src/app.js';
import { SqliteStore } from '../../src/store/sqlite/index.js';
import { ADMIN_TOKEN, testApp } from '../helpers/app.js';
import { pipelined } from '../helpers/pipeline.js';
import { tempDir } from '../helpers/tmp.js';

const MAX = Number.MAX_SAFE_INTEGER;

let cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups = [];
});

async function start(
  overrides: Parameters<typeof testApp>[0],
): Promise<{ t: Tally; base: string; store: SqliteStore }> {
  const dir = tempDir('tally-admission');
  const store = new SqliteStore({ path: join(dir.path, 'tally.db') });
  const t = await testApp(
    { wal: true, dataDir: dir.path, adminToken: ADMIN_TOKEN, ...overrides },
    store,
  );
  const base = await t.app.listen({ port: 0, host: '127.0.0.1' });
  cleanups.push(dir.remove, () => t.close().then(() => undefined));
  return { t, base, store };
}

async function strongRead(base: string, name: string): Promise<number> {
  const res = await fetch(`${base}/api/v1/counters/${name}?consistency=strong`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { value: number }).value;
}

describe('admission', () => {
  it('queue: a burst at the bound never writes past the ring (stored == acknowledged)', async () => {
    const { t, base } = await start({ aggregator: 'queue', maxPending: 100 });
    const names = Array.from({ length: 8 }, (_, i) => `ring-${i}`);
    let acknowledged = 0;
    for (let round = 0; round < 5; round++) {
      const answers = await pipelined(
        base,
        names.map((name) => ({
          method: 'POST',
          path: '/api/v1/increments',
          body: { increments: Array.from({ length: 100 }, () => ({ name, by: 1 })) },
        })),
      );
      for (const a of answers) {
        if (a.status === 202) acknowledged += a.body.accepted;
        else expect(a.body.error.code).toBe('OVERLOADED');
      }
      expect(t.aggregator.pendingSize()).toBeLessThanOrEqual(100);
    }
    let stored = 0;
    for (const name of names) stored += await strongRead(base, name);
    expect(stored).toBe(acknowledged);
    expect(acknowledged).toBeGreaterThan(0);
    // Nothing unnamed ever reached the store, and flushes keep working.
    expect(t.aggregator.consecutiveFailures()).toBe(0);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
  });

  it('refuses what does not fit below 2^53-1, counting exactly the increments that fit', async () => {
    const { base } = await start({});
    const put = await fetch(`${base}/api/v1/counters/edge`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ value: MAX - 5 }),
    });
    expect(put.status).toBe(200);
    const answers = await pipelined(
      base,
      Array.from({ length: 8 }, () => ({
        method: 'POST',
        path: '/api/v1/counters/edge/increment',
      })),
    );
    const accepted = answers.filter((a) => a.status === 202).length;
    const refused = answers.filter((a) => a.status === 422);
    expect(accepted).toBe(5);
    expect(refused.length).toBe(3);
    for (const r of refused) expect(r.body.error.code).toBe('COUNTER_OVERFLOW');
    expect(await strongRead(base, 'edge')).toBe(MAX);
  });

  it('accumulate: distinct pending counters never exceed the bound, even within one turn', async () => {
    // A long flush interval: nothing flushes during the burst, so the bound is all that limits.
    const { t, base } = await start({ maxPending: 100, flushIntervalMs: 60_000 });
    const answers = await pipelined(
      base,
      Array.from({ length: 8 }, (_, r) => ({
        method: 'POST',
        path: '/api/v1/increments',
        body: {
          increments: Array.from({ length: 60 }, (_, i) => ({ name: `acc-${r}-${i}`, by: 1 })),
        },
      })),
    );
    const accepted = answers.filter((a) => a.status === 202).length;
    expect(accepted).toBe(1);
    expect(t.aggregator.pendingSize()).toBeLessThanOrEqual(100);
    for (const a of answers.filter((x) => x.status !== 202)) {
      expect(a.body.error.code).toBe('OVERLOADED');
    }
  });
});
