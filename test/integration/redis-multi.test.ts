// Three real `tally serve` processes sharing one real redis-server: exact totals under mixed
// load spread over all three, and live values crossing from one instance to another.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectLiveAcross, post, rng } from '../helpers/multi.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { type ServerProcess, startServer } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

const FLUSH_MS = 100;
const COUNTERS = Array.from({ length: 50 }, (_, i) => `load:c${String(i).padStart(2, '0')}`);

let redis: RedisServer;
const prefix = `multi-${randomUUID().slice(0, 8)}:`;
const dirs: Array<{ path: string; remove(): void }> = [];
const tallies: ServerProcess[] = [];

beforeAll(async () => {
  redis = await startRedis();
  for (let i = 0; i < 3; i++) {
    const dir = tempDir(`tally-multi-${i}`);
    dirs.push(dir);
    tallies.push(
      await startServer({
        TALLY_STORE: 'redis',
        TALLY_REDIS_URL: redis.url,
        TALLY_REDIS_PREFIX: prefix,
        TALLY_DATA_DIR: dir.path,
        TALLY_FLUSH_INTERVAL_MS: String(FLUSH_MS),
      }),
    );
  }
});

afterAll(async () => {
  await Promise.all(tallies.map((t) => t.stop('SIGKILL')));
  await redis?.close();
  for (const d of dirs) d.remove();
});

