// kill -9 a loaded Tally ten times at random moments: every acknowledged increment survives, and
// nothing is counted that was not sent.
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { freePort, type ServerProcess, startServer } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

const COUNTERS = ['crash:a', 'crash:b', 'crash:c', 'crash:d', 'crash:e'];
const CYCLES = 10;

interface Tally {
  sent: number;
  acked: number;
  /** Sent, but the answer was lost: may or may not have been applied. */
  unknown: number;
  refused: number;
}

/** Codes that promise nothing was applied. */
const NOT_APPLIED = new Set([
  'OVERLOADED',
  'SHUTTING_DOWN',
  'LOG_UNAVAILABLE',
  'STORE_UNAVAILABLE',
]);

async function load(url: string, stopAt: () => boolean, tally: Tally, seed: number): Promise<void> {
  let i = seed;
  while (!stopAt()) {
    i++;
    const name = COUNTERS[i % COUNTERS.length] as string;
    const kind = i % 10;
    let by: number;
    let request: Promise<Response>;
    if (kind < 7) {
      by = (i % 5) + 1;
      request = fetch(`${url}/api/v1/counters/${name}/increment`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ by }),
      });
    } else if (kind < 9) {
      by = 10;
      request = fetch(`${url}/api/v1/increments`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ increments: COUNTERS.flatMap((n) => [{ name: n }, { name: n }]) }),
      });
    } else {
      by = 1;
      request = fetch(`${url}/api/v1/counters/${name}/increment?consistency=strong`, {
        method: 'POST',
      });
    }
    tally.sent += by;
    try {
      const res = await request;
      const body = (await res.json().catch(() => ({}))) as { error?: { code?: string } };
      if (res.status === 200 || res.status === 202) tally.acked += by;
      else if (NOT_APPLIED.has(body.error?.code ?? '') || res.status === 503) tally.refused += by;
      else tally.unknown += by;
    } catch (err) {
      const code = (err as { cause?: { code?: string } }).cause?.code;
      if (code === 'ECONNREFUSED') {
        tally.sent -= by; // never left this machine's socket layer
        await new Promise((r) => setTimeout(r, 20));
      } else tally.unknown += by;
    }
  }
}

async function crashLoop(env: Record<string, string>) {
  const port = String(await freePort());
  const full = { ...env, TALLY_PORT: port, TALLY_FLUSH_INTERVAL_MS: '50' };
  const tally: Tally = { sent: 0, acked: 0, unknown: 0, refused: 0 };
  let server: ServerProcess = await startServer(full);
  let stop = false;
  const workers = Array.from({ length: 6 }, (_, w) =>
    load(server.url, () => stop, tally, w * 1000),
  );
  try {
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      await new Promise((r) => setTimeout(r, 150 + Math.random() * 450));
      await server.stop('SIGKILL');
      server = await startServer(full);
    }
    await new Promise((r) => setTimeout(r, 300));
  } finally {
    stop = true;
    await Promise.all(workers);
  }
  let total = 0;
  for (const name of COUNTERS) {
    const r = await fetch(`${server.url}/api/v1/counters/${name}?consistency=strong`);
    total += ((await r.json()) as { value: number }).value;
  }
  await server.stop('SIGTERM');
  return { ...tally, final: total };
}

describe('crash loop (kill -9 under load, 10 times)', () => {
  const dir = tempDir('tally-crash');
  let redis: RedisServer | undefined;
  afterAll(async () => {
    await redis?.close();
    dir.remove();
  });

  it('sqlite: final == acknowledged (+ at most the answers lost in the crash)', async () => {
    const r = await crashLoop({
      TALLY_STORE: 'sqlite',
      TALLY_SQLITE_PATH: join(dir.path, 'crash.db'),
      TALLY_DATA_DIR: join(dir.path, 'sqlite-data'),
    });
    console.log('crash loop sqlite', r);
    expect(r.acked).toBeGreaterThan(1000);
    expect(r.final).toBeGreaterThanOrEqual(r.acked);
    expect(r.final).toBeLessThanOrEqual(r.acked + r.unknown);
    expect(r.final).toBeLessThanOrEqual(r.sent);
  }, 120_000);

  it('redis: final == acknowledged (+ at most the answers lost in the crash)', async () => {
    redis = await startRedis();
    const r = await crashLoop({
      TALLY_STORE: 'redis',
      TALLY_REDIS_URL: redis.url,
      TALLY_REDIS_PREFIX: 'crash:',
      TALLY_DATA_DIR: join(dir.path, 'redis-data'),
    });
    console.log('crash loop redis', r);
    expect(r.acked).toBeGreaterThan(1000);
    expect(r.final).toBeGreaterThanOrEqual(r.acked);
    expect(r.final).toBeLessThanOrEqual(r.acked + r.unknown);
    expect(r.final).toBeLessThanOrEqual(r.sent);
  }, 120_000);
});
