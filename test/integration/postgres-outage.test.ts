// PostgreSQL crashes (pg_ctl stop -m immediate) for 5 s under load and comes back: eventual
// requests keep being accepted (up to max-pending, then 503 + Retry-After), strong ones fail
// fast, /readyz goes 503 and back, no process crashes, and every accepted increment is counted
// exactly once. The cluster is the test's own (initdb), as it is killed.
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type PostgresCluster, startPostgresCluster } from '../helpers/postgres.js';
import { type ServerProcess, startServer } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

const COUNTERS = Array.from({ length: 50 }, (_, i) => `out:c${i}`);
const OUTAGE_MS = 5000;

let cluster: PostgresCluster;
let url: string;
const dirs: Array<{ path: string; remove(): void }> = [];
const tallies: ServerProcess[] = [];

beforeAll(async () => {
  cluster = await startPostgresCluster();
  const admin = new pg.Client({ connectionString: cluster.url });
  await admin.connect();
  await admin.query('CREATE DATABASE tally');
  await admin.end();
  url = cluster.url.replace(/\/postgres$/, '/tally');
  for (let i = 0; i < 2; i++) {
    const dir = tempDir(`tally-pg-outage-${i}`);
    dirs.push(dir);
    tallies.push(
      await startServer({
        TALLY_STORE: 'postgres',
        TALLY_POSTGRES_URL: url,
        TALLY_POSTGRES_POOL: '4',
        TALLY_DATA_DIR: dir.path,
        TALLY_FLUSH_INTERVAL_MS: '100',
        // 30 of the 50 counters may be pending: past that, new counters get 503 OVERLOADED.
        TALLY_MAX_PENDING: '30',
      }),
    );
  }
}, 120_000);

afterAll(async () => {
  await Promise.all(tallies.map((t) => t.stop('SIGKILL')));
  await cluster?.close();
  for (const d of dirs) d.remove();
});

interface Outcome {
  kind: 'eventual' | 'strong';
  at: number;
  ms: number;
  status: number;
  code: string | undefined;
  retryAfter: string | null;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

it('survives a 5 s PostgreSQL crash under load with exact totals', async () => {
  const expected = new Map<string, number>(COUNTERS.map((c) => [c, 0]));
  const outcomes: Outcome[] = [];
  const ready: Array<{ instance: number; at: number; status: number }> = [];
  let running = true;
  let counter = 0;

  const client = async (id: number) => {
    let n = 0;
    while (running) {
      const t = tallies[(id + n) % 2] as ServerProcess;
      const name = COUNTERS[(id * 7 + n * 13 + counter++) % COUNTERS.length] as string;
      const strong = n % 5 === 4;
      const by = 1 + (n % 3);
      n++;
      const started = performance.now();
      const res = await fetch(
        `${t.url}/api/v1/counters/${name}/increment${strong ? '?consistency=strong' : ''}`,
        {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ by }),
        },
      );
      const body = (await res.json()) as { error?: { code: string } };
      const code = body.error?.code;
      outcomes.push({
        kind: strong ? 'strong' : 'eventual',
        at: started,
        ms: performance.now() - started,
        status: res.status,
        code,
        retryAfter: res.headers.get('retry-after'),
      });
      // Acknowledged, or accepted-but-unconfirmed (applied once later): both must be counted.
      if (res.status === 200 || res.status === 202 || code === 'NOT_CONFIRMED') {
        expected.set(name, (expected.get(name) ?? 0) + by);
      }
      await sleep(4);
    }
  };
  const poller = async () => {
    while (running) {
      for (const [i, t] of tallies.entries()) {
        const res = await fetch(`${t.url}/readyz`);
        await res.arrayBuffer();
        ready.push({ instance: i, at: performance.now(), status: res.status });
      }
      await sleep(100);
    }
  };

  const load = [...Array.from({ length: 6 }, (_, i) => client(i)), poller()];
  await sleep(1500);
  const down = performance.now();
  await cluster.stop('immediate');
  await sleep(OUTAGE_MS);
  await cluster.start();
  const up = performance.now();
  await sleep(2500);
  running = false;
  await Promise.all(load);

