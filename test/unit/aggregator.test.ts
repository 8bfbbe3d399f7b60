import { describe, expect, it } from 'vitest';
import type { AggregatorOptions } from '../../src/aggregator/index.js';
import {
  AccumulateAggregator,
  type Aggregator,
  QueueAggregator,
} from '../../src/aggregator/index.js';
import { TallyError } from '../../src/errors.js';
import type { Batch, BatchResult } from '../../src/store/interface.js';
import { MemoryStore } from '../../src/store/memory/index.js';

/** A memory store that can be made to fail or to fail after applying (a lost reply). */
class FlakyStore extends MemoryStore {
  mode: 'ok' | 'fail' | 'apply-then-fail' = 'ok';
  readonly attempts: Batch[] = [];
  delayMs = 0;
  override async applyBatch(batch: Batch): Promise<BatchResult> {
    this.attempts.push(batch);
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.mode === 'fail') throw new Error('store down');
    const result = await super.applyBatch(batch);
    if (this.mode === 'apply-then-fail') throw new Error('reply lost');
    return result;
  }
}

const designs: Array<[string, (o: AggregatorOptions) => Aggregator]> = [
  ['accumulate', (o) => new AccumulateAggregator(o)],
  ['queue', (o) => new QueueAggregator(o)],
];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.each(designs)('%s aggregator', (_label, make) => {
  const base = { writerId: 'test@1', flushIntervalMs: 20, retryBaseMs: 5, retryMaxMs: 20 };

  it('remembers at most maxKnown stored values, forgetting the oldest first', async () => {
    const store = new FlakyStore();
    const agg = make({ ...base, store, maxKnown: 100 });
    for (let i = 0; i < 1000; i++) await agg.admit(`k${i}`, 1);
    agg.start();
    await agg.waitDurable();
    const known = Array.from({ length: 1000 }, (_, i) => agg.knows(`k${i}`));
    const count = known.filter(Boolean).length;
    expect(count).toBeGreaterThanOrEqual(90);
    expect(count).toBeLessThanOrEqual(100);
    expect(agg.knows('k999')).toBe(true);
    expect(agg.knows('k0')).toBe(false);
    // A forgotten counter's estimate comes from the store again (the service warms it).
    expect(await store.get('k0')).toBe(1);
    await agg.drain(1000);
  });

  it('returns estimates without I/O and flushes exact sums', async () => {
    const store = new FlakyStore();
    const agg = make({ ...base, store });
    expect(await agg.admit('a', 1)).toBe(1);
    expect(await agg.admit('a', 2)).toBe(3);
    expect(await agg.admit('b', -5)).toBe(-5);
    expect(store.attempts).toHaveLength(0);
    agg.start();
    await agg.waitDurable();
    expect(await store.get('a')).toBe(3);
    expect(await store.get('b')).toBe(-5);
    expect(agg.estimate('a')).toBe(3);
    expect(agg.knownValue('a')).toBe(3);
    await agg.drain(1000);
  });

  it('keeps a failed batch and retries it unchanged with the same seq', async () => {
    const store = new FlakyStore();
    store.mode = 'apply-then-fail';
    const agg = make({ ...base, store });
    agg.start();
    await agg.admit('x', 7);
    await sleep(80);
    expect(store.attempts.length).toBeGreaterThan(0);
    // More increments while the batch is stuck go to a later batch, not into the retried one.
    await agg.admit('x', 1);
    store.mode = 'ok';
    await agg.waitDurable();
    const first = store.attempts[0]!;
    const retries = store.attempts.filter((b) => b.seq === first.seq);
    expect(retries.length).toBeGreaterThan(1);
    for (const r of retries) expect(Object.fromEntries(r.deltas)).toEqual({ x: 7 });
    // The first attempt had been applied; the retry was a duplicate: counted once.
    expect(await store.get('x')).toBe(8);
    expect(agg.healthy()).toBe(true);
    await agg.drain(1000);
  });

  it('rejects strong waiters while the store is down, and keeps their increments', async () => {
    const store = new FlakyStore();
    store.mode = 'fail';
    const agg = make({ ...base, store });
    agg.start();
    await agg.admit('s', 1);
    await expect(agg.waitDurable()).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    expect(agg.healthy()).toBe(false);
    store.mode = 'ok';
    await sleep(100);
    await agg.waitDurable();
    expect(await store.get('s')).toBe(1);
    await agg.drain(1000);
  });

  it('answers OVERLOADED past maxPending and loses nothing accepted', async () => {
    const store = new FlakyStore();
    store.mode = 'fail';
    const agg = make({ ...base, store, maxPending: 10, maxBatchSize: 5 });
    agg.start();
    let accepted = 0;
    let refused = 0;
    for (let i = 0; i < 100; i++) {
      try {
        await agg.admit(`n${i}`, 1);
        accepted++;
      } catch (err) {
        expect(err).toBeInstanceOf(TallyError);
        expect((err as TallyError).code).toBe('OVERLOADED');
        expect((err as TallyError).retryAfterS).toBeGreaterThanOrEqual(1);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(0);
    expect(accepted).toBeGreaterThan(0);
    store.mode = 'ok';
    const result = await agg.drain(2000);
    expect(result.drained).toBe(true);
    const page = await store.list({ limit: 1000 });
    expect(page.items.reduce((s, i) => s + i.value, 0)).toBe(accepted);
  });

  it('refuses an increment that would leave ±(2^53-1)', async () => {
    const store = new FlakyStore();
    await store.set('big', Number.MAX_SAFE_INTEGER - 1);
    const agg = make({ ...base, store });
    agg.learn('big', Number.MAX_SAFE_INTEGER - 1);
    expect(await agg.admit('big', 1)).toBe(Number.MAX_SAFE_INTEGER);
    expect(() => agg.admit('big', 1)).toThrow(
      expect.objectContaining({ code: 'COUNTER_OVERFLOW' }),
    );
    expect(() =>
      agg.admitMany([
        { name: 'ok', by: 1 },
        { name: 'big', by: 1 },
      ]),
    ).toThrow(expect.objectContaining({ code: 'COUNTER_OVERFLOW' }));
    expect(agg.estimate('ok')).toBe(0);
    await agg.drain(1000);
    expect(await store.get('big')).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('orders exclusive work after earlier increments and before later ones', async () => {
    const store = new FlakyStore();
    store.delayMs = 5;
    const agg = make({ ...base, store });
    agg.start();
    await agg.admit('c', 5);
    const setDone = agg.exclusive(async () => {
      await store.set('c', 100);
      agg.learn('c', 100);
    });
    await agg.admit('c', 1); // accepted after the set was asked for: applied after it
    await setDone;
    await agg.waitDurable();
    expect(await store.get('c')).toBe(101);
    await agg.drain(1000);
  });

  it('continues the batch sequence from firstSeq', async () => {
    const store = new FlakyStore();
    const agg = make({ ...base, store, firstSeq: 42 });
    agg.start();
    await agg.admit('q', 1);
    await agg.waitDurable();
    expect(store.attempts[0]?.seq).toBe(42);
    expect(await store.lastSeq('test@1')).toBe(42);
    await agg.drain(1000);
  });

  it('drain flushes everything and then refuses new work', async () => {
    const store = new FlakyStore();
    const agg = make({ ...base, store, flushIntervalMs: 60_000 });
    agg.start();
    for (let i = 0; i < 1000; i++) await agg.admit(`d${i % 10}`, 1);
    const result = await agg.drain(1000);
    expect(result).toEqual({ drained: true, unflushed: 0 });
    expect(await store.get('d3')).toBe(100);
    expect(() => agg.admit('d1', 1)).toThrow(expect.objectContaining({ code: 'SHUTTING_DOWN' }));
  });

  it('drain gives up after its timeout and reports what is unflushed', async () => {
    const store = new FlakyStore();
    store.mode = 'fail';
    const agg = make({ ...base, store });
    await agg.admit('u', 1);
    await agg.admit('u', 1);
    const result = await agg.drain(100);
    expect(result.drained).toBe(false);
    expect(result.unflushed).toBe(2);
  });
});

describe('queue aggregator', () => {
  it('drains in batches of at most maxBatchSize', async () => {
    const store = new FlakyStore();
    const agg = new QueueAggregator({ store, writerId: 'q@1', maxBatchSize: 3, maxPending: 100 });
    for (let i = 0; i < 10; i++) await agg.admit(`k${i}`, 1);
    agg.start();
    await agg.waitDurable();
    expect(store.attempts.every((b) => b.deltas.size <= 3)).toBe(true);
    expect(store.attempts.length).toBe(4);
    await agg.drain(1000);
  });
});

/** A journal whose appends resolve (or fail) only when the test says so. */
class HeldJournal {
  readonly appends: Array<{ resolve(): void; reject(err: unknown): void; items: number }> = [];
  append(_name: string, _by: number): Promise<void> {
    return this.hold(1);
  }
  appendMany(items: readonly { name: string; by: number }[]): Promise<void> {
    return this.hold(items.length);
  }
  async seal(): Promise<void> {}
  markDurable(): void {}
  /** Resolves every append so far (or rejects them with `err`). */
  settleAll(err?: unknown): void {
    for (const a of this.appends.splice(0)) {
      if (err === undefined) a.resolve();
      else a.reject(err);
    }
  }
  private hold(items: number): Promise<void> {
    return new Promise((resolve, reject) => this.appends.push({ resolve, reject, items }));
  }
}

describe.each(designs)('%s admission with a log', (_label, make) => {
  const base = { writerId: 'adm@1', flushIntervalMs: 20, retryBaseMs: 5, retryMaxMs: 20 };

  it('counts held admissions against the headroom and releases them when the log fails', async () => {
    const store = new FlakyStore();
    const journal = new HeldJournal();
    const agg = make({ ...base, store, journal });
    agg.learn('edge', Number.MAX_SAFE_INTEGER - 2);
    const first = agg.admit('edge', 1);
    const second = agg.admit('edge', 1);
    // Two are held (logging); a third would not fit if both land.
    expect(() => agg.admit('edge', 1)).toThrow(
      expect.objectContaining({ code: 'COUNTER_OVERFLOW' }),
    );
    journal.settleAll(new Error('disk full'));
    await expect(first).rejects.toThrow('disk full');
    await expect(second).rejects.toThrow('disk full');
    // Released: the room is there again, and nothing was counted.
    expect(agg.estimate('edge')).toBe(Number.MAX_SAFE_INTEGER - 2);
    const third = agg.admit('edge', 2);
    journal.settleAll();
    expect(await third).toBe(Number.MAX_SAFE_INTEGER);
    await agg.drain(1000);
  });

  it('counts held admissions against maxPending', async () => {
    const store = new FlakyStore();
    const journal = new HeldJournal();
    const agg = make({ ...base, store, journal, maxPending: 10 });
    const held = Array.from({ length: 10 }, (_, i) => agg.admit(`p${i}`, 1));
    expect(() => agg.admit('p-extra', 1)).toThrow(expect.objectContaining({ code: 'OVERLOADED' }));
    journal.settleAll();
    await Promise.all(held);
    expect(agg.pendingSize()).toBe(10);
    agg.start();
    await agg.drain(1000);
    expect(await store.get('p9')).toBe(1);
  });

  it('bounds acknowledged increments the store does not hold (maxUnflushed)', async () => {
    const store = new FlakyStore();
    store.mode = 'fail';
    const agg = make({ ...base, store, maxUnflushed: 50, maxPending: 1000 });
    agg.start();
    let accepted = 0;
    let refused = 0;
    for (let i = 0; i < 80; i++) {
      try {
        await agg.admit('hot', 1);
        accepted++;
      } catch (err) {
        expect((err as TallyError).code).toBe('OVERLOADED');
        refused++;
      }
    }
    expect(accepted).toBe(50);
    expect(refused).toBe(30);
    store.mode = 'ok';
    expect((await agg.drain(2000)).drained).toBe(true);
    expect(await store.get('hot')).toBe(50);
  });

  it('reports a first attempt found already applied; refuses admissions once suspended', async () => {
    const store = new FlakyStore();
    // Another process already used seq 1 under this writer id.
    await store.applyBatch({ instanceId: 'adm@1', seq: 1, deltas: new Map([['other', 1]]) });
    const conflicts: number[] = [];
    const agg = make({
      ...base,
      store,
      events: { onIdentityConflict: (b) => conflicts.push(b.seq) },
    });
    agg.start();
    await agg.admit('mine', 1);
    await agg.waitDurable();
    expect(conflicts).toEqual([1]);
    agg.suspend(new TallyError('IDENTITY_CONFLICT'));
    expect(() => agg.admit('mine', 1)).toThrow(
      expect.objectContaining({ code: 'IDENTITY_CONFLICT' }),
    );
    // What was acknowledged before still flushes.
    expect((await agg.drain(1000)).drained).toBe(true);
  });

  it('a retried batch found applied is no conflict', async () => {
    const store = new FlakyStore();
    store.mode = 'apply-then-fail';
    const conflicts: number[] = [];
    const agg = make({
      ...base,
      store,
      events: { onIdentityConflict: (b) => conflicts.push(b.seq) },
    });
    agg.start();
    await agg.admit('r', 1);
    await new Promise((r) => setTimeout(r, 30));
    store.mode = 'ok';
    await agg.waitDurable().catch(() => agg.waitDurable());
    expect(conflicts).toEqual([]);
    expect(await store.get('r')).toBe(1);
    await expect(agg.admit('r', 1)).resolves.toBe(2);
    await agg.drain(1000);
  });

  it('learns a read value only when no batch of ours moved meanwhile', async () => {
    const store = new FlakyStore();
    const agg = make({ ...base, store });
    agg.start();
    const since = agg.readEpoch();
    await agg.admit('l', 5);
    await agg.waitDurable();
    // A read that began before our batch landed may predate it: refused.
    agg.learn('l', 0, since);
    expect(agg.estimate('l')).toBe(5);
    const read = agg.readEpoch();
    agg.learn('l', 7, read);
    expect(agg.estimate('l')).toBe(7);
    // A read that began before another value was learned (a watch message) is refused too.
    agg.learn('l', 9);
    agg.learn('l', 8, read);
    expect(agg.estimate('l')).toBe(9);
    await agg.drain(1000);
  });
});

describe.each(designs)('%s bounds around cut-off and zero-sum work', (_label, make) => {
  const base = { writerId: 'cut@1', flushIntervalMs: 20, retryBaseMs: 5, retryMaxMs: 20 };

  it('counts work cut off by an admin write against the bound and the headroom', async () => {
    const store = new FlakyStore();
    store.mode = 'fail';
    await store.set('edge', Number.MAX_SAFE_INTEGER - 10);
    const agg = make({ ...base, store, maxPending: 3 });
    agg.learn('edge', Number.MAX_SAFE_INTEGER - 10);
    await agg.admit('edge', 10);
    await agg.admit('b', 1);
    // The store is down: the admin write cuts pending work off and waits.
    const put = agg.exclusive(async () => undefined).catch(() => undefined);
    expect(() => agg.admit('edge', 1)).toThrow(
      expect.objectContaining({ code: 'COUNTER_OVERFLOW' }),
    );
    // Synchronously after the cut (no await: the flush of the cut work has not started yet).
    const c = agg.admit('c', 1);
    expect(() => agg.admit('d', 1)).toThrow(expect.objectContaining({ code: 'OVERLOADED' }));
    await c;
    store.mode = 'ok';
    agg.start();
    await put;
    await agg.drain(2000);
    expect(await store.get('edge')).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('orders an admin write after a zero-sum cut and before later increments', async () => {
    const store = new FlakyStore();
    store.delayMs = 20;
    const agg = make({ ...base, store });
    agg.start();
    await agg.admit('y', 1);
    // Let a batch with y go in flight, then leave a zero-sum pending cut for x.
    await new Promise((r) => setTimeout(r, 30));
    await agg.admit('x', 1);
    await agg.admit('x', -1);
    const put = agg.exclusive(async () => {
      await store.set('x', 100);
      agg.learn('x', 100);
    });
    await agg.admit('x', 5);
    await put;
    await agg.waitDurable();
    expect(await store.get('x')).toBe(105);
    await agg.drain(1000);
  });
});

describe('accumulate aggregator', () => {
  const base = { writerId: 'zero@1', flushIntervalMs: 20, retryBaseMs: 5, retryMaxMs: 20 };
  const make = (o: AggregatorOptions) => new AccumulateAggregator(o);

  it('keeps the pending bound when a flush finds only zero-sum deltas', async () => {
    const store = new FlakyStore();
    const journal = new HeldJournal();
    const agg = make({ ...base, store, journal, maxPending: 2 });
    for (const [name, by] of [
      ['x', 1],
      ['x', -1],
      ['y', 1],
      ['y', -1],
    ] as const) {
      const p = agg.admit(name, by);
      journal.settleAll();
      await p;
    }
    // Held while pending, then a flush empties pending (all zero: nothing sent).
    const held = [agg.admit('x', 1), agg.admit('y', 1)];
    agg.start();
    await agg.waitDurable();
    expect(() => agg.admit('z', 1)).toThrow(expect.objectContaining({ code: 'OVERLOADED' }));
    journal.settleAll();
    await Promise.all(held);
    await agg.drain(1000);
  });
});
