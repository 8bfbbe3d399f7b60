// `tally serve --workers N`: real processes sharing one port, exact counts, live values across
// workers, signal forwarding, crash restart, and the memory-store guard.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { type ServerProcess, startServer } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A sqlite-store server's settings, all under `dir`. */
function inDir(dir: string): Record<string, string> {
  return {
    TALLY_STORE: 'sqlite',
    TALLY_DATA_DIR: join(dir, 'data'),
    TALLY_SQLITE_PATH: join(dir, 'tally.db'),
    TALLY_LOG_DIR: join(dir, 'log'),
  };
}

function start(env: Record<string, string>): { dir: string; server: Promise<ServerProcess> } {
  const dir = tempDir('tally-cluster');
  const server = startServer({ ...inDir(dir.path), ...env });
  cleanups.push(() => dir.remove());
  cleanups.push(async () => (await server.catch(() => undefined))?.stop('SIGKILL'));
  // Workers outlive a SIGKILLed primary only until they notice; kill any left over too.
  cleanups.push(async () => {
    const s = await server.catch(() => undefined);
    for (const pid of s?.child.pid ? childrenOf(s.child.pid) : []) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
    }
  });
  return { dir: dir.path, server };
}

function childrenOf(pid: number): number[] {
  const ps = spawnSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' });
  return ps.stdout
    .split('\n')
    .map((s) => Number(s.trim()))
    .filter((n) => n > 0);
}

async function post(url: string): Promise<number> {
  // A fresh connection per request: the primary hands connections to workers round-robin.
  const res = await fetch(url, { method: 'POST', headers: { connection: 'close' } });
  await res.arrayBuffer();
  return res.status;
}

/** Sends `total` increments over fresh connections, `parallel` at a time; returns 2xx count. */
async function increments(base: string, name: string, total: number, parallel = 8) {
  let sent = 0;
  let ok = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (sent < total) {
        sent++;
        const status = await post(`${base}/api/v1/counters/${name}/increment`);
        if (status === 202) ok++;
      }
    }),
  );
  return ok;
}

function storedRows(file: string): { values: Map<string, number>; instances: string[] } {
  const db = new Database(file, { readonly: true });
  const rows = db.prepare('SELECT name, value FROM counters').all() as {
    name: string;
    value: number;
  }[];
  const instances = (
    db.prepare('SELECT instance_id FROM batches ORDER BY instance_id').all() as {
      instance_id: string;
    }[]
  ).map((r) => r.instance_id);
  db.close();
  return { values: new Map(rows.map((r) => [r.name, r.value])), instances };
}

/** Values of an SSE stream until `done(value)` is true or the timeout passes. */
function watch(url: string, done: (value: number) => boolean, timeoutMs: number) {
  return new Promise<number[]>((resolve, reject) => {
    const seen: number[] = [];
    const req = request(url, (res) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        const complete = buf.slice(0, buf.lastIndexOf('\n') + 1);
        buf = buf.slice(complete.length);
        for (const m of complete.matchAll(/^data: (.*)$/gm)) {
          const value = (JSON.parse(m[1] ?? '{}') as { value: number }).value;
          seen.push(value);
          if (done(value)) {
            clearTimeout(timer);
            req.destroy();
            resolve(seen);
          }
        }
      });
    });
    const timer = setTimeout(() => {
      req.destroy();
      resolve(seen);
    }, timeoutMs);
    req.on('error', (err) => {
      if (!req.destroyed) reject(err);
    });
    req.end();
  });
}

