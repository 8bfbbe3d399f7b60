// Clients resend ~30% of their increments, some to the other instance, some at the same time:
// with an Idempotency-Key each is counted exactly once.
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { type ServerProcess, startServer } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

const LOGICAL = 3000;

async function send(
  url: string,
  name: string,
  key: string,
  by: number,
): Promise<{ replayed: boolean }> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const res = await fetch(`${url}/api/v1/counters/${name}/increment`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': key },
      body: JSON.stringify({ by }),
    });
    await res.arrayBuffer();
    if (res.status === 202) return { replayed: res.headers.get('idempotent-replayed') === 'true' };
    // 409: the first copy is still being processed; the client retries, as documented.
    if (res.status !== 409) throw new Error(`unexpected ${res.status}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error('gave up');
}

async function storm(a: ServerProcess, b: ServerProcess) {
  let replayed = 0;
  let next = 0;
  const expected = new Map<string, number>();
  await Promise.all(
    Array.from({ length: 24 }, async () => {
      while (next < LOGICAL) {
        const i = next++;
        const name = `storm:${i % 7}`;
        const by = (i % 3) + 1;
        expected.set(name, (expected.get(name) ?? 0) + by);
        const key = `client-${i}-${Math.random().toString(36).slice(2)}`;
        const first = i % 2 === 0 ? a : b;
        const other = first === a ? b : a;
        const copies = [send(first.url, name, key, by)];
        if (i % 10 < 3) {
          // ~30% resent: a third at once to the other instance, the rest after the answer.
          if (i % 3 === 0) copies.push(send(other.url, name, key, by));
          else
            copies.push(copies[0]!.then(() => send(i % 2 ? other.url : first.url, name, key, by)));
        }
        for (const r of await Promise.all(copies)) if (r.replayed) replayed++;
      }
    }),
  );
  let total = 0;
  for (const [name, want] of expected) {
    // Strong reads on both flush each instance's pending increments for the counter.
    await (await fetch(`${b.url}/api/v1/counters/${name}?consistency=strong`)).arrayBuffer();
    const r = await fetch(`${a.url}/api/v1/counters/${name}?consistency=strong`);
    const got = ((await r.json()) as { value: number }).value;
    expect(got).toBe(want);
    total += got;
  }
  return { replayed, total };
}

describe('retry storm with Idempotency-Key across two instances', () => {
  const dir = tempDir('tally-storm');
  const servers: ServerProcess[] = [];
  let redis: RedisServer | undefined;
  afterAll(async () => {
    for (const s of servers) await s.stop('SIGKILL');
    await redis?.close();
    dir.remove();
  });

  it('sqlite shared by two processes: every increment counted once', async () => {
    const common = { TALLY_STORE: 'sqlite', TALLY_SQLITE_PATH: join(dir.path, 'storm.db') };
    const a = await startServer({ ...common, TALLY_DATA_DIR: join(dir.path, 'a') });
    const b = await startServer({ ...common, TALLY_DATA_DIR: join(dir.path, 'b') });
    servers.push(a, b);
    const r = await storm(a, b);
    console.log('retry storm sqlite', r);
    expect(r.replayed).toBeGreaterThan(LOGICAL * 0.2);
  }, 120_000);

  it('redis shared by two processes: every increment counted once', async () => {
    redis = await startRedis();
    const common = {
      TALLY_STORE: 'redis',
      TALLY_REDIS_URL: redis.url,
      TALLY_REDIS_PREFIX: 'storm:',
    };
    const a = await startServer({ ...common, TALLY_DATA_DIR: join(dir.path, 'ra') });
    const b = await startServer({ ...common, TALLY_DATA_DIR: join(dir.path, 'rb') });
    servers.push(a, b);
    const r = await storm(a, b);
    console.log('retry storm redis', r);
    expect(r.replayed).toBeGreaterThan(LOGICAL * 0.2);
  }, 120_000);
});
