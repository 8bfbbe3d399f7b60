// Another process holding SQLite's write lock must not stall the event loop: /healthz keeps
// answering, flushes fail and retry, and every acknowledged increment is stored once afterwards.
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { Tally } from '../../src/app.js';
import { SqliteStore } from '../../src/store/sqlite/index.js';
import { testApp } from '../helpers/app.js';
import { tempDir } from '../helpers/tmp.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs `script` in a separate Node process (modules resolved from the checkout) with `args` as
 * argv[1…]; resolves once it prints `ready`.
 */
async function nodeChild(script: string, ...args: string[]) {
  const child = spawn(process.execPath, ['-e', script, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const deadline = Date.now() + 10_000;
  while (!out.includes('ready')) {
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`child process did not start: ${out}`);
    }
    await sleep(5);
  }
  return { child, exited, output: () => out };
}

/** Holds `BEGIN IMMEDIATE` (SQLite's write lock) for argv[2] ms, then commits and exits. */
const HOLD_LOCK = `
const Database = require('better-sqlite3');
const db = new Database(process.argv[1], { timeout: 5000 });
db.exec('BEGIN IMMEDIATE');
console.log('ready');
setTimeout(() => {
  db.exec('COMMIT');
  db.close();
  console.log('released');
}, Number(process.argv[2]));
`;

/** Times GET argv[1] every 20 ms for argv[2] ms; prints `ready`, then the times as JSON. */
const PROBE_HEALTH = `
const until = Date.now() + Number(process.argv[2]);
const times = [];
console.log('ready');
(async () => {
  while (Date.now() < until) {
    const started = performance.now();
    const res = await fetch(process.argv[1], { signal: AbortSignal.timeout(20000) });
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error('healthz answered ' + res.status);
    times.push(Math.round((performance.now() - started) * 10) / 10);
    await new Promise((r) => setTimeout(r, 20));
  }
  console.log(JSON.stringify(times));
})();
`;

/**
 * Another worker's flushes, exaggerated: a write transaction holding the lock ~5 ms every ~10 ms
 * for argv[2] ms.
 */
const CONTEND = `
const Database = require('better-sqlite3');
const db = new Database(process.argv[1], { timeout: 5000 });
db.exec('CREATE TABLE IF NOT EXISTS other_worker (n INTEGER)');
const until = Date.now() + Number(process.argv[2]);
let n = 0;
console.log('ready');
(function again() {
  if (Date.now() > until) { db.close(); console.log('done ' + n); return; }
  db.exec('BEGIN IMMEDIATE');
  db.prepare('INSERT INTO other_worker (n) VALUES (?)').run(n++);
  const hold = Date.now() + 5;
  while (Date.now() < hold) {}
  db.exec('COMMIT');
  setTimeout(again, 5);
})();
`;

describe('SQLite held by another process', () => {
  const dir = tempDir('tally-busy');
  const children: ChildProcess[] = [];
  let tally: Tally | undefined;

  afterEach(async () => {
    for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
    await tally?.close();
    tally = undefined;
  });
  afterAll(() => dir.remove());

  it('answers /healthz at once under a held lock, then stores every acked increment', async () => {
    const path = join(dir.path, 'held.db');
    tally = await testApp({ flushIntervalMs: 20 }, new SqliteStore({ path }));
    const base = await tally.app.listen({ port: 0, host: '127.0.0.1' });
    const names = ['busy-a', 'busy-b', 'busy-c'];
    const acked = new Map(names.map((n) => [n, 0]));
    const increment = async (name: string) => {
      const res = await fetch(`${base}/api/v1/counters/${name}/increment`, { method: 'POST' });
      await res.arrayBuffer();
      if (res.status === 202) acked.set(name, (acked.get(name) ?? 0) + 1);
    };
    for (const n of names) await increment(n);

    const holdMs = 6000;
    const holder = await nodeChild(HOLD_LOCK, path, String(holdMs));
    children.push(holder.child);
    let released = false;
    void holder.exited.then(() => {
      released = true;
    });

    // Timed from another process: a client in this one would stall along with the event loop.
    const prober = await nodeChild(PROBE_HEALTH, `${base}/healthz`, String(holdMs - 1000));
    children.push(prober.child);
    const loopDelay = monitorEventLoopDelay({ resolution: 5 });
    loopDelay.enable();
    let maxFailures = 0;
    const load = async (name: string) => {
      while (!released) {
        await increment(name);
        maxFailures = Math.max(maxFailures, tally?.aggregator.consecutiveFailures() ?? 0);
        await sleep(10);
      }
    };
    await Promise.all(names.map(load));
    loopDelay.disable();
    const stalledMs = loopDelay.max / 1e6;
    expect(await prober.exited).toBe(0);
    const healthMs = JSON.parse(prober.output().split('\n')[1] ?? '[]') as number[];
    expect(await holder.exited).toBe(0);
    expect(holder.output()).toContain('released');

    const sorted = [...healthMs].sort((a, b) => a - b);
    const p50 = sorted[Math.floor(sorted.length / 2)] ?? 0;
    const p95 = sorted[Math.floor(sorted.length * 0.95)] ?? 0;
    const slowest = sorted[sorted.length - 1] ?? 0;
    console.log(
      `/healthz while locked: ${healthMs.length} probes, p50 ${p50.toFixed(1)} ms, ` +
        `p95 ${p95.toFixed(1)} ms, max ${slowest.toFixed(1)} ms; longest event-loop stall ${stalledMs.toFixed(1)} ms; ` +
        `flush failures in a row: ${maxFailures}`,
    );
    // The lock really held flushes back (so the probes measured something).
    expect(maxFailures).toBeGreaterThan(0);
    // Before: one probe in 5 s (5087 ms; each attempt waited out the 5 s busy timeout). Now an
    // attempt blocks ~11 ms (16 ms at most, measured under load). A single probe can still be
    // slow when the machine is starved (seen: 150-800 ms at load 10 on 2 cores, with the event
    // loop stalled as long between store calls), so the bound is on 95% of them.
    expect(p95).toBeLessThan(100);
    expect(slowest).toBeLessThan(1000);
    expect(healthMs.length).toBeGreaterThan(50);

    // The aggregator kept every failed batch; once the lock is gone they all land, once.
    for (const name of names) {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const res = await fetch(`${base}/api/v1/counters/${name}?consistency=strong`);
        const body = (await res.json()) as { value: number };
        if (res.status === 200) {
          expect(body.value).toBe(acked.get(name));
          break;
        }
        if (Date.now() > deadline) throw new Error(`strong read of ${name}: ${res.status}`);
        await sleep(100);
      }
    }
    expect(acked.get('busy-a')).toBeGreaterThan(100);
  }, 60_000);

  it('applies every batch without an error while another process often writes', async () => {
    const path = join(dir.path, 'shared.db');
    const store = new SqliteStore({ path });
    try {
      const other = await nodeChild(CONTEND, path, '3000');
      children.push(other.child);
      let seq = 0;
      const started = Date.now();
      while (Date.now() - started < 2500) {
        const r = await store.applyBatch({
          instanceId: 'contended',
          seq: ++seq,
          deltas: new Map([['shared', 1]]),
        });
        expect(r.duplicate).toBe(false);
        await sleep(2);
      }
      expect(await other.exited).toBe(0);
      expect(other.output()).toMatch(/done [1-9]\d+/);
      expect(await store.get('shared')).toBe(seq);
      expect(seq).toBeGreaterThan(50);
    } finally {
      await store.close();
    }
  }, 30_000);
});
