// The Quick start's own example under `tally serve`'s default of several workers: an increment,
// then a read, each on a new connection (so they land on different workers), right away. The
// read on the other worker must include what its sibling acknowledged a moment ago, not show
// the value from before it (it did: 1 then 0, five times out of five). /metrics, whichever
// worker takes the scrape, reports the host's totals (it reported one worker's: 16, then 1).
// And the same while the siblings flush all the time (2 ms): a sibling's batch can be in
// flight, or land, between the reading worker's store read and its question to the sibling; the
// read showed one less now and then (the README test in the CI run of 2026-12-02: 1 then 0).
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ServerProcess, startServer } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('tally-worker-reads');
let server: ServerProcess;
let flushing: ServerProcess;

/** Two workers flushing every `flushMs`, on a data dir and database of their own. */
const serve = (name: string, flushMs: number) =>
  startServer(
    {
      TALLY_WORKERS: '2',
      TALLY_DATA_DIR: join(dir.path, name, 'data'),
      TALLY_SQLITE_PATH: join(dir.path, name, 'tally.db'),
      TALLY_FLUSH_INTERVAL_MS: String(flushMs),
    },
    30_000,
  );

beforeAll(async () => {
  // A long flush interval: without the siblings' answer every read would be stale.
  server = await serve('slow', 2000);
  flushing = await serve('busy', 2);
});

afterAll(async () => {
  await Promise.all([server?.stop('SIGTERM'), flushing?.stop('SIGTERM')]);
  dir.remove();
});

/** One request on a connection of its own: the cluster hands connections out in turn. */
function once(
  method: string,
  path: string,
  on: ServerProcess = server,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${on.url}${path}`, { method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('eventual reads across the workers of one tally serve', () => {
  it('include what the sibling acknowledged and has not flushed yet', async () => {
    for (let i = 1; i <= 10; i++) {
      const inc = await once('POST', '/api/v1/counters/quick/increment');
      expect(inc.status).toBe(202);
      const read = await once('GET', '/api/v1/counters/quick');
      expect(JSON.parse(read.body), `round ${i}`).toEqual({ name: 'quick', value: i });
    }
  });

  it('answer /metrics for every worker, whichever takes the scrape', async () => {
    const accepted = (text: string) =>
      Number(/^tally_increments_accepted_total\{consistency="eventual"\} (\d+)$/m.exec(text)?.[1]);
    const scrapes = [];
    for (let i = 0; i < 4; i++) scrapes.push(await once('GET', '/metrics'));
    // The ten increments of the test above, all on one worker; a scrape lands on either.
    expect(scrapes.map((s) => [s.status, accepted(s.body)])).toEqual(Array(4).fill([200, 10]));
    for (const scrape of scrapes) expect(scrape.body).toMatch(/^tally_store_up 1$/m);
  });

  it('show every increment acknowledged before them while the siblings flush all the time', async () => {
    const wrong: string[] = [];
    for (let i = 1; i <= 300; i++) {
      const inc = await once('POST', '/api/v1/counters/busy/increment', flushing);
      expect(inc.status).toBe(202);
      const read = await once('GET', '/api/v1/counters/busy', flushing);
      const { value } = JSON.parse(read.body) as { value: number };
      if (value !== i) wrong.push(`after ${i} increments the read showed ${value}`);
    }
    expect(wrong).toEqual([]);
  }, 120_000);
});
