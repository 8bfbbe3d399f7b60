// The CodeDeploy hooks run for real against a fake host (temp dir) and a real Tally, with a
// stub systemctl on PATH that records calls and runs the unit's ExecStart.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FakeHost, type HookName } from './fake-host.js';
import { freePort, httpStatus, REPO, requireTool, waitForStatus } from './helpers.js';

const hosts: FakeHost[] = [];
const cleanups: Array<() => void> = [];

beforeAll(() => {
  // ValidateService polls with curl, as it does on Amazon Linux (curl-minimal).
  requireTool('curl', 'curl');
});

afterEach(() => {
  for (const host of hosts.splice(0)) host.destroy();
  for (const cleanup of cleanups.splice(0)) cleanup();
});

async function newHost(label: string): Promise<FakeHost> {
  const host = await FakeHost.create(label);
  hosts.push(host);
  return host;
}

/** Runs a hook and fails the test with its output when it does not exit 0. */
async function ok(host: FakeHost, name: HookName, env: Record<string, string> = {}) {
  const result = await host.hook(name, env);
  if (result.code !== 0) {
    throw new Error(
      `${name} exited ${result.code}\n${result.stdout}\n${result.stderr}\n${host.serviceLog()}`,
    );
  }
  return result;
}

/** Starts the built Tally directly (not through the hooks) on the host's port. */
function startTally(host: FakeHost): ChildProcess {
  const dir = join(host.root, 'direct');
  mkdirSync(dir, { recursive: true });
  const child = spawn(process.execPath, [join(REPO, 'dist/main.js'), 'serve'], {
    env: {
      PATH: process.env.PATH ?? '',
      TALLY_STORE: 'memory',
      TALLY_HOST: '127.0.0.1',
      TALLY_PORT: String(host.port),
      TALLY_DATA_DIR: join(dir, 'data'),
      TALLY_LOG_DIR: join(dir, 'log'),
    },
    stdio: 'ignore',
  });
  cleanups.push(() => child.kill('SIGKILL'));
  return child;
}

function releases(host: FakeHost): string[] {
  return readdirSync(join(host.root, 'opt/tally/releases')).sort();
}

describe('ApplicationStop', () => {
  it('succeeds on a fresh instance where Tally was never installed', async () => {
    const host = await newHost('stop-fresh');
    const result = await ok(host, 'ApplicationStop');
    expect(result.stdout).toContain('nothing to stop');
    expect(host.calls()).toEqual([]);
  });

  it('succeeds on an installed service that is already stopped, twice', async () => {
    const host = await newHost('stop-stopped');
    host.writeEnvFile();
    await ok(host, 'BeforeInstall');
    host.stageRevision();
    await ok(host, 'AfterInstall', { DEPLOYMENT_ID: 'd-STOPPED' });
    await ok(host, 'ApplicationStop');
    await ok(host, 'ApplicationStop');
    expect(host.calls().filter((c) => c === 'stop tally.service')).toHaveLength(2);
  });
});

describe('ValidateService', () => {
  it('fails within its timeout when /readyz never answers', async () => {
    const host = await newHost('validate-none');
    host.writeEnvFile();
    const result = await host.hook('ValidateService', { TALLY_VALIDATE_TIMEOUT_S: '2' });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`http://127.0.0.1:${host.port}/readyz did not answer 200`);
    expect(result.ms).toBeGreaterThanOrEqual(2000);
    expect(result.ms).toBeLessThan(8000);
  });

  it('fails when /readyz keeps answering 503', async () => {
    const host = await newHost('validate-503');
    const server: Server = createServer((_req, res) => {
      res.statusCode = 503;
      res.end('{"status":"unavailable"}');
    });
    const port = await freePort();
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    cleanups.push(() => server.close());
    const result = await host.hook('ValidateService', {
      TALLY_READY_URL: `http://127.0.0.1:${port}/readyz`,
      TALLY_VALIDATE_TIMEOUT_S: '2',
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('last HTTP status 503');
  });

  it('succeeds when the real Tally answers, polling until it comes up', async () => {
    const host = await newHost('validate-ok');
    host.writeEnvFile();
    // Nothing listens yet: the hook has to keep polling the port it read from tally.env.
    const validating = host.hook('ValidateService', { TALLY_VALIDATE_TIMEOUT_S: '20' });
    await new Promise((r) => setTimeout(r, 1500));
    startTally(host);
    const result = await validating;
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/ready after \d+ attempt/);
    await ok(host, 'ValidateService');
  });

  it('gives up early when the unit has failed', async () => {
    const host = await newHost('validate-failed');
    host.writeEnvFile();
    writeFileSync(join(host.stubDir, 'state'), 'failed\n');
    const result = await host.hook('ValidateService', { TALLY_VALIDATE_TIMEOUT_S: '30' });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('failed while waiting for readiness');
    expect(result.ms).toBeLessThan(5000);
  });
});

