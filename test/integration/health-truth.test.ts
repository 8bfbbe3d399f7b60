// Health tells the truth: readiness follows failing flushes (not only ping), client request ids
// are bounded, and a rejected admin token is never printed.
import { afterEach, describe, expect, it } from 'vitest';
import type { Tally } from '../../src/app.js';
import { ConfigError, loadConfig } from '../../src/config.js';
import type { Batch, BatchResult } from '../../src/store/interface.js';
import { MemoryStore } from '../../src/store/memory/index.js';
import { testApp } from '../helpers/app.js';

/** Answers pings, fails every batch while `failing`: the store is "up" but nothing lands. */
class WriteFailingStore extends MemoryStore {
  failing = true;
  override async applyBatch(batch: Batch): Promise<BatchResult> {
    if (this.failing) throw new Error('READONLY You can not write against a read only replica');
    return super.applyBatch(batch);
  }
}

const open: Tally[] = [];
afterEach(async () => {
  for (const t of open.splice(0)) await t.close();
});

describe('readiness', () => {
  it('answers 503 after consecutive failed flushes although ping answers, and 200 once they land', async () => {
    const store = new WriteFailingStore();
    const t = await testApp(
      { flushIntervalMs: 10, readyMaxFlushFailures: 3, drainTimeoutMs: 500 },
      store,
    );
    open.push(t);
    const inc = await t.app.inject({ method: 'POST', url: '/api/v1/counters/r/increment' });
    expect(inc.statusCode).toBe(202);
    const deadline = Date.now() + 10_000;
    let ready = await t.app.inject({ method: 'GET', url: '/readyz' });
    while (ready.statusCode === 200 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      ready = await t.app.inject({ method: 'GET', url: '/readyz' });
    }
    expect(ready.statusCode).toBe(503);
    const body = ready.json() as { problems: string[] };
    expect(body.problems.join(' ')).toMatch(/consecutive flushes failed/);
    store.failing = false;
    await t.aggregator.waitDurable().catch(() => t.aggregator.waitDurable());
    expect((await t.app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
    expect(await store.get('r')).toBe(1);
  });
});

describe('request ids', () => {
  it('keeps a sane client id and replaces an oversized one', async () => {
    const t = await testApp();
    open.push(t);
    const kept = await t.app.inject({
      method: 'GET',
      url: '/api/v1/counters/!bad',
      headers: { 'x-request-id': 'trace-0123abcd' },
    });
    expect(kept.json().error.requestId).toBe('trace-0123abcd');
    const huge = 'x'.repeat(12 * 1024);
    const replaced = await t.app.inject({
      method: 'GET',
      url: '/api/v1/counters/!bad',
      headers: { 'x-request-id': huge },
    });
    const id = replaced.json().error.requestId as string;
    expect(id).not.toBe(huge);
    expect(id.length).toBeLessThanOrEqual(128);
    expect(replaced.body.length).toBeLessThan(1024);
    const spaced = await t.app.inject({
      method: 'GET',
      url: '/api/v1/counters/!bad',
      headers: { 'x-request-id': 'two words' },
    });
    expect(spaced.json().error.requestId).not.toBe('two words');
  });
});

describe('config errors', () => {
  it('never print a rejected admin token', () => {
    let message = '';
    try {
      loadConfig({ TALLY_ADMIN_TOKEN: 'hunter2-secret' });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      message = (err as Error).message;
    }
    expect(message).toMatch(/TALLY_ADMIN_TOKEN/);
    expect(message).not.toContain('hunter2');
  });
});
