// A Redis that may evict keys is refused: under volatile-lru the idempotency records (which carry
// a TTL) can be evicted, so a retried request counts twice; under allkeys-* counters vanish.
// Tally refuses to start on one, refuses to work when a reconnect finds one, and starts with the
// explicit override.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { MAIN, ROOT, type ServerProcess, startServer } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

const run = promisify(execFile);
const dir = tempDir('tally-evict');
let redis: RedisServer;
const running: ServerProcess[] = [];

beforeAll(async () => {
  redis = await startRedis({ args: ['--maxmemory-policy', 'volatile-lru'] });
});
afterEach(async () => {
  for (const s of running.splice(0)) await s.stop('SIGKILL');
});
afterAll(async () => {
  await redis.close();
  dir.remove();
});

function env(label: string): Record<string, string> {
  return {
    TALLY_STORE: 'redis',
    TALLY_REDIS_URL: redis.url,
    TALLY_REDIS_PREFIX: `evict-${label}:`,
    TALLY_DATA_DIR: join(dir.path, label),
  };
}

describe('Redis eviction policy', () => {
  it('refuses to start on volatile-lru, naming the policy and the fix', async () => {
    const err = await run(process.execPath, [MAIN, 'serve'], {
      cwd: ROOT,
      timeout: 20_000,
      env: { ...process.env, TALLY_LOG_FILES: 'false', TALLY_WORKERS: '1', ...env('refuse') },
    }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code?: number | null; stderr?: string }) => ({ code: e.code, stderr: e.stderr ?? '' }),
    );
    expect(err.code).toBe(1);
    expect(err.stderr).toContain('maxmemory-policy volatile-lru');
    expect(err.stderr).toContain('noeviction');
    expect(err.stderr).toContain('TALLY_REDIS_ALLOW_EVICTION');
    expect(err.stderr).not.toMatch(/\n\s+at /); // a message, not a stack trace
  });

  it('starts with the override, and refuses work once a reconnect finds an evicting policy', async () => {
    const admin = new Redis(redis.port, '127.0.0.1');
    const allowed = await startServer({ ...env('allowed'), TALLY_REDIS_ALLOW_EVICTION: 'true' });
    running.push(allowed);
    expect((await fetch(`${allowed.url}/readyz`)).status).toBe(200);

    await admin.config('SET', 'maxmemory-policy', 'noeviction');
    const strict = await startServer(env('strict'));
    running.push(strict);
    const inc = await fetch(`${strict.url}/api/v1/counters/e/increment?consistency=strong`, {
      method: 'POST',
    });
    expect(inc.status).toBe(200);

    // The policy changes and the connection drops (a failover to a node set up differently).
    await admin.config('SET', 'maxmemory-policy', 'allkeys-lru');
    await admin.client('KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
    // First the reconnect itself shows (store unreachable), then the policy once it is read.
    let ready = { status: 0, body: '' };
    const deadline = Date.now() + 10_000;
    while (!ready.body.includes('maxmemory-policy') && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      const res = await fetch(`${strict.url}/readyz`);
      ready = { status: res.status, body: await res.text() };
    }
    expect(ready.status).toBe(503);
    expect(ready.body).toContain('maxmemory-policy allkeys-lru');
    // Eventual increments are still acknowledged (they wait in the log); nothing is lost.
    const held = await fetch(`${strict.url}/api/v1/counters/e/increment`, { method: 'POST' });
    expect(held.status).toBe(202);

    // Fixed without a restart: the store is used again and the held increment lands.
    await admin.config('SET', 'maxmemory-policy', 'noeviction');
    let value = 0;
    const until = Date.now() + 15_000;
    while (value !== 2 && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 200));
      const r = await fetch(`${strict.url}/api/v1/counters/e?consistency=strong`);
      if (r.status === 200) value = ((await r.json()) as { value: number }).value;
    }
    expect(value).toBe(2);
    expect((await fetch(`${strict.url}/readyz`)).status).toBe(200);
    admin.disconnect();
  }, 60_000);
});