describe('tally serve --workers', () => {
  it('runs N workers on one port, counts exactly across them and drains all on SIGTERM', async () => {
    const { dir, server: starting } = start({ TALLY_WORKERS: '2' });
    const server = await starting;
    expect(server.output().match(/Tally listening on/g)).toHaveLength(1);
    expect(server.output()).toContain('(2 workers)');
    const primary = server.child.pid as number;
    expect(childrenOf(primary)).toHaveLength(2);

    const ok = await increments(server.url, 'clicks', 400);
    expect(ok).toBe(400);
    expect(await server.stop('SIGTERM')).toBe(0);
    expect(childrenOf(primary)).toHaveLength(0);

    const { values, instances } = storedRows(join(dir, 'tally.db'));
    expect(values.get('clicks')).toBe(400);
    // Both workers flushed, each under its own batch sequence (writer `<id>-w<i>@<epoch>`).
    expect(instances).toHaveLength(2);
    expect(instances[0]).toMatch(/-w1@1$/);
    expect(instances[1]).toMatch(/-w2@1$/);
  });

  it('drains every worker when the signal reaches the workers directly as well (Ctrl-C)', async () => {
    const { dir, server: starting } = start({
      TALLY_WORKERS: '2',
      TALLY_FLUSH_INTERVAL_MS: '5000',
    });
    const server = await starting;
    const primary = server.child.pid as number;
    expect(await increments(server.url, 'twice', 200)).toBe(200);
    // Half-sent requests on both workers hold each drain open for its close grace period, so
    // the second signal surely lands mid-drain.
    const { port } = new URL(server.url);
    const slow = [1, 2].map(() => {
      const socket = connect(Number(port), '127.0.0.1');
      socket.on('error', () => {});
      socket.write(
        'POST /api/v1/counters/slow/increment HTTP/1.1\r\nHost: x\r\n' +
          'Content-Type: application/json\r\nContent-Length: 20\r\n\r\n{"by"',
      );
      return socket;
    });
    cleanups.push(() => {
      for (const socket of slow) socket.destroy();
    });
    await new Promise((r) => setTimeout(r, 200));
    // Pending for seconds: only a drain can store them. Signal the workers, then the primary,
    // which forwards a second one to each.
    for (const pid of childrenOf(primary)) process.kill(pid, 'SIGINT');
    process.kill(primary, 'SIGINT');
    process.kill(primary, 'SIGINT');
    expect(await server.stop('SIGINT')).toBe(0);
    expect(storedRows(join(dir, 'tally.db')).values.get('twice')).toBe(200);
  });

  it('keeps strong reads and admin writes exact across workers (siblings flush first)', async () => {
    // A flush interval longer than the test: only a sibling flush can bring the other worker's
    // increments into the store in time.
    const token = 'cluster-admin-token-0123456789';
    const { server: starting } = start({
      TALLY_WORKERS: '2',
      TALLY_FLUSH_INTERVAL_MS: '60000',
      TALLY_ADMIN_TOKEN: token,
    });
    const server = await starting;
    const strong = async () => {
      const res = await fetch(`${server.url}/api/v1/counters/rw?consistency=strong`, {
        headers: { connection: 'close' },
      });
      return ((await res.json()) as { value: number }).value;
    };
    expect(await increments(server.url, 'rw', 100)).toBe(100);
    // Fresh connections alternate between the workers: both must answer the full count.
    for (let i = 0; i < 4; i++) expect(await strong()).toBe(100);
    expect(await increments(server.url, 'rw', 50)).toBe(50);
    const put = await fetch(`${server.url}/api/v1/counters/rw`, {
      method: 'PUT',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        connection: 'close',
      },
      body: JSON.stringify({ value: 1000 }),
    });
    expect(put.status).toBe(200);
    expect(await increments(server.url, 'rw', 30)).toBe(30);
    // Increments acknowledged before the set were applied before it, on either worker.
    for (let i = 0; i < 4; i++) expect(await strong()).toBe(1030);
    expect(await server.stop('SIGTERM')).toBe(0);
  });

  it('delivers values flushed by one worker to live streams on the other', async () => {
    const { server: starting } = start({ TALLY_WORKERS: '2', TALLY_FLUSH_INTERVAL_MS: '50' });
    const server = await starting;
    // Two streams on two connections: round-robin puts them on different workers.
    const streams = [1, 2].map(() =>
      watch(`${server.url}/api/v1/counters/live/events`, (v) => v === 300, 10_000),
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(await increments(server.url, 'live', 300)).toBe(300);
    for (const seen of await Promise.all(streams)) {
      expect(seen.at(-1)).toBe(300);
      // Never a value going backwards.
      expect([...seen].sort((a, b) => a - b)).toEqual(seen);
    }
  });

  it('restarts a worker that crashes and keeps serving', async () => {
    const { server: starting } = start({ TALLY_WORKERS: '2' });
    const server = await starting;
    const primary = server.child.pid as number;
    const [victim] = childrenOf(primary);
    process.kill(victim as number, 'SIGKILL');
    const deadline = Date.now() + 10_000;
    while (!/worker \d is listening again/.test(server.output()) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(server.output()).toMatch(/worker \d exited \(SIGKILL\); restarting it/);
    expect(server.output()).toMatch(/worker \d is listening again/);
    const now = childrenOf(primary);
    expect(now).toHaveLength(2);
    expect(now).not.toContain(victim);
    expect(await increments(server.url, 'after-crash', 50)).toBe(50);
    expect(await server.stop('SIGTERM')).toBe(0);
  });

  it('replays the logs of workers gone after a crash, when fewer workers start again', async () => {
    // Nothing is flushed by itself during the test: only the logs hold the increments.
    const { dir, server: starting } = start({
      TALLY_WORKERS: '2',
      TALLY_FLUSH_INTERVAL_MS: '60000',
    });
    const server = await starting;
    const primary = server.child.pid as number;
    const workers = childrenOf(primary);
    expect(workers).toHaveLength(2);
    expect(await increments(server.url, 'orphan', 200)).toBe(200);
    process.kill(primary, 'SIGKILL');
    // Workers whose primary is gone exit at once, without flushing.
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    const deadline = Date.now() + 10_000;
    while (workers.some(alive) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    expect(workers.some(alive)).toBe(false);
    expect(readdirSync(join(dir, 'data', 'wal'))).toHaveLength(2);

    const again = await startServer({ ...inDir(dir), TALLY_WORKERS: '1' });
    cleanups.push(() => again.stop('SIGKILL'));
    const res = await fetch(`${again.url}/api/v1/counters/orphan?consistency=strong`);
    expect(((await res.json()) as { value: number }).value).toBe(200);
    // Only this run's own log directory is left.
    const left = readdirSync(join(dir, 'data', 'wal'));
    expect(left).toHaveLength(1);
    expect(left[0]).not.toMatch(/-w\d+$/);
    expect(await again.stop('SIGTERM')).toBe(0);
  });

  it('stops with an error when workers cannot listen', async () => {
    const first = await start({ TALLY_WORKERS: '1' }).server;
    const port = new URL(first.url).port;
    const { server } = start({ TALLY_WORKERS: '2', TALLY_PORT: port });
    await expect(server).rejects.toThrow(/server exited with 1[\s\S]*exited before listening/);
  });

  it('runs one process for the memory store, with a warning', async () => {
    const { server: starting } = start({ TALLY_WORKERS: '2', TALLY_STORE: 'memory' });
    const server = await starting;
    expect(server.output()).toContain('running 1 worker instead of 2');
    expect(childrenOf(server.child.pid as number)).toHaveLength(0);
    expect(await increments(server.url, 'm', 20)).toBe(20);
    const res = await fetch(`${server.url}/api/v1/counters/m`);
    expect(((await res.json()) as { value: number }).value).toBe(20);
  });

  it('TALLY_WORKERS=0 runs one worker per core', async () => {
    const { availableParallelism } = await import('node:os');
    const cores = availableParallelism();
    const { server: starting } = start({ TALLY_WORKERS: '0' });
    const server = await starting;
    expect(childrenOf(server.child.pid as number)).toHaveLength(cores > 1 ? cores : 0);
    expect(await server.stop('SIGTERM')).toBe(0);
  });
});
