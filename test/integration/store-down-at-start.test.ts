// A long outage at start: with acknowledged increments waiting in the log, a Tally that finds
// its store unreachable keeps retrying instead of exiting after the connect wait (5 s), so the
// log is replayed as soon as the store is back, whatever the restart policy would have done.
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { type ServerProcess, startServer } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('tally-down-at-start');
let redis: RedisServer | undefined;
const running: ServerProcess[] = [];
afterAll(async () => {
  for (const s of running) await s.stop('SIGKILL');
  await redis?.close();
  dir.remove();
});

describe('store unreachable at start', () => {
  it('waits for the store while a log waits, then replays it exactly', async () => {
    redis = await startRedis({ persistent: true });
    const env = {
      TALLY_STORE: 'redis',
      TALLY_REDIS_URL: redis.url,
      TALLY_DATA_DIR: join(dir.path, 'data'),
      // Everything stays in the log until the crash.
      TALLY_FLUSH_INTERVAL_MS: '60000',
    };
    const first = await startServer(env);
    running.push(first);
    let acked = 0;
    for (let i = 0; i < 200; i++) {
      const r = await fetch(`${first.url}/api/v1/counters/waited/increment`, { method: 'POST' });
      if (r.status === 202) acked++;
    }
    expect(acked).toBe(200);
    await first.stop('SIGKILL');
    await redis.stop();

    const starting = startServer(env, 60_000);
    let exited = false;
    starting.catch(() => {
      exited = true;
    });
    // Longer than the 5 s connect wait that used to end the start.
    await new Promise((r) => setTimeout(r, 8000));
    expect(exited).toBe(false);
    await redis.start();
    const second = await starting;
    running.push(second);
    const r = await fetch(`${second.url}/api/v1/counters/waited?consistency=strong`);
    expect(((await r.json()) as { value: number }).value).toBe(200);
    expect(second.output()).toContain('store_unreachable_at_start');
  }, 90_000);
});
