// The write-ahead log and idempotency keys through the real HTTP app.
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Tally } from '../../src/app.js';
import type { Batch, BatchResult } from '../../src/store/interface.js';
import { SqliteStore } from '../../src/store/sqlite/index.js';
import { testApp } from '../helpers/app.js';
import { tempDir } from '../helpers/tmp.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function workspace() {
  const d = tempDir('tally-dur');
  cleanups.push(() => d.remove());
  return d.path;
}

/** A store whose batches can hang or be applied without the reply getting back. */
class FaultyStore extends SqliteStore {
  mode: 'ok' | 'apply-then-die' | 'hang' | 'fail' = 'ok';
  override async applyBatch(batch: Batch): Promise<BatchResult> {
    if (this.mode === 'hang') return new Promise(() => {});
    if (this.mode === 'fail') throw new Error('store down (test)');
    const result = await super.applyBatch(batch);
    if (this.mode === 'apply-then-die') return new Promise(() => {});
    return result;
  }
}

async function incN(t: Tally, name: string, n: number, by = 1) {
  let acked = 0;
  for (let i = 0; i < n; i++) {
    const r = await t.app.inject({
      method: 'POST',
      url: `/api/v1/counters/${name}/increment`,
      payload: { by },
    });
    if (r.statusCode === 202) acked += by;
  }
  return acked;
}

describe('write-ahead log replay', () => {
  for (const mode of ['apply-then-die', 'hang'] as const) {
    it(`replays a log left by a process that died mid-flush (${mode}) into exact totals`, async () => {
      const d = workspace();
      const db = join(d, 'tally.db');
      // A short lease: the "dead" first app's lease must run out before the second may start.
      const config = {
        wal: true,
        dataDir: d,
        instanceId: 'dur-1',
        flushIntervalMs: 20,
        instanceLeaseMs: 1000,
      };
      const store = new FaultyStore({ path: db });
      const first = await testApp(config, store);
      let acked = await incN(first, 'replayed', 30, 2);
      await first.app.inject({ url: '/api/v1/counters/replayed?consistency=strong' });
      // The next flush is applied (or not) and then the process "dies": no drain, no close.
      store.mode = mode;
      acked += await incN(first, 'replayed', 20, 3);
      await new Promise((r) => setTimeout(r, 100));
      expect(first.aggregator.inflightSize()).toBe(1);
      acked += await incN(first, 'replayed', 5, 1); // accepted after the stuck batch was cut
      await first.app.close();
      first.abandon();

      const second = await testApp(config, new SqliteStore({ path: db }));
      cleanups.push(() => second.close());
      const r = await second.app.inject({ url: '/api/v1/counters/replayed?consistency=strong' });
      expect(r.json().value).toBe(acked);
      expect(acked).toBe(30 * 2 + 20 * 3 + 5);
    });
  }

  it('refuses increments with 503 LOG_UNAVAILABLE when the log cannot be written, loses nothing acknowledged', async () => {
    const d = workspace();
    let diskFull = false;
    const t = await testApp(
      { wal: true, dataDir: d, instanceId: 'dur-full', flushIntervalMs: 20 },
      new SqliteStore({ path: join(d, 'tally.db') }),
      {
        openWalFile: async (path) => {
          const fh = await open(path, 'a');
          return {
            write: (data: Buffer) =>
              diskFull
                ? Promise.reject(
                    Object.assign(new Error('ENOSPC: no space left on device, write'), {
                      code: 'ENOSPC',
                    }),
                  )
                : fh.write(data),
            datasync: () => fh.datasync(),
            close: () => fh.close(),
          };
        },
      },
    );
    cleanups.push(() => t.close());
    const before = await incN(t, 'full', 10);
    expect(before).toBe(10);
    diskFull = true;
    const refused = await t.app.inject({ method: 'POST', url: '/api/v1/counters/full/increment' });
    expect(refused.statusCode).toBe(503);
    expect(refused.json().error.code).toBe('LOG_UNAVAILABLE');
    expect(refused.headers['retry-after']).toBeDefined();
    const batch = await t.app.inject({
      method: 'POST',
      url: '/api/v1/increments',
      payload: { increments: [{ name: 'full', by: 5 }] },
    });
    expect(batch.json().error.code).toBe('LOG_UNAVAILABLE');
    const ready = await t.app.inject({ url: '/readyz' });
    expect(ready.statusCode).toBe(503);
    expect(ready.json().problems.join(' ')).toContain('ENOSPC');
    // Everything acknowledged before the failure still reaches the store.
    const deadline = Date.now() + 3000;
    while ((await t.store.get('full')) !== 10 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    expect(await t.store.get('full')).toBe(10);
    // Space comes back: the log starts a fresh segment and increments are accepted again.
    diskFull = false;
    const until = Date.now() + 5000;
    let status = 0;
    while (status !== 202 && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 100));
      status = (await t.app.inject({ method: 'POST', url: '/api/v1/counters/full/increment' }))
        .statusCode;
    }
    expect(status).toBe(202);
    expect((await t.app.inject({ url: '/readyz' })).statusCode).toBe(200);
    const final = await t.app.inject({ url: '/api/v1/counters/full?consistency=strong' });
    expect(final.json().value).toBe(11);
  });
});

