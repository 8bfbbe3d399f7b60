// A real `tally` process: restart keeps values, bad config stops the start, the CLI works,
// logs land in app.log / error.log without secrets.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { MAIN, ROOT, type ServerProcess, startServer } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

const run = promisify(execFile);
const dir = tempDir('tally-proc');
const running: ServerProcess[] = [];
afterEach(async () => {
  for (const s of running.splice(0)) await s.stop('SIGKILL');
});
afterAll(() => dir.remove());

async function start(env: Record<string, string>) {
  const s = await startServer(env);
  running.push(s);
  return s;
}

function cli(args: string[], env: Record<string, string> = {}) {
  return run(process.execPath, [MAIN, ...args], { cwd: ROOT, env: { ...process.env, ...env } });
}

describe('a real server process', () => {
  it('keeps every acknowledged increment across a SIGTERM restart', async () => {
    const env = {
      TALLY_SQLITE_PATH: join(dir.path, 'restart.db'),
      TALLY_DATA_DIR: join(dir.path, 'restart-data'),
      // Long interval: everything is still pending at SIGTERM, so only the drain saves it.
      TALLY_FLUSH_INTERVAL_MS: '60000',
    };
    const first = await start(env);
    let acked = 0;
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        for (let i = 0; i < 25; i++) {
          const r = await fetch(`${first.url}/api/v1/counters/restart/increment`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ by: 2 }),
          });
          if (r.status === 202) acked += 2;
        }
      }),
    );
    expect(acked).toBe(1000);
    expect(await first.stop('SIGTERM')).toBe(0);
    const second = await start(env);
    const r = await fetch(`${second.url}/api/v1/counters/restart`);
    expect(await r.json()).toEqual({ name: 'restart', value: 1000 });
    // The instance id was kept, so the batch sequence continues instead of restarting at 1.
    const ready = await (await fetch(`${second.url}/readyz`)).json();
    const id = readFileSync(join(env.TALLY_DATA_DIR, 'instance-id'), 'utf8').trim();
    expect(ready.instanceId).toBe(id);
    expect(await second.stop('SIGTERM')).toBe(0);
  });

  it('refuses to start on a bad setting and names the variable', async () => {
    await expect(cli(['serve'], { TALLY_PORT: 'eighty' })).rejects.toMatchObject({
      code: 2,
      stderr: expect.stringContaining('TALLY_PORT'),
    });
    await expect(cli(['serve'], { TALLY_STORE: 'mongo' })).rejects.toMatchObject({
      stderr: expect.stringContaining('TALLY_STORE'),
    });
    await expect(cli(['serve', '--flush-interval-ms', '-5'])).rejects.toMatchObject({
      stderr: expect.stringContaining('TALLY_FLUSH_INTERVAL_MS'),
    });
  });

  it('serves the CLI client commands', async () => {
    const token = 'cli-admin-token-0123456789';
    const s = await start({
      TALLY_STORE: 'memory',
      TALLY_DATA_DIR: join(dir.path, 'cli-data'),
      TALLY_ADMIN_TOKEN: token,
    });
    const url = ['--url', s.url];
    expect((await cli(['inc', 'cli:a', ...url])).stdout.trim()).toBe('1');
    expect((await cli(['inc', 'cli:a', '41', '--strong', ...url])).stdout.trim()).toBe('42');
    expect((await cli(['get', 'cli:a', '--strong', ...url])).stdout.trim()).toBe('42');
    await expect(
      cli(['set', 'cli:b', '7', ...url], { TALLY_ADMIN_TOKEN: '' }),
    ).rejects.toMatchObject({
      stderr: expect.stringContaining('UNAUTHORIZED'),
    });
    expect(
      (await cli(['set', 'cli:b', '7', ...url], { TALLY_ADMIN_TOKEN: token })).stdout.trim(),
    ).toBe('7');
    expect((await cli(['list', 'cli:', ...url])).stdout.trim().split('\n')).toEqual([
      'cli:a 42',
      'cli:b 7',
    ]);
    expect(
      (await cli(['delete', 'cli:b', ...url], { TALLY_ADMIN_TOKEN: token })).stdout.trim(),
    ).toBe('deleted');
    await expect(cli(['inc', 'bad name', ...url])).rejects.toMatchObject({
      stderr: expect.stringContaining('INVALID_NAME'),
    });
    const help = await cli(['inc', '--help']);
    expect(help.stdout).toContain('add to a counter');
  }, 90_000); // nine CLI processes: ~17 s on a loaded 2-core machine

  it('writes app.log and error.log, and never logs the admin token', async () => {
    const token = 'log-admin-token-0123456789';
    const logDir = join(dir.path, 'logs');
    const s = await start({
      TALLY_STORE: 'memory',
      TALLY_DATA_DIR: join(dir.path, 'log-data'),
      TALLY_LOG_FILES: 'true',
      TALLY_LOG_DIR: logDir,
      TALLY_LOG_LEVEL: 'debug',
      TALLY_ADMIN_TOKEN: token,
    });
    await fetch(`${s.url}/api/v1/counters/logged`, {
      method: 'PUT',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        'x-request-id': 'req-abc',
      },
      body: JSON.stringify({ value: 3 }),
    });
    expect(await s.stop('SIGTERM')).toBe(0);
    const app = readFileSync(join(logDir, 'app.log'), 'utf8');
    const error = readFileSync(join(logDir, 'error.log'), 'utf8');
    expect(app).toContain('"msg":"counter set"');
    expect(app).toContain('"reqId":"req-abc"');
    expect(app).toContain('Tally listening on');
    expect(app).not.toContain(token);
    expect(error).not.toContain(token);
    // error.log holds errors only.
    for (const line of error.split('\n').filter(Boolean))
      expect(JSON.parse(line).level).toBeGreaterThanOrEqual(50);
  });
});