describe('three Tally instances on one Redis', () => {
  it('gives each instance its own persisted instance id', async () => {
    const ids = await Promise.all(
      tallies.map(
        async (t) =>
          ((await (await fetch(`${t.url}/readyz`)).json()) as { instanceId: string }).instanceId,
      ),
    );
    expect(new Set(ids).size).toBe(3);
    expect(ids.every((id) => id.length > 0)).toBe(true);
  });

  it('counts ≥100k increments over 50 counters exactly, mixed eventual/strong, spread over all three', async () => {
    const expected = new Map<string, number>(COUNTERS.map((c) => [c, 0]));
    const statuses: Record<string, number> = {};
    const perInstance = [0, 0, 0];
    let increments = 0;
    const note = (kind: string, status: number) => {
      const key = `${kind} ${status}`;
      statuses[key] = (statuses[key] ?? 0) + 1;
    };
    const started = performance.now();
    // 12 clients; each request goes to the next instance in turn.
    await Promise.all(
      Array.from({ length: 12 }, async (_, client) => {
        const random = rng(client + 1);
        for (let r = 0; r < 70; r++) {
          const which = (client + r) % 3;
          const base = (tallies[which] as ServerProcess).url;
          const pick = () => COUNTERS[Math.floor(random() * COUNTERS.length)] as string;
          const kind = r % 7;
          if (kind <= 3) {
            // 4 requests in 7 carry a batch of 250 (one of them strong): 12 × 40 × 250 = 120k.
            const items = Array.from({ length: 250 }, () => ({
              name: pick(),
              by: 1 + Math.floor(random() * 3),
            }));
            const strong = kind === 3;
            const res = await post(
              `${base}/api/v1/increments${strong ? '?consistency=strong' : ''}`,
              { increments: items },
            );
            note(strong ? 'batch-strong' : 'batch', res.status);
            if (res.status === (strong ? 200 : 202)) {
              for (const { name, by } of items) expected.set(name, (expected.get(name) ?? 0) + by);
              increments += items.length;
              perInstance[which] = (perInstance[which] ?? 0) + items.length;
            }
          } else {
            const strong = kind === 6;
            const name = pick();
            const by = 1 + Math.floor(random() * 5);
            const res = await post(
              `${base}/api/v1/counters/${name}/increment${strong ? '?consistency=strong' : ''}`,
              { by },
            );
            note(strong ? 'single-strong' : 'single', res.status);
            if (res.status === (strong ? 200 : 202)) {
              expected.set(name, (expected.get(name) ?? 0) + by);
              increments++;
              perInstance[which] = (perInstance[which] ?? 0) + 1;
            }
          }
        }
      }),
    );
    const loadMs = performance.now() - started;
    // Every request was acknowledged: no failures while Redis is healthy.
    expect(Object.keys(statuses).every((k) => k.endsWith(' 200') || k.endsWith(' 202'))).toBe(true);
    expect(increments).toBeGreaterThanOrEqual(100_000);
    for (const n of perInstance) expect(n).toBeGreaterThan(increments / 4);

    // A strong read on each instance flushes what that instance still holds.
    for (const t of tallies) {
      for (const name of COUNTERS.slice(0, 1)) {
        const res = await fetch(`${t.url}/api/v1/counters/${name}?consistency=strong`);
        expect(res.status).toBe(200);
      }
    }
    // Every instance now reports every counter exactly, and so does Redis itself.
    for (const t of tallies) {
      const res = await fetch(`${t.url}/api/v1/counters?prefix=load:&limit=1000`);
      const page = (await res.json()) as { items: Array<{ name: string; value: number }> };
      expect(Object.fromEntries(page.items.map((i) => [i.name, i.value]))).toEqual(
        Object.fromEntries(expected),
      );
    }
    const check = new Redis(redis.port, '127.0.0.1');
    const raw = await check.mget(COUNTERS.map((c) => `${prefix}c:${c}`));
    check.disconnect();
    expect(raw.map(Number)).toEqual(COUNTERS.map((c) => expected.get(c)));
    console.log(
      `redis-multi: ${increments} increments (${JSON.stringify(statuses)}) over 3 instances ` +
        `(${perInstance.join('/')}) in ${Math.round(loadMs)} ms = ${Math.round((increments / loadMs) * 1000)}/s`,
    );
  }, 120_000);

  it('gives a restarted instance a batch sequence of its own, so nothing is skipped', async () => {
    const index = 2;
    const before = tallies[index] as ServerProcess;
    const readyz = async (t: ServerProcess) =>
      (await (await fetch(`${t.url}/readyz`)).json()) as { instanceId: string; writerId: string };
    const { instanceId, writerId } = await readyz(before);
    expect(writerId).toMatch(new RegExp(`^${instanceId}@\\d+$`));
    const name = `restart-${randomUUID().slice(0, 6)}`;
    for (let i = 0; i < 5; i++) {
      expect(
        (await post(`${before.url}/api/v1/counters/${name}/increment?consistency=strong`)).status,
      ).toBe(200);
    }
    const check = new Redis(redis.port, '127.0.0.1');
    const seqBefore = Number(await check.hget(`${prefix}seq`, writerId));
    expect(seqBefore).toBeGreaterThan(0);
    expect(await before.stop('SIGTERM')).toBe(0);
    const after = await startServer({
      TALLY_STORE: 'redis',
      TALLY_REDIS_URL: redis.url,
      TALLY_REDIS_PREFIX: prefix,
      TALLY_DATA_DIR: (dirs[index] as { path: string }).path,
      TALLY_FLUSH_INTERVAL_MS: String(FLUSH_MS),
    });
    tallies[index] = after;
    const restarted = await readyz(after);
    expect(restarted.instanceId).toBe(instanceId);
    // The same instance id under the next epoch: the lease was released by the clean stop.
    const epoch = (w: string) => Number(w.slice(w.lastIndexOf('@') + 1));
    expect(epoch(restarted.writerId)).toBe(epoch(writerId) + 1);
    for (let i = 0; i < 5; i++) {
      const res = await post(`${after.url}/api/v1/counters/${name}/increment?consistency=strong`);
      expect(res).toEqual({ status: 200, body: { name, value: 6 + i } });
    }
    expect(Number(await check.hget(`${prefix}seq`, restarted.writerId))).toBeGreaterThan(0);
    expect(Number(await check.hget(`${prefix}seq`, writerId))).toBe(seqBefore);
    check.disconnect();
  }, 60_000);

  it('streams values made on instance A to a live client on instance B within ~2 flush intervals', async () => {
    const [a, b] = tallies as [ServerProcess, ServerProcess];
    await expectLiveAcross(a, b, FLUSH_MS, 'redis-multi');
  }, 60_000);
});
