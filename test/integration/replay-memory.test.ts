// A restart with ten million logged increments under a 256 MB heap comes up and counts exactly.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/store/sqlite/index.js';
import { writeSyntheticLog } from '../helpers/replay-log.js';
import { type ServerProcess, startServer } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

const INCREMENTS = 10_000_000;
const COUNTERS = 300;
const INSTANCE = 'replay-mem';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function listAll(url: string): Promise<Map<string, number>> {
  const values = new Map<string, number>();
  let cursor: string | null = '';
  while (cursor !== null) {
    const r = await fetch(`${url}/api/v1/counters?prefix=replay:&limit=1000&cursor=${cursor}`);
    expect(r.status).toBe(200);
    const page = (await r.json()) as {
      items: Array<{ name: string; value: number }>;
      nextCursor: string | null;
    };
    for (const { name, value } of page.items) values.set(name, value);
    cursor = page.nextCursor;
  }
  return values;
}

describe('replay memory', () => {
  it('replays 10,000,000 logged increments under --max-old-space-size=256, exactly', async () => {
    const work = tempDir('tally-replay-mem');
    cleanups.push(() => work.remove());
    const dataDir = join(work.path, 'data');
    const sqlitePath = join(work.path, 'tally.db');
    const walDir = join(dataDir, 'wal', INSTANCE);
    const log = writeSyntheticLog({
      dir: walDir,
      increments: INCREMENTS,
      counters: COUNTERS,
      markedBatches: 40,
    });
    expect(log.segments).toBeGreaterThan(1);
    expect(log.marked.length).toBe(40);
    // The store had applied the first 5 marked batches before the crash: replay must skip them.
    const store = new SqliteStore({ path: sqlitePath });
    for (const batch of log.marked.slice(0, 5)) {
      await store.applyBatch({ instanceId: INSTANCE, ...batch });
    }
    await store.close();
    const written = readdirSync(walDir);

    let server: ServerProcess;
    const started = performance.now();
    try {
      server = await startServer(
        {
          TALLY_DATA_DIR: dataDir,
          TALLY_SQLITE_PATH: sqlitePath,
          TALLY_INSTANCE_ID: INSTANCE,
          TALLY_LOG_LEVEL: 'info',
          NODE_OPTIONS: '--max-old-space-size=256',
        },
        120_000,
      );
    } catch (err) {
      // The whole output (an out-of-memory report is long); keep its head and tail.
      const text = String((err as Error).message);
      throw new Error(
        text.length > 6000 ? `${text.slice(0, 3000)}\n…\n${text.slice(-3000)}` : text,
      );
    }
    cleanups.push(() => server.stop('SIGKILL'));
    const replaySeconds = (performance.now() - started) / 1000;
    process.stderr.write(
      `replay-memory: ${INCREMENTS} increments in ${log.segments} segments ` +
        `(${(log.bytes / 2 ** 20).toFixed(0)} MiB) listening after ${replaySeconds.toFixed(1)} s\n`,
    );

    const values = await listAll(server.url);
    for (const [name, value] of log.expected) expect(values.get(name) ?? 0, name).toBe(value);
    for (const [name, value] of values) expect(value, name).toBe(log.expected.get(name) ?? 0);
    const one = log.expected.keys().next().value as string;
    const strong = await fetch(`${server.url}/api/v1/counters/${one}?consistency=strong`);
    expect(((await strong.json()) as { value: number }).value).toBe(log.expected.get(one));
    // The replayed segments are gone; only the new process's own segment is left.
    const left = readdirSync(walDir);
    expect(left.filter((f) => written.includes(f))).toEqual([]);
  }, 240_000);
});
