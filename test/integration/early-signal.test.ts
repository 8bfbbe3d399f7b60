// SIGTERM while `tally serve` (one process) is still starting: a start that waits for its store to
// replay a write-ahead log can last long, and as a container's PID 1 a process without a handler
// ignores SIGTERM (the kernel's rule for init), so `podman stop` waited its 10 s and killed it.
// The process runs here as PID 1 of a new PID namespace (unshare, as root), as in a container.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type RedisServer, startRedis } from '../helpers/redis-server.js';
import { freePort, MAIN, startServer } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('tally-early-signal');
let redis: RedisServer | undefined;
let child: ChildProcess | undefined;
afterAll(async () => {
  child?.kill('SIGKILL');
  await redis?.close();
  dir.remove();
});

const canUnshare = (() => {
  try {
    execFileSync('unshare', ['--pid', '--fork', 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe.skipIf(!canUnshare && process.env.CI === undefined)('SIGTERM during the start', () => {
  it('stops a start that waits for its store, even as PID 1', async () => {
    redis = await startRedis();
    const env = {
      TALLY_WORKERS: '1',
      TALLY_STORE: 'redis',
      TALLY_REDIS_URL: redis.url,
      TALLY_DATA_DIR: join(dir.path, 'data'),
      TALLY_LOG_FILES: 'false',
      TALLY_FLUSH_INTERVAL_MS: '60000',
    };
    // Acknowledged increments left in the log by a crash, with the store then gone: the next
    // start waits for the store to replay them.
    const first = await startServer(env);
    await fetch(`${first.url}/api/v1/counters/early/increment`, { method: 'POST' });
    await first.stop('SIGKILL');
    await redis.stop();

    const port = await freePort();
    child = spawn('unshare', ['--pid', '--fork', '--kill-child', process.execPath, MAIN, 'serve'], {
      env: { ...process.env, ...env, TALLY_PORT: String(port) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout?.on('data', (d: Buffer) => {
      output += d.toString();
    });
    child.stderr?.on('data', (d: Buffer) => {
      output += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => child?.once('exit', resolve));
    const deadline = Date.now() + 20_000;
    while (!output.includes('store_unreachable_at_start') && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(output).toContain('store_unreachable_at_start');
    // The node process is unshare's child, PID 1 inside its namespace.
    const node = Number(execFileSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' }));
    process.kill(node, 'SIGTERM');
    const code = await Promise.race([
      exited,
      new Promise<'still running'>((r) => setTimeout(() => r('still running'), 5_000)),
    ]);
    expect(code, output.slice(-2000)).not.toBe('still running');
    expect(output).toContain('stopping before the start completed');
  }, 60_000);
});
