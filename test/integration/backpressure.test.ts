// With a tiny max-pending and a slow store, the API answers 503 + Retry-After instead of
// growing, and every increment it did accept reaches the store.
import { describe, expect, it } from 'vitest';
import { isHistoryName } from '../../src/store/history.js';
import type { Batch, BatchResult } from '../../src/store/interface.js';
import { MemoryStore } from '../../src/store/memory/index.js';
import { testApp } from '../helpers/app.js';

class SlowStore extends MemoryStore {
  override async applyBatch(batch: Batch): Promise<BatchResult> {
    await new Promise((r) => setTimeout(r, 50));
    return super.applyBatch(batch);
  }
  // Stay readable after the app closes so the test can check what was stored.
  override async close(): Promise<void> {}
}

describe.each(['accumulate', 'queue'] as const)('backpressure (%s)', (aggregator) => {
  it('answers 503 OVERLOADED past max-pending and loses nothing accepted', async () => {
    const store = new SlowStore();
    const t = await testApp(
      { aggregator, maxPending: 20, maxBatchSize: 10, flushIntervalMs: 50 },
      store,
    );
    const base = await t.app.listen({ port: 0, host: '127.0.0.1' });
    let accepted = 0;
    let refused = 0;
    let retryAfter: string | null = null;
    await Promise.all(
      Array.from({ length: 50 }, async (_, c) => {
        for (let i = 0; i < 20; i++) {
          const res = await fetch(`${base}/api/v1/counters/bp-${c}-${i}/increment`, {
            method: 'POST',
          });
          const body = await res.json();
          if (res.status === 202) accepted++;
          else {
            expect(res.status).toBe(503);
            expect(body.error.code).toBe('OVERLOADED');
            retryAfter = res.headers.get('retry-after');
            refused++;
          }
        }
      }),
    );
    expect(refused).toBeGreaterThan(0);
    expect(accepted).toBeGreaterThan(0);
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
    const drain = await t.close();
    expect(drain.drained).toBe(true);
    let stored = 0;
    let cursor: string | undefined;
    do {
      const page = await store.list({ limit: 1000, cursor });
      // Counters only: history records (store/history.ts) share the store's name space.
      for (const item of page.items) if (!isHistoryName(item.name)) stored += item.value;
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    expect(stored).toBe(accepted);
  }, 60_000);
});
