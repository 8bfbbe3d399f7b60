// Three real `tally serve` processes sharing one PostgreSQL database (a fresh one on the server
// at 127.0.0.1:5432): exact totals under mixed load spread over all three, and live values
// crossing from one instance to another.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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

/** POSTs JSON and returns status and body; never throws on HTTP errors. */
async function post(url: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

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
    const name = 'live-clicks';
    const controller = new AbortController();
    const res = await fetch(`${b.url}/api/v1/counters/${name}/events`, {
      signal: controller.signal,
    });
    expect(res.status).toBe(200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    const values: Array<{ value: number; at: number }> = [];
    let buffered = '';
    const reading = (async () => {
      for (;;) {
        const { done, value } = await reader.read().catch(() => ({ done: true, value: undefined }));
        if (done) return;
        buffered += decoder.decode(value, { stream: true });
        let end = buffered.indexOf('\n\n');
        while (end >= 0) {
          const frame = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          const data = /^data: (.*)$/m.exec(frame);
          if (/^event: value$/m.test(frame) && data?.[1]) {
            values.push({
              value: (JSON.parse(data[1]) as { value: number }).value,
              at: performance.now(),
            });
          }
          end = buffered.indexOf('\n\n');
        }
      }
    })();
    const waitFor = async (value: number, ms: number) => {
      const deadline = performance.now() + ms;
      while (!values.some((v) => v.value === value)) {
        if (performance.now() > deadline)
          throw new Error(
            `B never streamed ${value}; saw ${JSON.stringify(values.map((v) => v.value))}`,
          );
        await new Promise((r) => setTimeout(r, 5));
      }
      return (values.find((v) => v.value === value) as { at: number }).at;
    };
    try {
      await waitFor(0, 5000);
      const delays: number[] = [];
      for (let round = 1; round <= 8; round++) {
        // Three clicks on A, spaced like a person clicking; B must show the total.
        for (let k = 0; k < 3; k++) {
          expect((await post(`${a.url}/api/v1/counters/${name}/increment`)).status).toBe(202);
        }
        const clicked = performance.now();
        const seenAt = await waitFor(round * 3, 5000);
        delays.push(seenAt - clicked);
        await new Promise((r) => setTimeout(r, 30));
      }
      delays.sort((x, y) => x - y);
      const median = delays[Math.floor(delays.length / 2)] as number;
      console.log(
        `postgres-multi: A→B live delay ms: ${delays.map((d) => Math.round(d)).join(', ')}`,
      );
      // About two flush intervals: A's flush (≤ 1.1 × interval away) plus B's coalescing window.
      expect(median).toBeLessThan(2.5 * FLUSH_MS);
      expect(delays[delays.length - 1]).toBeLessThan(1500);
      // Values on B never went backwards.
      const seq = values.map((v) => v.value);
      expect([...seq].sort((x, y) => x - y)).toEqual(seq);
    } finally {
      controller.abort();
      await reading;
    }
  }, 60_000);
});
