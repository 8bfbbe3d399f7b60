// The one conformance suite every Store implementation passes. Each store's test file calls
// runStoreConformance with a factory that returns a fresh, empty, isolated store.
import { createHash, randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HistoryStore } from '../../src/store/history.js';
import type { Batch, Store } from '../../src/store/interface.js';

export interface ConformanceOptions {
  /** A new empty store, isolated from every other test (own file, own key prefix). */
  create(): Promise<Store>;
  /** Optional cleanup after each test (the suite closes the store itself). */
  cleanup?(store: Store): Promise<void>;
  /**
   * The store records each counter's last write, so `describe` reports `touchedAt` and
   * `expireIdle` expires idle counters. Redis does only when built with `trackLastWrite: true`;
   * false checks the other side: `touchedAt` is null and nothing expires. @default true
   */
  expiry?: boolean;
}

const MAX = Number.MAX_SAFE_INTEGER;

function batch(instanceId: string, seq: number, entries: Record<string, number>): Batch {
  return { instanceId, seq, deltas: new Map(Object.entries(entries)) };
}

export function runStoreConformance(label: string, options: ConformanceOptions): void {
  describe(`Store conformance: ${label}`, () => {
    let store: Store;
    let inst: string;

    beforeEach(async () => {
      store = await options.create();
      inst = `inst-${randomUUID().slice(0, 8)}`;
    });

    afterEach(async () => {
      await options.cleanup?.(store);
      await store.close();
    });

    it('reads 0 for a counter never written', async () => {
      expect(await store.get('never-written')).toBe(0);
    });

    it('applies a batch and returns the values after it', async () => {
      const r = await store.applyBatch(batch(inst, 1, { a: 3, b: -2, c: 10 }));
      expect(r.duplicate).toBe(false);
      expect(r.rejected).toEqual([]);
      expect(Object.fromEntries(r.values)).toEqual({ a: 3, b: -2, c: 10 });
      const r2 = await store.applyBatch(batch(inst, 2, { a: 4 }));
      expect(r2.values.get('a')).toBe(7);
      expect(await store.get('a')).toBe(7);
      expect(await store.get('b')).toBe(-2);
    });

    it('applies the same (instanceId, seq) at most once', async () => {
      await store.applyBatch(batch(inst, 1, { a: 5 }));
      const again = await store.applyBatch(batch(inst, 1, { a: 5 }));
      expect(again.duplicate).toBe(true);
      expect(again.values.get('a')).toBe(5);
      expect(await store.get('a')).toBe(5);
      // An older seq is a duplicate too (retries arrive late).
      await store.applyBatch(batch(inst, 2, { a: 1 }));
      const old = await store.applyBatch(batch(inst, 1, { a: 5 }));
      expect(old.duplicate).toBe(true);
      expect(await store.get('a')).toBe(6);
    });

    it('keeps each instance’s sequence apart', async () => {
      const other = `${inst}-other`;
      await store.applyBatch(batch(inst, 1, { shared: 1 }));
      const r = await store.applyBatch(batch(other, 1, { shared: 10 }));
      expect(r.duplicate).toBe(false);
      expect(await store.get('shared')).toBe(11);
      expect(await store.lastSeq(inst)).toBe(1);
      expect(await store.lastSeq(other)).toBe(1);
      expect(await store.lastSeq(`${inst}-never`)).toBe(0);
    });

    it('tracks the last applied seq per instance', async () => {
      for (let seq = 1; seq <= 5; seq++) await store.applyBatch(batch(inst, seq, { x: 1 }));
      expect(await store.lastSeq(inst)).toBe(5);
      expect(await store.get('x')).toBe(5);
    });

    it('refuses a delta that would leave ±(2^53-1) and applies the rest', async () => {
      await store.set('big', MAX - 1);
      await store.set('low', -MAX + 1);
      const r = await store.applyBatch(batch(inst, 1, { big: 2, low: -2, fine: 1 }));
      expect([...r.rejected].sort()).toEqual(['big', 'low']);
      expect(await store.get('big')).toBe(MAX - 1);
      expect(await store.get('low')).toBe(-MAX + 1);
      expect(await store.get('fine')).toBe(1);
      const ok = await store.applyBatch(batch(inst, 2, { big: 1 }));
      expect(ok.rejected).toEqual([]);
      expect(await store.get('big')).toBe(MAX);
    });

    it('sets and deletes', async () => {
      await store.set('s', 42);
      expect(await store.get('s')).toBe(42);
      await store.applyBatch(batch(inst, 1, { s: 8 }));
      expect(await store.get('s')).toBe(50);
      expect(await store.delete('s')).toBe(true);
      expect(await store.get('s')).toBe(0);
      expect(await store.delete('s')).toBe(false);
      await store.applyBatch(batch(inst, 2, { s: 1 }));
      expect(await store.get('s')).toBe(1);
    });

    it('lists by prefix in name order with a cursor', async () => {
      const names = ['p:a', 'p:b', 'p:c', 'p:d', 'p:e', 'q:a', 'pz'];
      await store.applyBatch(batch(inst, 1, Object.fromEntries(names.map((n, i) => [n, i + 1]))));
      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await store.list({ prefix: 'p:', limit: 2, cursor });
        for (const item of page.items) {
          expect(item.value).toBe(names.indexOf(item.name) + 1);
          seen.push(item.name);
        }
        cursor = page.nextCursor ?? undefined;
        pages++;
      } while (cursor !== undefined && pages < 10);
      expect(seen).toEqual(['p:a', 'p:b', 'p:c', 'p:d', 'p:e']);
      const all = await store.list({ limit: 100 });
      expect(all.items.map((i) => i.name)).toEqual([...names].sort());
      expect(all.nextCursor).toBeNull();
    });

    it('lists nothing for an unknown prefix', async () => {
      const page = await store.list({ prefix: 'nothing-here:' });
      expect(page.items).toEqual([]);
      expect(page.nextCursor).toBeNull();
    });

    it('answers ping', async () => {
      await expect(store.ping()).resolves.toBeUndefined();
    });

    it('applies a large batch atomically', async () => {
      const deltas: Record<string, number> = {};
      for (let i = 0; i < 5000; i++) deltas[`bulk:${i}`] = i + 1;
      const r = await store.applyBatch(batch(inst, 1, deltas));
      expect(r.values.size).toBe(5000);
      expect(await store.get('bulk:4999')).toBe(5000);
      expect(await store.get('bulk:0')).toBe(1);
    });

    it('stays exact under concurrent batches from many instances', async () => {
      const instances = Array.from({ length: 8 }, (_, i) => `${inst}-${i}`);
      await Promise.all(
        instances.map(async (id) => {
          for (let seq = 1; seq <= 25; seq++)
            await store.applyBatch(batch(id, seq, { hot: 1, [`own:${id}`]: 2 }));
        }),
      );
      expect(await store.get('hot')).toBe(200);
      for (const id of instances) expect(await store.get(`own:${id}`)).toBe(50);
    });

    it('keeps seqs per writer id (`<instanceId>@<epoch>`)', async () => {
      const first = `${inst}@1`;
      const second = `${inst}@2`;
      await store.applyBatch(batch(first, 1, { w: 1 }));
      await store.applyBatch(batch(first, 2, { w: 1 }));
      // The next epoch starts its own seqs at 1: not a duplicate of the first epoch's batch.
      const r = await store.applyBatch(batch(second, 1, { w: 10 }));
      expect(r.duplicate).toBe(false);
      expect((await store.applyBatch(batch(second, 1, { w: 10 }))).duplicate).toBe(true);
      expect((await store.applyBatch(batch(first, 2, { w: 1 }))).duplicate).toBe(true);
      expect(await store.get('w')).toBe(12);
      expect(await store.lastSeq(first)).toBe(2);
      expect(await store.lastSeq(second)).toBe(1);
      expect(await store.lastSeq(inst)).toBe(0);
      expect(await store.lastSeq(`${inst}@3`)).toBe(0);
    });

    describe('instance claims', () => {
      const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
      const LONG = 60_000;

      it('grants a new id epoch 1, then refuses others while the lease runs', async () => {
        expect(await store.claimInstance(inst, 'host-a pid 1', LONG)).toEqual({
          granted: true,
          epoch: 1,
        });
        const refused = await store.claimInstance(inst, 'host-b pid 2', LONG);
        expect(refused).toMatchObject({ granted: false, epoch: 1, holder: 'host-a pid 1' });
        if (refused.granted) throw new Error('unreachable');
        expect(refused.expiresInMs).toBeGreaterThan(LONG - 5000);
        expect(refused.expiresInMs).toBeLessThanOrEqual(LONG);
      });

      it('grants the next epoch once the lease ran out; the old epoch cannot renew', async () => {
        expect(await store.claimInstance(inst, 'old', 300)).toEqual({ granted: true, epoch: 1 });
        await sleep(450);
        expect(await store.claimInstance(inst, 'new', LONG)).toEqual({ granted: true, epoch: 2 });
        expect(await store.renewInstance(inst, 1, LONG)).toBe(false);
        expect(await store.claimInstance(inst, 'third', LONG)).toMatchObject({
          granted: false,
          epoch: 2,
          holder: 'new',
        });
      });

      it('hands over at once to a claim naming the current epoch, and only that one', async () => {
        await store.claimInstance(inst, 'dead predecessor', LONG);
        expect(await store.claimInstance(inst, 'wrong guess', LONG, 7)).toMatchObject({
          granted: false,
          epoch: 1,
          holder: 'dead predecessor',
        });
        expect(await store.claimInstance(inst, 'successor', LONG, 1)).toEqual({
          granted: true,
          epoch: 2,
        });
        // The handover is spent: the same proof does not work twice.
        expect(await store.claimInstance(inst, 'late', LONG, 1)).toMatchObject({
          granted: false,
          epoch: 2,
          holder: 'successor',
        });
        expect(await store.renewInstance(inst, 1, LONG)).toBe(false);
        expect(await store.renewInstance(inst, 2, LONG)).toBe(true);
      });

      it('renews a lease that ran out as long as nobody claimed after', async () => {
        await store.claimInstance(inst, 'slow', 300);
        await sleep(450);
        expect(await store.renewInstance(inst, 1, LONG)).toBe(true);
        const refused = await store.claimInstance(inst, 'other', LONG);
        expect(refused).toMatchObject({ granted: false, epoch: 1, holder: 'slow' });
        if (refused.granted) throw new Error('unreachable');
        expect(refused.expiresInMs).toBeGreaterThan(LONG - 5000);
      });

      it('lets a released id be claimed at once under the next epoch', async () => {
        await store.claimInstance(inst, 'first run', LONG);
        // A release naming another epoch changes nothing.
        await store.releaseInstance(inst, 2);
        expect((await store.claimInstance(inst, 'too early', LONG)).granted).toBe(false);
        await store.releaseInstance(inst, 1);
        expect(await store.claimInstance(inst, 'second run', LONG)).toEqual({
          granted: true,
          epoch: 2,
        });
        await store.releaseInstance(inst, 1);
        expect((await store.claimInstance(inst, 'intruder', LONG)).granted).toBe(false);
        await store.releaseInstance(`${inst}-never-claimed`, 1);
        expect(await store.renewInstance(`${inst}-never-claimed`, 1, LONG)).toBe(false);
      });

      it('grants exactly one of many concurrent claims', async () => {
        const claims = await Promise.all(
          Array.from({ length: 10 }, (_, i) => store.claimInstance(inst, `proc-${i}`, LONG)),
        );
        const granted = claims.filter((c) => c.granted);
        expect(granted).toEqual([{ granted: true, epoch: 1 }]);
        const winner = claims.findIndex((c) => c.granted);
        for (const c of claims) {
          if (!c.granted) expect(c).toMatchObject({ epoch: 1, holder: `proc-${winner}` });
        }
      });

      it('keeps instance ids independent', async () => {
        const other = `${inst}-other`;
        await store.claimInstance(inst, 'a', LONG);
        await store.claimInstance(inst, 'a', LONG, 1);
        expect(await store.claimInstance(other, 'b', LONG)).toEqual({ granted: true, epoch: 1 });
        expect(await store.renewInstance(other, 2, LONG)).toBe(false);
        await store.releaseInstance(other, 1);
        expect((await store.claimInstance(inst, 'c', LONG)).granted).toBe(false);
        expect(await store.renewInstance(inst, 2, LONG)).toBe(true);
      });
    });

    describe('idempotency keys', () => {
      const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
      const keyOf = (k: string) => `${inst}:${k}`;

      it('claims a key once, then reports the claim and, once saved, the answer', async () => {
        expect(store.claimKey).toBeDefined();
        expect(await store.claimKey(keyOf('a'), 'fp-a', 60_000, 1_000_000)).toEqual({
          fresh: true,
        });
        expect(await store.claimKey(keyOf('a'), 'fp-other', 60_000, 1_000_000)).toEqual({
          fresh: false,
          fingerprint: 'fp-a',
          result: null,
        });
        await store.completeKey(keyOf('a'), '{"status":202}', 60_000);
        expect(await store.claimKey(keyOf('a'), 'fp-a', 60_000, 1_000_000)).toEqual({
          fresh: false,
          fingerprint: 'fp-a',
          result: '{"status":202}',
        });
        // Other keys are independent.
        expect(await store.claimKey(keyOf('b'), 'fp-b', 60_000, 1_000_000)).toEqual({
          fresh: true,
        });
      });

      it('lets a released key be claimed afresh', async () => {
        await store.claimKey(keyOf('r'), 'fp-1', 60_000, 1_000_000);
        await store.releaseKey(keyOf('r'));
        expect(await store.claimKey(keyOf('r'), 'fp-2', 60_000, 1_000_000)).toEqual({
          fresh: true,
        });
        await store.releaseKey(keyOf('never-claimed'));
      });

      it('forgets a claim after its lease and an answer after its TTL', async () => {
        await store.claimKey(keyOf('lease'), 'fp', 100, 1_000_000);
        await store.claimKey(keyOf('ttl'), 'fp', 60_000, 1_000_000);
        await store.completeKey(keyOf('ttl'), 'answer', 150);
        expect((await store.claimKey(keyOf('ttl'), 'fp', 60_000, 1_000_000)).fresh).toBe(false);
        await sleep(400);
        expect(await store.claimKey(keyOf('lease'), 'fp', 60_000, 1_000_000)).toEqual({
          fresh: true,
        });
        expect(await store.claimKey(keyOf('ttl'), 'fp', 60_000, 1_000_000)).toEqual({
          fresh: true,
        });
      });

      it('gives a key to exactly one of many concurrent claims', async () => {
        const claims = await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            store.claimKey(keyOf('race'), `fp-${i}`, 60_000, 1_000_000),
          ),
        );
        expect(claims.filter((c) => c.fresh)).toHaveLength(1);
        const winner = claims.findIndex((c) => c.fresh);
        for (const c of claims) if (!c.fresh && !c.full) expect(c.fingerprint).toBe(`fp-${winner}`);
      });

      it('refuses new keys past maxKeys, never known ones, and frees room as keys expire', async () => {
        // Its own cap, well under what other tests hold: on Redis Cluster each shard holds
        // ceil(max / shards), so fill until the first refusal instead of assuming where it is.
        const max = 6;
        const taken: string[] = [];
        let refusedAt = -1;
        for (let i = 0; i < 200 && refusedAt < 0; i++) {
          const claim = await store.claimKey(keyOf(`cap-${i}`), 'fp', 300, max);
          if (claim.full) refusedAt = i;
          else {
            expect(claim).toEqual({ fresh: true });
            taken.push(keyOf(`cap-${i}`));
          }
        }
        expect(refusedAt).toBeGreaterThan(0);
        const refused = keyOf(`cap-${refusedAt}`);
        // Nothing was written for the refused key: it is still refused, not "in progress".
        expect(await store.claimKey(refused, 'fp', 300, max)).toEqual({ fresh: false, full: true });
        // A key already held is answered as before, even with the store full.
        const first = taken[0] as string;
        await store.completeKey(first, '{"status":202}', 300);
        expect(await store.claimKey(first, 'fp', 300, max)).toEqual({
          fresh: false,
          fingerprint: 'fp',
          result: '{"status":202}',
        });
        // Released keys free their room (all of them: which shard holds which is not known here).
        for (const key of taken) await store.releaseKey(key);
        expect(await store.claimKey(refused, 'fp', 300, max)).toEqual({ fresh: true });
        // Expired keys never count.
        await sleep(400);
        expect(await store.claimKey(keyOf('cap-after'), 'fp', 60_000, max)).toEqual({
          fresh: true,
        });
      });
    });

    describe('created counters, namespaces, expiry', () => {
      const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
      const tracked = options.expiry !== false;
      const meta = (n: number) => JSON.stringify({ v: 1, n, key: `hash-${n}` });
      /**
       * Waits so that writes before and after it land on either side of a cutoff taken between
       * two ticks. Cutoffs are `Date.now()`: the store's clock (Redis TIME) is this machine's.
       */
      const tick = () => sleep(15);

      it('creates a counter once, with its value; false for one that exists, however made', async () => {
        expect(await store.create('blog/visits', 7, meta(1))).toBe(true);
        expect(await store.get('blog/visits')).toBe(7);
        // Exists: nothing changes, neither value nor settings.
        expect(await store.create('blog/visits', 99, meta(2))).toBe(false);
        expect(await store.get('blog/visits')).toBe(7);
        expect((await store.describe('blog/visits'))?.meta).toBe(meta(1));
        // Counters made by a batch or a set exist too, also at 0.
        await store.applyBatch(batch(inst, 1, { 'from-batch': 3, 'blog/batch': 1 }));
        await store.set('from-set', 5);
        await store.set('set-to-zero', 0);
        for (const name of ['from-batch', 'blog/batch', 'from-set', 'set-to-zero']) {
          expect(await store.create(name, 100, meta(3)), name).toBe(false);
          expect((await store.describe(name))?.meta, name).toBeNull();
        }
        expect(await store.get('from-batch')).toBe(3);
        expect(await store.get('blog/batch')).toBe(1);
        expect(await store.get('from-set')).toBe(5);
        expect(await store.get('set-to-zero')).toBe(0);
        // A created counter is listed like any other, and counts on from its value.
        await store.applyBatch(batch(inst, 2, { 'blog/visits': 2 }));
        expect(await store.get('blog/visits')).toBe(9);
        const page = await store.list({ prefix: 'blog/' });
        expect(page.items).toEqual([
          { name: 'blog/batch', value: 1 },
          { name: 'blog/visits', value: 9 },
        ]);
      });

      it('describes a counter: undefined when unknown, value, settings and last write', async () => {
        expect(await store.describe('nope')).toBeUndefined();
        expect(await store.describe('blog/nope')).toBeUndefined();
        const before = Date.now();
        expect(await store.create('blog/visits', 4, meta(1))).toBe(true);
        const after = Date.now();
        const info = await store.describe('blog/visits');
        expect(info).toMatchObject({ value: 4, meta: meta(1) });
        if (tracked) {
          expect(typeof info?.touchedAt).toBe('number');
          expect(info?.touchedAt).toBeGreaterThanOrEqual(before - 50);
          expect(info?.touchedAt).toBeLessThanOrEqual(after + 50);
        } else {
          expect(info?.touchedAt).toBeNull();
        }
        // Made by a batch or a set: no settings.
        await store.applyBatch(batch(inst, 1, { plain: 2 }));
        await store.set('set-only', -3);
        const plain = await store.describe('plain');
        expect(plain).toMatchObject({ value: 2, meta: null });
        expect(await store.describe('set-only')).toMatchObject({ value: -3, meta: null });
        if (tracked) {
          expect(plain?.touchedAt).toBeGreaterThanOrEqual(after - 50);
          expect(plain?.touchedAt).toBeLessThanOrEqual(Date.now() + 50);
        }
        // Batches and sets change the value, never the settings; each write moves touchedAt.
        await tick();
        await store.applyBatch(batch(inst, 2, { 'blog/visits': 3 }));
        const batched = await store.describe('blog/visits');
        expect(batched).toMatchObject({ value: 7, meta: meta(1) });
        if (tracked) expect(batched?.touchedAt).toBeGreaterThan(info?.touchedAt as number);
        await tick();
        await store.set('blog/visits', 1);
        const set = await store.describe('blog/visits');
        expect(set).toMatchObject({ value: 1, meta: meta(1) });
        if (tracked) expect(set?.touchedAt).toBeGreaterThan(batched?.touchedAt as number);
      });

      it('deletes value and settings: describe is undefined and create works again', async () => {
        expect(await store.create('blog/visits', 4, meta(1))).toBe(true);
        expect(await store.delete('blog/visits')).toBe(true);
        expect(await store.describe('blog/visits')).toBeUndefined();
        expect(await store.get('blog/visits')).toBe(0);
        expect((await store.list({ prefix: 'blog/' })).items).toEqual([]);
        expect(await store.delete('blog/visits')).toBe(false);
        expect(await store.create('blog/visits', 10, meta(2))).toBe(true);
        expect(await store.describe('blog/visits')).toMatchObject({ value: 10, meta: meta(2) });
        // A counter created at 0 exists (it has settings) and is deleted as one.
        expect(await store.create('zero', 0, meta(3))).toBe(true);
        expect(await store.describe('zero')).toMatchObject({ value: 0, meta: meta(3) });
        expect(await store.create('zero', 1, meta(4))).toBe(false);
        expect(await store.delete('zero')).toBe(true);
        expect(await store.describe('zero')).toBeUndefined();
      });

      it('claims a namespace once and keeps the first record', async () => {
        expect(await store.namespaceRecord('blog')).toBeUndefined();
        expect(await store.claimNamespace('blog', '{"owner":1}')).toBe(true);
        expect(await store.claimNamespace('blog', '{"owner":2}')).toBe(false);
        expect(await store.namespaceRecord('blog')).toBe('{"owner":1}');
        expect(await store.namespaceRecord('shop')).toBeUndefined();
        expect(await store.claimNamespace('shop', '{"owner":3}')).toBe(true);
        expect(await store.namespaceRecord('shop')).toBe('{"owner":3}');
        // A claim is not a counter.
        expect(await store.describe('blog')).toBeUndefined();
        expect((await store.list()).items).toEqual([]);
        // Claims of many at once: exactly one.
        const claims = await Promise.all(
          Array.from({ length: 12 }, (_, i) => store.claimNamespace('race', `{"i":${i}}`)),
        );
        expect(claims.filter(Boolean)).toHaveLength(1);
        expect(await store.namespaceRecord('race')).toBe(`{"i":${claims.indexOf(true)}}`);
      });

      it('gives a name to exactly one of many concurrent creates', async () => {
        const results = await Promise.all(
          Array.from({ length: 16 }, (_, i) => store.create('blog/race', i + 1, meta(i))),
        );
        expect(results.filter(Boolean)).toHaveLength(1);
        const winner = results.indexOf(true);
        expect(await store.describe('blog/race')).toMatchObject({
          value: winner + 1,
          meta: meta(winner),
        });
      });

      if (!tracked) {
        it('expires nothing while last writes are not recorded', async () => {
          await store.create('blog/old', 1, meta(1));
          await store.applyBatch(batch(inst, 1, { old: 2 }));
          expect(await store.expireIdle(Date.now() + 60_000, 100)).toEqual([]);
          expect(await store.get('blog/old')).toBe(1);
          expect(await store.get('old')).toBe(2);
        });
        return;
      }

      it('expires counters last written before the cutoff and keeps later ones', async () => {
        await store.create('blog/created', 5, meta(1));
        await store.applyBatch(batch(inst, 1, { batched: 2, 'blog/batched': 3 }));
        await store.set('was-set', 4);
        await tick();
        const cutoff = Date.now();
        await tick();
        await store.create('blog/fresh', 1, meta(2));
        await store.applyBatch(batch(inst, 2, { 'fresh-batch': 1 }));
        const expired = await store.expireIdle(cutoff, 100);
        expect([...expired].sort()).toEqual(['batched', 'blog/batched', 'blog/created', 'was-set']);
        for (const name of expired) {
          expect(await store.describe(name), name).toBeUndefined();
          expect(await store.get(name), name).toBe(0);
        }
        expect(await store.describe('blog/fresh')).toMatchObject({ value: 1, meta: meta(2) });
        expect(await store.get('fresh-batch')).toBe(1);
        expect((await store.list()).items.map((i) => i.name)).toEqual([
          'blog/fresh',
          'fresh-batch',
        ]);
        // Deleted once: a second sweep finds nothing, and the names are free again.
        expect(await store.expireIdle(cutoff, 100)).toEqual([]);
        expect(await store.create('blog/created', 0, meta(3))).toBe(true);
        await store.applyBatch(batch(inst, 3, { batched: 1 }));
        expect(await store.get('batched')).toBe(1);
      });

      it('expires at most `limit` counters per call', async () => {
        const names = ['idle:1', 'idle:2', 'idle:3', 'idle:4', 'blog/idle5'];
        await store.applyBatch(batch(inst, 1, Object.fromEntries(names.map((n) => [n, 1]))));
        await tick();
        const cutoff = Date.now();
        const first = await store.expireIdle(cutoff, 2);
        expect(first).toHaveLength(2);
        const second = await store.expireIdle(cutoff, 2);
        expect(second).toHaveLength(2);
        const third = await store.expireIdle(cutoff, 2);
        expect(third).toHaveLength(1);
        expect([...first, ...second, ...third].sort()).toEqual([...names].sort());
        expect(await store.expireIdle(cutoff, 2)).toEqual([]);
        expect((await store.list()).items).toEqual([]);
      });

      it('keeps a counter written after the cutoff, by a batch or a set', async () => {
        await store.create('blog/revived', 10, meta(1));
        await store.applyBatch(batch(inst, 1, { 'by-batch': 1, 'by-set': 1, idle: 1 }));
        await tick();
        const cutoff = Date.now();
        await tick();
        await store.applyBatch(batch(inst, 2, { 'blog/revived': 1, 'by-batch': 1 }));
        await store.set('by-set', 9);
        expect(await store.expireIdle(cutoff, 100)).toEqual(['idle']);
        expect(await store.describe('blog/revived')).toMatchObject({ value: 11, meta: meta(1) });
        expect(await store.get('by-batch')).toBe(2);
        expect(await store.get('by-set')).toBe(9);
        // A duplicate batch writes nothing: it does not keep a counter alive.
        await tick();
        const later = Date.now();
        await tick();
        await store.applyBatch(batch(inst, 2, { 'blog/revived': 1, 'by-batch': 1 }));
        expect([...(await store.expireIdle(later, 100))].sort()).toEqual([
          'blog/revived',
          'by-batch',
          'by-set',
        ]);
      });
    });

    describe('history (store/history.ts over this store)', () => {
      const MIN = 60_000;
      const at = Date.UTC(2026, 11, 2, 10, 15, 30);
      const cut = (seq: number, when: number, entries: Record<string, number>): Batch => ({
        ...batch(inst, seq, entries),
        at: when,
      });

      it('writes minute, hour and day buckets inside the batch, and a replay adds nothing', async () => {
        const h = new HistoryStore(store);
        const first = await h.applyBatch(cut(1, at, { a: 3, 'ns/b': 2 }));
        expect(Object.fromEntries(first.values)).toEqual({ a: 3, 'ns/b': 2 });
        await h.applyBatch(cut(2, at + MIN, { a: 4 }));
        // The same batches again (a retry, or a replay of the log): duplicates, nothing added.
        expect((await h.applyBatch(cut(1, at, { a: 3, 'ns/b': 2 }))).duplicate).toBe(true);
        expect((await h.applyBatch(cut(2, at + MIN, { a: 4 }))).duplicate).toBe(true);
        const minutes = await h.history('a', 'minute', at - MIN, at + 2 * MIN);
        expect(minutes.map((b) => b.count)).toEqual([0, 3, 4, 0]);
        expect(minutes[1]?.start).toBe(Date.UTC(2026, 11, 2, 10, 15));
        expect((await h.history('a', 'hour', at - 3_600_000, at)).map((b) => b.count)).toEqual([
          0, 7,
        ]);
        expect((await h.history('a', 'day', at, at)).map((b) => b.count)).toEqual([7]);
        expect((await h.history('ns/b', 'day', at - 86_400_000, at)).map((b) => b.count)).toEqual([
          0, 2,
        ]);
        expect(await h.get('a')).toBe(7);
        // Records are hidden from listings; the counters are all there.
        expect((await h.list({ limit: 1000 })).items.map((i) => i.name)).toEqual(['a', 'ns/b']);
        expect(await h.top('', true, { day: at }, 10)).toEqual([{ name: 'a', value: 7 }]);
        expect(await h.top('ns/', false, 'total', 10)).toEqual([{ name: 'ns/b', value: 2 }]);
      });

      it('keeps a counter apart from one whose name starts with its own', async () => {
        const h = new HistoryStore(store);
        await h.applyBatch(cut(1, at, { x: 1, 'x.y': 5, 'x/z': 7 }));
        expect((await h.history('x', 'minute', at, at)).map((b) => b.count)).toEqual([1]);
        expect((await h.history('x', 'day', at, at)).map((b) => b.count)).toEqual([1]);
      });

      it('drops minute buckets after 48 h and hour buckets after 90 days', async () => {
        const h = new HistoryStore(store);
        const now = Date.now();
        await h.applyBatch(cut(1, now - 91 * 86_400_000, { old: 1 }));
        await h.applyBatch(cut(2, now - 49 * 3_600_000, { old: 2 }));
        await h.applyBatch(cut(3, now - 3_600_000, { old: 4, fresh: 1 }));
        await h.sweep(now);
        const left = async (prefix: string) =>
          (await store.list({ prefix, limit: 1000 })).items.length;
        expect(await left('~m/')).toBe(2);
        expect(await left('~h/')).toBe(3);
        // Day buckets stay (no day retention set); the counter keeps its total.
        expect(await left('~d/')).toBe(4);
        expect(await h.get('old')).toBe(7);
      });

      it('deletes a counter together with its history', async () => {
        const h = new HistoryStore(store);
        await h.applyBatch(cut(1, Date.now(), { gone: 2, kept: 1 }));
        expect(await h.delete('gone')).toBe(true);
        const names = (await store.list({ prefix: '~', limit: 1000 })).items.map((i) => i.name);
        expect(names.filter((n) => n.includes('gone'))).toEqual([]);
        expect(names.filter((n) => n.includes('kept'))).toHaveLength(4);
      });
    });

    describe('unique visitors', () => {
      const hashes = (n: number, salt: string) =>
        Array.from({ length: n }, (_, i) =>
          createHash('sha256').update(`${salt}${i}`).digest('hex').slice(0, 32),
        );

      it('estimates distinct hashes within HyperLogLog error, and a re-add counts nothing', async () => {
        const some = hashes(5000, 'v');
        await store.addVisitors(new Map([['page!all', some.slice(0, 3000)]]));
        // A retried flush and an overlapping one: 5000 distinct in all.
        await store.addVisitors(new Map([['page!all', some.slice(0, 3000)]]));
        await store.addVisitors(
          new Map([
            ['page!all', some.slice(2000)],
            ['page!20261202', some.slice(0, 10)],
          ]),
        );
        const [all = 0, day = 0, none] = await store.countVisitors([
          'page!all',
          'page!20261202',
          'nobody!all',
        ]);
        expect(Math.abs(all - 5000) / 5000).toBeLessThan(0.03);
        expect(day).toBe(10);
        expect(none).toBe(0);
        await store.deleteVisitors(['page!all']);
        expect(await store.countVisitors(['page!all'])).toEqual([0]);
      });

      it('counts small sets exactly enough to show on a badge', async () => {
        await store.addVisitors(new Map([['tiny!all', hashes(3, 't')]]));
        expect(await store.countVisitors(['tiny!all'])).toEqual([3]);
      });
    });
  });
}