  // Back to ready on both instances.
  const recovery = performance.now();
  for (const t of tallies) {
    for (;;) {
      const res = await fetch(`${t.url}/readyz`);
      await res.arrayBuffer();
      if (res.status === 200) break;
      if (performance.now() - recovery > 15_000) throw new Error('readyz stayed 503');
      await sleep(100);
    }
  }
  // Strong reads flush what each instance still holds (retrying while its backoff runs).
  for (const t of tallies) {
    for (;;) {
      const res = await fetch(`${t.url}/api/v1/counters/${COUNTERS[0]}?consistency=strong`);
      await res.arrayBuffer();
      if (res.status === 200) break;
      if (performance.now() - recovery > 20_000) throw new Error('strong read kept failing');
      await sleep(100);
    }
  }
  const flushedMs = performance.now() - up;

  const during = outcomes.filter((o) => o.at > down + 200 && o.at < up);
  const eventualDuring = during.filter((o) => o.kind === 'eventual');
  const strongDuring = during.filter((o) => o.kind === 'strong');
  const overloaded = outcomes.filter((o) => o.code === 'OVERLOADED');

  // Nothing but the documented answers, and no process died.
  const allowed = new Set([
    '202',
    '200',
    '503 OVERLOADED',
    '503 STORE_UNAVAILABLE',
    '503 NOT_CONFIRMED',
  ]);
  for (const o of outcomes)
    expect(allowed).toContain(o.code ? `${o.status} ${o.code}` : `${o.status}`);
  for (const t of tallies) {
    expect(t.child.exitCode).toBeNull();
    expect(t.output()).not.toMatch(/unhandled_rejection|uncaught_exception/);
  }
  // Eventual increments kept being accepted during the outage, until max-pending refused more.
  expect(eventualDuring.filter((o) => o.status === 202).length).toBeGreaterThan(50);
  expect(overloaded.length).toBeGreaterThan(0);
  for (const o of overloaded) expect(Number(o.retryAfter)).toBeGreaterThanOrEqual(1);
  // Strong increments failed fast with a clear code instead of hanging.
  expect(strongDuring.length).toBeGreaterThan(10);
  for (const o of strongDuring) {
    expect(o.status).toBe(503);
    expect(['STORE_UNAVAILABLE', 'NOT_CONFIRMED']).toContain(o.code);
    expect(o.ms).toBeLessThan(2500);
  }
  // /readyz went 503 during the outage and 200 after, on both instances.
  for (const i of [0, 1]) {
    expect(
      ready.some((r) => r.instance === i && r.at > down && r.at < up && r.status === 503),
    ).toBe(true);
    expect(ready.some((r) => r.instance === i && r.at < down && r.status === 200)).toBe(true);
  }

  // Exactly once: the table holds every accepted increment, no more.
  const check = new pg.Client({ connectionString: url });
  await check.connect();
  const { rows } = await check.query<{ name: string; value: string }>(
    'SELECT name, value FROM tally_counters WHERE name = ANY($1)',
    [COUNTERS],
  );
  await check.end();
  const stored = new Map(rows.map((r) => [r.name, Number(r.value)]));
  expect(COUNTERS.map((c) => stored.get(c) ?? 0)).toEqual(COUNTERS.map((c) => expected.get(c)));

  // A clean stop drains with nothing left over.
  for (const t of tallies) expect(await t.stop('SIGTERM')).toBe(0);

  const total = [...expected.values()].reduce((a, b) => a + b, 0);
  const readyAgain = [0, 1].map((i) => {
    const first = ready.find((r) => r.instance === i && r.at > up && r.status === 200);
    return first === undefined ? 'n/a' : `${Math.round(first.at - up)} ms`;
  });
  const strongMs = strongDuring.map((o) => o.ms).sort((a, b) => a - b);
  console.log(
    `postgres-outage: ${outcomes.length} requests, total counted ${total}; during the outage ` +
      `${eventualDuring.filter((o) => o.status === 202).length} eventual accepted, ` +
      `${eventualDuring.filter((o) => o.code === 'OVERLOADED').length} OVERLOADED, ` +
      `${strongDuring.length} strong failed fast (max ${Math.round(strongMs[strongMs.length - 1] ?? 0)} ms); ` +
      `/readyz 200 again ${readyAgain.join(' / ')} after PostgreSQL restarted; all flushed by ${Math.round(flushedMs)} ms`,
  );
}, 120_000);
