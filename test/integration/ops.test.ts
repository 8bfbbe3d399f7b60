// Running Tally on one machine, through the installed CLI (dist/main.js): `tally backup` copies
// a live SQLite database under load and the copy restores to the exact values; `tally
// install-service` writes a unit that passes `systemd-analyze verify`; `tally doctor` says what
// is there and what to install; client commands print JSON for scripts with --json.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { MAIN, type ServerProcess, startServer } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

const run = promisify(execFile);
const dir = tempDir('tally-ops');
const servers: ServerProcess[] = [];
afterAll(async () => {
  for (const s of servers) await s.stop('SIGKILL').catch(() => undefined);
  dir.remove();
});

async function tally(args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await run(process.execPath, [MAIN, ...args], {
      env: { ...process.env, ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

async function serve(name: string, db: string): Promise<ServerProcess> {
  const server = await startServer({
    TALLY_SQLITE_PATH: db,
    TALLY_DATA_DIR: join(dir.path, `data-${name}`),
    TALLY_FLUSH_INTERVAL_MS: '20',
  });
  servers.push(server);
  return server;
}

describe('tally backup', () => {
  it('copies a database under load, and the copy restores to the exact values', async () => {
    const db = join(dir.path, 'live.db');
    const server = await serve('live', db);
    const counters = ['a', 'b', 'c', 'd'];
    let sent = 0;
    let stop = false;
    const load = Promise.all(
      Array.from({ length: 16 }, async (_, lane) => {
        while (!stop && sent < 4000) {
          sent++;
          const res = await fetch(`${server.url}/api/v1/counters/${counters[lane % 4]}/increment`, {
            method: 'POST',
          });
          expect(res.status).toBe(202);
        }
      }),
    );
    // Mid-load: a consistent copy of what was committed at that moment.
    await new Promise((r) => setTimeout(r, 300));
    const during = await tally([
      'backup',
      join(dir.path, 'during.db'),
      '--sqlite-path',
      db,
      '--json',
    ]);
    expect(during.code, during.stderr).toBe(0);
    expect(JSON.parse(during.stdout)).toMatchObject({ counters: expect.any(Number) });
    stop = true;
    await load;
    const totals: Record<string, number> = {};
    for (const name of counters) {
      const read = await fetch(`${server.url}/api/v1/counters/${name}?consistency=strong`);
      totals[name] = (await read.json()).value;
    }
    expect(Object.values(totals).reduce((a, b) => a + b, 0)).toBe(sent);
    const after = await tally(['backup', join(dir.path, 'after.db'), '--sqlite-path', db]);
    expect(after.code, after.stderr).toBe(0);
    expect(after.stdout).toMatch(/after\.db: 4 counters, \d+ bytes/);
    // Restore: a new server on the copy reads exactly the totals.
    const restored = await serve('restored', join(dir.path, 'after.db'));
    for (const name of counters) {
      const read = await fetch(`${restored.url}/api/v1/counters/${name}`);
      expect((await read.json()).value, name).toBe(totals[name]);
    }
    // The copy taken mid-load holds no more than the end, and opens on its own too.
    const early = await serve('during', join(dir.path, 'during.db'));
    for (const name of counters) {
      const read = await fetch(`${early.url}/api/v1/counters/${name}`);
      expect((await read.json()).value).toBeLessThanOrEqual(totals[name] as number);
    }
  }, 60_000);

  it('refuses to overwrite a file and names a missing database', async () => {
    const missing = await tally([
      'backup',
      join(dir.path, 'x.db'),
      '--sqlite-path',
      join(dir.path, 'none.db'),
    ]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('no SQLite database at');
    const exists = await tally([
      'backup',
      join(dir.path, 'after.db'),
      '--sqlite-path',
      join(dir.path, 'live.db'),
    ]);
    expect(exists.code).toBe(1);
    expect(exists.stderr).toContain('exists');
  });
});

describe('tally install-service', () => {
  it('writes a unit that passes systemd-analyze verify, and keeps an existing env file', async () => {
    const root = join(dir.path, 'root');
    const first = await tally(['install-service', '--root', root, '--user', 'counter']);
    expect(first.code, first.stderr).toBe(0);
    const unit = join(root, 'etc/systemd/system/tally.service');
    const text = readFileSync(unit, 'utf8');
    expect(text).toContain(`ExecStart=${process.execPath} ${MAIN} serve`);
    expect(text).toContain('User=counter');
    const verify = await run('systemd-analyze', ['verify', '--man=no', unit]).then(
      (r) => ({ code: 0, stderr: r.stderr }),
      (e: { code: number; stderr: string }) => e,
    );
    expect(verify.stderr).toBe('');
    expect(verify.code).toBe(0);
    const env = join(root, 'etc/tally/tally.env');
    expect(readFileSync(env, 'utf8')).toContain('TALLY_DATA_DIR=/var/lib/tally');
    const again = await tally(['install-service', '--root', root]);
    expect(again.stdout).not.toContain('tally.env');
  });
});

describe('tally doctor', () => {
  it('reports each check, and names the package for a missing tool', async () => {
    const all = await tally(['doctor', '--json'], { TALLY_PORT: '0' });
    expect(all.code, all.stdout).toBe(0);
    const report = JSON.parse(all.stdout) as {
      ok: boolean;
      checks: Array<{ name: string; ok: boolean }>;
    };
    expect(report.checks.map((c) => c.name)).toEqual(
      expect.arrayContaining([
        'node',
        'better-sqlite3',
        'redis-server',
        'chromium',
        'disk',
        'port',
      ]),
    );
    // Without the tools on PATH: test-only tools are reported with their fix, and the server's
    // own needs still pass.
    const bare = await tally(['doctor'], { PATH: '/nonexistent', TALLY_PORT: '0' });
    expect(bare.stdout).toMatch(/test\s+chromium\s+not on PATH/);
    expect(bare.stdout).toContain('→ apt-get install chromium');
    expect(bare.code).toBe(0);
  });
});

describe('client commands with --json', () => {
  it('print the answer as JSON and errors as the stable shape', async () => {
    const server = await serve('json', join(dir.path, 'json.db'));
    const inc = await tally(['inc', 'scripted', '4', '--strong', '--json', '--url', server.url]);
    expect(JSON.parse(inc.stdout)).toEqual({ name: 'scripted', value: 4 });
    const list = await tally(['list', '--json', '--url', server.url]);
    expect(JSON.parse(list.stdout)).toEqual({ items: [{ name: 'scripted', value: 4 }] });
    const bad = await tally(['get', 'bad name', '--json', '--url', server.url]);
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stderr).error.code).toBe('INVALID_NAME');
  });
});
