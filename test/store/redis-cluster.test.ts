// The Redis store on a real three-master Redis Cluster: conformance, batches spread over slots,
// retries after a partial failure, and pub/sub across nodes.
import { randomUUID } from 'node:crypto';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Batch } from '../../src/store/interface.js';
import { CLUSTER_SHARDS, openRedisStore } from '../../src/store/redis/factory.js';
import { KeyLayout, keySlot } from '../../src/store/redis/keys.js';
import type { RedisStore } from '../../src/store/redis/store.js';
import { type RedisCluster, startRedisCluster } from '../helpers/redis-server.js';
import { runStoreConformance } from './conformance.js';

let cluster: RedisCluster;
let admin: Cluster;
beforeAll(async () => {
  cluster = await startRedisCluster(3);
  admin = new Cluster(cluster.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })));
  admin.on('error', () => {});
});
afterAll(async () => {
  admin?.disconnect();
  await cluster?.close();
});

const prefix = () => `cl-${randomUUID().slice(0, 8)}:`;
const open = (keyPrefix: string, trackLastWrite = false) =>
  openRedisStore({
    url: cluster.urls,
    cluster: true,
    keyPrefix,
    trackLastWrite,
  }) as Promise<RedisStore>;
const batch = (instanceId: string, seq: number, deltas: Record<string, number>): Batch => ({
  instanceId,
  seq,
  deltas: new Map(Object.entries(deltas)),
});

// Last writes recorded (TALLY_EXPIRE_IDLE set), so the expiry cases run on every shard.
runStoreConformance('redis-cluster', { create: () => open(prefix(), true) });

describe('redis-cluster specifics', () => {
  it('spreads counters over every shard and every master', async () => {
    const p = prefix();
    const store = await open(p);
    const deltas: Record<string, number> = {};
    for (let i = 0; i < 400; i++) deltas[`spread:${i}`] = 1;
    await store.applyBatch(batch('i', 1, deltas));
    const layout = new KeyLayout(p, CLUSTER_SHARDS);
    const used = new Set(Object.keys(deltas).map((n) => layout.shardOf(n).index));
    expect(used.size).toBe(CLUSTER_SHARDS);
    const perMaster = await Promise.all(admin.nodes('master').map((n) => n.dbsize()));
    for (const keys of perMaster) expect(keys).toBeGreaterThan(50);
    await store.close();
  });

  it('applies on retry exactly the shards a partly failed batch missed', async () => {
    const p = prefix();
    const store = await open(p);
    const layout = new KeyLayout(p, CLUSTER_SHARDS);
    const deltas: Record<string, number> = {};
    for (let i = 0; i < 64; i++) deltas[`part:${i}`] = i + 1;
    await store.applyBatch(batch('i', 1, { 'part:0': 100 }));
    // One shard's index key is clobbered: that shard's script refuses before writing anything,
    // the other shards apply.
    const broken = layout.shardOf('part:5');
    await admin.set(broken.names, 'clobbered');
    await expect(store.applyBatch(batch('i', 2, deltas))).rejects.toThrow(/WRONGTYPE/);
    const inBroken = Object.keys(deltas).filter((n) => layout.shardOf(n) === broken);
    expect(await store.get('part:5')).toBe(0);
    expect(
      await store.get(Object.keys(deltas).find((n) => !inBroken.includes(n)) as string),
    ).not.toBe(0);
    await admin.del(broken.names);
    // The aggregator re-sends the same batch: every counter ends up counted once.
    const retry = await store.applyBatch(batch('i', 2, deltas));
    expect(retry.duplicate).toBe(false);
    for (const [name, delta] of Object.entries(deltas)) {
      expect(await store.get(name)).toBe(delta + (name === 'part:0' ? 100 : 0));
    }
    const third = await store.applyBatch(batch('i', 2, deltas));
    expect(third.duplicate).toBe(true);
    expect(await store.lastSeq('i')).toBe(2);
    await store.close();
  });

  it('shares Idempotency-Key claims on a cluster, whatever slot a key falls in', async () => {
    const p = prefix();
    const a = await open(p);
    const b = await open(p);
    for (const key of ['plain', 'with {braces}', 'k-{x}-2']) {
      expect(await a.claimKey(key, 'fp', 5000, 1_000_000)).toEqual({ fresh: true });
      await a.completeKey(key, 'answer', 60_000);
      expect(await b.claimKey(key, 'fp', 5000, 1_000_000)).toEqual({
        fresh: false,
        fingerprint: 'fp',
        result: 'answer',
      });
    }
    await a.close();
    await b.close();
  });

  it('keeps each instance id’s claim in its own slot, shared by every store', async () => {
    const p = prefix();
    const a = await open(p);
    const b = await open(p);
    const layout = new KeyLayout(p, CLUSTER_SHARDS);
    const ids = ['web-1', 'web-2', 'host.example:7', 'x_y'];
    for (const id of ids) {
      expect(await a.claimInstance(id, `a ${id}`, 60_000)).toEqual({ granted: true, epoch: 1 });
      expect(await b.claimInstance(id, 'b', 60_000)).toMatchObject({
        granted: false,
        holder: `a ${id}`,
      });
      expect(await b.claimInstance(id, 'b', 60_000, 1)).toEqual({ granted: true, epoch: 2 });
      expect(keySlot(layout.instanceKey(id))).toBe(keySlot(`{i:${id}}`));
    }
    // Four ids, four slots: each claim ran on its own slot's node, never across slots.
    const slots = new Set(ids.map((id) => keySlot(layout.instanceKey(id))));
    expect(slots.size).toBe(ids.length);
    await a.close();
    await b.close();
  });

  it('delivers changes across nodes to other instances', async () => {
    const p = prefix();
    const a = await open(p);
    const b = await open(p);
    const seen = new Map<string, number>();
    b.watch((c) => {
      for (const [k, v] of c) seen.set(k, v);
    });
    const names = Array.from({ length: 40 }, (_, i) => `live:${i}`);
    // Keep sending until B's subscription is up, then all 40 values must arrive.
    for (let seq = 1; seen.size < names.length; seq++) {
      if (seq > 200) throw new Error(`B saw only ${seen.size} of ${names.length}`);
      await a.applyBatch(batch('ia', seq, Object.fromEntries(names.map((n) => [n, 1]))));
      await new Promise((r) => setTimeout(r, 25));
    }
    const final = await a.get('live:0');
    await new Promise((r) => setTimeout(r, 100));
    for (const n of names) expect(seen.get(n)).toBe(final);
    await a.close();
    await b.close();
  });
});