describe('BeforeInstall and AfterInstall', () => {
  it('prepares a fresh host: directories, modes and a default env file', async () => {
    const host = await newHost('before-fresh');
    await ok(host, 'BeforeInstall');
    const envFile = join(host.root, 'etc/tally/tally.env');
    expect(readFileSync(envFile, 'utf8')).toContain('TALLY_STORE=sqlite');
    expect(statSync(envFile).mode & 0o777).toBe(0o640);
    expect(statSync(join(host.root, 'etc/tally')).mode & 0o777).toBe(0o750);
    for (const dir of ['var/lib/tally', 'var/log/tally']) {
      expect(statSync(join(host.root, dir)).mode & 0o777).toBe(0o750);
    }
    expect(existsSync(join(host.root, 'opt/tally/staging'))).toBe(true);
  });

  it('keeps an existing env file and empties staging', async () => {
    const host = await newHost('before-keep');
    const text = host.writeEnvFile();
    mkdirSync(join(host.root, 'opt/tally/staging'), { recursive: true });
    writeFileSync(join(host.root, 'opt/tally/staging/stale.txt'), 'old revision');
    await ok(host, 'BeforeInstall');
    await ok(host, 'BeforeInstall');
    expect(readFileSync(join(host.root, 'etc/tally/tally.env'), 'utf8')).toBe(text);
    expect(readdirSync(join(host.root, 'opt/tally/staging'))).toEqual([]);
  });

  it('refuses a Node.js older than 20', async () => {
    const host = await newHost('before-node');
    const fakeNode = join(host.binDir, 'old-node');
    writeFileSync(fakeNode, '#!/usr/bin/env bash\necho 18\n', { mode: 0o755 });
    const result = await host.hook('BeforeInstall', { TALLY_NODE: fakeNode });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('Node.js 18');
  });

  it('AfterInstall refuses a revision without dist/main.js', async () => {
    const host = await newHost('after-empty');
    await ok(host, 'BeforeInstall');
    const result = await host.hook('AfterInstall', { DEPLOYMENT_ID: 'd-EMPTY' });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('dist/main.js is missing');
    expect(host.current()).toBeUndefined();
  });

  it('keeps the newest three releases and always the live one', async () => {
    const host = await newHost('prune');
    host.writeEnvFile();
    for (let i = 1; i <= 5; i++) {
      await ok(host, 'BeforeInstall');
      host.stageRevision();
      await ok(host, 'AfterInstall', { DEPLOYMENT_ID: `d-${i}` });
    }
    expect(releases(host)).toEqual(['d-3', 'd-4', 'd-5']);
    expect(host.current()).toBe('releases/d-5');
  });
});

