// Several processes opening one fresh SQLite file at the same moment (the workers of
// `tally serve` do exactly this): each runs the schema migration, and none may fail on a column
// another one added in between (CI once saw `duplicate column name: meta`).
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('tally-sqlite-migrate');
afterAll(() => dir.remove());

/** Opens a SqliteStore on `path` in a child process once the clock reaches `at`; its exit code. */
function openAt(path: string, at: number): Promise<{ code: number | null; stderr: string }> {
  const store = join(ROOT, 'dist/store/sqlite/index.js');
  const script =
    `while (Date.now() < ${at}) {}\n` +
    `const { SqliteStore } = await import(${JSON.stringify(store)});\n` +
    `const s = new SqliteStore({ path: ${JSON.stringify(path)} });\n` +
    'await s.close();';
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('exit', (code) => resolve({ code, stderr }));
  });
}

describe('SQLite schema migration', () => {
  it('four processes opening one fresh file at once all succeed, ten times over', async () => {
    for (let round = 0; round < 10; round++) {
      const path = join(dir.path, `fresh-${round}.db`);
      // Far enough ahead for every child to have loaded Node and be spinning.
      const at = Date.now() + 600;
      const results = await Promise.all([0, 1, 2, 3].map(() => openAt(path, at)));
      for (const r of results) expect(r.stderr, `round ${round}`).toBe('');
      for (const r of results) expect(r.code).toBe(0);
      const db = new Database(path, { readonly: true });
      const columns = (db.pragma('table_info(counters)') as { name: string }[]).map((c) => c.name);
      db.close();
      expect(columns).toEqual(['name', 'value', 'meta', 'touched_at']);
    }
  }, 60_000);
});
