// One identity, one process: a second `tally serve` on a data dir that is in use refuses to start
// and leaves the running server's log alone; two processes that share an instance id (a copied
// data dir, a duplicated TALLY_INSTANCE_ID) find out through the lease in the store, and the one
// whose lease is taken stops accepting increments instead of losing them.
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/store/sqlite/index.js';
import {
  freePort,
  MAIN,
  ROOT,
  type ServerProcess,
  startServer,
} from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

const run = promisify(execFile);
const dir = tempDir('tally-identity');
const running: ServerProcess[] = [];
afterEach(async () => {
  for (const s of running.splice(0)) await s.stop('SIGKILL');
});
afterAll(() => dir.remove());

async function start(env: Record<string, string>): Promise<ServerProcess> {
  const s = await startServer(env);
  running.push(s);
  return s;
}

/** Runs `tally serve` to its end (or kills it after `timeoutMs`): code and stderr. */
async function serveOnce(
  env: Record<string, string>,
  timeoutMs: number,
): Promise<{ code: number | null; stderr: string; ms: number }> {
  const started = Date.now();
  try {
    const r = await run(process.execPath, [MAIN, 'serve'], {
      cwd: ROOT,
      timeout: timeoutMs,
      env: { ...process.env, TALLY_LOG_FILES: 'false', TALLY_WORKERS: '1', ...env },
    });
    return { code: 0, stderr: r.stderr, ms: Date.now() - started };
  } catch (err) {
    const e = err as { code?: number | null; stderr?: string };
    return { code: e.code ?? null, stderr: e.stderr ?? '', ms: Date.now() - started };
  }
}

/** Every file under `root` with its size, for comparing a log before and after. */
function snapshot(root: string): Record<string, number> {
  const out: Record<string, number> = {};
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, entry.name);
      if (entry.isDirectory()) walk(p);
      else out[p] = statSync(p).size;
    }
  };
  walk(root);
  return out;
}

async function incrementMany(url: string, n: number): Promise<number> {
  let acked = 0;
  await Promise.all(
    Array.from({ length: 10 }, async () => {
      for (let i = 0; i < n / 10; i++) {
        const r = await fetch(`${url}/api/v1/counters/ident/increment`, { method: 'POST' });
        if (r.status === 202) acked++;
      }
    }),
  );
  return acked;
}

describe('one identity, one process', () => {
  it('a second process on the same data dir refuses to start and touches nothing', async () => {
    const env = {
      TALLY_SQLITE_PATH: join(dir.path, 'same.db'),
      TALLY_DATA_DIR: join(dir.path, 'same-data'),
      // Everything stays in the log while the second start is tried.
      TALLY_FLUSH_INTERVAL_MS: '60000',
    };
    const first = await start(env);
    expect(await incrementMany(first.url, 300)).toBe(300);
    const before = snapshot(join(env.TALLY_DATA_DIR, 'wal'));
    expect(Object.keys(before).some((p) => p.endsWith('.log'))).toBe(true);

    const second = await serveOnce({ ...env, TALLY_PORT: String(await freePort()) }, 15_000);
    expect(second.code).not.toBe(0);
    expect(second.code).not.toBeNull();
    expect(second.stderr).toContain(env.TALLY_DATA_DIR.split('/').pop() as string);
    expect(second.stderr).toContain(`${first.child.pid}`);
    expect(snapshot(join(env.TALLY_DATA_DIR, 'wal'))).toEqual(before);

    expect(await first.stop('SIGTERM')).toBe(0);
    const again = await start(env);
    const r = await fetch(`${again.url}/api/v1/counters/ident?consistency=strong`);
    expect(((await r.json()) as { value: number }).value).toBe(300);
  });

  it('a shared instance id: the second start waits out the lease and refuses; a taken lease stops the first', async () => {
    const db = join(dir.path, 'shared.db');
    const logDir = join(dir.path, 'shared-log');
    const common = {
      TALLY_SQLITE_PATH: db,
      TALLY_INSTANCE_ID: 'shared-id',
      TALLY_INSTANCE_LEASE_MS: '1500',
    };
    const first = await start({
      ...common,
      TALLY_DATA_DIR: join(dir.path, 'copy-a'),
      TALLY_LOG_FILES: 'true',
      TALLY_LOG_DIR: logDir,
    });
    expect(await incrementMany(first.url, 100)).toBe(100);

    // A copy of the data dir elsewhere (here: another directory with the same id).
    const second = await serveOnce({ ...common, TALLY_DATA_DIR: join(dir.path, 'copy-b') }, 20_000);
    expect(second.code).not.toBe(0);
    expect(second.code).not.toBeNull();
    expect(second.stderr).toMatch(/held by another running process/);
    expect(second.stderr).toContain(`pid ${first.child.pid}`);

    // Another host takes the id over (its lease expired there, say): the first must notice.
    const store = new SqliteStore({ path: db });
    const refused = await store.claimInstance('shared-id', 'another host', 60_000);
    expect(refused.granted).toBe(false);
    const taken = await store.claimInstance('shared-id', 'another host', 60_000, refused.epoch);
    expect(taken.granted).toBe(true);

    let answer: Response | undefined;
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      answer = await fetch(`${first.url}/api/v1/counters/ident/increment`, { method: 'POST' });
      if (answer.status !== 202) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    if (answer === undefined) throw new Error('no answer');
    expect(answer.status).toBe(503);
    expect(((await answer.json()) as { error: { code: string } }).error.code).toBe(
      'IDENTITY_CONFLICT',
    );
    const ready = await fetch(`${first.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(JSON.stringify(await ready.json())).toMatch(/instance id/);
    // What it acknowledged before is stored: its batches carry its own epoch.
    const strong = await fetch(`${first.url}/api/v1/counters/ident?consistency=strong`);
    const acked = ((await strong.json()) as { value: number }).value;
    expect(acked).toBeGreaterThanOrEqual(100);
    expect(await store.get('ident')).toBe(acked);
    await store.close();
    await first.stop('SIGTERM');
    const errors = readFileSync(join(logDir, 'error.log'), 'utf8');
    expect(errors).toContain('"event":"instance_lost"');
  });
});