describe('a full deployment with a real Tally', () => {
  it('installs, starts, validates, then redeploys with a clean SIGTERM stop; every hook twice', async () => {
    const host = await newHost('full');
    const envText = host.writeEnvFile();
    const order: HookName[] = [
      'ApplicationStop',
      'BeforeInstall',
      'AfterInstall',
      'ApplicationStart',
      'ValidateService',
    ];

    for (const deployment of ['d-FIRST', 'd-SECOND']) {
      for (const name of order) {
        if (name === 'AfterInstall') host.stageRevision();
        // Each hook twice in a row: CodeDeploy retries, operators re-run; the second run must
        // succeed and leave the same state.
        const env = { DEPLOYMENT_ID: deployment, TALLY_VALIDATE_TIMEOUT_S: '20' };
        await ok(host, name, env);
        await ok(host, name, env);

        if (name === 'ApplicationStop' && deployment === 'd-SECOND') {
          // The first release was running: it got SIGTERM, drained and exited 0.
          expect(host.exitStatus()).toBe('0');
          expect(await httpStatus(`${host.url}/healthz`)).toBe(0);
        }
      }
      expect(host.current()).toBe(`releases/${deployment}`);
      expect(await waitForStatus(`${host.url}/readyz`, 200)).toBe(200);
    }

    expect(releases(host)).toEqual(['d-FIRST', 'd-SECOND']);
    expect(readFileSync(join(host.root, 'etc/tally/tally.env'), 'utf8')).toBe(envText);
    expect(readFileSync(join(host.root, 'etc/systemd/system/tally.service'), 'utf8')).toBe(
      readFileSync(join(REPO, 'deploy/systemd/tally.service'), 'utf8'),
    );
    // Tally wrote its own logs into the log directory of the unit.
    const logDir = join(host.root, 'var/log/tally');
    expect(readdirSync(logDir)).toEqual(expect.arrayContaining(['app.log', 'error.log']));

    const calls = host.calls();
    expect(calls).toContain('daemon-reload');
    expect(calls).toContain('enable tally.service tally-lifecycle.service');
    expect(calls).toContain('restart tally-lifecycle.service');
    expect(calls.filter((c) => c === 'restart tally.service')).toHaveLength(4);
    expect(calls.filter((c) => c === 'stop tally.service')).toHaveLength(2);

    // Leave the host stopped, as the next ApplicationStop would.
    await ok(host, 'ApplicationStop');
    expect(host.exitStatus()).toBe('0');
  });
});

describe('a multi-worker Tally under the hooks', () => {
  it('starts two workers, validates, and stops them all cleanly with one SIGTERM to the primary', async () => {
    const host = await newHost('workers');
    const dataDir = join(host.root, 'var/lib/tally');
    host.writeEnvFile([
      'TALLY_STORE=sqlite',
      `TALLY_SQLITE_PATH=${join(dataDir, 'tally.db')}`,
      'TALLY_WORKERS=2',
    ]);
    const env = { DEPLOYMENT_ID: 'd-WORKERS', TALLY_VALIDATE_TIMEOUT_S: '30' };
    await ok(host, 'BeforeInstall', env);
    host.stageRevision();
    await ok(host, 'AfterInstall', env);
    await ok(host, 'ApplicationStart', env);
    await ok(host, 'ValidateService', env);
    // /readyz answers once one worker listens; the second may still be starting (a stop then
    // ends its start early, with nothing acknowledged). This test drains two running workers.
    const started = performance.now();
    while (!host.serviceLog().includes('(2 workers)')) {
      if (performance.now() - started > 30_000) throw new Error(host.serviceLog());
      await new Promise((r) => setTimeout(r, 50));
    }

    // The stub, like KillMode=mixed, signals the main process only.
    await ok(host, 'ApplicationStop', env);
    expect(host.exitStatus(), host.serviceLog()).toBe('0');
    expect(await httpStatus(`${host.url}/healthz`)).toBe(0);
    // Each worker logs into its own directory; the CloudWatch agent ships w*/app.log.
    const logDir = join(host.root, 'var/log/tally');
    for (const worker of ['w1', 'w2']) {
      const appLog = readFileSync(join(logDir, worker, 'app.log'), 'utf8');
      expect(appLog, worker).toContain('"event":"stopped"');
    }
  });
});
