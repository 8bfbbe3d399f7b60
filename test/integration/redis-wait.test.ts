// TALLY_REDIS_WAIT_REPLICAS: a batch leaves the log only once a replica holds it. With the only
// replica down, batches are not confirmed (strong increments fail, eventual ones wait in the
// log, /readyz says so); once it is back, everything lands exactly once. Real primary + replica.
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { type ServerProcess, startServer } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('tally-wait');
let primary: RedisServer;
let replica: RedisServer;
const running: ServerProcess[] = [];

async function linked(port: number): Promise<void> {
  const r = new Redis(port, '127.0.0.1');
  try {
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (/master_link_status:up/.test(await r.info('replication'))) return;
      await new Promise((res) => setTimeout(res, 100));
    }
    throw new Error('replica did not link to the primary');
  } finally {
    r.disconnect();
  }
}

beforeAll(async () => {
  primary = await startRedis();
  replica = await startRedis({ args: ['--replicaof', '127.0.0.1', String(primary.port)] });
  await linked(replica.port);
});
afterAll(async () => {
  for (const s of running) await s.stop('SIGKILL');
  await replica.close();
  await primary.close();
  dir.remove();
});

const post = (url: string) => fetch(url, { method: 'POST' });

describe('TALLY_REDIS_WAIT_REPLICAS=1', () => {
  it('keeps batches until a replica holds them, and loses nothing while it is down', async () => {
    const tally = await startServer({
      TALLY_STORE: 'redis',
      TALLY_REDIS_URL: primary.url,
      TALLY_DATA_DIR: join(dir.path, 'data'),
      TALLY_REDIS_WAIT_REPLICAS: '1',
      TALLY_REDIS_WAIT_TIMEOUT_MS: '300',
      TALLY_FLUSH_INTERVAL_MS: '20',
    });
    running.push(tally);
    const base = `${tally.url}/api/v1/counters/w`;
    expect((await post(`${base}/increment?consistency=strong`)).status).toBe(200);

    await replica.stop('SIGKILL');
    const strong = await post(`${base}/increment?consistency=strong`);
    expect(strong.status).toBe(503);
    let acked = 2; // the strong one above was accepted, then not confirmed: it is held too
    for (let i = 0; i < 20; i++) if ((await post(`${base}/increment`)).status === 202) acked++;
    let ready = await fetch(`${tally.url}/readyz`);
    const deadline = Date.now() + 10_000;
    while (ready.status === 200 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      ready = await fetch(`${tally.url}/readyz`);
    }
    expect(ready.status).toBe(503);
    expect(JSON.stringify(await ready.json())).toMatch(/consecutive flushes failed/);

    await replica.start();
    await linked(replica.port);
    let value = 0;
    const until = Date.now() + 20_000;
    while (value !== acked && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 200));
      const r = await fetch(`${base}?consistency=strong`);
      if (r.status === 200) value = ((await r.json()) as { value: number }).value;
    }
    expect(value).toBe(acked);
    // And the replica holds it too: what a promoted replica would serve.
    const r = new Redis(replica.port, '127.0.0.1');
    expect(Number(await r.get('tally:c:w'))).toBe(acked);
    r.disconnect();
  }, 90_000);
});
