// PostgreSQL crashes (pg_ctl stop -m immediate) for 5 s under load and comes back: eventual
// requests keep being accepted (up to max-pending, then 503 + Retry-After), strong ones fail
// fast, /readyz goes 503 and back, no process crashes, and every accepted increment is counted
// exactly once. The cluster is the test's own (initdb), as it is killed.
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadThroughOutage } from '../helpers/outage.js';
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

it('survives a 5 s PostgreSQL crash under load with exact totals', async () => {
  const run = await loadThroughOutage({
    tallies,
    counters: COUNTERS,
    outageMs: OUTAGE_MS,
    stop: () => cluster.stop('immediate'),
    start: () => cluster.start(),
  });

  // Exactly once: the table holds every accepted increment, no more.
  const check = new pg.Client({ connectionString: url });
  await check.connect();
  const { rows } = await check.query<{ name: string; value: string }>(
    'SELECT name, value FROM tally_counters WHERE name = ANY($1)',
    [COUNTERS],
  );
  await check.end();
  const stored = new Map(rows.map((r) => [r.name, Number(r.value)]));
  expect(COUNTERS.map((c) => stored.get(c) ?? 0)).toEqual(COUNTERS.map((c) => run.expected.get(c)));

  // A clean stop drains with nothing left over.
  for (const t of tallies) expect(await t.stop('SIGTERM')).toBe(0);

  console.log(run.summary('postgres'));
}, 120_000);
