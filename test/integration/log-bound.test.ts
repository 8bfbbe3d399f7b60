// The log is bounded: with the store down, one hot counter never reaches the pending bound (it
// counts distinct counters), so without a bound on unflushed increments the log would grow
// without limit. Past TALLY_MAX_UNFLUSHED new increments answer 503 OVERLOADED + Retry-After,
// and every acknowledged one is stored once the store is back.
import { describe, expect, it } from 'vitest';
import type { Batch, BatchResult } from '../../src/store/interface.js';
import { MemoryStore } from '../../src/store/memory/index.js';
import { testApp } from '../helpers/app.js';
import { pipelined } from '../helpers/pipeline.js';
import { tempDir } from '../helpers/tmp.js';

class DownStore extends MemoryStore {
  down = true;
  override async applyBatch(batch: Batch): Promise<BatchResult> {
    if (this.down) throw new Error('connect ECONNREFUSED 127.0.0.1:6379');
    return super.applyBatch(batch);
  }
  // Stay readable after the app closes so the test can check what was stored.
  override async close(): Promise<void> {}
}

describe('unflushed bound', () => {
  it('refuses past TALLY_MAX_UNFLUSHED during an outage and loses nothing acknowledged', async () => {
    const dir = tempDir('tally-bound');
    const store = new DownStore();
    const t = await testApp(
      { wal: true, dataDir: dir.path, maxUnflushed: 2000, flushIntervalMs: 10 },
      store,
    );
    const base = await t.app.listen({ port: 0, host: '127.0.0.1' });
    let acknowledged = 0;
    let refused = 0;
    let retryAfter: string | undefined;
    for (let round = 0; round < 30; round++) {
      const answers = await pipelined(
        base,
        Array.from({ length: 20 }, () => ({
          method: 'POST',
          path: '/api/v1/increments',
          body: { increments: Array.from({ length: 10 }, () => ({ name: 'hot', by: 1 })) },
        })),
      );
      for (const a of answers) {
        if (a.status === 202) acknowledged += a.body.accepted;
        else {
          expect(a.status).toBe(503);
          expect(a.body.error.code).toBe('OVERLOADED');
          retryAfter = a.headers['retry-after'];
          refused++;
        }
      }
    }
    expect(acknowledged).toBe(2000);
    expect(refused).toBeGreaterThan(0);
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
    expect(t.aggregator.unflushed()).toBe(2000);
    store.down = false;
    const drained = await t.close();
    expect(drained.drained).toBe(true);
    expect(await store.get('hot')).toBe(2000);
    dir.remove();
  });
});
