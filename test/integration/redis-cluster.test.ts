// Two real `tally serve` processes with TALLY_STORE=redis-cluster on a three-master cluster:
// exact totals across shards and masters, live values across instances.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type RedisCluster, startRedisCluster } from '../helpers/redis-server.js';
import { type ServerProcess, startServer } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

const COUNTERS = Array.from({ length: 50 }, (_, i) => `cl:c${i}`);

let cluster: RedisCluster;
const dirs: Array<{ remove(): void }> = [];
const tallies: ServerProcess[] = [];

beforeAll(async () => {
  cluster = await startRedisCluster(3);
  const prefix = `clint-${randomUUID().slice(0, 8)}:`;
  for (let i = 0; i < 2; i++) {
    const dir = tempDir(`tally-cluster-${i}`);
    dirs.push(dir);
    tallies.push(
      await startServer({
        TALLY_STORE: 'redis-cluster',
        TALLY_REDIS_URL: cluster.urls,
        TALLY_REDIS_PREFIX: prefix,
        TALLY_DATA_DIR: dir.path,
      }),
    );
  }
});

afterAll(async () => {
  await Promise.all(tallies.map((t) => t.stop('SIGKILL')));
  await cluster?.close();
  for (const d of dirs) d.remove();
});

it('counts mixed increments from two instances exactly and streams values across them', async () => {
  const [a, b] = tallies as [ServerProcess, ServerProcess];
  const expected = new Map<string, number>(COUNTERS.map((c) => [c, 0]));
  const events: number[] = [];
  const controller = new AbortController();
  const stream = await fetch(`${b.url}/api/v1/counters/cl:c7/events`, {
    signal: controller.signal,
  });
  const reading = (async () => {
    const reader = (stream.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let text = '';
    for (;;) {
      const { done, value } = await reader.read().catch(() => ({ done: true, value: undefined }));
      if (done) return;
      text += decoder.decode(value, { stream: true });
      for (const m of text.matchAll(/^data: (\{.*\})$/gm)) {
        events.push((JSON.parse(m[1] as string) as { value: number }).value);
      }
      text = text.slice(text.lastIndexOf('\n\n') + 2);
    }
  })();

  await Promise.all(
    Array.from({ length: 8 }, async (_, client) => {
      for (let r = 0; r < 40; r++) {
        const t = (r + client) % 2 === 0 ? a : b;
        if (r % 4 === 0) {
          const name = COUNTERS[(client * 40 + r) % COUNTERS.length] as string;
          const res = await fetch(`${t.url}/api/v1/counters/${name}/increment?consistency=strong`, {
            method: 'POST',
          });
          expect(res.status).toBe(200);
          await res.arrayBuffer();
          expected.set(name, (expected.get(name) ?? 0) + 1);
        } else {
          const items = COUNTERS.map((name, i) => ({ name, by: 1 + ((i + r + client) % 4) }));
          const res = await fetch(`${t.url}/api/v1/increments`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ increments: items }),
          });
          expect(res.status).toBe(202);
          await res.arrayBuffer();
          for (const { name, by } of items) expected.set(name, (expected.get(name) ?? 0) + by);
        }
      }
    }),
  );
  for (const t of tallies) {
    const res = await fetch(`${t.url}/api/v1/counters/cl:c0?consistency=strong`);
    expect(res.status).toBe(200);
    await res.arrayBuffer();
  }
  for (const t of tallies) {
    const page = (await (await fetch(`${t.url}/api/v1/counters?prefix=cl:&limit=1000`)).json()) as {
      items: Array<{ name: string; value: number }>;
    };
    expect(Object.fromEntries(page.items.map((i) => [i.name, i.value]))).toEqual(
      Object.fromEntries(expected),
    );
  }
  // B's live stream reached c7's final value, made mostly through A and B's own flushes.
  const deadline = Date.now() + 3000;
  while (events[events.length - 1] !== expected.get('cl:c7') && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  controller.abort();
  await reading;
  expect(events[events.length - 1]).toBe(expected.get('cl:c7'));
  expect([...events].sort((x, y) => x - y)).toEqual(events);
  const ready = (await (await fetch(`${a.url}/readyz`)).json()) as { store: string };
  expect(ready.store).toBe('redis-cluster');
}, 60_000);