describe('idempotency keys', () => {
  async function app() {
    const d = workspace();
    const t = await testApp({}, new SqliteStore({ path: join(d, 'k.db') }));
    cleanups.push(() => t.close());
    return t;
  }
  const post = (
    t: Tally,
    key: string | undefined,
    payload: object,
    url = '/api/v1/counters/idem/increment',
  ) =>
    t.app.inject({
      method: 'POST',
      url,
      payload,
      headers: key === undefined ? {} : { 'idempotency-key': key },
    });

  it('counts a retried request once and says it was a replay, with the original answer', async () => {
    const t = await app();
    const first = await post(t, 'key-1', { by: 5 });
    expect(first.statusCode).toBe(202);
    expect(first.headers['idempotent-replayed']).toBeUndefined();
    await post(t, 'key-2', { by: 1 });
    const retry = await post(t, 'key-1', { by: 5 });
    expect(retry.statusCode).toBe(202);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(retry.json()).toEqual(first.json());
    const v = await t.app.inject({ url: '/api/v1/counters/idem?consistency=strong' });
    expect(v.json().value).toBe(6);
  });

  it('answers 422 when a key is reused for a different counter or amount', async () => {
    const t = await app();
    await post(t, 'key-r', { by: 5 });
    const other = await post(t, 'key-r', { by: 6 });
    expect(other.statusCode).toBe(422);
    expect(other.json().error.code).toBe('IDEMPOTENCY_KEY_REUSED');
    const otherName = await post(t, 'key-r', { by: 5 }, '/api/v1/counters/other/increment');
    expect(otherName.json().error.code).toBe('IDEMPOTENCY_KEY_REUSED');
    expect(
      (await t.app.inject({ url: '/api/v1/counters/idem?consistency=strong' })).json().value,
    ).toBe(5);
  });

  it('works on batches and rejects bad keys', async () => {
    const t = await app();
    const payload = { increments: [{ name: 'b1', by: 2 }, { name: 'b2' }] };
    expect((await post(t, 'batch-1', payload, '/api/v1/increments')).statusCode).toBe(202);
    const again = await post(t, 'batch-1', payload, '/api/v1/increments');
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(
      (await t.app.inject({ url: '/api/v1/counters/b1?consistency=strong' })).json().value,
    ).toBe(2);
    for (const bad of ['', 'x'.repeat(256), 'tab\there', 'ünïcode']) {
      const r = await t.app.inject({
        method: 'POST',
        url: '/api/v1/counters/idem/increment',
        headers: { 'idempotency-key': bad },
      });
      expect(r.statusCode).toBe(400);
      expect(r.json().error.code).toBe('INVALID_HEADER');
    }
  });

  it('releases the key when the request fails, so a retry can succeed', async () => {
    const t = await app();
    const overflow = await t.app.inject({
      method: 'PUT',
      url: '/api/v1/counters/idem',
      payload: { value: 1 },
    });
    expect(overflow.statusCode).toBe(403);
    const stopped = await testApp({ maxPending: 1 });
    cleanups.push(() => stopped.close());
    await stopped.app.inject({ method: 'POST', url: '/api/v1/counters/fill/increment' });
    const refused = await post(stopped, 'key-f', { by: 1 });
    expect(refused.statusCode).toBe(503);
    await stopped.app.inject({ url: '/api/v1/counters/fill?consistency=strong' });
    const retried = await post(stopped, 'key-f', { by: 1 });
    expect(retried.statusCode).toBe(202);
    expect(retried.headers['idempotent-replayed']).toBeUndefined();
  });

  it('keeps the key when a strong increment was accepted but not confirmed, so a retry is not counted again', async () => {
    const d = workspace();
    const store = new FaultyStore({ path: join(d, 'nc.db') });
    const t = await testApp({}, store);
    cleanups.push(() => t.close());
    store.mode = 'fail';
    const url = '/api/v1/counters/held/increment?consistency=strong';
    const first = await post(t, 'key-nc', { by: 3 }, url);
    expect(first.statusCode).toBe(503);
    expect(first.json().error.code).toBe('NOT_CONFIRMED');
    // The retry comes back while the store is still down: told it was accepted, not counted.
    const retry = await post(t, 'key-nc', { by: 3 }, url);
    expect(retry.statusCode).toBe(202);
    expect(retry.headers['idempotent-replayed']).toBe('true');
    expect(retry.json()).toEqual({ name: 'held', value: 3 });
    store.mode = 'ok';
    const again = await post(t, 'key-nc', { by: 3 }, url);
    expect(again.headers['idempotent-replayed']).toBe('true');
    const v = await t.app.inject({ url: '/api/v1/counters/held?consistency=strong' });
    expect(v.json().value).toBe(3);
  });
});
