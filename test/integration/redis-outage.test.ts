// Redis dies for 5 s under load and comes back: eventual requests keep being accepted (up to
// max-pending, then 503 + Retry-After), strong ones fail fast, /readyz goes 503 and back, no
// process crashes, and every accepted increment is counted exactly once.
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadThroughOutage } from '../helpers/outage.js';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { type ServerProcess, startServer } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

const COUNTERS = Array.from({ length: 50 }, (_, i) => `out:c${i}`);
const OUTAGE_MS = 5000;

let redis: RedisServer;
const prefix = `outage-${randomUUID().slice(0, 8)}:`;
const dirs: Array<{ path: string; remove(): void }> = [];
const tallies: ServerProcess[] = [];

beforeAll(async () => {
  // Persistent (AOF fsynced on every write) so a restart keeps what Redis acknowledged.
  redis = await startRedis({ persistent: true });
  for (let i = 0; i < 2; i++) {
    const dir = tempDir(`tally-outage-${i}`);
    dirs.push(dir);
    tallies.push(
      await startServer({
        TALLY_STORE: 'redis',
        TALLY_REDIS_URL: redis.url,
        TALLY_REDIS_PREFIX: prefix,
        TALLY_DATA_DIR: dir.path,
        TALLY_FLUSH_INTERVAL_MS: '100',
        // 30 of the 50 counters may be pending: past that, new counters get 503 OVERLOADED.
        TALLY_MAX_PENDING: '30',
      }),
    );
  }
});

afterAll(async () => {
  await Promise.all(tallies.map((t) => t.stop('SIGKILL')));
  await redis?.close();
  for (const d of dirs) d.remove();
});

it('survives a 5 s Redis outage under load with exact totals', async () => {
  const run = await loadThroughOutage({
    tallies,
    counters: COUNTERS,
    outageMs: OUTAGE_MS,
    stop: () => redis.stop('SIGKILL'),
    start: () => redis.start(),
  });

  // Exactly once: Redis holds every accepted increment, no more.
  const check = new Redis(redis.port, '127.0.0.1');
  const raw = await check.mget(COUNTERS.map((c) => `${prefix}c:${c}`));
  check.disconnect();
  expect(raw.map((v) => Number(v ?? 0))).toEqual(COUNTERS.map((c) => run.expected.get(c)));

  // A clean stop drains with nothing left over.
  for (const t of tallies) expect(await t.stop('SIGTERM')).toBe(0);

  console.log(run.summary('redis'));
}, 90_000);
