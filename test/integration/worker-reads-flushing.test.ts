// The Quick start's increment-then-read under `tally serve`'s workers while the siblings flush
// all the time (a 2 ms flush interval): a sibling's batch can be in flight, or land, between
// the reading worker's store read and its question to the sibling. The read must still show
// every increment acknowledged before it began (it showed one less, now and then: the CI run
// of 2026-12-02 saw `1 then 0` in the README test).
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type ServerProcess, startServer } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('tally-worker-reads-flushing');
let server: ServerProcess;

beforeAll(async () => {
  server = await startServer(
    {
      TALLY_WORKERS: '2',
      TALLY_DATA_DIR: join(dir.path, 'data'),
      TALLY_SQLITE_PATH: join(dir.path, 'tally.db'),
      TALLY_FLUSH_INTERVAL_MS: '2',
    },
    30_000,
  );
});

afterAll(async () => {
  await server?.stop('SIGTERM');
  dir.remove();
});

/** One request on a connection of its own: the cluster hands connections out in turn. */
function once(method: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${server.url}${path}`, { method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

it('an eventual read shows every increment acknowledged before it, while siblings flush', async () => {
  const wrong: string[] = [];
  for (let i = 1; i <= 300; i++) {
    const inc = await once('POST', '/api/v1/counters/busy/increment');
    expect(inc.status).toBe(202);
    const { value } = JSON.parse((await once('GET', '/api/v1/counters/busy')).body) as {
      value: number;
    };
    if (value !== i) wrong.push(`after ${i} increments the read showed ${value}`);
  }
  expect(wrong).toEqual([]);
}, 120_000);
