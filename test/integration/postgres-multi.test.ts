// Three real `tally serve` processes sharing one PostgreSQL database (a fresh one on the server
// at 127.0.0.1:5432): exact totals under mixed load spread over all three, and live values
// crossing from one instance to another.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectLiveAcross, post, rng } from '../helpers/multi.js';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres.js';
import { type ServerProcess, startServer } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

const FLUSH_MS = 100;
const COUNTERS = Array.from({ length: 50 }, (_, i) => `load:c${String(i).padStart(2, '0')}`);

let db: TestDatabase;
const dirs: Array<{ path: string; remove(): void }> = [];
const tallies: ServerProcess[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  for (let i = 0; i < 3; i++) {
    const dir = tempDir(`tally-pg-multi-${i}`);
    dirs.push(dir);
    tallies.push(
      await startServer({
        TALLY_STORE: 'postgres',
        TALLY_POSTGRES_URL: db.url,
        TALLY_POSTGRES_POOL: '4',
        TALLY_DATA_DIR: dir.path,
        TALLY_FLUSH_INTERVAL_MS: String(FLUSH_MS),
      }),
    );
  }
});

afterAll(async () => {
  await Promise.all(tallies.map((t) => t.stop('SIGKILL')));
  await db?.drop();
  for (const d of dirs) d.remove();
});

describe('three Tally instances on one PostgreSQL database', () => {
  it('counts ≥100k increments over 50 counters exactly, mixed eventual/strong, spread over all three', async () => {
    const expected = new Map<string, number>(COUNTERS.map((c) => [c, 0]));
    const statuses: Record<string, number> = {};
    const perInstance = [0, 0, 0];
    let increments = 0;
    const started = performance.now();
    // 12 clients; each request goes to the next instance in turn.
    await Promise.all(
      Array.from({ length: 12 }, async (_, client) => {
        const random = rng(client + 1);
        for (let r = 0; r < 70; r++) {
          const which = (client + r) % 3;
          const base = (tallies[which] as ServerProcess).url;
          const pick = () => COUNTERS[Math.floor(random() * COUNTERS.length)] as string;
          const kind = r % 7;
          let res: { status: number };
          let added: Array<{ name: string; by: number }>;
          let strong: boolean;
          if (kind <= 3) {
            // 4 requests in 7 carry a batch of 250 (one of them strong): 12 × 40 × 250 = 120k.
            added = Array.from({ length: 250 }, () => ({
              name: pick(),
              by: 1 + Math.floor(random() * 3),
            }));
            strong = kind === 3;
            res = await post(`${base}/api/v1/increments${strong ? '?consistency=strong' : ''}`, {
              increments: added,
            });
          } else {
            strong = kind === 6;
            added = [{ name: pick(), by: 1 + Math.floor(random() * 5) }];
            const [{ name, by }] = added as [{ name: string; by: number }];
            res = await post(
              `${base}/api/v1/counters/${name}/increment${strong ? '?consistency=strong' : ''}`,
              { by },
            );
          }
          const key = `${kind <= 3 ? 'batch' : 'single'}${strong ? '-strong' : ''} ${res.status}`;
          statuses[key] = (statuses[key] ?? 0) + 1;
          if (res.status === (strong ? 200 : 202)) {
            for (const { name, by } of added) expected.set(name, (expected.get(name) ?? 0) + by);
            increments += added.length;
            perInstance[which] = (perInstance[which] ?? 0) + added.length;
          }
        }
      }),
    );
    const loadMs = performance.now() - started;
    // Every request was acknowledged: no failures while the database is healthy.
    expect(Object.keys(statuses).every((k) => k.endsWith(' 200') || k.endsWith(' 202'))).toBe(true);
    expect(increments).toBeGreaterThanOrEqual(100_000);
    for (const n of perInstance) expect(n).toBeGreaterThan(increments / 4);

    // A strong read on each instance flushes what that instance still holds.
    for (const t of tallies) {
      const res = await fetch(`${t.url}/api/v1/counters/${COUNTERS[0]}?consistency=strong`);
      expect(res.status).toBe(200);
    }
    // Every instance reports every counter exactly, and so does the table itself.
    for (const t of tallies) {
      const res = await fetch(`${t.url}/api/v1/counters?prefix=load:&limit=1000`);
      const page = (await res.json()) as { items: Array<{ name: string; value: number }> };
      expect(Object.fromEntries(page.items.map((i) => [i.name, i.value]))).toEqual(
        Object.fromEntries(expected),
      );
    }
    const { rows } = await db.query<{ name: string; value: string }>(
      "SELECT name, value FROM tally_counters WHERE name LIKE 'load:%' ORDER BY name",
    );
    expect(Object.fromEntries(rows.map((r) => [r.name, Number(r.value)]))).toEqual(
      Object.fromEntries(expected),
    );
    console.log(
      `postgres-multi: ${increments} increments (${JSON.stringify(statuses)}) over 3 instances ` +
        `(${perInstance.join('/')}) in ${Math.round(loadMs)} ms = ${Math.round((increments / loadMs) * 1000)}/s`,
    );
  }, 120_000);

  it('streams values made on instance A to a live client on instance B within ~2 flush intervals', async () => {
    const [a, b] = tallies as [ServerProcess, ServerProcess];
    await expectLiveAcross(a, b, FLUSH_MS, 'postgres-multi');
  }, 60_000);
});
